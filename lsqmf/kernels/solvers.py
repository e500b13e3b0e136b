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

Kernels are compiled lazily by :func:`get_kernel` (numba, ``cache=True``: on-disk cache, so
only the first process on a machine pays the compile). Nothing here imports numba at import
time. The ``*_numpy`` functions are the oracles the tests compare the kernels against; they
share no code with them.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from .linalg import (
    back_substitution,
    cholesky_in_place,
    forward_substitution,
    ridge_normal_equations,
)

__all__ = [
    "cg_rows_numpy",
    "get_kernel",
    "gibbs_rows_numpy",
    "kernel_threads",
    "predict_pairs_numpy",
    "resolve_backend",
    "sgd_epoch_numpy",
    "warm_up",
]

#: ``range`` when called from Python; rebound to ``numba.prange`` before compiling.
_prange: Any = range

#: Rows per parallel task of the row kernels (work arrays are allocated once per block).
_BLOCK = 64

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
    """One epoch of biased SGD (``Qt`` item-major); returns the weighted squared error seen."""
    k = P.shape[1]
    loss = 0.0
    for s in range(order.shape[0]):
        t = order[s]
        u = rows[t]
        i = cols[t]
        pred = mu
        if fit_biases:
            pred += b[u] + c[i]
        for p in range(k):
            pred += P[u, p] * Qt[i, p]
        e = values[t] - pred
        we = weights[t] * e
        loss += we * e
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
    return loss


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


#: Kernel name -> (Python function, parallel over rows).
KERNELS: dict[str, tuple[Callable[..., Any], bool]] = {
    "cg_rows": (_cg_rows, True),
    "gibbs_rows": (_gibbs_rows, True),
    "sgd_epoch": (_sgd_epoch, False),
    "predict_pairs": (_predict_pairs, True),
}

#: The numpy oracle of each kernel (same arguments, same in-place outputs).
ORACLES: dict[str, Callable[..., Any]] = {
    "cg_rows": cg_rows_numpy,
    "gibbs_rows": gibbs_rows_numpy,
    "sgd_epoch": sgd_epoch_numpy,
    "predict_pairs": predict_pairs_numpy,
}

#: The helpers the kernels call, one stage each (the row-solve stages come from
#: :mod:`lsqmf.kernels.linalg`): plain Python until :func:`get_kernel` first compiles a kernel,
#: which rebinds each name here to its numba version (:func:`lsqmf.kernels.core.jit_helpers`).
_HELPERS = (
    "_cg_residual",
    "_cg_steps",
    "_cg_product",
    "_add_feature",
    "ridge_normal_equations",
    "cholesky_in_place",
    "forward_substitution",
    "back_substitution",
)

_compiled: dict[str, Callable[..., Any]] = {}
_lock = threading.Lock()


def get_kernel(name: str, backend: str = "compiled") -> Callable[..., Any]:
    """The kernel ``name`` compiled with numba (``backend='compiled'``) or its numpy oracle.

    Raises
    ------
    ValueError
        If ``name`` or ``backend`` is unknown.
    ImportError
        If ``backend='compiled'`` and numba is not installed.
    """
    return kernel_from_table(globals(), name, backend)


def kernel_from_table(namespace: dict[str, Any], name: str, backend: str) -> Callable[..., Any]:
    """``get_kernel`` of the kernel module whose globals are ``namespace``.

    The module defines ``KERNELS`` (name -> (function, parallel)), ``ORACLES``, ``_HELPERS``
    (names of its stage helpers), ``_prange``, the table ``_compiled`` of kernels compiled in
    this process and its ``_lock``. The first request for a compiled kernel rebinds the
    helpers (:func:`lsqmf.kernels.core.jit_helpers`) and, for a parallel kernel, ``_prange``
    to ``numba.prange``, then compiles it (numba's disk cache: ``cache=True``).
    """
    kernels = namespace["KERNELS"]
    if name not in kernels:
        raise ValueError(f"`name` must be one of {sorted(kernels)}; got {name!r}.")
    if backend == "numpy":
        return namespace["ORACLES"][name]  # type: ignore[no-any-return]
    if backend != "compiled":
        raise ValueError(f"`backend` must be 'compiled' or 'numpy'; got {backend!r}.")
    from .core import jit_helpers, require_numba

    numba = require_numba()
    with namespace["_lock"]:
        compiled = namespace["_compiled"]
        kernel = compiled.get(name)
        if kernel is None:
            jit_helpers(namespace, namespace["_HELPERS"])
            function, parallel = kernels[name]
            if parallel:
                namespace["_prange"] = numba.prange
            kernel = numba.njit(cache=True, nogil=True, parallel=parallel)(function)
            compiled[name] = kernel
    return kernel  # type: ignore[no-any-return]


#: Below this many observed entries the parallel row kernels run on one thread. Waking a
#: thread pool costs microseconds on an idle machine but tens of milliseconds per launch on a
#: busy one (seen here: bmf on a 12 x 10 matrix 0.1 s on one thread, 4-10 s on two, with 15
#: processes competing for 2 cores; MovieLens latest-small, 40 sweeps: 0.9 s vs 1.1-5 s), and
#: a solver launches a kernel several times per sweep. A fixed rule on the problem size, so the
#: same problem always runs the same way; results never depend on it (rows are independent).
PARALLEL_MIN_NNZ = 500_000


@contextlib.contextmanager
def kernel_threads(nnz: int) -> Iterator[None]:
    """Run the enclosed kernel calls on one numba thread when ``nnz < PARALLEL_MIN_NNZ``."""
    if nnz >= PARALLEL_MIN_NNZ:
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


def resolve_backend(backend: str = "auto") -> str:
    """``'compiled'`` or ``'numpy'`` for the shared ``backend`` option of the fast solvers.

    ``'auto'`` is ``'compiled'`` when numba can be imported, else ``'numpy'`` (logged).

    Raises
    ------
    ValueError
        If ``backend`` is not ``'auto'``, ``'compiled'`` or ``'numpy'``.
    """
    if backend not in ("auto", "compiled", "numpy"):
        raise ValueError(
            f"`backend` must be one of 'auto', 'compiled', 'numpy'; got {backend!r}."
        )
    if backend != "auto":
        return backend
    from ..runtime.threads import numba_available

    if numba_available():
        return "compiled"
    logging.getLogger(__name__).warning(
        "numba cannot be imported; the fast solvers run their (slow) numpy oracles instead"
    )
    return "numpy"


def warm_up(names: Iterable[str] | None = None) -> float:
    """Compile (or load from the disk cache) the kernels ``names`` (default: every kernel of
    :data:`KERNELS`) on a tiny problem; returns seconds.

    Benchmarks call it so that compile time is reported apart from fit time.
    """
    import time

    t0 = time.perf_counter()
    wanted = set(KERNELS if names is None else names)
    if not wanted <= KERNELS.keys():
        raise ValueError(f"`names` must be among {sorted(KERNELS)}; got {sorted(wanted)}.")
    indptr = np.array([0, 2, 3], dtype=np.int64)
    other = np.array([0, 1, 1], dtype=np.int64)
    y = np.array([1.0, 2.0, 3.0])
    w = np.ones(3)
    F = np.ones((2, 2))
    reg = np.ones(2)
    for with_bias in (True, False):
        k1 = 3 if with_bias else 2
        Z = np.zeros((2, k1))
        if "cg_rows" in wanted:
            get_kernel("cg_rows")(indptr, other, y, w, F, with_bias, reg, reg, Z, 2)
        if "gibbs_rows" in wanted:
            get_kernel("gibbs_rows")(indptr, other, y, w, F, with_bias, 1.0, np.eye(k1),
                                     np.zeros(k1), np.zeros((2, k1)), Z)
    rows = np.array([0, 0, 1], dtype=np.int64)
    b = np.zeros(2)
    if "sgd_epoch" in wanted:
        get_kernel("sgd_epoch")(rows, other, y, w, np.arange(3, dtype=np.int64), F.copy(),
                                F.copy(), b, b.copy(), 0.0, 0.01, 0.01, reg, reg, reg, reg, True)
    if "predict_pairs" in wanted:
        get_kernel("predict_pairs")(rows, other, F, F, b, b, 0.0, True, np.empty(3))
    return time.perf_counter() - t0
