r"""Compiled kernels of the fast solvers (``als_cg``, ``bsgd``, ``bmf``) and their numpy oracles.

Every kernel works on one *side* of the factorization stored row-compressed: the entries of
row ``r`` of the solving side are ``indptr[r]:indptr[r+1]``, ``other[t]`` is the index of entry
``t`` on the fixed side, ``y[t]`` its target (the rating minus every fixed term) and
``weights[t]`` its weight. The fixed side's factors are ``F`` (``(n_other, k)``, one
contiguous row per user or item); with ``with_bias`` each feature vector is extended by a
constant 1, :math:`a_t = [F_{\mathrm{other}[t]}; 1]`, so that the solving row's bias is the
last coordinate of its unknown :math:`z_r = [p_r; b_r]` (``Z`` has ``k + 1`` columns).

``cg_rows`` (ALS with conjugate gradients, Takács et al. 2011)
    For every row, ``n_steps`` conjugate-gradient steps on the ridge normal equations
    :math:`(\Lambda_r + \sum_t w_t a_t a_t^\top) z = \sum_t w_t y_t a_t`, warm-started at the
    row's current ``Z[r]``. The matrix is never formed: each product costs
    :math:`O(n_r k)`, so a sweep costs :math:`O(N k)` per step instead of the exact solve's
    :math:`O(N k^2 + n k^3)`. CG decreases the row's quadratic at every step, so each
    half-sweep decreases the objective, and its fixed points are those of exact ALS.
``gibbs_rows`` (Bayesian MF, Salakhutdinov & Mnih 2008)
    For every row, one draw from its Gaussian conditional
    :math:`z_r \sim N(\Sigma_r(\Lambda_0\mu_0 + \alpha\sum_t w_t y_t a_t),\ \Sigma_r)`,
    :math:`\Sigma_r^{-1} = \Lambda_0 + \alpha\sum_t w_t a_t a_t^\top` -- the ALS ridge solve
    with the prior as regularizer -- by Cholesky, :math:`z = m + L^{-\top}\varepsilon` with the
    standard normals ``eps[r]`` drawn by the caller.
``sgd_epoch`` (biased SGD, the LIBMF / cornac approach)
    One epoch of per-rating gradient steps in the visiting order ``order`` (drawn by the
    caller with its seeded Generator), serial, so deterministic.
``predict_pairs``
    :math:`\mu + b_u + c_i + p_u^\top q_i` at given pairs, in parallel.

Determinism: rows are independent and each is computed by one thread with its sums in index
order, so results do not depend on the number of threads; no fast-math. Randomness (orders,
normals) is always drawn by the caller.

Kernels are compiled lazily by :func:`lsqmf.kernels.registry.get_kernel` (numba,
``cache=True``: on-disk cache, so only the first process on a machine pays the compile).
Nothing here imports numba at import time. The ``*_numpy`` functions are the oracles the tests
compare the kernels against; they share no code with them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .core import GATHER as _core_gather
from .jit import Kernel
from .linalg import (
    back_substitution,
    cholesky_in_place,
    forward_substitution,
    gather_entries,
    ridge_normal_equations,
)

__all__ = [
    "KERNELS",
    "PARALLEL_MIN_NNZ",
    "bsgd_cells_numpy",
    "cg_rows_numpy",
    "gibbs_rows_numpy",
    "kernel_threads",
    "predict_pairs_numpy",
    "sgd_epoch_numpy",
]

#: ``range`` when called from Python; rebound to ``numba.prange`` before compiling.
_prange: Any = range

#: Rows per parallel task of the row kernels (work arrays are allocated once per block).
_BLOCK = 64

#: Entries an SGD epoch reads ahead (:data:`lsqmf.kernels.core.GATHER`).
GATHER = _core_gather

#: Smallest squared residual norm at which CG keeps stepping (relative to its start).
_CG_RTOL2 = 1e-20


def _cg_rows(
    indptr: np.ndarray,
    other: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    F: np.ndarray,
    with_bias: bool,
    reg_factor: np.ndarray,
    reg_bias: np.ndarray,
    Z: np.ndarray,
    n_steps: int,
) -> None:
    """``n_steps`` warm-started CG steps per row on its ridge normal equations; ``Z`` in place."""
    n_own = indptr.shape[0] - 1
    k = F.shape[1]
    k1 = k + 1 if with_bias else k
    n_blocks = (n_own + _BLOCK - 1) // _BLOCK
    for blk in _prange(n_blocks):
        # work arrays once per block of rows, not per row
        z = np.empty(k1)
        res = np.empty(k1)
        d = np.empty(k1)
        Ad = np.empty(k1)
        lam = np.empty(k1)
        for r in range(blk * _BLOCK, min(n_own, (blk + 1) * _BLOCK)):
            start = indptr[r]
            end = indptr[r + 1]
            if start == end:
                for p in range(k1):
                    Z[r, p] = 0.0
                continue
            for p in range(k):
                lam[p] = reg_factor[r]
            if with_bias:
                lam[k] = reg_bias[r]
            for p in range(k1):
                z[p] = Z[r, p]
            _cg_residual(start, end, other, y, weights, F, with_bias, lam, z, res)
            _cg_steps(start, end, other, weights, F, with_bias, lam, n_steps, z, res, d, Ad)
            for p in range(k1):
                Z[r, p] = z[p]


# duplicates: row stages share linalg's calling convention (start, end, other, y, ...)
def _cg_residual(
    start: int,
    end: int,
    other: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    F: np.ndarray,
    with_bias: bool,
    lam: np.ndarray,
    z: np.ndarray,
    res: np.ndarray,
) -> None:
    """``res = h - A z = sum_t w (y - a.z) a - lam z`` for the row's entries ``start:end``."""
    k = F.shape[1]
    for p in range(lam.shape[0]):
        res[p] = -lam[p] * z[p]
    for t in range(start, end):
        j = other[t]
        e = y[t]
        for p in range(k):
            e -= F[j, p] * z[p]
        if with_bias:
            e -= z[k]
        _add_feature(F, j, with_bias, weights[t] * e, res)


def _cg_steps(
    start: int,
    end: int,
    other: np.ndarray,
    weights: np.ndarray,
    F: np.ndarray,
    with_bias: bool,
    lam: np.ndarray,
    n_steps: int,
    z: np.ndarray,
    res: np.ndarray,
    d: np.ndarray,
    Ad: np.ndarray,
) -> None:
    """Up to ``n_steps`` CG steps from ``z`` with residual ``res`` (both updated in place);
    stops early once the residual is negligible or the curvature is not positive."""
    k1 = lam.shape[0]
    rs = 0.0
    for p in range(k1):
        d[p] = res[p]
        rs += res[p] * res[p]
    rs0 = rs
    for _ in range(n_steps):
        if not rs > _CG_RTOL2 * rs0 or rs == 0.0:
            break
        _cg_product(start, end, other, weights, F, with_bias, lam, d, Ad)
        dAd = 0.0
        for p in range(k1):
            dAd += d[p] * Ad[p]
        if not dAd > 0.0:
            break
        step = rs / dAd
        rs_new = 0.0
        for p in range(k1):
            z[p] += step * d[p]
            res[p] -= step * Ad[p]
            rs_new += res[p] * res[p]
        beta = rs_new / rs
        for p in range(k1):
            d[p] = res[p] + beta * d[p]
        rs = rs_new


def _cg_product(
    start: int,
    end: int,
    other: np.ndarray,
    weights: np.ndarray,
    F: np.ndarray,
    with_bias: bool,
    lam: np.ndarray,
    d: np.ndarray,
    Ad: np.ndarray,
) -> None:
    """``Ad = (lam + sum_t w a a^T) d`` over the row's entries ``start:end``, matrix-free."""
    k = F.shape[1]
    for p in range(lam.shape[0]):
        Ad[p] = lam[p] * d[p]
    for t in range(start, end):
        j = other[t]
        s = 0.0
        for p in range(k):
            s += float(F[j, p] * d[p])
        if with_bias:
            s += float(d[k])
        _add_feature(F, j, with_bias, weights[t] * s, Ad)


def _add_feature(F: np.ndarray, j: int, with_bias: bool, coef: float, out: np.ndarray) -> None:
    """``out += coef * a`` with the feature vector ``a = [F[j]; 1]`` (the 1 with ``with_bias``)."""
    k = F.shape[1]
    for p in range(k):
        out[p] += coef * F[j, p]
    if with_bias:
        out[k] += coef


# duplicates: kernel and numpy oracle share arguments; the oracle is independent on purpose
def cg_rows_numpy(
    indptr: np.ndarray,
    other: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    F: np.ndarray,
    with_bias: bool,
    reg_factor: np.ndarray,
    reg_bias: np.ndarray,
    Z: np.ndarray,
    n_steps: int,
) -> None:
    """Oracle of ``cg_rows``: the same CG, one row at a time with dense numpy algebra."""
    k = F.shape[1]
    for r in range(len(indptr) - 1):
        sl = slice(indptr[r], indptr[r + 1])
        if sl.start == sl.stop:
            Z[r] = 0.0
            continue
        A = F[other[sl]]
        if with_bias:
            A = np.hstack([A, np.ones((A.shape[0], 1))])
        lam = np.full(A.shape[1], float(reg_factor[r]))
        if with_bias:
            lam[k] = reg_bias[r]
        w = weights[sl]
        H = (A * w[:, None]).T @ A + np.diag(lam)
        z = Z[r].astype(float).copy()
        res = (A * w[:, None]).T @ y[sl] - H @ z
        d = res.copy()
        rs = rs0 = float(res @ res)
        for _ in range(n_steps):
            if not rs > _CG_RTOL2 * rs0 or rs == 0.0:
                break
            Ad = H @ d
            dAd = float(d @ Ad)
            if not dAd > 0.0:
                break
            step = rs / dAd
            z = z + step * d
            res = res - step * Ad
            rs_new = float(res @ res)
            d = res + (rs_new / rs) * d
            rs = rs_new
        Z[r] = z


def _gibbs_rows(
    indptr: np.ndarray,
    other: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    F: np.ndarray,
    with_bias: bool,
    alpha: float,
    prior_prec: np.ndarray,
    prior_mean: np.ndarray,
    eps: np.ndarray,
    Z: np.ndarray,
) -> None:
    """One draw of every row from its Gaussian conditional; rows without entries get 0."""
    n_own = indptr.shape[0] - 1
    k = F.shape[1]
    k1 = k + 1 if with_bias else k
    # Lambda_0 mu_0, shared by every row
    lm = np.zeros(k1)
    for p in range(k1):
        for q in range(k1):
            lm[p] += prior_prec[p, q] * prior_mean[q]
    aw = np.empty(weights.shape[0])  # the data term's weights, alpha w_t
    for t in range(weights.shape[0]):
        aw[t] = alpha * weights[t]
    n_blocks = (n_own + _BLOCK - 1) // _BLOCK
    for blk in _prange(n_blocks):
        G = np.empty((k1, k1))
        h = np.empty(k1)
        a = np.empty(k1)
        v = np.empty(k1)
        for r in range(blk * _BLOCK, min(n_own, (blk + 1) * _BLOCK)):
            start = indptr[r]
            end = indptr[r + 1]
            if start == end:
                for p in range(k1):
                    Z[r, p] = 0.0
                continue
            for p in range(k1):
                h[p] = lm[p]
                for q in range(p + 1):
                    G[p, q] = prior_prec[p, q]
            ridge_normal_equations(start, end, other, y, aw, F, with_bias, a, G, h)
            # G is positive definite (prior_prec is): no pivot check
            cholesky_in_place(G, 0.0, False)
            # mean: L v = h, L^T m = v; then add L^{-T} eps: solve L^T (m + u) = v + eps
            forward_substitution(G, h, v)
            for p in range(k1):
                v[p] += eps[r, p]
            back_substitution(G, v, Z, r)


# duplicates: kernel and numpy oracle share arguments; the oracle is independent on purpose
def gibbs_rows_numpy(
    indptr: np.ndarray,
    other: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    F: np.ndarray,
    with_bias: bool,
    alpha: float,
    prior_prec: np.ndarray,
    prior_mean: np.ndarray,
    eps: np.ndarray,
    Z: np.ndarray,
) -> None:
    """Oracle of ``gibbs_rows`` (dense numpy per row, ``scipy``-free)."""
    for r in range(len(indptr) - 1):
        sl = slice(indptr[r], indptr[r + 1])
        if sl.start == sl.stop:
            Z[r] = 0.0
            continue
        A = F[other[sl]]
        if with_bias:
            A = np.hstack([A, np.ones((A.shape[0], 1))])
        w = alpha * weights[sl]
        prec = prior_prec + (A * w[:, None]).T @ A
        rhs = prior_prec @ prior_mean + (A * w[:, None]).T @ y[sl]
        L = np.linalg.cholesky(prec)
        mean = np.linalg.solve(prec, rhs)
        Z[r] = mean + np.linalg.solve(L.T, eps[r])


# duplicates: Funk's and biased SGD epochs read ahead alike but update differently
def _sgd_epoch(
    rows: np.ndarray,
    cols: np.ndarray,
    values: np.ndarray,
    weights: np.ndarray,
    order: np.ndarray,
    P: np.ndarray,
    Qt: np.ndarray,
    b: np.ndarray,
    c: np.ndarray,
    mu: float,
    lr: float,
    lr_bias: float,
    reg_row: np.ndarray,
    reg_col: np.ndarray,
    reg_row_bias: np.ndarray,
    reg_col_bias: np.ndarray,
    fit_biases: bool,
) -> float:
    """One epoch of biased SGD (``Qt`` item-major); returns the weighted squared error seen.

    The entries are read :data:`GATHER` at a time into small buffers first
    (:func:`lsqmf.kernels.linalg.gather_entries`): those loads are independent of each other,
    so the processor overlaps their cache misses, where a load inside the update loop waits for
    the previous visit. The visits and their arithmetic are those of a plain loop over ``order``.
    """
    loss = 0.0
    n_visits = order.shape[0]
    us = np.empty(GATHER, dtype=np.int64)
    its = np.empty(GATHER, dtype=np.int64)
    vs = np.empty(GATHER, dtype=np.float64)
    ws = np.empty(GATHER, dtype=np.float64)
    for s0 in range(0, n_visits, GATHER):
        n = gather_entries(order, s0, rows, cols, values, weights, us, its, vs, ws)
        for j in range(n):
            loss += _sgd_visit(us[j], its[j], vs[j], ws[j], P, Qt, b, c, mu, lr, lr_bias,
                               reg_row, reg_col, reg_row_bias, reg_col_bias, fit_biases)
    return loss


# duplicates: numba stages take arrays and scalars, not records: argument lists repeat
def _sgd_visit(
    u: int,
    i: int,
    v: float,
    w: float,
    P: np.ndarray,
    Qt: np.ndarray,
    b: np.ndarray,
    c: np.ndarray,
    mu: float,
    lr: float,
    lr_bias: float,
    reg_row: np.ndarray,
    reg_col: np.ndarray,
    reg_row_bias: np.ndarray,
    reg_col_bias: np.ndarray,
    fit_biases: bool,
) -> float:
    """One biased SGD step on the rating ``v`` (weight ``w``) of row ``u``, column ``i``;
    returns its weighted squared error before the step."""
    k = P.shape[1]
    pred = mu
    if fit_biases:
        pred += b[u] + c[i]
    for p in range(k):
        pred += P[u, p] * Qt[i, p]
    e = v - pred
    we = w * e
    if fit_biases:
        b[u] += lr_bias * (we - reg_row_bias[u] * b[u])
        c[i] += lr_bias * (we - reg_col_bias[i] * c[i])
    ru = reg_row[u]
    ri = reg_col[i]
    for p in range(k):
        pu = P[u, p]
        qi = Qt[i, p]
        P[u, p] = pu + lr * (we * qi - ru * pu)
        Qt[i, p] = qi + lr * (we * pu - ri * qi)
    return we * e


# duplicates: kernel and numpy oracle share arguments; the oracle is independent on purpose
def sgd_epoch_numpy(
    rows: np.ndarray,
    cols: np.ndarray,
    values: np.ndarray,
    weights: np.ndarray,
    order: np.ndarray,
    P: np.ndarray,
    Qt: np.ndarray,
    b: np.ndarray,
    c: np.ndarray,
    mu: float,
    lr: float,
    lr_bias: float,
    reg_row: np.ndarray,
    reg_col: np.ndarray,
    reg_row_bias: np.ndarray,
    reg_col_bias: np.ndarray,
    fit_biases: bool,
) -> float:
    """Oracle of ``sgd_epoch``: the same visits with vector operations per visit."""
    loss = 0.0
    for t in order:
        u, i = rows[t], cols[t]
        pu, qi = P[u].copy(), Qt[i].copy()
        e = values[t] - (mu + (b[u] + c[i] if fit_biases else 0.0) + float(pu @ qi))
        we = weights[t] * e
        loss += we * e
        if fit_biases:
            b[u] += lr_bias * (we - reg_row_bias[u] * b[u])
            c[i] += lr_bias * (we - reg_col_bias[i] * c[i])
        P[u] = pu + lr * (we * qi - reg_row[u] * pu)
        Qt[i] = qi + lr * (we * pu - reg_col[i] * qi)
    return float(loss)


def _bsgd_cells(
    rows: np.ndarray,
    cols: np.ndarray,
    values: np.ndarray,
    weights: np.ndarray,
    cell_ptr: np.ndarray,
    shifts: np.ndarray,
    P: np.ndarray,
    Qt: np.ndarray,
    b: np.ndarray,
    c: np.ndarray,
    mu: float,
    lr: float,
    lr_bias: float,
    reg_row: np.ndarray,
    reg_col: np.ndarray,
    reg_row_bias: np.ndarray,
    reg_col_bias: np.ndarray,
    fit_biases: bool,
    losses: np.ndarray,
) -> None:
    """One epoch of blocked biased SGD (LIBMF's stratified schedule), in parallel.

    The entries are sorted by cell of a ``B x B`` grid of row blocks x column blocks, cell
    ``(r, q)`` holding ``cell_ptr[r B + q]:cell_ptr[r B + q + 1]``. Stratum ``s`` updates
    the ``B`` cells ``(r, (r + shifts[s]) % B)``, which share no row and no column, so they
    run in parallel and the result does not depend on the thread count or the schedule;
    each cell visits its entries in stored order (updates as in ``bsgd_epoch``).
    ``losses[cell]`` receives the cell's weighted squared error seen.
    """
    n_blocks = shifts.shape[0]
    for s in range(n_blocks):
        for r in _prange(n_blocks):
            cell = r * n_blocks + (r + shifts[s]) % n_blocks
            losses[cell] = _sgd_range(
                rows, cols, values, weights, cell_ptr[cell], cell_ptr[cell + 1], P, Qt, b, c,
                mu, lr, lr_bias, reg_row, reg_col, reg_row_bias, reg_col_bias, fit_biases)


# duplicates: numba stages take arrays and scalars, not records: argument lists repeat
def _sgd_range(
    rows: np.ndarray,
    cols: np.ndarray,
    values: np.ndarray,
    weights: np.ndarray,
    start: int,
    stop: int,
    P: np.ndarray,
    Qt: np.ndarray,
    b: np.ndarray,
    c: np.ndarray,
    mu: float,
    lr: float,
    lr_bias: float,
    reg_row: np.ndarray,
    reg_col: np.ndarray,
    reg_row_bias: np.ndarray,
    reg_col_bias: np.ndarray,
    fit_biases: bool,
) -> float:
    """The visits of ``bsgd_epoch`` to the entries ``start:stop`` in stored order."""
    loss = 0.0
    for t in range(start, stop):
        loss += _sgd_visit(rows[t], cols[t], values[t], weights[t], P, Qt, b, c, mu, lr,
                           lr_bias, reg_row, reg_col, reg_row_bias, reg_col_bias, fit_biases)
    return loss


# duplicates: kernel and numpy oracle share arguments; the oracle is independent on purpose
def bsgd_cells_numpy(
    rows: np.ndarray,
    cols: np.ndarray,
    values: np.ndarray,
    weights: np.ndarray,
    cell_ptr: np.ndarray,
    shifts: np.ndarray,
    P: np.ndarray,
    Qt: np.ndarray,
    b: np.ndarray,
    c: np.ndarray,
    mu: float,
    lr: float,
    lr_bias: float,
    reg_row: np.ndarray,
    reg_col: np.ndarray,
    reg_row_bias: np.ndarray,
    reg_col_bias: np.ndarray,
    fit_biases: bool,
    losses: np.ndarray,
) -> None:
    """Oracle of ``bsgd_cells``: the cells one after another, each by ``sgd_epoch_numpy``."""
    n_blocks = len(shifts)
    for s in range(n_blocks):
        for r in range(n_blocks):
            cell = r * n_blocks + (r + int(shifts[s])) % n_blocks
            order = np.arange(cell_ptr[cell], cell_ptr[cell + 1])
            losses[cell] = sgd_epoch_numpy(
                rows, cols, values, weights, order, P, Qt, b, c, mu, lr, lr_bias, reg_row,
                reg_col, reg_row_bias, reg_col_bias, fit_biases)


def _predict_pairs(
    rows: np.ndarray,
    cols: np.ndarray,
    P: np.ndarray,
    Qt: np.ndarray,
    b: np.ndarray,
    c: np.ndarray,
    mu: float,
    fit_biases: bool,
    out: np.ndarray,
) -> None:
    """``out[t] = mu + b[u] + c[i] + P[u] . Qt[i]`` for every pair, in parallel."""
    k = P.shape[1]
    for t in _prange(rows.shape[0]):
        u = rows[t]
        i = cols[t]
        s = mu
        if fit_biases:
            s += b[u] + c[i]
        for p in range(k):
            s += P[u, p] * Qt[i, p]
        out[t] = s


# duplicates: kernel and numpy oracle share arguments; the oracle is independent on purpose
def predict_pairs_numpy(
    rows: np.ndarray,
    cols: np.ndarray,
    P: np.ndarray,
    Qt: np.ndarray,
    b: np.ndarray,
    c: np.ndarray,
    mu: float,
    fit_biases: bool,
    out: np.ndarray,
) -> None:
    """Oracle of ``predict_pairs``."""
    s = mu + np.einsum("nk,nk->n", P[rows], Qt[cols])
    if fit_biases:
        s = s + b[rows] + c[cols]
    out[:] = s


#: The helpers the kernels call, one stage each (the row-solve stages come from
#: :mod:`lsqmf.kernels.linalg`): plain Python until a kernel here is first compiled,
#: which rebinds each name here to its numba version (:func:`lsqmf.kernels.jit.jit_helpers`).
_HELPERS = (
    "gather_entries",
    "_sgd_visit",
    "_sgd_range",
    "_cg_residual",
    "_cg_steps",
    "_cg_product",
    "_add_feature",
    "ridge_normal_equations",
    "cholesky_in_place",
    "forward_substitution",
    "back_substitution",
)


# ---------------------------------------------------------------------- warm-up calls
# duplicates: each kernel module keeps its warm-up problem and argument lists
def _row_problem() -> tuple[np.ndarray, ...]:
    """Two rows over two fixed rows (entries 0, 1 in row 0, entry 2 in row 1)."""
    indptr = np.array([0, 2, 3], dtype=np.int64)
    other = np.array([0, 1, 1], dtype=np.int64)
    return indptr, other, np.array([1.0, 2.0, 3.0]), np.ones(3), np.ones((2, 2)), np.ones(2)


def _cg_rows_example(kernel: Callable[..., Any]) -> None:
    indptr, other, y, w, F, reg = _row_problem()
    for with_bias, k1 in ((True, 3), (False, 2)):
        kernel(indptr, other, y, w, F, with_bias, reg, reg, np.zeros((2, k1)), 2)


def _gibbs_rows_example(kernel: Callable[..., Any]) -> None:
    indptr, other, y, w, F, _ = _row_problem()
    for with_bias, k1 in ((True, 3), (False, 2)):
        kernel(indptr, other, y, w, F, with_bias, 1.0, np.eye(k1), np.zeros(k1),
               np.zeros((2, k1)), np.zeros((2, k1)))


def _sgd_epoch_example(kernel: Callable[..., Any]) -> None:
    _, other, y, w, F, reg = _row_problem()
    rows, b = np.array([0, 0, 1], dtype=np.int64), np.zeros(2)
    for array in (rows, other, y):  # bsgd passes the ratings' (read-only) indices and values
        array.setflags(write=False)
    kernel(rows, other, y, w, np.arange(3, dtype=np.int64), F.copy(), F.copy(), b, b.copy(),
           0.0, 0.01, 0.01, reg, reg, reg, reg, True)


def _bsgd_cells_example(kernel: Callable[..., Any]) -> None:
    _, other, y, w, F, reg = _row_problem()
    rows, b = np.array([0, 0, 1], dtype=np.int64), np.zeros(2)
    cell_ptr = np.array([0, 2, 2, 2, 3], dtype=np.int64)
    kernel(rows, other, y, w, cell_ptr, np.array([0, 1], dtype=np.int64), F.copy(), F.copy(),
           b, b.copy(), 0.0, 0.01, 0.01, reg, reg, reg, reg, True, np.zeros(4))


def _predict_pairs_example(kernel: Callable[..., Any]) -> None:
    _, other, _, _, F, _ = _row_problem()
    rows, b = np.array([0, 0, 1], dtype=np.int64), np.zeros(2)
    kernel(rows, other, F, F, b, b, 0.0, True, np.empty(3))


#: The kernels of this module, each with its numpy oracle (same arguments, same in-place
#: outputs), compiled on their first call. ``bsgd_epoch`` is the item-major biased SGD epoch
#: (``sgd_epoch`` of :mod:`lsqmf.kernels.core` is Funk's, another kernel).
KERNELS = (
    Kernel("cg_rows", _cg_rows, cg_rows_numpy, parallel=True, helpers=_HELPERS,
           example=_cg_rows_example),
    Kernel("gibbs_rows", _gibbs_rows, gibbs_rows_numpy, parallel=True, helpers=_HELPERS,
           example=_gibbs_rows_example),
    Kernel("bsgd_epoch", _sgd_epoch, sgd_epoch_numpy, helpers=_HELPERS,
           example=_sgd_epoch_example),
    Kernel("bsgd_cells", _bsgd_cells, bsgd_cells_numpy, parallel=True, helpers=_HELPERS,
           example=_bsgd_cells_example),
    Kernel("predict_pairs", _predict_pairs, predict_pairs_numpy, parallel=True,
           helpers=_HELPERS, example=_predict_pairs_example),
)


#: Below this many observed entries the parallel row kernels run on one thread. Waking a
#: thread pool costs microseconds on an idle machine but tens of milliseconds per launch on a
#: busy one (seen here: bmf on a 12 x 10 matrix 0.1 s on one thread, 4-10 s on two, with 15
#: processes competing for 2 cores; MovieLens latest-small, 40 sweeps: 0.9 s vs 1.1-5 s), and
#: a solver launches a kernel several times per sweep. A fixed rule on the problem size, so the
#: same problem always runs the same way; results never depend on it (rows are independent).
PARALLEL_MIN_NNZ = 500_000


@contextlib.contextmanager
def kernel_threads(nnz: int, backend: str) -> Iterator[None]:
    """Run the enclosed kernel calls on one numba thread when ``nnz < PARALLEL_MIN_NNZ``
    (a no-op, which imports no numba, for the resolved ``backend='numpy'``)."""
    if nnz >= PARALLEL_MIN_NNZ or backend == "numpy":
        yield
        return
    try:
        import numba
    except ImportError:
        yield
        return
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


