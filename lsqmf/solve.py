r"""``lsqmf.solve``: fit a low-rank factorization with ``scipy.optimize.least_squares``.

The path is: validate every argument -> build the :class:`~lsqmf.problem.Problem` -> evaluate
the residual and Jacobian once at the start and check them -> ``least_squares`` -> result.
See :mod:`lsqmf.problem` for the objective and its Jacobian.

Jacobian kinds (``jac=``)
-------------------------
``'sparse'``
    The analytic CSR Jacobian (:meth:`Problem.jacobian`), for ``tr_solver='lsmr'``.
``'dense'``
    The same as a dense array, for ``tr_solver='exact'`` and ``method='lm'``.
``'operator'``
    The matrix-free ``LinearOperator`` (:meth:`Problem.operator`), ``tr_solver='lsmr'`` only.
    With numba installed (``pip install 'lsqmf[fast]'``) its products run in compiled kernels,
    several times faster than a product with the CSR Jacobian, which makes it the fastest
    choice for ``lsmr`` on large problems (the kernels compile once per process, in about 2
    s). scipy refuses ``x_scale='jac'`` with an operator (``'jac'`` rescales the variables by
    the running maximum of the Jacobian's column norms at every iteration), so lsqmf emulates
    it: it passes the inverse column norms at the start as a fixed ``x_scale`` and, whenever a
    column norm at a new iterate exceeds :data:`RESCALE_FACTOR` (2) times its scale, restarts
    ``least_squares`` from that iterate with the running maximum. Every evaluation is counted
    and kept (``nfev``, ``njev`` and the history cover all stages; ``optimize_result`` is the
    last stage's); a restart resets scipy's trust radius. The number of restarts is
    ``result.options['x_scale_restarts']``. Scales fixed at a small random start go stale as
    the factors grow: on MovieLens latest-small (l2, reg 0.1, rank 10, biases) the solve took
    32 s with them, 13.5 s with the emulation (12 restarts) and 22.7 s with ``jac='sparse'``,
    where scipy applies ``'jac'`` itself (``benchmarks/bench_operator_scaling.py``). While
    the compiled operator runs, BLAS is limited to one thread (its spinning threads and
    numba's contend for the cores).
``'kron'``
    The seed-style literal Kronecker construction (:func:`~lsqmf.problem.kron_jacobian`),
    O(n*m*rank): for oracles and benchmarks only.
``'2-point'``, ``'3-point'``
    scipy's finite differences, with the known sparsity pattern for ``lsmr``.
``'auto'`` (default)
    ``'dense'`` for ``method='lm'`` or ``tr_solver='exact'``, else ``'sparse'``.

Which combinations scipy allows
-------------------------------
``method='lm'`` (MINPACK) needs the linear loss, a dense Jacobian, no bounds and at least as
many residuals as unknowns; it uses its own QR-based step and ignores ``tr_solver``.
``tr_solver='exact'`` needs a dense Jacobian. lsqmf checks these itself and names the allowed
alternatives.
"""

from __future__ import annotations

import logging
import numbers
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from . import gradcheck
from ._threads import blas_single_thread
from ._validation import (
    check_array,
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_random_state,
    describe,
)
from .problem import FORMULATIONS, Problem, build_problem, compiled_operator, kron_jacobian
from .ratings import as_ratings
from .result import (
    STATUS_MESSAGES,
    FitResult,
    History,
    IterationInfo,
    Status,
    warn_not_converged,
)

__all__ = [
    "JAC_KINDS",
    "LOSSES",
    "MAX_DENSE_JACOBIAN_BYTES",
    "METHODS",
    "RESCALE_FACTOR",
    "TR_SOLVERS",
    "NonFiniteResidualError",
    "solve",
]

logger = logging.getLogger(__name__)

METHODS = ("trf", "dogbox", "lm")
TR_SOLVERS = (None, "exact", "lsmr")
JAC_KINDS = ("auto", "sparse", "dense", "operator", "kron", "2-point", "3-point")

#: The robust losses rho(z) of ``least_squares`` (z = squared residual over f_scale**2).
LOSSES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": lambda z: z,
    "soft_l1": lambda z: 2.0 * (np.sqrt(1.0 + z) - 1.0),
    "huber": lambda z: np.where(z <= 1.0, z, 2.0 * np.sqrt(z) - 1.0),
    "cauchy": np.log1p,
    "arctan": np.arctan,
}

#: A dense Jacobian larger than this is refused (use ``tr_solver='lsmr'``).
MAX_DENSE_JACOBIAN_BYTES = 4 * 2**30

_TR_OPTION_KEYS = {
    None: {"atol", "btol", "conlim", "maxiter", "damp", "show", "regularize"},
    "lsmr": {"atol", "btol", "conlim", "maxiter", "damp", "show", "regularize"},
    "exact": set(),
}


#: Statuses of stops the caller asked for (callback, time budget): no ConvergenceWarning.
_REQUESTED_STOPS = (Status.CALLBACK, Status.MAX_TIME)


class NonFiniteResidualError(FloatingPointError):
    """Residuals became NaN or infinite; ``partial_result`` holds the best finite point."""

    def __init__(self, message: str, partial_result: FitResult | None = None) -> None:
        super().__init__(message)
        self.partial_result = partial_result


class _Stop(Exception):
    """Raised inside the residual wrapper to end a run early (callback, time budget)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Rescale(Exception):
    """Raised inside the Jacobian wrapper when the operator path's column scaling is stale;
    carries the accepted iterate and the column scale there."""

    def __init__(self, x: np.ndarray, scale: np.ndarray) -> None:
        super().__init__()
        self.x = x
        self.scale = scale


#: With ``jac='operator'`` and ``x_scale='jac'``, restart ``least_squares`` with fresh column
#: scales once a Jacobian column norm exceeds this multiple of its current scale.
RESCALE_FACTOR = 2.0


class _NonFinite(Exception):
    """Raised inside the residual wrapper at the first non-finite residual vector."""

    def __init__(self, step: int, n_bad: int) -> None:
        super().__init__(step)
        self.step = step
        self.n_bad = n_bad


class _Recorder:
    """Wraps the residual: counts evaluations, records the cost history and the best point."""

    def __init__(
        self,
        problem: Problem,
        cost_of: Callable[[np.ndarray], float],
        callback: Callable[[IterationInfo], Any] | None,
        max_time: float | None,
    ) -> None:
        self.problem = problem
        self.cost_of = cost_of
        self.callback = callback
        self.max_time = max_time
        self.start = time.perf_counter()
        self.steps: list[int] = []
        self.costs: list[float] = []
        self.times: list[float] = []
        self.nfev = 0
        self.njev = 0
        self.best_x: np.ndarray | None = None
        self.best_cost = np.inf

    def fun(self, x: np.ndarray) -> np.ndarray:
        r = self.problem.residual(x)
        step = self.nfev
        self.nfev += 1
        elapsed = time.perf_counter() - self.start
        finite = np.isfinite(r)
        if not finite.all():
            # scipy's solvers do not recover reliably (trf can fail inside its own code,
            # dogbox loops to max_nfev, lm may report success): stop here, keep the best point.
            raise _NonFinite(step, int(np.count_nonzero(~finite)))
        cost = self.cost_of(r)
        if cost < self.best_cost:
            self.best_cost, self.best_x = cost, np.array(x, copy=True)
        self.steps.append(step)
        self.costs.append(cost)
        self.times.append(elapsed)
        if self.callback is not None and self.callback(IterationInfo(step, cost, elapsed)):
            raise _Stop(Status.CALLBACK)
        if self.max_time is not None and elapsed > self.max_time:
            raise _Stop(Status.MAX_TIME)
        return r

    def history(self) -> History:
        return History.from_lists(self.steps, self.costs, self.times)


def _loss_cost(loss: str | Callable, f_scale: float) -> Callable[[np.ndarray], float]:
    """scipy's cost ``0.5 * f_scale**2 * sum(rho(r**2 / f_scale**2))`` for the given loss."""
    if loss == "linear":
        return lambda r: 0.5 * float(r @ r)
    c2 = f_scale**2
    if callable(loss):
        return lambda r: 0.5 * c2 * float(np.sum(np.asarray(loss(r**2 / c2))[0]))
    rho = LOSSES[loss]
    return lambda r: 0.5 * c2 * float(np.sum(rho(r**2 / c2)))


def _column_scale(problem: Problem, x: np.ndarray) -> np.ndarray:
    """Jacobian column norms at ``x`` with zeros replaced by 1: scipy's ``'jac'`` scale."""
    norms = problem.column_norms(x)
    norms[norms == 0] = 1.0
    return norms


def _check_tolerance(name: str, value: Any, method: str) -> float | None:
    if value is None:
        if method == "lm":
            raise ValueError(f"`{name}` must be a float > 0 for method='lm'; got None.")
        return None
    return check_float(name, value, min_value=0.0, max_value=1.0, max_inclusive=False)


def _resolve_jac(jac: str, method: str, tr_solver: str | None) -> str:
    check_choice("jac", jac, JAC_KINDS)
    needs_dense = method == "lm" or tr_solver == "exact"
    if jac == "auto":
        return "dense" if needs_dense else "sparse"
    if needs_dense and jac in ("sparse", "operator"):
        who = "method='lm'" if method == "lm" else "tr_solver='exact'"
        raise ValueError(
            f"{who} needs a dense Jacobian, so jac={jac!r} cannot be used with it. Allowed: "
            f"jac in 'auto', 'dense', 'kron', '2-point', '3-point' with {who}; or keep "
            f"jac={jac!r} with method='trf'/'dogbox' and tr_solver='lsmr'."
        )
    return jac


def _resolve_bounds(bounds: Any, problem: Problem, method: str) -> tuple[np.ndarray, np.ndarray]:
    n_par = problem.n_params
    if bounds is None:
        return np.full(n_par, -np.inf), np.full(n_par, np.inf)
    if method == "lm":
        raise ValueError(
            "method='lm' does not support `bounds`; use method='trf' or 'dogbox' with bounds, "
            "or drop the bounds."
        )
    if hasattr(bounds, "lb") and hasattr(bounds, "ub"):  # scipy.optimize.Bounds
        bounds = (bounds.lb, bounds.ub)
    if not isinstance(bounds, tuple | list) or len(bounds) != 2:
        raise TypeError(
            "`bounds` must be a pair (lb, ub) of scalars (applied to every factor entry) or of "
            f"arrays of length n_params={n_par}; got {describe(bounds)}."
        )
    n_factor = problem.n_rows * problem.rank + problem.rank * problem.n_cols
    out = []
    for name, b, fill in (("lower bound", bounds[0], -np.inf), ("upper bound", bounds[1], np.inf)):
        arr = np.asarray(b, dtype=np.float64)
        if arr.ndim == 0:
            full = np.full(n_par, fill)
            full[:n_factor] = arr
            arr = full
        elif arr.shape != (n_par,):
            raise ValueError(
                f"`bounds` {name} must be a scalar or have length n_params={n_par}; got shape "
                f"{arr.shape}."
            )
        if np.isnan(arr).any():
            raise ValueError(f"`bounds` {name} must not contain NaN.")
        out.append(arr)
    lb, ub = out
    if np.any(lb >= ub):
        j = int(np.flatnonzero(lb >= ub)[0])
        raise ValueError(
            f"`bounds` must have lower < upper everywhere; at parameter {j} got "
            f"{lb[j]} >= {ub[j]}."
        )
    return lb, ub


def _check_x_scale(x_scale: Any, n_par: int) -> str | np.ndarray:
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


def solve(
    R: Any,
    rank: int | None = None,
    *,
    P0: Any = None,
    Q0: Any = None,
    missing: float | None = None,
    weights: Any = None,
    formulation: str = "prior",
    alpha: float = 0.9,
    beta: float = 0.1,
    reg: float = 0.0,
    reg_bias: float | None = None,
    count_scaled: bool = False,
    biases: bool = False,
    method: str = "trf",
    tr_solver: str | None = None,
    tr_options: Mapping[str, Any] | None = None,
    loss: str | Callable = "linear",
    f_scale: float = 1.0,
    bounds: Any = None,
    ftol: float | None = 1e-3,
    xtol: float | None = 1e-8,
    gtol: float | None = 1e-8,
    x_scale: Any = "jac",
    max_nfev: int | None = None,
    jac: str = "auto",
    init_scale: float = 0.1,
    random_state: int | np.random.Generator | None = None,
    check_jacobian: float | None = None,
    max_time: float | None = None,
    callback: Callable[[IterationInfo], Any] | None = None,
) -> FitResult:
    r"""Fit ``R ≈ P @ Q`` on the observed entries with ``scipy.optimize.least_squares``.

    Parameters
    ----------
    R : ndarray, scipy.sparse matrix, pandas.DataFrame or Ratings
        The observed entries: a dense array (NaN, or ``missing``, marks unobserved), a sparse
        matrix (stored entries are observed), a DataFrame with ``user``, ``item``, ``rating``
        columns and arbitrary ids, or :class:`~lsqmf.Ratings`.
    rank : int, optional
        Number of factors; taken from ``P0``/``Q0`` when they are given.
    P0 : ndarray, shape (n_rows, rank), optional
        Initial row factors, and the prior of the ``'prior'`` formulation. Default: seeded
        random normal with standard deviation ``init_scale``.
    Q0 : ndarray, shape (rank, n_cols), optional
        Initial column factors (same rules).
    missing : float, optional
        A value that marks unobserved entries of a dense ``R`` (e.g. 0).
    weights : array_like or str, optional
        Per-rating weights: shaped like a dense ``R``, aligned with a sparse ``R``'s COO
        entries, or a column name of a DataFrame ``R``.
    formulation : {'prior', 'l2', 'none'}, default='prior'
        ``'prior'``: :math:`\alpha(\hat P\hat Q - R)_\Omega`, :math:`\beta(\hat P - P_0)`,
        :math:`\beta(\hat Q - Q_0)`. ``'l2'``: ridge toward zero with weight ``reg``.
        ``'none'``: the data term only. See :mod:`lsqmf.problem`.
    alpha, beta : float, default=0.9, 0.1
        Data and prior weights of ``'prior'``.
    reg : float, default=0.0
        Weight :math:`\lambda` of ``'l2'``: the objective is
        :math:`\tfrac12[\sum w e^2 + \lambda(\|P\|^2 + \|Q\|^2)]`.
    reg_bias : float, optional
        L2 weight of the biases under ``'l2'`` (default ``reg``).
    count_scaled : bool, default=False
        Under ``'l2'``, scale each row's and column's weight by its number of ratings.
    biases : bool, default=False
        Fit ``mu + b_u + c_i + p_u q_i`` with ``mu`` the training mean.
    method : {'trf', 'dogbox', 'lm'}, default='trf'
    tr_solver : {None, 'exact', 'lsmr'}, default=None
        As in ``least_squares``; ``'lm'`` ignores it.
    tr_options : dict, optional
        Passed to the trust-region solver (``lsmr`` options, ``regularize``).
    loss : {'linear', 'soft_l1', 'huber', 'cauchy', 'arctan'} or callable, default='linear'
    f_scale : float, default=1.0
        Soft margin between inlier and outlier residuals of a robust loss.
    bounds : (lb, ub), optional
        Scalars bound every factor entry (biases stay free); arrays of length ``n_params``
        bound every entry of ``x``. Not with ``'lm'``. The start is clipped into the bounds.
    ftol, xtol, gtol : float or None, default=1e-3, 1e-8, 1e-8
    x_scale : 'jac' or float or array_like, default='jac'
    max_nfev : int, optional
    jac : {'auto', 'sparse', 'dense', 'operator', 'kron', '2-point', '3-point'}, default='auto'
        How the Jacobian is provided; see the module docstring.
    init_scale : float, default=0.1
        Standard deviation of the random initial factors.
    random_state : int, numpy.random.Generator or None
        Seeds the random initial factors.
    check_jacobian : float, optional
        If given, compare the analytic Jacobian with finite differences at the start and raise
        :class:`~lsqmf.gradcheck.JacobianCheckError` if the relative error exceeds it.
    max_time : float, optional
        Time budget in seconds; the run stops after the first evaluation past it.
    callback : callable, optional
        Called as ``callback(IterationInfo(step, cost, time))`` after every residual
        evaluation; returning True stops the run.

    Returns
    -------
    FitResult
        ``P`` (n_rows, rank), ``Q`` (rank, n_cols), biases, scipy's record and the history. A
        run that stops without success (``max_nfev``, ``max_time``, the callback, Ctrl-C)
        returns the best point it evaluated with ``success=False`` and a
        :class:`~lsqmf.ConvergenceWarning`.

    Raises
    ------
    ValueError, TypeError
        For any invalid argument or impossible combination, before scipy is called.
    NonFiniteResidualError
        If the residuals are not finite at the end; ``partial_result`` holds the best point.

    Notes
    -----
    ``least_squares`` minimizes :math:`\tfrac12\sum_j \rho(r_j(x)^2)` where ``r`` stacks the
    weighted data residuals and the regularization rows; the Jacobian of ``r`` has
    ``2*rank (+2)`` nonzeros per observed entry and is built in O(nnz*rank).

    Examples
    --------
    >>> import numpy as np
    >>> import lsqmf
    >>> R = np.array([[5.0, 3.0, np.nan, 1.0],
    ...               [4.0, np.nan, np.nan, 1.0],
    ...               [1.0, 1.0, np.nan, 5.0],
    ...               [1.0, np.nan, np.nan, 4.0],
    ...               [np.nan, 1.0, 5.0, 4.0]])
    >>> fit = lsqmf.solve(R, 2, formulation="l2", reg=0.01, random_state=0, ftol=1e-8)
    >>> fit.P.shape, fit.Q.shape
    ((5, 2), (2, 4))
    >>> bool(fit.success)
    True
    >>> float(np.round(fit.predict([0], [0])[0], 1))
    5.0
    """
    t_start = time.perf_counter()
    # ---------------------------------------------------------------- validate
    check_choice("method", method, METHODS)
    check_choice("tr_solver", tr_solver, TR_SOLVERS)
    check_choice("formulation", formulation, FORMULATIONS)
    if not callable(loss):
        check_choice("loss", loss, LOSSES)
    if method == "lm" and loss != "linear":
        raise ValueError(
            f"method='lm' supports only loss='linear'; got loss={loss!r}. Use method='trf' or "
            "'dogbox' for a robust loss."
        )
    f_scale = check_float("f_scale", f_scale, min_value=0.0, min_inclusive=False)  # type: ignore[assignment]
    init_scale = check_float("init_scale", init_scale, min_value=0.0, min_inclusive=False)  # type: ignore[assignment]
    ftol = _check_tolerance("ftol", ftol, method)
    xtol = _check_tolerance("xtol", xtol, method)
    gtol = _check_tolerance("gtol", gtol, method)
    eps = np.finfo(float).eps
    if all(t is None or t < eps for t in (ftol, xtol, gtol)):
        raise ValueError(f"at least one of `ftol`, `xtol`, `gtol` must be > {eps:.2e}.")
    if method == "lm" and any(t is not None and t < eps for t in (ftol, xtol, gtol)):
        raise ValueError(f"method='lm' needs `ftol`, `xtol` and `gtol` all > {eps:.2e}.")
    if max_nfev is not None:
        max_nfev = check_int("max_nfev", max_nfev, min_value=1)
    max_time = check_float("max_time", max_time, min_value=0.0, allow_none=True)
    check_jacobian = check_float(  # type: ignore[assignment]
        "check_jacobian", check_jacobian, min_value=0.0, min_inclusive=False, allow_none=True
    )
    count_scaled = check_bool("count_scaled", count_scaled)
    biases = check_bool("biases", biases)
    if callback is not None and not callable(callback):
        raise TypeError(f"`callback` must be callable; got {describe(callback)}.")
    if tr_options is None:
        tr_options = {}
    if not isinstance(tr_options, Mapping):
        raise TypeError(f"`tr_options` must be a dict; got {describe(tr_options)}.")
    tr_key = None if method == "lm" else tr_solver
    unknown = set(tr_options) - _TR_OPTION_KEYS[tr_key] if method != "lm" else set(tr_options)
    if unknown:
        allowed = sorted(_TR_OPTION_KEYS[tr_key]) if method != "lm" else []
        raise ValueError(
            f"`tr_options` has key(s) {sorted(unknown)} that method={method!r} with "
            f"tr_solver={tr_solver!r} does not take; allowed: {allowed}."
        )
    jac_kind = _resolve_jac(jac, method, tr_solver)
    rng = check_random_state(random_state)

    ratings = as_ratings(R, missing=missing, weights=weights)
    n, m = ratings.shape
    P_given = None if P0 is None else check_array("P0", P0, ndim=2, copy=True)
    Q_given = None if Q0 is None else check_array("Q0", Q0, ndim=2, copy=True)
    if rank is None:
        if P_given is not None:
            rank = P_given.shape[1]
        elif Q_given is not None:
            rank = Q_given.shape[0]
        else:
            raise ValueError("`rank` is required when neither `P0` nor `Q0` is given.")
    rank = check_int("rank", rank, min_value=1)
    if P_given is not None and P_given.shape != (n, rank):
        raise ValueError(
            f"`P0` must have shape (n_rows, rank) = ({n}, {rank}); got {P_given.shape}."
        )
    if Q_given is not None and Q_given.shape != (rank, m):
        raise ValueError(
            f"`Q0` must have shape (rank, n_cols) = ({rank}, {m}); got {Q_given.shape}."
        )
    P_init = P_given if P_given is not None else init_scale * rng.standard_normal((n, rank))
    Q_init = Q_given if Q_given is not None else init_scale * rng.standard_normal((rank, m))

    problem = build_problem(
        ratings, rank, formulation=formulation, alpha=alpha, beta=beta, reg=reg,
        reg_bias=reg_bias, count_scaled=count_scaled, biases=biases,
        P_prior=P_init, Q_prior=Q_init,
    )
    n_res, n_par = problem.n_residuals, problem.n_params
    if method == "lm" and n_res < n_par:
        raise ValueError(
            f"method='lm' needs at least as many residuals as unknowns; this problem has "
            f"{n_res} residuals and {n_par} unknowns (formulation={formulation!r} with "
            f"{ratings.nnz} observed entries). Use method='trf' or 'dogbox', or a "
            "regularized formulation ('prior' or 'l2')."
        )
    dense_needed = jac_kind == "dense" or (
        (method == "lm" or tr_solver == "exact") and jac_kind in ("kron", "2-point", "3-point")
    )
    if dense_needed and n_res * n_par * 8 > MAX_DENSE_JACOBIAN_BYTES:
        raise ValueError(
            f"a dense Jacobian of shape ({n_res}, {n_par}) needs "
            f"{n_res * n_par * 8 / 2**30:.1f} GiB (limit {MAX_DENSE_JACOBIAN_BYTES / 2**30:.0f} "
            "GiB); use method='trf' or 'dogbox' with tr_solver='lsmr' (sparse or matrix-free "
            "Jacobian)."
        )
    lb, ub = _resolve_bounds(bounds, problem, method)
    x_scale_checked = _check_x_scale(x_scale, n_par)
    x0 = problem.pack(P_init, Q_init)
    clipped = np.clip(x0, lb, ub)
    if np.any(clipped != x0):
        logger.info("clipped %d start values into the bounds", int(np.sum(clipped != x0)))
        x0 = clipped

    # ---------------------------------------------------------------- evaluate once at x0
    r0 = problem.residual(x0)
    if r0.shape != (n_res,) or not np.all(np.isfinite(r0)):
        raise ValueError(
            "the residuals at the starting point are not finite; check `P0`, `Q0` and the "
            "ratings."
        )
    if check_jacobian is not None:
        chk = gradcheck.check_jacobian(problem, x0, random_state=0)
        if chk.max_rel_error > check_jacobian:
            raise gradcheck.JacobianCheckError(
                f"the analytic Jacobian differs from finite differences by "
                f"{chk.max_rel_error:.3g} (relative; absolute {chk.max_abs_error:.3g}, worst "
                f"at parameter {chk.worst_column}) at the start, above check_jacobian="
                f"{check_jacobian:g}."
            )
        logger.info("Jacobian check: max relative error %.3g", chk.max_rel_error)

    # ---------------------------------------------------------------- Jacobian and scaling
    to_dense = method == "lm" or tr_solver == "exact"
    scipy_jac: Any
    jac_sparsity = None
    emulate_jac_scale = False
    scale_inv = np.ones(n_par)
    if jac_kind == "sparse":
        scipy_jac = lambda x: problem.jacobian(x)  # noqa: E731
    elif jac_kind == "dense":
        scipy_jac = lambda x: problem.jacobian(x).toarray()  # noqa: E731
    elif jac_kind == "kron":
        if to_dense:
            scipy_jac = lambda x: kron_jacobian(problem, x).toarray()  # noqa: E731
        else:
            scipy_jac = lambda x: kron_jacobian(problem, x)  # noqa: E731
    elif jac_kind == "operator":
        scipy_jac = problem.operator
        if isinstance(x_scale_checked, str):
            scale_inv = _column_scale(problem, x0)
            x_scale_checked = 1.0 / scale_inv
            emulate_jac_scale = True
    else:
        scipy_jac = jac_kind
        if not to_dense:
            jac_sparsity = problem.jac_sparsity()

    cost_of = _loss_cost(loss, f_scale)
    recorder = _Recorder(problem, cost_of, callback, max_time)

    stage = {"first_jac": True}

    def counted_jac(x: np.ndarray) -> Any:
        # a restart needs room for at least two more evaluations under max_nfev
        budget_left = max_nfev is None or max_nfev - recorder.nfev >= 2
        if emulate_jac_scale and not stage["first_jac"] and budget_left:
            scale = _column_scale(problem, x)
            if np.any(scale > RESCALE_FACTOR * scale_inv):
                raise _Rescale(np.array(x, copy=True), scale)
        stage["first_jac"] = False
        recorder.njev += 1
        return scipy_jac(x)

    jac_arg = counted_jac if callable(scipy_jac) else scipy_jac
    options: dict[str, Any] = {
        "rank": rank, "formulation": formulation, "alpha": alpha, "beta": beta, "reg": reg,
        "reg_bias": reg_bias, "count_scaled": count_scaled, "biases": biases,
        "method": method, "tr_solver": tr_solver, "tr_options": dict(tr_options),
        "loss": loss if isinstance(loss, str) else getattr(loss, "__name__", "callable"),
        "f_scale": f_scale, "ftol": ftol, "xtol": xtol, "gtol": gtol,
        "x_scale": x_scale if isinstance(x_scale, str) else "array",
        "max_nfev": max_nfev, "jac": jac_kind, "init_scale": init_scale,
        "random_state": random_state if isinstance(random_state, numbers.Integral) else None,
        "bounds": bounds is not None, "max_time": max_time,
    }

    # ---------------------------------------------------------------- run
    stop_status: int | None = None
    nonfinite: _NonFinite | None = None
    opt = None
    restarts = 0
    x_start = x0
    # LSMR's vector operations alternate with the compiled products: one BLAS thread (see
    # blas_single_thread; 10x faster on 2 cores).
    with blas_single_thread(jac_kind == "operator" and compiled_operator()):
        while True:
            stage["first_jac"] = True
            stage_nfev = None if max_nfev is None else max_nfev - recorder.nfev
            try:
                opt = least_squares(
                    recorder.fun, x_start, jac=jac_arg, bounds=(lb, ub), method=method,
                    ftol=ftol, xtol=xtol, gtol=gtol, x_scale=x_scale_checked, loss=loss,
                    f_scale=f_scale, max_nfev=stage_nfev, jac_sparsity=jac_sparsity,
                    tr_solver=None if method == "lm" else tr_solver, tr_options=dict(tr_options),
                )
            except _Rescale as rescale:
                # x_scale='jac' emulated for the operator: continue from the accepted iterate with
                # the running maximum of the column norms, as scipy's 'jac' keeps.
                restarts += 1
                scale_inv = np.maximum(scale_inv, rescale.scale)
                x_scale_checked = 1.0 / scale_inv
                x_start = rescale.x
                logger.info("x_scale restart %d after %d evaluations", restarts, recorder.nfev)
                continue
            except _Stop as stop:
                stop_status = stop.status
            except _NonFinite as err:
                nonfinite = err
            except KeyboardInterrupt:
                stop_status = Status.INTERRUPTED
            except np.linalg.LinAlgError as err:
                raise np.linalg.LinAlgError(
                    f"the linear algebra of method={method!r}, tr_solver={tr_solver!r} failed "
                    f"after {recorder.nfev} evaluations ({err}); try tr_solver='lsmr', a "
                    "regularized formulation, or another method."
                ) from err
            break

    options["x_scale_restarts"] = restarts

    wall = time.perf_counter() - t_start
    common = dict(
        mu=problem.mu, history=recorder.history(), wall_time=wall, options=options,
        solver="lsq", row_ids=ratings.row_ids, col_ids=ratings.col_ids,
        row_counts=ratings.row_counts(), col_counts=ratings.col_counts(),
    )

    def result_at(x: np.ndarray, **kw: Any) -> FitResult:
        P, Q, b, c = problem.unpack(np.array(x, copy=True))
        return FitResult(P=P, Q=Q, row_bias=b, col_bias=c, **common, **kw)  # type: ignore[arg-type]

    if nonfinite is not None:
        partial = None
        if recorder.best_x is not None:
            partial = result_at(
                recorder.best_x, success=False, status=Status.NON_FINITE,
                message=STATUS_MESSAGES[Status.NON_FINITE],
                nfev=recorder.nfev, njev=recorder.njev, cost=recorder.best_cost,
            )
        raise NonFiniteResidualError(
            f"the residuals became non-finite at evaluation {nonfinite.step} "
            f"({nonfinite.n_bad} of {n_res} NaN or infinite; method={method!r}, "
            f"loss={options['loss']!r}): the factors diverged. Try method='trf', "
            "stronger regularization (larger `beta` or `reg`), bounds, a smaller `init_scale`, "
            "x_scale='jac', or scaling the ratings. The best finite point evaluated is in the "
            "error's `partial_result`.",
            partial,
        )

    if stop_status is not None or opt is None:
        assert stop_status is not None
        message = STATUS_MESSAGES[stop_status]
        assert recorder.best_x is not None  # x0 was evaluated and is finite
        result = result_at(
            recorder.best_x, success=False, status=stop_status, message=message,
            nfev=recorder.nfev, njev=recorder.njev, cost=recorder.best_cost,
        )
        text = (
            f"lsqmf.solve stopped early (status {stop_status}: {message}) after "
            f"{recorder.nfev} evaluations; returning the best point evaluated (cost "
            f"{recorder.best_cost:.6g})."
        )
        if stop_status in _REQUESTED_STOPS:
            logger.info(text)
        else:
            warn_not_converged(text)
        return result

    njev = opt.njev if opt.njev is not None else recorder.njev
    nfev = opt.nfev
    if restarts:  # scipy's counts cover the last stage only
        nfev, njev = recorder.nfev, recorder.njev
    result = result_at(
        opt.x, success=bool(opt.success), status=int(opt.status), message=str(opt.message),
        nfev=int(nfev), njev=None if njev is None else int(njev), cost=float(opt.cost),
        optimality=float(opt.optimality), optimize_result=opt,
    )
    if not opt.success:
        warn_not_converged(
            f"lsqmf.solve did not converge (status {opt.status}: {opt.message}); returning "
            f"the factors reached after {opt.nfev} evaluations (cost {opt.cost:.6g}). Raise "
            "`max_nfev` or loosen `ftol`/`xtol`/`gtol`.",
        )
    return result

