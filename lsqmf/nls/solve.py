r"""``lsqmf.solve``: fit a low-rank factorization with ``scipy.optimize.least_squares``.

``solve`` is a pipeline of four stages, each a function with its own tests, passing one frozen
options record (:class:`~lsqmf.nls.options.SolveOptions`):

1. :func:`~lsqmf.nls.options.validate` -- every argument checked, the ratings converted,
   the seed drawn;
2. :func:`~lsqmf.nls.plan.plan` -- the :class:`~lsqmf.model.problem.Problem` from the random
   start (with ``eliminate``, VarPro's reduced problem of :mod:`lsqmf.nls.varpro` from the
   same start), the residual evaluated once at the start, and every decision (Jacobian kind,
   dense or not, backend, BLAS threads, runner) made once from the lookup tables of
   :mod:`lsqmf.nls.tables`;
3. :func:`~lsqmf.nls.run.run` -- the runner the method's row names (:data:`~lsqmf.nls.run.
   RUNNERS`: ``'least_squares'``, for the joint or the reduced residual, with the ``x_scale``
   emulation below; ``'lm_normal'``, :mod:`lsqmf.nls.lm_normal`);
4. :func:`~lsqmf.nls.result.result` -- the :class:`~lsqmf.FitResult` (or the error).

To extend ``solve`` with a new way of running, add a runner to ``RUNNERS`` and a method row
naming it to :data:`~lsqmf.nls.tables.METHODS` (an option it needs goes into the record and
the plan); a loss is one row of :data:`~lsqmf.nls.tables.LOSSES`. See
:mod:`lsqmf.model.problem` for the objective and its Jacobian.

Jacobian kinds (``jac=``, the table :data:`JAC_KINDS`)
------------------------------------------------------
``'sparse'``
    The analytic CSR Jacobian (:meth:`Problem.jacobian`), for ``tr_solver='lsmr'``.
``'dense'``
    The same as a dense array, for ``tr_solver='exact'`` and ``method='lm'``.
``'operator'``
    The matrix-free ``LinearOperator`` (:meth:`Problem.operator`), ``tr_solver='lsmr'`` only.
    With the compiled backend (the default) its products run in numba kernels, several times
    faster than a product with the CSR Jacobian, which makes it the fastest choice for
    ``lsmr`` on large problems (the kernels are compiled once and cached on disk; see
    :mod:`lsqmf.kernels.core`). scipy refuses ``x_scale='jac'`` with an operator (``'jac'``
    rescales the variables by the running maximum of the Jacobian's column norms at every
    iteration), so lsqmf emulates it: it passes the inverse column norms at the start as a
    fixed ``x_scale`` and, whenever a column norm at a new iterate exceeds
    :data:`RESCALE_FACTOR` (2) times its scale, restarts ``least_squares`` from that iterate
    with the running maximum. Every evaluation is counted and kept (``nfev``, ``njev`` and
    the history cover all stages; ``optimize_result`` is the last stage's); a restart resets
    scipy's trust radius. The number of restarts is ``result.options['x_scale_restarts']``.
    Scales fixed at a small random start go stale as the factors grow: on MovieLens
    latest-small (l2, reg 0.1, rank 10, biases) the solve took 32 s with them, 13.5 s with
    the emulation (12 restarts) and 22.7 s with ``jac='sparse'``, where scipy applies
    ``'jac'`` itself (``benchmarks/bench_operator_scaling.py``). While the compiled operator
    runs, BLAS is limited to one thread (its spinning threads and numba's contend for the
    cores).
``'kron'``
    The seed-style literal Kronecker construction (:func:`~lsqmf.model.problem.kron_jacobian`),
    O(n*m*rank): for oracles and benchmarks only.
``'2-point'``, ``'3-point'``
    scipy's finite differences, with the known sparsity pattern for ``lsmr``.
``'auto'`` (default)
    ``'dense'`` for ``method='lm'`` or ``tr_solver='exact'``. Otherwise (LSMR) the compiled
    ``'operator'`` when the Jacobian has at least
    :data:`~lsqmf.nls.tables.AUTO_OPERATOR_MIN_NNZ` structural nonzeros
    (:meth:`Problem.jacobian_nnz`, about ``nnz * 2 * rank``) and the backend is compiled,
    else ``'sparse'``. The rule reads only the problem's size, so a call picks the same kind
    on every machine. The threshold is 4,000,000 (a 1600 x 1280 problem with 5% observed at
    rank 10 has 2.1 million): the compiled operator is several times faster than CSR
    products on a quiet machine from about 10^5 nonzeros on (4.5x at 2.1 million, with 4.5x
    less memory; ``reports/jacobian``), but each of its parallel kernel launches waits for
    numba's threads, so on an oversubscribed machine it lost at every size measured (40x on
    tiny problems, 1.7x at 2.1 million, the gap closing about 4x per 4x in size;
    ``reports/jac_auto``, ``benchmarks/bench_jac_auto.py``). The threshold sits where it wins
    in both settings and where the CSR Jacobian's memory starts to matter.

Which combinations scipy allows (the table :data:`METHODS`)
-----------------------------------------------------------
``method='lm'`` (MINPACK) needs the linear loss, a dense Jacobian, no bounds and at least as
many residuals as unknowns; it uses its own QR-based step and ignores ``tr_solver``.
``tr_solver='exact'`` needs a dense Jacobian. lsqmf checks these itself and names the allowed
alternatives.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..kernels.registry import warm_up
from ..model.result import FitResult, IterationInfo
from .options import SOLVE_DEFAULTS as _D
from .options import validate
from .plan import MAX_DENSE_JACOBIAN_BYTES, plan
from .result import NonFiniteResidualError, result
from .run import RESCALE_FACTOR, run
from .tables import JAC_KINDS, LOSSES, METHODS, REDUCED_KERNELS, TR_SOLVERS

__all__ = [
    "JAC_KINDS",
    "LOSSES",
    "MAX_DENSE_JACOBIAN_BYTES",
    "METHODS",
    "RESCALE_FACTOR",
    "TR_SOLVERS",
    "NonFiniteResidualError",
    "solve",
    "solve_varpro",
]


# The defaults are those declared in lsqmf.nls.options.SOLVE_PARAMS (their one home, with each
# option's constraint and help); help(lsqmf.solve) shows their values.
def solve(
    R: Any,
    rank: int | None = _D["rank"],
    *,
    P0: Any = _D["P0"],
    Q0: Any = _D["Q0"],
    missing: float | None = _D["missing"],
    weights: Any = _D["weights"],
    formulation: str = _D["formulation"],
    alpha: float = _D["alpha"],
    beta: float = _D["beta"],
    reg: float = _D["reg"],
    reg_bias: float | None = _D["reg_bias"],
    count_scaled: bool = _D["count_scaled"],
    biases: bool = _D["biases"],
    method: str = _D["method"],
    tr_solver: str | None = _D["tr_solver"],
    tr_options: Mapping[str, Any] | None = _D["tr_options"],
    loss: str | Callable = _D["loss"],
    f_scale: float = _D["f_scale"],
    bounds: Any = _D["bounds"],
    ftol: float | None = _D["ftol"],
    xtol: float | None = _D["xtol"],
    gtol: float | None = _D["gtol"],
    x_scale: Any = _D["x_scale"],
    max_nfev: int | None = _D["max_nfev"],
    jac: str = _D["jac"],
    init_scale: float = _D["init_scale"],
    random_state: int | np.random.Generator | None = _D["random_state"],
    check_jacobian: float | None = _D["check_jacobian"],
    max_time: float | None = _D["max_time"],
    callback: Callable[[IterationInfo], Any] | None = _D["callback"],
    verbose: int = _D["verbose"],
    backend: str = _D["backend"],
    blas_threads: int | None = _D["blas_threads"],
    mask: Any = _D["mask"],
    eliminate: str | None = _D["eliminate"],
    varpro_jacobian: str = _D["varpro_jacobian"],
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
        ``'none'``: the data term only. See :mod:`lsqmf.model.problem`.
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
    method : {'auto', 'trf', 'dogbox', 'lm', 'lm-normal'}, default='auto'
        ``'auto'``: ``'lm-normal'`` when a factor is eliminated (``eliminate``, below) and the
        optimized factor has at most 8000 unknowns, else ``'trf'`` (ratings under
        ``'prior'``/``'l2'`` get ``'trf'`` as before; :mod:`lsqmf.nls.auto`). Otherwise
        scipy's methods, or (with ``eliminate`` only) ``'lm-normal'``: lsqmf's own
        Levenberg-Marquardt on the dense reduced normal equations (Kaufman's Jacobian,
        Cholesky; :mod:`lsqmf.nls.lm_normal`), for small optimized factors (``n * rank`` up
        to 8000); any loss (a robust one under ``formulation='none'``), no bounds, no
        ``tr_solver``; ``x_scale='jac'`` is Marquardt's ``diag(J^T J)`` damping.
    tr_solver : {None, 'exact', 'lsmr'}, default=None
        As in ``least_squares``; ``'lm'`` ignores it.
    tr_options : dict, optional
        Passed to the trust-region solver (``lsmr`` options, ``regularize``).
    loss : {'linear', 'soft_l1', 'huber', 'cauchy', 'arctan'} or callable, default='linear'
        A row of :data:`~lsqmf.nls.tables.LOSSES` (rho with its derivatives), or a callable
        with scipy's contract (``loss(z)`` returns the ``(3, m)`` array). With ``eliminate``
        and ``method='lm-normal'`` (what ``'auto'`` picks under ``formulation='none'``) the
        eliminated factor solves the robust inner problem (IRLS): robust VarPro, the joint
        robust cost's minimizers; with scipy's methods the inner solve stays least squares.
    f_scale : float, default=1.0
        Soft margin between inlier and outlier residuals of a robust loss.
    bounds : (lb, ub), optional
        Scalars bound every factor entry (biases stay free); arrays of length ``n_params``
        bound every entry of ``x``. Not with ``'lm'``. The start is clipped into the bounds.
    ftol, xtol, gtol : float or None, default=1e-3, 1e-8, 1e-8
    x_scale : 'jac' or float or array_like, optional
        Default: ``'jac'`` for scipy's methods, ``1.0`` (Levenberg's damping on the
        orthonormalized factor) for ``'lm-normal'``.
    max_nfev : int, optional
    jac : {'auto', 'sparse', 'dense', 'operator', 'kron', '2-point', '3-point'}, default='auto'
        How the Jacobian is provided; see the module docstring (``'auto'`` picks by method,
        ``tr_solver`` and problem size, the same on every machine).
    init_scale : float, optional
        Standard deviation of the random initial factors. Default: 0.1 under ``'prior'``
        and ``'l2'``; ``sqrt(rms / sqrt(rank))`` under ``'none'`` (``rms`` of the observed
        values: ``P0 @ Q0`` at the data's scale, away from the zero saddle).
    random_state : int, numpy.random.Generator or None
        Seeds the random initial factors (:func:`lsqmf.model.start.random_start`). With None a seed
        is drawn and recorded in ``result.options['random_state']``: passing it back replays
        the run.
    check_jacobian : float, optional
        If given, compare the analytic Jacobian with finite differences at the start and raise
        :class:`~lsqmf.model.gradcheck.JacobianCheckError` if the relative error exceeds it.
    max_time : float, optional
        Time budget in seconds; the run stops after the first evaluation past it.
    callback : callable, optional
        Called as ``callback(IterationInfo(step, cost, time))`` after every residual
        evaluation; returning True stops the run.
    verbose : {0, 1, 2}, default=0
        Progress through :mod:`logging` (logger ``lsqmf.solve``, level INFO; to stderr when
        logging is not configured), never printed: 1 logs a line per iteration (each new
        linearization point: the best cost so far, evaluations, time; scipy's finite
        differences, ``jac='2-point'``/``'3-point'``, have no such point to log) and one at
        the end (status, cost, evaluations, time), 2 also a line per residual evaluation
        (cost, norm of the step from the previous evaluation, time). The same for every
        method and with ``eliminate``.
    backend : {'auto', 'compiled', 'numpy'}, default='auto'
        Who runs the matrix-free Jacobian products: the numba kernels (``'compiled'``;
        ``'auto'`` when numba imports) or numpy (the oracle). Only ``jac='operator'`` (and
        ``'auto'`` when it picks the operator) uses them.
    blas_threads : int, optional
        BLAS thread limit for the run. Default: by problem size (one thread for the
        matrix-free operator and for a dense Jacobian of at most
        :data:`~lsqmf.runtime.threads.DENSE_SINGLE_THREAD_ENTRIES` entries; otherwise the caller's
        setting); see Notes.
    mask : array_like of bool, shape (n_rows, n_cols), optional
        Visibility mask of a dense measurement matrix ``R``: exactly its True entries are
        observed, whatever ``R`` holds elsewhere (see :meth:`lsqmf.Ratings.from_dense`).
    eliminate : {'auto', None, 'Q', 'P'}, default='auto'
        ``'auto'``: under ``'none'`` (and ``'l2'`` with ``mask=``), with ``method`` 'auto' or
        'lm-normal', the larger factor (``'Q'`` when ``n_cols >= n_rows``), so the optimized
        one has the fewer unknowns -- on generated affine sequences 10-20x faster per start
        than the other choice and at least as reliable (``reports/sfm/defaults.md``); the
        other factor when the larger one has vectors with fewer than ``rank`` observations;
        otherwise (and for ratings under ``'prior'``/``'l2'``) None, the joint problem.
        Variable projection (:mod:`lsqmf.nls.varpro`): solve this factor (with its biases) in
        closed form for the current other one and optimize only the other. Needs
        ``formulation='l2'`` or ``'none'``; ``jac`` is ``'auto'``, ``'operator'``,
        ``'sparse'`` or ``'dense'`` (``'auto'``: ``'dense'`` where scipy needs it, else the
        matrix-free ``'operator'``); bounds apply to the optimized factor; ``x_scale='jac'``
        with the operator is fixed at the start's column norms.
    varpro_jacobian : {'kaufman', 'full'}, default='kaufman'
        With ``eliminate``: Kaufman's approximation or the full Golub-Pereyra Jacobian.

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

    The time in ``wall_time`` excludes compiling (or loading) the numba kernels, which
    :func:`lsqmf.kernels.registry.warm_up` does before the clock starts.

    A dense Jacobian (``tr_solver='exact'``, ``method='lm'``) is factorized by LAPACK, whose
    blocked reductions sum in an order that depends on the BLAS thread count: results can
    differ in the last bits between thread counts, and the difference can grow over many
    iterations (28.41 vs 29.32 after 10 evaluations was seen on one problem). Below
    :data:`~lsqmf.runtime.threads.DENSE_SINGLE_THREAD_ENTRIES` entries lsqmf runs the dense path on
    one BLAS thread, which is also the fast choice there, so such results are reproducible
    across machines; above it (or with ``blas_threads``) they depend on the thread count.
    ``result.options`` records ``jac``, ``backend`` and ``blas_threads`` as run.

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
    arguments = dict(locals())
    t_start = time.perf_counter()
    ratings, options = validate(arguments)
    t_warm = time.perf_counter()
    if options.eliminate is not None:  # the plan runs the inner solve (x_scale='jac')
        warm_up(REDUCED_KERNELS, options.backend)
    t_start += time.perf_counter() - t_warm  # compile/load time is not fit time
    the_plan = plan(ratings, options)
    t_warm = time.perf_counter()
    warm_up(the_plan.kernels, the_plan.backend)
    t_start += time.perf_counter() - t_warm
    outcome = run(the_plan, options)
    return result(the_plan, options, outcome, t_start)


def solve_varpro(
    R: Any,
    rank: int | None = None,
    *,
    eliminate: str = "Q",
    jacobian: str = "kaufman",
    formulation: str = "none",
    ftol: float | None = 1e-8,
    xtol: float | None = 1e-8,
    gtol: float | None = 1e-8,
    x_scale: Any = 1.0,
    **options: Any,
) -> FitResult:
    r"""Variable projection with VarPro's defaults: :func:`solve` with ``eliminate`` set.

    The same run as ``solve(R, rank, eliminate=eliminate, varpro_jacobian=jacobian, ...)``,
    with the defaults of VarPro's benchmarks (``formulation='none'``, tolerances ``1e-8``,
    ``x_scale=1.0``); every other keyword is :func:`solve`'s. See :mod:`lsqmf.nls.varpro`
    for the method.

    Examples
    --------
    >>> import numpy as np
    >>> from lsqmf.nls.solve import solve_varpro
    >>> rng = np.random.default_rng(0)
    >>> M = rng.standard_normal((8, 2)) @ rng.standard_normal((2, 7))
    >>> M[rng.random(M.shape) < 0.2] = np.nan
    >>> fit = solve_varpro(M, 2, random_state=0, backend="numpy")
    >>> bool(fit.rms < 1e-6)
    True
    """
    return solve(R, rank, eliminate=eliminate, varpro_jacobian=jacobian,
                 formulation=formulation, ftol=ftol, xtol=xtol, gtol=gtol, x_scale=x_scale,
                 **options)
