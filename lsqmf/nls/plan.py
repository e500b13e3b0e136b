"""Stage 2 of :func:`lsqmf.solve`: turn the options into a plan, deciding everything once.

:func:`plan` builds the :class:`~lsqmf.model.problem.Problem` from the random start -- or,
with ``eliminate``, VarPro's :class:`~lsqmf.nls.varpro.ReducedProblem` (on the transposed
ratings for ``'P'``) whose ``theta`` is the optimized factor of the same start -- resolves the
bounds and ``x_scale`` to the optimized vector's length, evaluates the residual once at the
start (and the Jacobian check when asked), and decides -- from the tables of
:mod:`lsqmf.nls.tables` -- which Jacobian kind runs, whether it is dense, which backend runs
the kernels and which kernels to warm up, how many BLAS threads the run uses, and which runner
of :data:`lsqmf.nls.run.RUNNERS` runs it (the method's row says). The later stages read the
plan and decide nothing again: :meth:`Plan.residual`, :meth:`Plan.jacobian_function` and
:meth:`Plan.factors` are the same calls for the joint and the reduced problem.

Extending ``solve``: a new way of running adds a runner to ``RUNNERS`` and a method row naming
it; the plan's fields are what every runner receives.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from .._validation import bound_arrays, describe
from ..data.ratings import Ratings
from ..kernels.backend import resolve_backend
from ..model import gradcheck
from ..model.problem import Problem, build_problem
from ..model.start import random_start
from ..runtime.memory import check_budget, fit_bytes
from ..runtime.threads import blas_threads_for
from .options import SolveOptions

if TYPE_CHECKING:
    from .varpro import ReducedProblem
from .tables import METHODS, REDUCED_KERNELS, JacKind, choose_jac, loss_row, needs_dense

__all__ = ["MAX_DENSE_JACOBIAN_BYTES", "Plan", "plan"]

logger = logging.getLogger("lsqmf.solve")

#: A dense Jacobian larger than this is refused (use ``tr_solver='lsmr'``).
MAX_DENSE_JACOBIAN_BYTES = 4 * 2**30


@dataclass(frozen=True)
class Plan:
    """Everything the run stage needs, decided once.

    Attributes
    ----------
    problem : Problem
        The joint problem (with ``eliminate='P'``, of the transposed ratings).
    x0 : ndarray, shape (n_params,)
        The start (clipped into the bounds): the joint ``x``, or VarPro's ``theta``.
    lb, ub : ndarray, shape (n_params,)
    jac : JacKind
        The kind that runs (``'auto'`` resolved).
    dense : bool
        The Jacobian is handed to scipy as a dense array.
    jac_sparsity : sparse matrix or None
        The pattern for scipy's finite differences with LSMR.
    x_scale : 'jac' or ndarray
        The scaling of the first ``least_squares`` call.
    emulate_jac_scale : bool
        ``x_scale='jac'`` with the matrix-free operator: emulated by restarts (see
        :mod:`lsqmf.solve`); ``x_scale`` then holds the inverse column norms at ``x0``.
    backend : {'compiled', 'numpy'}
    blas_threads : int or None
        BLAS thread limit for the run (None: the caller's setting).
    runner : str
        Key of :data:`lsqmf.nls.run.RUNNERS`.
    reduced : ReducedProblem or None
        VarPro's reduced problem (``eliminate``): ``x`` is its ``theta``.
    eliminate : {None, 'Q', 'P'}
    varpro_jacobian : {'kaufman', 'full'}
    kernels : tuple of str
        Compiled kernels the run calls (to warm up before the clock starts).
    ratings : Ratings or None
        The caller's ratings (None: ``problem.ratings``).
    """

    problem: Problem
    x0: np.ndarray
    lb: np.ndarray
    ub: np.ndarray
    jac: JacKind
    dense: bool
    jac_sparsity: sp.csr_matrix | None
    x_scale: str | np.ndarray
    emulate_jac_scale: bool
    backend: str
    blas_threads: int | None
    runner: str = "least_squares"
    reduced: ReducedProblem | None = None
    eliminate: str | None = None
    varpro_jacobian: str = "kaufman"
    kernels: tuple[str, ...] = ()
    ratings: Ratings | None = None

    @property
    def n_params(self) -> int:
        return self.problem.n_params if self.reduced is None else self.reduced.n_params

    def residual(self, x: np.ndarray) -> np.ndarray:
        """The residual the runner minimizes: the joint one, or VarPro's reduced one."""
        if self.reduced is None:
            return self.problem.residual(x)
        return self.reduced.residual(x)

    def jacobian_function(self) -> Any:
        """What ``least_squares`` gets as ``jac``: a function of ``x`` or scipy's scheme name
        (None for a method that forms its own, :data:`~lsqmf.nls.tables.NORMAL`)."""
        if self.reduced is not None:
            if self.jac.reduced is None:
                return None
            return self.jac.reduced(self.reduced, self.varpro_jacobian)
        if self.jac.build is None:
            return self.jac.scipy_name
        build = self.jac.build(self.problem, self.backend)
        if self.dense:
            return lambda x: build(x).toarray()
        return build

    def factors(self, x: np.ndarray) -> tuple[Any, Any, Any, Any, float]:
        """``(P, Q, row_bias, col_bias, rms)`` at ``x``, in the caller's orientation (copies)."""
        if self.reduced is not None:
            x = self.reduced.joint_x(x)
        x = np.array(x, copy=True)
        P, Q, b, c = self.problem.unpack(x)
        rms = self.problem.rms(x)
        if self.eliminate == "P":
            P, Q, b, c = np.array(Q).T.copy(), np.array(P).T.copy(), c, b
        return P, Q, b, c, rms

    @property
    def caller_ratings(self) -> Ratings:
        return self.problem.ratings if self.ratings is None else self.ratings


def resolve_bounds(
    bounds: Any, n_params: int, n_factor: int, *, eliminate: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(lb, ub)`` of length ``n_params``; a scalar applies to every factor entry (the first
    ``n_factor``; not the biases). With ``eliminate`` they bound the optimized factor only."""
    if bounds is None:
        return np.full(n_params, -np.inf), np.full(n_params, np.inf)
    length = f"{n_params} (its entries [+ its biases])" if eliminate else f"n_params={n_params}"
    tail = (" With `eliminate`, bounds apply to the optimized factor only: the eliminated "
            "factor has a closed form and cannot be bounded." if eliminate else "")
    lb, ub = bound_arrays(
        bounds, n_params, n_factor,
        pair_error="`bounds` must be a pair (lb, ub) of scalars (applied to every factor entry) "
        f"or of arrays of length {n_params}",
        shape_error=lambda name, shape: (
            f"`bounds` {name} must be a scalar or have length {length}; got shape {shape}.{tail}"
        ),
    )
    if np.any(lb >= ub):
        j = int(np.flatnonzero(lb >= ub)[0])
        raise ValueError(
            f"`bounds` must have lower < upper everywhere; at parameter {j} got "
            f"{lb[j]} >= {ub[j]}."
        )
    return lb, ub


def resolve_x_scale(x_scale: Any, n_par: int) -> str | np.ndarray:
    """``'jac'`` or ``n_par`` positive finite numbers."""
    if isinstance(x_scale, str):
        if x_scale != "jac":
            raise ValueError(f"`x_scale` must be 'jac' or positive numbers; got {x_scale!r}.")
        return x_scale
    arr = np.asarray(x_scale, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n_par, float(arr))
    if arr.shape != (n_par,) or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(
            f"`x_scale` must be 'jac', a positive number or {n_par} positive numbers; "
            f"got {describe(x_scale)}."
        )
    return arr


def column_scale(problem: Problem | ReducedProblem, x: np.ndarray) -> np.ndarray:
    """Jacobian column norms at ``x`` with zeros replaced by 1: scipy's ``'jac'`` scale."""
    norms = problem.column_norms(x)
    norms[norms == 0] = 1.0
    return norms


def check_size(n_res: int, n_par: int, options: SolveOptions, dense: bool, nnz: int) -> None:
    """Refuse what scipy would fail on late: lm's residual count, a dense J beyond budget."""
    if METHODS[options.method].overdetermined and n_res < n_par:
        raise ValueError(
            f"method={options.method!r} needs at least as many residuals as unknowns; this "
            f"problem has {n_res} residuals and {n_par} unknowns (formulation="
            f"{options.formulation!r} with {nnz} observed entries"
            f"{', eliminate=' + repr(options.eliminate) if options.eliminate else ''}). Use "
            "method='trf' or 'dogbox', or a regularized formulation ('prior' or 'l2')."
        )
    if dense and n_res * n_par * 8 > MAX_DENSE_JACOBIAN_BYTES:
        raise ValueError(
            f"a dense Jacobian of shape ({n_res}, {n_par}) needs "
            f"{n_res * n_par * 8 / 2**30:.1f} GiB (limit {MAX_DENSE_JACOBIAN_BYTES / 2**30:.0f} "
            "GiB); use method='trf' or 'dogbox' with tr_solver='lsmr' (sparse or matrix-free "
            "Jacobian)."
        )


def check_start(the_plan: Plan, check_jacobian: float | None) -> None:
    """Evaluate the residual once at the start (and compare J with finite differences)."""
    problem, x0 = the_plan.problem, the_plan.x0
    r0 = the_plan.residual(x0)
    n_res = problem.n_residuals
    if r0.shape != (n_res,) or not np.all(np.isfinite(r0)):
        raise ValueError(
            "the residuals at the starting point are not finite; check `P0`, `Q0` and the "
            "ratings."
        )
    if check_jacobian is None:
        return
    chk = gradcheck.check_jacobian(problem, x0, random_state=0)
    if chk.max_rel_error > check_jacobian:
        raise gradcheck.JacobianCheckError(
            f"the analytic Jacobian differs from finite differences by "
            f"{chk.max_rel_error:.3g} (relative; absolute {chk.max_abs_error:.3g}, worst "
            f"at parameter {chk.worst_column}) at the start, above check_jacobian="
            f"{check_jacobian:g}."
        )
    logger.info("Jacobian check: max relative error %.3g", chk.max_rel_error)


def _start(ratings: Ratings, options: SolveOptions) -> tuple[np.ndarray, np.ndarray]:
    """The random start ``(P, Q)`` (``P0``/``Q0`` where given)."""
    assert options.rng is not None
    return random_start(ratings, options.rank, options.rng, init_scale=options.init_scale,
                        P0=options.P0, Q0=options.Q0)


def build(ratings: Ratings, options: SolveOptions) -> tuple[Problem, np.ndarray]:
    """The problem (its priors are the start) and the packed start ``x0``."""
    P, Q = _start(ratings, options)
    problem = build_problem(
        ratings, options.rank, formulation=options.formulation, alpha=options.alpha,
        beta=options.beta, reg=options.reg, reg_bias=options.reg_bias,
        count_scaled=options.count_scaled, biases=options.biases, P_prior=P, Q_prior=Q,
    )
    return problem, problem.pack(P, Q)


def build_reduced_start(
    ratings: Ratings, options: SolveOptions, backend: str
) -> tuple[ReducedProblem, np.ndarray]:
    """VarPro's reduced problem (of the transposed ratings for ``eliminate='P'``) and its
    start ``theta0``: the optimized factor of the random start."""
    from .varpro import build_reduced, transpose_ratings

    work = transpose_ratings(ratings) if options.eliminate == "P" else ratings
    # lm-normal solves the robust inner problem (IRLS); scipy's methods keep least squares
    robust = METHODS[options.method].own_jac is not None and options.loss_name != "linear"
    red = build_reduced(
        work, options.rank, formulation=options.formulation, reg=options.reg,
        reg_bias=options.reg_bias, count_scaled=options.count_scaled, biases=options.biases,
        backend=backend, loss=loss_row(options.loss) if robust else None,
        f_scale=options.f_scale,
    )
    P, Q = _start(ratings, options)
    return red, red.pack(P if options.eliminate == "Q" else Q.T)


def _threads(options: SolveOptions, dense_entries: int | None, single: bool) -> int | None:
    if options.blas_threads is not None:
        return options.blas_threads
    return 1 if single else blas_threads_for(dense_entries, False)


def _scale(x_scale: str | np.ndarray, jac: JacKind, target: Any, x0: np.ndarray,
           reduced: bool) -> tuple[str | np.ndarray, bool]:
    """``(x_scale, emulate)``: with the matrix-free operator scipy cannot apply ``'jac'``;
    the joint problem emulates it by restarts, VarPro fixes the column norms at the start."""
    if jac.name != "operator" or not isinstance(x_scale, str):
        return x_scale, False
    if reduced:
        logger.info("x_scale='jac' with the reduced operator: column norms at the start, fixed")
    return 1.0 / column_scale(target, x0), not reduced


def plan(ratings: Ratings, options: SolveOptions) -> Plan:
    """Decide how the run goes; see the module docstring."""
    n_rows, n_cols = ratings.shape
    check_budget(  # before the start or the problem is allocated (a rank of 10^6, ids of 10^11)
        fit_bytes(n_rows, n_cols, ratings.nnz, options.rank),
        f"lsqmf.solve: a fit of `rank`={options.rank} on {n_rows} x {n_cols} entries "
        f"({ratings.nnz} observed)", "Use a smaller `rank`.")
    backend = resolve_backend(options.backend)
    spec = METHODS[options.method]
    red: ReducedProblem | None = None
    if options.eliminate is None:
        problem, x0 = build(ratings, options)
        target: Problem | ReducedProblem = problem
    else:
        red, x0 = build_reduced_start(ratings, options, backend)
        problem, target = red.problem, red
    n_res, n_par = problem.n_residuals, target.n_params
    jac = choose_jac(options.jac, options.method, options.tr_solver, problem.jacobian_nnz(),
                     backend, options.eliminate)
    dense = jac.always_dense or needs_dense(options.method, options.tr_solver)
    check_size(n_res, n_par, options, dense, ratings.nnz)
    n_factor = target.n_rows * target.rank  # entries of the optimized factor(s)
    if red is None:
        n_factor += problem.rank * problem.n_cols
    lb, ub = resolve_bounds(options.bounds, n_par, n_factor, eliminate=options.eliminate)
    clipped = np.clip(x0, lb, ub)
    if np.any(clipped != x0):
        logger.info("clipped %d start values into the bounds", int(np.sum(clipped != x0)))
        x0 = clipped
    x_scale, emulate = _scale(resolve_x_scale(options.x_scale, n_par), jac, target, x0,
                              red is not None)
    kernels = _kernels(jac, spec.kernels, red is not None) if backend == "compiled" else ()
    operator = jac.name == "operator" and backend == "compiled"
    the_plan = Plan(
        problem=problem, x0=x0, lb=lb, ub=ub, jac=jac, dense=dense,
        jac_sparsity=problem.jac_sparsity() if jac.scipy_name and not dense else None,
        x_scale=x_scale, emulate_jac_scale=emulate, backend=backend,
        blas_threads=_threads(options, n_res * n_par if dense else None,
                              operator or spec.single_thread),
        runner=spec.runner, reduced=red, eliminate=options.eliminate,
        varpro_jacobian=options.varpro_jacobian, kernels=kernels, ratings=ratings,
    )
    check_start(the_plan, options.check_jacobian)
    return the_plan


def _kernels(jac: JacKind, method_kernels: tuple[str, ...], reduced: bool) -> tuple[str, ...]:
    """The compiled kernels a run calls (the backend is compiled)."""
    if not reduced:
        return jac.kernels
    return (*REDUCED_KERNELS, *jac.reduced_kernels, *method_kernels)
