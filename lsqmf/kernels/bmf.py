r"""Compiled kernels of the Bayesian MF sampler (:mod:`lsqmf.solvers.bmf`) and their numpy oracles.

``gibbs_side`` draws every row of one side from its Gaussian conditional, as ``gibbs_rows`` of
:mod:`lsqmf.kernels.solvers` does, with three differences that make a sweep cheaper and
leave the distribution unchanged:

- it reads the other side's blocks ``Zo`` (``(n_other, k1)``: factors, then the bias) as
  they are, and forms each target :math:`y_t = v_t - \mu - c_{\mathrm{other}[t]}` on the fly
  (no copy of the factors, no array of targets per half-sweep);
- it accumulates the precision :math:`\Lambda_0 + \alpha\sum_t w_t a_t a_t^\top` four
  entries at a time (one load and store of the triangle per four entries instead of per
  entry), which changes the order of the sums, so results differ from ``gibbs_rows`` in the
  last bits only;
- it also returns, in ``stats``, the sums :math:`\sum_r z_r` and :math:`\sum_r z_r z_r^\top`
  over the rows it drew (rows with entries), which the next Gauss-Wishart draw of this side
  needs: no second pass over the blocks.

The conditional of row :math:`r` is :math:`N(\Sigma_r(\Lambda_0 m_0 + \alpha\sum_t w_t y_t
a_t), \Sigma_r)` with :math:`\Sigma_r^{-1} = \Lambda_0 + \alpha\sum_t w_t a_t a_t^\top`,
drawn by Cholesky as :math:`z = \Sigma_r h + L^{-\top}\varepsilon_r` with the standard normals
``eps[r]`` drawn by the caller (its seeded Generator).

The kernel is a loop over rows calling one helper per stage (the prior's terms, the entries,
Cholesky with the reciprocals of the diagonal, the draw, the row's statistics, the blocks'
sums): plain Python until :func:`lsqmf.kernels.jit.compiled` compiles the kernel, which rebinds
them to numba functions inlined into it (:func:`lsqmf.kernels.jit.jit_helpers`; same operations
in the same order as a single body). Its Cholesky multiplies by the reciprocal pivots where the
shared stages of :mod:`lsqmf.kernels.linalg` divide, and it adds four entries at a time, so it
keeps its own stages: with the shared ones the draws would change in the last bits.

``sse_pairs`` is the weighted squared error of the current sample at the training pairs,
straight from the blocks.

Determinism: each row is drawn by one thread with its sums in a fixed order, rows in parallel
blocks (``numba.prange``), and the statistics are summed per block and then over blocks in
block order: the results do not depend on the number of threads (tested: one thread == two).
No fast-math. The ``*_numpy`` functions are the oracles the tests compare the kernels with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .jit import Kernel

__all__ = ["KERNELS", "gibbs_side_numpy", "sse_pairs_numpy"]

#: ``range`` when called from Python; rebound to ``numba.prange`` before compiling.
_prange: Any = range

#: Rows per parallel task (work arrays and statistics once per block).
_BLOCK = 64


def _gibbs_side(
    indptr: np.ndarray,
    other: np.ndarray,
    values: np.ndarray,
    weights: np.ndarray,
    mu: float,
    Zo: np.ndarray,
    k: int,
    with_bias: bool,
    alpha: float,
    prior_prec: np.ndarray,
    prior_mean: np.ndarray,
    eps: np.ndarray,
    Z: np.ndarray,
    stats: np.ndarray,
) -> None:
    """Draw every row ``Z[r]`` with entries from its conditional (rows without: 0).

    ``stats`` (shape ``(k1 + 1, k1)``) receives ``sum z`` in row 0 and ``sum z z^T`` below,
    over the rows with entries.
    """
    n_own = indptr.shape[0] - 1
    k1 = k + 1 if with_bias else k
    lm = np.zeros(k1)
    for p in range(k1):
        for q in range(k1):
            lm[p] += prior_prec[p, q] * prior_mean[q]
    n_blocks = (n_own + _BLOCK - 1) // _BLOCK
    block_stats = np.zeros((n_blocks, k1 + 1, k1))
    for blk in _prange(n_blocks):
        G = np.empty((k1, k1))
        h = np.empty(k1)
        v = np.empty(k1)
        inv = np.empty(k1)
        a = np.empty((4, k1))
        wa = np.empty(4)
        st = block_stats[blk]
        if with_bias:
            for s in range(4):
                a[s, k] = 1.0
        for r in range(blk * _BLOCK, min(n_own, (blk + 1) * _BLOCK)):
            if indptr[r] == indptr[r + 1]:
                for p in range(k1):
                    Z[r, p] = 0.0
                continue
            _start_row(prior_prec, lm, G, h)
            _add_entries(indptr[r], indptr[r + 1], other, values, weights, mu, Zo, k, with_bias,
                         alpha, a, wa, G, h)
            _cholesky_reciprocal(G, inv)
            _draw_row(G, inv, h, eps, v, Z, r)
            _add_row_stats(Z, r, st)
    _sum_block_stats(block_stats, stats)


def _start_row(prior_prec: np.ndarray, lm: np.ndarray, G: np.ndarray, h: np.ndarray) -> None:
    """The prior's terms: ``G`` (lower triangle) = ``prior_prec``, ``h = lm``."""
    for p in range(G.shape[0]):
        h[p] = lm[p]
        for q in range(p + 1):
            G[p, q] = prior_prec[p, q]


def _add_entries(
    start: int,
    end: int,
    other: np.ndarray,
    values: np.ndarray,
    weights: np.ndarray,
    mu: float,
    Zo: np.ndarray,
    k: int,
    with_bias: bool,
    alpha: float,
    a: np.ndarray,
    wa: np.ndarray,
    G: np.ndarray,
    h: np.ndarray,
) -> None:
    """Add the entries ``start:end`` to ``h`` (``sum_t w y a``) and to the lower triangle of
    ``G`` (``sum_t w a a^T``), ``w = alpha weights[t]``, four entries at a time (``a``: their
    features, rows of ``(4, k1)``, the bias coordinate already 1; ``wa``: their weights)."""
    k1 = G.shape[0]
    t = start
    while t < end:
        n4 = min(4, end - t)
        for s in range(n4):
            j = other[t + s]
            for p in range(k):
                a[s, p] = Zo[j, p]
            y = values[t + s] - mu
            if with_bias:
                y -= Zo[j, k]
            w = alpha * weights[t + s]
            wa[s] = w
            wy = w * y
            for p in range(k1):
                h[p] += wy * a[s, p]
        if n4 == 4:
            w0, w1, w2, w3 = wa[0], wa[1], wa[2], wa[3]
            for p in range(k1):
                c0 = w0 * a[0, p]
                c1 = w1 * a[1, p]
                c2 = w2 * a[2, p]
                c3 = w3 * a[3, p]
                for q in range(p + 1):
                    G[p, q] += (c0 * a[0, q] + c1 * a[1, q]) + (c2 * a[2, q] + c3 * a[3, q])
        else:
            for s in range(n4):
                ws = wa[s]
                for p in range(k1):
                    c0 = ws * a[s, p]
                    for q in range(p + 1):
                        G[p, q] += c0 * a[s, q]
        t += n4


def _cholesky_reciprocal(G: np.ndarray, inv: np.ndarray) -> None:
    """Cholesky ``G = L L^T`` below the diagonal of ``G`` (``G`` positive definite: the prior's
    precision is), the reciprocals of ``L``'s diagonal in ``inv`` (``G``'s diagonal kept)."""
    k1 = G.shape[0]
    for p in range(k1):
        s0 = G[p, p]
        for q in range(p):
            s0 -= G[p, q] * G[p, q]
        d = 1.0 / np.sqrt(s0)
        inv[p] = d
        for q in range(p + 1, k1):
            x = G[q, p]
            for m in range(p):
                x -= G[q, m] * G[p, m]
            G[q, p] = x * d


def _draw_row(G: np.ndarray, inv: np.ndarray, h: np.ndarray, eps: np.ndarray, v: np.ndarray,
              Z: np.ndarray, r: int) -> None:
    """``Z[r] = Sigma h + L^{-T} eps[r]``: ``L v = h``, then ``L^T z = v + eps[r]`` (``L`` from
    :func:`_cholesky_reciprocal`)."""
    k1 = G.shape[0]
    for p in range(k1):
        x = h[p]
        for q in range(p):
            x -= G[p, q] * v[q]
        v[p] = x * inv[p]
    for p in range(k1):
        v[p] += eps[r, p]
    for p in range(k1 - 1, -1, -1):
        x = v[p]
        for q in range(p + 1, k1):
            x -= G[q, p] * Z[r, q]
        Z[r, p] = x * inv[p]


def _add_row_stats(Z: np.ndarray, r: int, st: np.ndarray) -> None:
    """Add ``z = Z[r]`` to ``st[0]`` and ``z z^T`` to the lower triangle of ``st[1:]``."""
    for p in range(Z.shape[1]):
        zp = Z[r, p]
        st[0, p] += zp
        for q in range(p + 1):
            st[1 + p, q] += zp * Z[r, q]


def _sum_block_stats(block_stats: np.ndarray, stats: np.ndarray) -> None:
    """``stats`` = the blocks' sums in block order (the same for any number of threads), the
    upper triangle of ``sum z z^T`` mirrored from the lower."""
    k1 = stats.shape[1]
    stats[:, :] = 0.0
    for blk in range(block_stats.shape[0]):
        for p in range(k1):
            stats[0, p] += block_stats[blk, 0, p]
            for q in range(p + 1):
                stats[1 + p, q] += block_stats[blk, 1 + p, q]
    for p in range(k1):
        for q in range(p):
            stats[1 + q, p] = stats[1 + p, q]


# duplicates: kernel and numpy oracle share arguments; the oracle is independent on purpose
def gibbs_side_numpy(
    indptr: np.ndarray,
    other: np.ndarray,
    values: np.ndarray,
    weights: np.ndarray,
    mu: float,
    Zo: np.ndarray,
    k: int,
    with_bias: bool,
    alpha: float,
    prior_prec: np.ndarray,
    prior_mean: np.ndarray,
    eps: np.ndarray,
    Z: np.ndarray,
    stats: np.ndarray,
) -> None:
    """Oracle of ``gibbs_side``: dense numpy algebra, one row at a time."""
    has = np.diff(indptr) > 0
    for r in range(len(indptr) - 1):
        if not has[r]:
            Z[r] = 0.0
            continue
        sl = slice(indptr[r], indptr[r + 1])
        j = other[sl]
        A = Zo[j, :k]
        if with_bias:
            A = np.hstack([A, np.ones((len(j), 1))])
        y = values[sl] - mu - (Zo[j, k] if with_bias else 0.0)
        w = alpha * weights[sl]
        prec = prior_prec + (A * w[:, None]).T @ A
        rhs = prior_prec @ prior_mean + (A * w[:, None]).T @ y
        L = np.linalg.cholesky(prec)
        Z[r] = np.linalg.solve(prec, rhs) + np.linalg.solve(L.T, eps[r])
    drawn = Z[has]
    stats[0] = drawn.sum(axis=0)
    stats[1:] = drawn.T @ drawn


def _sse_pairs(
    rows: np.ndarray,
    cols: np.ndarray,
    values: np.ndarray,
    weights: np.ndarray,
    Zu: np.ndarray,
    Zi: np.ndarray,
    k: int,
    with_bias: bool,
    mu: float,
) -> float:
    """``sum_t w_t (mu + b_u + c_i + p_u . q_i - v_t)^2`` from the blocks (serial, in order)."""
    sse = 0.0
    for t in range(rows.shape[0]):
        u = rows[t]
        i = cols[t]
        e = mu - values[t]
        if with_bias:
            e += Zu[u, k] + Zi[i, k]
        for p in range(k):
            e += Zu[u, p] * Zi[i, p]
        sse += weights[t] * e * e
    return sse


# duplicates: kernel and numpy oracle share arguments; the oracle is independent on purpose
def sse_pairs_numpy(
    rows: np.ndarray,
    cols: np.ndarray,
    values: np.ndarray,
    weights: np.ndarray,
    Zu: np.ndarray,
    Zi: np.ndarray,
    k: int,
    with_bias: bool,
    mu: float,
) -> float:
    """Oracle of ``sse_pairs``."""
    e = mu - values + np.einsum("nk,nk->n", Zu[rows, :k], Zi[cols, :k])
    if with_bias:
        e = e + Zu[rows, k] + Zi[cols, k]
    return float(np.sum(weights * e * e))


#: The stage helpers of ``gibbs_side``: plain Python until a kernel here is first compiled,
#: which rebinds each name here to its numba version
#: (:func:`lsqmf.kernels.jit.jit_helpers`, inlined into the kernel).
_HELPERS = (
    "_start_row",
    "_add_entries",
    "_cholesky_reciprocal",
    "_draw_row",
    "_add_row_stats",
    "_sum_block_stats",
)


# duplicates: each kernel module keeps its warm-up problem and argument lists
def _side_problem() -> tuple[np.ndarray, ...]:
    """Two rows over two other rows (entries 0, 1 in row 0, entry 2 in row 1)."""
    indptr = np.array([0, 2, 3], dtype=np.int64)
    other = np.array([0, 1, 1], dtype=np.int64)
    return indptr, other, np.array([1.0, 2.0, 3.0]), np.ones(3)


def _gibbs_side_example(kernel: Callable[..., Any]) -> None:
    indptr, other, v, w = _side_problem()
    for with_bias, k1 in ((True, 3), (False, 2)):
        kernel(indptr, other, v, w, 0.5, np.ones((2, k1)), 2, with_bias, 1.0, np.eye(k1),
               np.zeros(k1), np.zeros((2, k1)), np.zeros((2, k1)), np.empty((k1 + 1, k1)))


def _sse_pairs_example(kernel: Callable[..., Any]) -> None:
    _, other, v, w = _side_problem()
    for array in (other, v):  # bmf passes the ratings' (read-only) indices and values
        array.setflags(write=False)
    for with_bias, k1 in ((True, 3), (False, 2)):
        kernel(other, other, v, w, np.ones((2, k1)), np.zeros((2, k1)), 2, with_bias, 0.5)


#: The kernels of this module, each with its numpy oracle (same arguments, same outputs),
#: compiled on their first call.
KERNELS = (
    Kernel("gibbs_side", _gibbs_side, gibbs_side_numpy, parallel=True, helpers=_HELPERS,
           example=_gibbs_side_example),
    Kernel("sse_pairs", _sse_pairs, sse_pairs_numpy, helpers=_HELPERS,
           example=_sse_pairs_example),
)
