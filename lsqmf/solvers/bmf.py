r"""Bayesian matrix factorization by Gibbs sampling (Salakhutdinov & Mnih 2008), with biases.

Model
-----
Each rating is Gaussian around the biased low-rank prediction,

.. math::

    v_{ui} \sim N\big(\mu + b_u + c_i + p_u^\top q_i,\ (\alpha w_{ui})^{-1}\big),

with :math:`\mu` the training mean (fixed). The user blocks :math:`z_u = [p_u; b_u]` (item
blocks :math:`[q_i; c_i]`) are i.i.d. :math:`N(m_U, \Lambda_U^{-1})` given hyperparameters that
carry a Gauss-Wishart prior, :math:`\Lambda_U \sim W(I, k+1)` and
:math:`m_U \mid \Lambda_U \sim N(0, (\beta_0\Lambda_U)^{-1})`; the noise precision
:math:`\alpha` is given or sampled under a :math:`\mathrm{Gamma}(1, 1)` prior. The bias is the
constant-1 coordinate, as in the ALS solvers, so it is sampled with the factors.

Sampler
-------
One sweep draws, in turn, :math:`(m_U, \Lambda_U)` from their Gauss-Wishart conditional given
the user blocks (from their sufficient statistics :math:`\sum_u z_u` and
:math:`\sum_u z_u z_u^\top`, which the row kernel returns with every draw, so the blocks are
not read again); every :math:`z_u` from its Gaussian conditional -- precision
:math:`\Lambda_U + \alpha\sum_i w_{ui} a_i a_i^\top`, the ALS ridge normal equations with the
learned prior in place of :math:`\lambda I` (kernel ``gibbs_side`` of
:mod:`lsqmf.kernels.bmf`: the targets formed on the fly from the item blocks, rows in
parallel blocks, the standard normals drawn by the seeded Generator, so the draws do not
depend on the thread count); the same for the items; then :math:`\alpha` from its Gamma
conditional, given the squared error of the sample (kernel ``sse_pairs``).
After ``burn_in`` sweeps every sample is averaged: the prediction is the posterior mean
:math:`\frac1S\sum_s \hat v^{(s)}_{ui}`, which is linear in the samples and so is the
low-rank matrix :math:`\frac1S\sum_s P_s Q_s` plus the mean biases. That sum is kept as factors
compressed by truncated SVD (QR of both sides and an SVD of the small core) to at most
``2 * rank`` columns, and returned truncated to ``rank``: the result is an ordinary
:class:`~lsqmf.FitResult` of the requested rank. (On MovieLens latest-small the rank-10
truncation of 80 averaged rank-10 samples predicts held-out ratings with the RMSE of the
exact average to 1e-4.)

There is no regularization weight to choose: the priors are learned. ``reg``, ``reg_bias``,
``count_scaled`` (and ``tol``) are therefore refused when given (an option either changes the
fit or is refused); their defaults only define the ``'l2'`` cost reported in the history (at
each sample) and in ``result.cost`` (at the posterior mean), for comparison with the other
solvers.
``max_iter`` is the number of sweeps (burn-in included): a sampler has no convergence test,
and completing the planned sweeps is success. With ``validation`` the RMSE of the running
posterior mean on the held-out pairs is recorded after every sweep past the burn-in, and the
run stops when it has not improved for ``patience`` sweeps.
"""

from __future__ import annotations

import functools
import time
from types import MappingProxyType
from typing import Any

import numpy as np

from .._params import Param
from ..kernels.registry import get_kernel
from ..kernels.solvers import kernel_threads
from ..model.result import STATUS_MESSAGES, FitResult, History, IterationInfo, Status
from ..runtime.interrupts import interrupts_propagate
from ..runtime.threads import blas_single_thread
from ._common import Setup, SolverOptions, SolverSpec, log_result, prepare, warn_not_converged
from .als_cg import RowData, cg_step_factory

__all__ = ["SPEC", "MeanFactors", "bmf", "gauss_wishart_from_stats", "sample_gauss_wishart"]


def sample_gauss_wishart(
    rng: np.random.Generator, Z: np.ndarray, beta0: float
) -> tuple[np.ndarray, np.ndarray]:
    r"""A draw of ``(precision, mean)`` from the Gauss-Wishart conditional given rows ``Z``.

    Prior :math:`\Lambda \sim W(I, d)`, :math:`m \mid \Lambda \sim N(0, (\beta_0\Lambda)^{-1})`;
    the Wishart draw uses the Bartlett decomposition.

    Parameters
    ----------
    rng : numpy.random.Generator
    Z : ndarray, shape (N, d)
        The current blocks of the rows that have ratings.
    beta0 : float

    Returns
    -------
    precision : ndarray, shape (d, d)
    mean : ndarray, shape (d,)
    """
    return gauss_wishart_from_stats(rng, Z.shape[0], Z.sum(axis=0), Z.T @ Z, beta0)


def gauss_wishart_from_stats(
    rng: np.random.Generator, N: int, zsum: np.ndarray, zz: np.ndarray, beta0: float
) -> tuple[np.ndarray, np.ndarray]:
    r""":func:`sample_gauss_wishart` from the sufficient statistics of the rows.

    Parameters
    ----------
    rng : numpy.random.Generator
    N : int
        Number of rows.
    zsum : ndarray, shape (d,)
        :math:`\sum_r z_r`.
    zz : ndarray, shape (d, d)
        :math:`\sum_r z_r z_r^\top`.
    beta0 : float

    Returns
    -------
    precision : ndarray, shape (d, d)
    mean : ndarray, shape (d,)
    """
    d = zsum.shape[0]
    zbar = zsum / N if N else np.zeros(d)
    # sum (z - zbar)(z - zbar)^T = sum z z^T - N zbar zbar^T
    W_inv = (np.eye(d) + zz - N * np.outer(zbar, zbar)
             + (beta0 * N / (beta0 + N)) * np.outer(zbar, zbar))
    W = np.linalg.inv(W_inv)
    L = np.linalg.cholesky((W + W.T) / 2)
    A = np.zeros((d, d))
    diag, below, steps = _bartlett_indices(d)
    A[diag] = np.sqrt(rng.chisquare(d + N - steps))
    A[below] = rng.standard_normal(d * (d - 1) // 2)
    LA = L @ A
    precision = LA @ LA.T
    beta = beta0 + N
    mean_center = (N / beta) * zbar
    # m ~ N(center, (beta * precision)^{-1}) = center + (beta * precision)^{-1/2} e
    C = np.linalg.cholesky(beta * precision)
    mean = mean_center + np.linalg.solve(C.T, rng.standard_normal(d))
    return precision, mean


@functools.lru_cache(maxsize=16)
def _bartlett_indices(d: int) -> tuple[Any, Any, np.ndarray]:
    """The diagonal and strictly lower indices of a ``d x d`` matrix and ``arange(d)``."""
    return np.diag_indices(d), np.tril_indices(d, -1), np.arange(d)


class MeanFactors:
    """Running sum of rank-``k`` products ``P_s Q_s`` kept as compressed factors.

    Parameters
    ----------
    cap : int
        Columns kept after each compression; compression runs when the buffered columns
        exceed ``3 * cap``.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.left: list[np.ndarray] = []
        self.right: list[np.ndarray] = []
        self.count = 0

    def add(self, P: np.ndarray, Qt: np.ndarray) -> None:
        """Add the sample ``P @ Qt.T`` (``P`` shape (n, k), ``Qt`` shape (m, k))."""
        self.left.append(P.copy())
        self.right.append(Qt.copy())
        self.count += 1
        if sum(a.shape[1] for a in self.left) > 3 * self.cap:
            self._compress(self.cap)

    def _compress(self, r: int) -> None:
        # L R^T = (L Vl Dl^-1/2) [Dl^1/2 Vl^T Vr Dr^1/2] (R Vr Dr^-1/2)^T with the two outer
        # factors orthonormal (Gl = L^T L = Vl Dl Vl^T, Gr likewise); the SVD of the small core
        # gives the best rank-r truncation. Gram matrices cost half a QR and need no Q.
        L = np.hstack(self.left)
        R = np.hstack(self.right)
        left, right = _whiten(L), _whiten(R)
        core = (left[1][:, None] * (left[0].T @ right[0])) * right[1][None, :]
        U, s, Vt = np.linalg.svd(core)
        r = min(r, len(s))
        root = np.sqrt(s[:r])
        self.left = [L @ (left[0] / left[1]) @ (U[:, :r] * root)]
        self.right = [R @ (right[0] / right[1]) @ (Vt[:r].T * root)]

    def mean(self, rank: int) -> tuple[np.ndarray, np.ndarray]:
        """The average as ``(P, Qt)`` truncated to ``rank`` columns (zero-padded if fewer)."""
        self._compress(rank)
        P, Qt = self.left[0] / self.count, self.right[0]
        if P.shape[1] < rank:
            pad = rank - P.shape[1]
            P = np.hstack([P, np.zeros((P.shape[0], pad))])
            Qt = np.hstack([Qt, np.zeros((Qt.shape[0], pad))])
        return P, Qt


def _whiten(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvectors ``V`` and square-rooted eigenvalues ``d`` of ``A^T A`` (the numerically
    zero ones dropped), so that ``A V / d`` has orthonormal columns."""
    evals, V = np.linalg.eigh(A.T @ A)
    keep = evals > 1e-12 * max(float(evals[-1]), np.finfo(float).tiny)
    return V[:, keep], np.sqrt(evals[keep])


def bmf(R: Any, rank: int | None = None, **options: Any) -> FitResult:
    r"""Bayesian MF by Gibbs sampling: the posterior-mean prediction, as rank-``rank`` factors.

    Parameters
    ----------
    R : ndarray, scipy.sparse matrix, pandas.DataFrame or Ratings
        The observed ratings (anything :func:`lsqmf.as_ratings` accepts).
    rank : int, default=10
        Number of latent factors of each sample and of the returned factors (the
        registry's ``SOLVER_SPECS['bmf'].rank``).
    **options
        The shared options of :class:`lsqmf.solvers.SolverOptions` (``max_iter`` counts
        sweeps, burn-in included; ``random_state`` seeds the start and every draw; ``reg``,
        ``reg_bias``, ``count_scaled`` and ``tol`` are refused when given: the priors are
        learned and every planned sweep runs -- the reported cost uses their defaults)
        and bmf's own (defaults: ``lsqmf.solvers.SOLVER_SPECS['bmf']``):

        - ``burn_in`` : int or None, sweeps discarded before averaging, at most
          ``max_iter - 1`` (a larger one is refused: a run averages at least one sample);
          None (the default) is ``min(15, max_iter - 1)``
        - ``alpha`` : float, the noise precision :math:`\alpha`; 0 (the default) samples it
          under its Gamma(1, 1) prior
        - ``beta0`` : float, prior strength of the hyper-mean
        - ``warm_start`` : int, sweeps of ALS with conjugate-gradient row solves
          (:func:`lsqmf.solvers.als_cg`, 3 steps per row) on the run's ``'l2'`` objective from
          the random start before the first draw, whose factors (biases zero) start the chain;
          0 (the default) starts it at the random start. A start, not a change of the sampled
          distribution: it shortens the burn-in (``reports/peers/README.md``: 2 sweeps, then a
          burn-in of 3, is lsqmf's fastest route to the peers' accuracy there).

    Returns
    -------
    FitResult
        ``solver='bmf'``; status ``Status.FTOL`` (success) after the planned sweeps,
        ``Status.VALIDATION`` when the held-out RMSE of the running mean stopped improving,
        or ``Status.CALLBACK`` / ``Status.MAX_TIME``; in every case the factors are the mean of
        the samples drawn after the burn-in (the last sample when none was). ``history.cost``
        is the ``'l2'`` cost of each sample; ``options['alpha_samples']`` the noise precision
        of each sweep.

    Examples
    --------
    >>> import numpy as np
    >>> from lsqmf.solvers import bmf
    >>> rng = np.random.default_rng(0)
    >>> R = rng.random((30, 2)) @ rng.random((2, 20)) + 1.0
    >>> fit = bmf(R, 2, biases=True, max_iter=200, burn_in=50, random_state=0)
    >>> bool(fit.success), bool(fit.rms < 0.05)
    (True, True)
    """
    setup = prepare(SPEC, R, rank, options)
    own = setup.own  # checked against SPEC.params by prepare
    burn_in = own["burn_in"]
    if burn_in >= setup.max_iter:  # e.g. a short run with the default burn-in
        setup.logger.debug("bmf: burn_in=%d reduced to max_iter - 1 = %d", burn_in,
                           setup.max_iter - 1)
        burn_in = setup.max_iter - 1
    alpha = own["alpha"]
    alpha_opt = None if alpha == 0.0 else alpha
    beta0 = own["beta0"]
    backend = setup.backend
    warm = own["warm_start"]
    setup.own.update({"burn_in": burn_in, "alpha": alpha, "beta0": beta0, "warm_start": warm})
    with blas_single_thread(backend == "compiled"), kernel_threads(setup.ratings.nnz, backend):
        return _sample(setup, burn_in, alpha_opt, beta0, backend, warm)


def _warm_start(setup: Setup, sweeps: int, backend: str) -> np.ndarray:
    """The start after ``sweeps`` CG-ALS sweeps (3 steps per row) from ``setup.x0``."""
    x = setup.x0
    if sweeps:
        step = cg_step_factory(setup, 3, get_kernel("cg_rows", backend))
        for j in range(1, sweeps + 1):
            x = step(x, j)
    return x


def _start_blocks(problem: Any, x0: np.ndarray, k1: int) -> tuple[np.ndarray, np.ndarray]:
    """The blocks ``[P | b]`` and ``[Q^T | c]`` of the start: the factors of ``x0``, biases
    zero (also after a warm start: on the MovieLens holdouts of ``reports/peers`` the chain
    reached a given RMSE in about half the sweeps with the warm start's biases set to zero than
    with them kept)."""
    P0, Q0, _, _ = problem.unpack(x0)
    Zu = np.zeros((problem.n_rows, k1))
    Zi = np.zeros((problem.n_cols, k1))
    Zu[:, :problem.rank], Zi[:, :problem.rank] = P0, Q0.T
    return Zu, Zi


class _Side:
    r"""One side of the sampler: its rows, its blocks ``Z`` and their sufficient statistics.

    ``stats`` holds :math:`\sum_r z_r` (row 0) and :math:`\sum_r z_r z_r^\top` (rows 1..)
    over the rows with ratings; the Gibbs kernel refreshes them with every draw of ``Z``.
    """

    def __init__(self, data: RowData, Z: np.ndarray) -> None:
        self.data = data
        self.Z = Z
        has = data.counts > 0
        self.n_rated = int(has.sum())
        drawn = Z[has]
        self.stats = np.vstack([drawn.sum(axis=0)[None, :], drawn.T @ drawn])

    def draw(self, rng: np.random.Generator, gibbs: Any, other: _Side, *, k: int,
             with_bias: bool, mu: float, alpha: float, beta0: float) -> None:
        """Draw this side's hyperparameters, then (in place) every block given ``other``."""
        lam, m_z = gauss_wishart_from_stats(rng, self.n_rated, self.stats[0], self.stats[1:],
                                            beta0)
        eps = rng.standard_normal(self.Z.shape)
        d = self.data
        gibbs(d.indptr, d.other, d.values, d.weights, mu, other.Z, k, with_bias, alpha, lam,
              m_z, eps, self.Z, self.stats)


def _split_blocks(Zu: np.ndarray, Zi: np.ndarray, k: int,
                  with_bias: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(P, Qt, b, c)`` of the current sample (zero biases without them)."""
    P = np.ascontiguousarray(Zu[:, :k])
    Qt = np.ascontiguousarray(Zi[:, :k])
    b = np.ascontiguousarray(Zu[:, k]) if with_bias else np.zeros(Zu.shape[0])
    c = np.ascontiguousarray(Zi[:, k]) if with_bias else np.zeros(Zi.shape[0])
    return P, Qt, b, c


def _sample_cost(setup: Setup, sse: float, Zu: np.ndarray, Zi: np.ndarray, k: int,
                 with_bias: bool, j: int) -> float:
    """The ``'l2'`` cost of the current sample (blocks ``Zu``, ``Zi``); raises if not finite."""
    P, Qt = Zu[:, :k], Zi[:, :k]
    cost = 0.5 * (sse + float(setup.reg_row @ np.einsum("ij,ij->i", P, P)
                              + setup.reg_col @ np.einsum("ij,ij->i", Qt, Qt)))
    if with_bias:
        b, c = Zu[:, k], Zi[:, k]
        cost += 0.5 * float(setup.reg_row_bias @ (b * b) + setup.reg_col_bias @ (c * c))
    if not np.isfinite(cost):
        raise FloatingPointError(
            f"lsqmf.solvers.bmf: a sample became non-finite at sweep {j}; check the "
            f"ratings for extreme values or pass a fixed `alpha`."
        )
    return cost


class _Averages:
    """Sums of the samples drawn after the burn-in, and the held-out RMSE of their mean."""

    def __init__(self, k: int, n: int, m: int, val: Any) -> None:
        self.factors = MeanFactors(2 * k)
        self.bias_sum = np.zeros(n), np.zeros(m)
        self.val = val
        self.val_sum = None if val is None else np.zeros(val.size)
        self.val_pred = None if val is None else np.empty(val.size)
        self.val_rmse: list[float] = []
        self.best_val, self.bad = np.inf, 0

    def add(self, predict: Any, sample: tuple[np.ndarray, ...], mu: float,
            with_bias: bool) -> None:
        P, Qt, b, c = sample
        self.factors.add(P, Qt)
        self.bias_sum[0][:] += b
        self.bias_sum[1][:] += c
        val = self.val
        if val is not None and self.val_sum is not None and self.val_pred is not None:
            predict(val.rows, val.cols, P, Qt, b, c, mu, with_bias, self.val_pred)
            self.val_sum += self.val_pred
            score = val.rmse(self.val_sum / self.factors.count)
            self.val_rmse.append(score)
            if score < self.best_val - val.min_delta:
                self.best_val, self.bad = score, 0
            else:
                self.bad += 1

    def stalled(self) -> bool:
        """Whether the held-out RMSE has not improved for ``patience`` samples."""
        val = self.val
        return val is not None and val.patience is not None and self.bad >= val.patience

    def means(self, k: int, last: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        """``(P, Qt, b, c)`` of the posterior mean (the ``last`` sample when none was added)."""
        count = self.factors.count
        if not count:  # stopped during the burn-in: the last sample
            return last
        Pm, Qtm = self.factors.mean(k)
        return Pm, Qtm, self.bias_sum[0] / count, self.bias_sum[1] / count


def _stop_status(setup: Setup, avg: _Averages, j: int, cost: float,
                 elapsed: float) -> Status | None:
    """Why the chain stops after sweep ``j`` (callback, validation, time), or None."""
    if setup.callback is not None and setup.callback(IterationInfo(j, cost, elapsed)):
        return Status.CALLBACK
    if avg.stalled():
        return Status.VALIDATION
    if setup.max_time is not None and elapsed > setup.max_time:
        return Status.MAX_TIME
    return None


class _Errors:
    """The training pairs, and the squared errors of given blocks at them (kernel
    ``sse_pairs``: no arrays of predictions)."""

    def __init__(self, setup: Setup, sse_pairs: Any) -> None:
        r = setup.ratings
        self.rows = np.ascontiguousarray(r.rows, dtype=np.int64)
        self.cols = np.ascontiguousarray(r.cols, dtype=np.int64)
        self.values = np.ascontiguousarray(r.values, dtype=np.float64)
        self.ones = np.ones(r.nnz)
        self.weights = (self.ones if r.weights is None
                        else np.ascontiguousarray(r.weights, dtype=np.float64))
        self.kernel = sse_pairs

    def sse(self, Zu: np.ndarray, Zi: np.ndarray, k: int, with_bias: bool, mu: float, *,
            weighted: bool = True) -> float:
        """``sum w (prediction - value)^2`` (``weighted=False``: every weight 1)."""
        w = self.weights if weighted else self.ones
        return float(self.kernel(self.rows, self.cols, self.values, w, Zu, Zi, k, with_bias,
                                 mu))


def _bmf_result(setup: Setup, errors: _Errors, means: tuple[np.ndarray, ...], status: Status,
                nfev: int, alphas: list[float], avg: _Averages, history: History) -> FitResult:
    problem, r = setup.problem, setup.ratings
    with_bias = bool(problem.biases)
    k = problem.rank
    mu = float(problem.mu) if with_bias else 0.0
    Pm, Qtm, bm, cm = means
    # the mean's cost and RMS (problem.cost and problem.rms, from the blocks by the kernel)
    Zu, Zi = (np.column_stack([Pm, bm]), np.column_stack([Qtm, cm])) if with_bias else (Pm, Qtm)
    sse = errors.sse(Zu, Zi, k, with_bias, mu)
    cost = _sample_cost(setup, sse, Zu, Zi, k, with_bias, nfev)
    sse1 = sse if r.weights is None else errors.sse(Zu, Zi, k, with_bias, mu, weighted=False)
    options = {**setup.options, "alpha_samples": alphas, "n_samples": avg.factors.count}
    if avg.val is not None:
        options["validation_rmse"] = avg.val_rmse
    fit = FitResult(
        P=Pm, Q=np.ascontiguousarray(Qtm.T), mu=problem.mu, row_bias=bm if with_bias else None,
        col_bias=cm if with_bias else None, success=status > 0, status=int(status),
        message=STATUS_MESSAGES[status], nfev=nfev, njev=None, cost=cost,
        optimality=None, history=history,
        wall_time=time.perf_counter() - setup.t_start, options=options, solver="bmf",
        row_ids=r.row_ids, col_ids=r.col_ids, row_counts=r.row_counts(),
        col_counts=r.col_counts(), rms=float(np.sqrt(sse1 / r.nnz)) if r.nnz else float("nan"),
        train_mean=r.mean(),
    )
    log_result(setup.logger, int(setup.opts.verbose), fit)
    return fit


def _sweep(rng: np.random.Generator, gibbs: Any, users: _Side, items: _Side, errors: _Errors,
           *, k: int, with_bias: bool, mu: float, alpha: float, alpha_opt: float | None,
           beta0: float) -> tuple[float, float]:
    """One Gibbs sweep: the users given the items, the items given the users, then the noise
    precision under its Gamma(1, 1) prior (kept at ``alpha`` when ``alpha_opt`` fixes it).
    Returns the weighted squared error of the new sample and the precision."""
    users.draw(rng, gibbs, items, k=k, with_bias=with_bias, mu=mu, alpha=alpha, beta0=beta0)
    items.draw(rng, gibbs, users, k=k, with_bias=with_bias, mu=mu, alpha=alpha, beta0=beta0)
    sse = errors.sse(users.Z, items.Z, k, with_bias, mu)
    if alpha_opt is None:
        nnz = errors.values.shape[0]
        alpha = float(rng.gamma(1.0 + 0.5 * nnz, 1.0 / (1.0 + 0.5 * sse)))
    return sse, alpha


def _sample(
    setup: Setup, burn_in: int, alpha_opt: float | None, beta0: float, backend: str,
    warm: int,
) -> FitResult:
    """Run the chain: the start, ``max_iter`` sweeps (averaged after ``burn_in``), the result."""
    problem, rng = setup.problem, setup.rng
    gibbs = get_kernel("gibbs_side", backend)
    sse_pairs = get_kernel("sse_pairs", backend)
    predict = get_kernel("predict_pairs", backend)
    k = problem.rank
    with_bias = bool(problem.biases)
    mu = float(problem.mu) if with_bias else 0.0
    users_data, items_data = RowData.sides(setup)
    Zu, Zi = _start_blocks(problem, _warm_start(setup, warm, backend), k + 1 if with_bias else k)
    users, items = _Side(users_data, Zu), _Side(items_data, Zi)
    errors = _Errors(setup, sse_pairs)
    alpha = 2.0 if alpha_opt is None else alpha_opt
    avg = _Averages(k, problem.n_rows, problem.n_cols, getattr(setup, "validation", None))
    cost0 = _sample_cost(setup, errors.sse(Zu, Zi, k, with_bias, mu), Zu, Zi, k, with_bias, 0)
    steps, costs, times, alphas = [0], [cost0], [0.0], []
    times[0] = time.perf_counter() - setup.t_start
    verbose = int(setup.opts.verbose)
    if verbose >= 2:
        setup.logger.info("bmf: iteration 0 cost %.6g", costs[0])
    status = Status.FTOL
    j = 0
    try:
        for j in range(1, setup.max_iter + 1):
            sse, alpha = _sweep(rng, gibbs, users, items, errors, k=k, with_bias=with_bias,
                                mu=mu, alpha=alpha, alpha_opt=alpha_opt, beta0=beta0)
            alphas.append(alpha)
            cost = _sample_cost(setup, sse, Zu, Zi, k, with_bias, j)
            if j > burn_in:
                avg.add(predict, _split_blocks(Zu, Zi, k, with_bias), mu, with_bias)
            elapsed = time.perf_counter() - setup.t_start
            steps.append(j)
            costs.append(cost)
            times.append(elapsed)
            if verbose >= 2:
                setup.logger.info("bmf: iteration %d cost %.6g (sample) alpha %.4g time %.3f s",
                                  j, cost, alpha, elapsed)
            stop = _stop_status(setup, avg, j, cost, elapsed)
            if stop is not None:
                status = stop
                break
    except KeyboardInterrupt:  # Ctrl-C: the mean of the samples drawn so far, marked
        if interrupts_propagate():  # inside a job (cv, grid, bench): the job stops
            raise
        status = Status.INTERRUPTED
        j = steps[-1]  # the last completed sweep
        warn_not_converged(f"lsqmf.solvers.bmf: interrupted after {j} sweep(s); returning the "
                           "mean of the samples drawn so far.", stacklevel=4)
    return _bmf_result(setup, errors, avg.means(k, _split_blocks(Zu, Zi, k, with_bias)),
                       status, j, alphas, avg, History.from_lists(steps, costs, times))


#: ``burn_in``'s default when ``max_iter`` allows it (``burn_in=None``).
BURN_IN = 15


def _finalize(opts: SolverOptions, own: dict[str, Any]) -> dict[str, Any]:
    """``burn_in`` checked against ``max_iter`` (a given one must leave a sample to average;
    None becomes ``min(BURN_IN, max_iter - 1)``)."""
    max_iter = int(opts.max_iter)
    if own["burn_in"] is None:
        return {**own, "burn_in": min(BURN_IN, max_iter - 1)}
    if own["burn_in"] >= max_iter:
        raise ValueError(
            f"lsqmf.solvers.bmf: `burn_in` must be < `max_iter` (the sweeps after the burn-in "
            f"are averaged); got burn_in={own['burn_in']}, max_iter={max_iter}. Lower "
            f"burn_in, raise max_iter, or leave burn_in at None (min({BURN_IN}, max_iter - 1))."
        )
    return own


#: The solver's registry entry (collected by :data:`lsqmf.solvers.SOLVER_SPECS`).
SPEC = SolverSpec(
    "bmf", bmf, MappingProxyType({"max_iter": 70, "tol": 0.0}),
    "Bayesian MF by Gibbs sampling (posterior-mean prediction; learned priors)",
    params=(
        Param("burn_in", "int", None, low=0, allow_none=True,
              help="sweeps discarded before averaging, < max_iter (None: "
              f"min({BURN_IN}, max_iter - 1))"),
        Param("alpha", "float", 0.0, low=0.0,
              help="noise precision (0: sampled from its posterior)"),
        Param("beta0", "float", 2.0, low=0.0, low_open=True,
              help="prior strength of the hyperprior's mean"),
        Param("warm_start", "int", 0, low=0, help="CG-ALS sweeps before sampling"),
    ),
    kernels=("cg_rows", "predict_pairs", "gibbs_side", "sse_pairs"),
    tuning=MappingProxyType({"rank": (10, 20, 30), "max_iter": (70, 160)}),  # defaults first
    rank=10,
    unused=MappingProxyType({
        "reg": "bmf learns its regularization: the factors' priors are sampled",
        "reg_bias": "bmf learns its regularization: the biases' priors are sampled",
        "count_scaled": "bmf learns its regularization: the factors' priors are sampled",
        "tol": "bmf runs its max_iter sweeps; stop it early with validation=, max_time=",
    }),
    finalize=_finalize,
)
