"""Stage 2 of :func:`lsqmf.solve`: turn the options into a plan, deciding everything once.

:func:`plan` builds the :class:`~lsqmf.model.problem.Problem` from the random start, resolves the
bounds and ``x_scale`` to the problem's length, evaluates the residual once at the start (and
the Jacobian check when asked), and decides -- from the tables of :mod:`lsqmf.nls.tables`
-- which Jacobian kind runs, whether it is dense, which backend runs the kernels, how many BLAS
threads the run uses, and which runner of :data:`lsqmf.nls.run.RUNNERS` runs it. The later
stages read the plan and decide nothing again.

Extending ``solve``: a new way of running (e.g. a reduced problem) adds a runner to
``RUNNERS`` and sets :attr:`Plan.runner` here from a new option; the plan's fields are what
every runner receives.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from .._validation import bound_arrays, describe
from ..data.ratings import Ratings
from ..kernels.backend import resolve_backend
from ..model import gradcheck
from ..model.problem import Problem, build_problem
from ..model.start import random_start
from ..runtime.threads import blas_threads_for
from .options import SolveOptions
from .tables import METHODS, JacKind, choose_jac, needs_dense

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
    x0 : ndarray, shape (n_params,)
        The start (clipped into the bounds).
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

    @property
    def kernels(self) -> tuple[str, ...]:
        """Compiled kernels the run calls (to warm up before the clock starts)."""
        return self.jac.kernels if self.backend == "compiled" else ()

    def jacobian_function(self) -> Any:
        """What ``least_squares`` gets as ``jac``: a function of ``x`` or scipy's scheme name."""
        if self.jac.build is None:
            return self.jac.scipy_name
        build = self.jac.build(self.problem, self.backend)
        if self.dense:
            return lambda x: build(x).toarray()
        return build


def resolve_bounds(bounds: Any, problem: Problem) -> tuple[np.ndarray, np.ndarray]:
    """``(lb, ub)`` of length n_params; a scalar applies to every factor entry (not the
    biases)."""
    n_par = problem.n_params
    if bounds is None:
        return np.full(n_par, -np.inf), np.full(n_par, np.inf)
    lb, ub = bound_arrays(
        bounds, n_par, problem.n_rows * problem.rank + problem.rank * problem.n_cols,
        pair_error="`bounds` must be a pair (lb, ub) of scalars (applied to every factor entry) "
        f"or of arrays of length n_params={n_par}",
        shape_error=lambda name, shape: (
            f"`bounds` {name} must be a scalar or have length n_params={n_par}; got shape "
            f"{shape}."
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


def column_scale(problem: Problem, x: np.ndarray) -> np.ndarray:
    """Jacobian column norms at ``x`` with zeros replaced by 1: scipy's ``'jac'`` scale."""
    norms = problem.column_norms(x)
    norms[norms == 0] = 1.0
    return norms


def check_size(problem: Problem, options: SolveOptions, dense: bool) -> None:
    """Refuse what scipy would fail on late: lm's residual count, a dense J beyond budget."""
    n_res, n_par = problem.n_residuals, problem.n_params
    if METHODS[options.method].overdetermined and n_res < n_par:
        raise ValueError(
            f"method={options.method!r} needs at least as many residuals as unknowns; this "
            f"problem has {n_res} residuals and {n_par} unknowns (formulation="
            f"{options.formulation!r} with {problem.ratings.nnz} observed entries). Use "
            "method='trf' or 'dogbox', or a regularized formulation ('prior' or 'l2')."
        )
    if dense and n_res * n_par * 8 > MAX_DENSE_JACOBIAN_BYTES:
        raise ValueError(
            f"a dense Jacobian of shape ({n_res}, {n_par}) needs "
            f"{n_res * n_par * 8 / 2**30:.1f} GiB (limit {MAX_DENSE_JACOBIAN_BYTES / 2**30:.0f} "
            "GiB); use method='trf' or 'dogbox' with tr_solver='lsmr' (sparse or matrix-free "
            "Jacobian)."
        )


def check_start(problem: Problem, x0: np.ndarray, check_jacobian: float | None) -> None:
    """Evaluate the residual once at the start (and compare J with finite differences)."""
    r0 = problem.residual(x0)
    if r0.shape != (problem.n_residuals,) or not np.all(np.isfinite(r0)):
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


def build(ratings: Ratings, options: SolveOptions) -> tuple[Problem, np.ndarray]:
    """The problem (its priors are the start) and the packed start ``x0``."""
    assert options.rng is not None
    P, Q = random_start(ratings, options.rank, options.rng, init_scale=options.init_scale,
                        P0=options.P0, Q0=options.Q0)
    problem = build_problem(
        ratings, options.rank, formulation=options.formulation, alpha=options.alpha,
        beta=options.beta, reg=options.reg, reg_bias=options.reg_bias,
        count_scaled=options.count_scaled, biases=options.biases, P_prior=P, Q_prior=Q,
    )
    return problem, problem.pack(P, Q)


def plan(ratings: Ratings, options: SolveOptions) -> Plan:
    """Decide how the run goes; see the module docstring."""
    problem, x0 = build(ratings, options)
    backend = resolve_backend(options.backend)
    jac = choose_jac(options.jac, options.method, options.tr_solver, problem.jacobian_nnz(),
                     backend)
    dense = jac.always_dense or needs_dense(options.method, options.tr_solver)
    check_size(problem, options, dense)
    lb, ub = resolve_bounds(options.bounds, problem)
    x_scale = resolve_x_scale(options.x_scale, problem.n_params)
    clipped = np.clip(x0, lb, ub)
    if np.any(clipped != x0):
        logger.info("clipped %d start values into the bounds", int(np.sum(clipped != x0)))
        x0 = clipped
    check_start(problem, x0, options.check_jacobian)
    emulate = jac.name == "operator" and isinstance(x_scale, str)
    if emulate:
        x_scale = 1.0 / column_scale(problem, x0)
    uses_kernels = bool(jac.kernels) and backend == "compiled"
    threads = options.blas_threads
    if threads is None:
        threads = blas_threads_for(
            problem.n_residuals * problem.n_params if dense else None, uses_kernels
        )
    return Plan(
        problem=problem, x0=x0, lb=lb, ub=ub, jac=jac, dense=dense,
        jac_sparsity=problem.jac_sparsity() if jac.scipy_name and not dense else None,
        x_scale=x_scale, emulate_jac_scale=emulate, backend=backend, blas_threads=threads,
    )
