r"""The compiled kernels of variable projection (:mod:`lsqmf.nls.varpro`) and of its
``lm-normal`` method (:mod:`lsqmf.nls.lm_normal`).

The reduced problem stores the entries column by column: the entries of column ``i`` are
``ent[col_ptr[i]:col_ptr[i+1]]``, ``rows[t]`` is the row of entry ``t``, ``w[t] = d[t]**2``
its weight. With :math:`a_u = [p_u; 1]` (the 1 only with ``biases``; ``k1`` columns):

``varpro_gram``
    Every column's normal equations :math:`G_i = \sum_t w_t a_{u_t} a_{u_t}^\top +
    \mathrm{diag}(\lambda_i)`, :math:`h_i = \sum_t w_t y_t a_{u_t}` (the inner solve).
``varpro_matvec``, ``varpro_rmatvec``
    The reduced (Kaufman or full Golub-Pereyra) Jacobian applied to a vector and its
    transpose, matrix-free, column by column (:meth:`lsqmf.nls.varpro.ReducedProblem.operator`).
``normal_tri_pairs``, ``normal_scatter``
    The assembly of the dense reduced normal matrix of ``method='lm-normal'``: the pair
    products :math:`(w_u a_u)^\top G_i^{-1} (w_v a_v)` of every column, and their scatter
    into theta's order.

Serial kernels (no ``_prange``), no fast-math, compiled on their first call (no signature):
each :class:`~lsqmf.kernels.jit.Kernel` has an ``example`` with the argument types its caller
passes (C-contiguous int64 / float64 arrays, Python bools and ints), so a warm-up compiles, or
loads from the disk cache, exactly what the solve then runs. Their numpy oracles are the
vectorized products of the caller (``ReducedProblem.gram``, ``_matvec``, ``_rmatvec`` and
``lm_normal._assemble_numpy``, run with ``backend='numpy'``), which work on the reduced
problem's own arrays; ``tests/test_varpro.py`` and ``tests/test_varpro_lm.py`` compare them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .jit import Kernel

__all__ = ["KERNELS"]


# duplicates: linalg.ridge_normal_equations' sums, read via the column index ent
def _gram_py(col_ptr, ent, rows, w, y, P, biases, lam, G, h):  # type: ignore[no-untyped-def]
    """G[i] = sum_t w_t a a^T + diag(lam[i]), h[i] = sum_t w_t y_t a for every column i."""
    m = col_ptr.shape[0] - 1
    k = P.shape[1]
    k1 = G.shape[1]
    a = np.empty(k1)
    for i in range(m):
        for p in range(k1):
            h[i, p] = 0.0
            for q in range(k1):
                G[i, p, q] = 0.0
        for j in range(col_ptr[i], col_ptr[i + 1]):
            t = ent[j]
            u = rows[t]
            for p in range(k):
                a[p] = P[u, p]
            if biases:
                a[k] = 1.0
            wt = w[t]
            wy = wt * y[t]
            for p in range(k1):
                h[i, p] += wy * a[p]
                wa = wt * a[p]
                for q in range(p + 1):
                    G[i, p, q] += wa * a[q]
        for p in range(k1):
            G[i, p, p] += lam[i, p]
            for q in range(p):
                G[i, q, p] = G[i, p, q]


def _apply_inverse(Ginv, i, g, s):  # type: ignore[no-untyped-def]
    """s = Ginv[i] @ g (sums in index order)."""
    k1 = s.shape[0]
    for p in range(k1):
        acc = 0.0
        for q in range(k1):
            acc += Ginv[i, p, q] * g[q]
        s[p] = acc


def _feature_dot(P, u, s, biases):  # type: ignore[no-untyped-def]
    """a_u . s with a_u = [P[u]; 1] (the 1 only with ``biases``)."""
    k = P.shape[1]
    acc = 0.0
    for p in range(k):
        acc += P[u, p] * s[p]
    if biases:
        acc += s[k]
    return acc


def _matvec_py(  # type: ignore[no-untyped-def]
    col_ptr, ent, rows, d, e, P, Qt, Ginv, lsq, dP, db, biases, full, out, out_z
):
    """Data rows of J @ dtheta into out (problem order) and the z rows into out_z (m, k1)."""
    m = col_ptr.shape[0] - 1
    k = P.shape[1]
    k1 = Ginv.shape[1]
    hv = np.empty(k1)
    s = np.empty(k1)
    for i in range(m):
        for p in range(k1):
            hv[p] = 0.0
        for j in range(col_ptr[i], col_ptr[i + 1]):
            t = ent[j]
            u = rows[t]
            acc = 0.0
            for p in range(k):
                acc += dP[u, p] * Qt[i, p]
            if biases:
                acc += db[u]
            v = d[t] * acc
            out[t] = v
            dv = d[t] * v
            for p in range(k):
                hv[p] += dv * P[u, p]
            if biases:
                hv[k] += dv
            if full:
                de = d[t] * e[t]
                for p in range(k):
                    hv[p] += de * dP[u, p]
        _apply_inverse(Ginv, i, hv, s)
        for j in range(col_ptr[i], col_ptr[i + 1]):
            t = ent[j]
            out[t] -= d[t] * _feature_dot(P, rows[t], s, biases)
        for p in range(k1):
            out_z[i, p] = -lsq[i, p] * s[p]


# duplicates: J v and J^T y share their column set-up; bodies differ
def _rmatvec_py(  # type: ignore[no-untyped-def]
    col_ptr, ent, rows, d, e, P, Qt, Ginv, lsq, y, y_z, biases, full, gP, gb
):
    """J^T y (data part and z rows of y) accumulated into gP (n, k) and gb (n,), zeroed."""
    m = col_ptr.shape[0] - 1
    k = P.shape[1]
    k1 = Ginv.shape[1]
    g = np.empty(k1)
    s = np.empty(k1)
    for i in range(m):
        for p in range(k1):
            g[p] = lsq[i, p] * y_z[i, p]
        for j in range(col_ptr[i], col_ptr[i + 1]):
            t = ent[j]
            u = rows[t]
            dy = d[t] * y[t]
            for p in range(k):
                g[p] += dy * P[u, p]
            if biases:
                g[k] += dy
        _apply_inverse(Ginv, i, g, s)
        for j in range(col_ptr[i], col_ptr[i + 1]):
            t = ent[j]
            u = rows[t]
            c = d[t] * (y[t] - d[t] * _feature_dot(P, u, s, biases))
            for p in range(k):
                gP[u, p] += c * Qt[i, p]
            if biases:
                gb[u] += c
            if full:
                de = d[t] * e[t]
                for p in range(k):
                    gP[u, p] -= de * s[p]


def _tri_pairs_py(pcol_ptr, prow, pw, feats, Ginv, start, T):  # type: ignore[no-untyped-def]
    """T[j, tri(u, v)] = (w_u a_u)^T Ginv_i (w_v a_v) over the distinct rows u <= v of column
    i = start + j (weights of repeated entries summed); other entries of T are left alone.
    Each column's ``M_i = Y G_i^{-1} Y^T`` is two small matrix products."""
    n, k1 = feats.shape
    for j in range(T.shape[0]):
        i = start + j
        lo = pcol_ptr[i]
        cnt = pcol_ptr[i + 1] - lo
        Y = np.empty((cnt, k1))
        for s in range(cnt):
            u = prow[lo + s]
            for p in range(k1):
                Y[s, p] = pw[lo + s] * feats[u, p]
        Mi = (Y @ Ginv[i]) @ Y.T
        for s in range(cnt):
            u = prow[lo + s]
            base = u * n - (u * (u - 1)) // 2 - u
            for s2 in range(s, cnt):
                T[j, base + prow[lo + s2]] = Mi[s, s2]


def _scatter_py(C, D, perm, n, k1, A):  # type: ignore[no-untyped-def]
    """A[perm(u, a), perm(v, b)] = D_u[a, b] [u == v] - C[sym(a, b), tri(u, v)]."""
    for u in range(n):
        base = u * n - (u * (u - 1)) // 2 - u
        for v in range(u, n):
            pi = base + v
            for a in range(k1):
                ra = perm[u * k1 + a]
                for b in range(k1):
                    lo, hi = (a, b) if a <= b else (b, a)
                    val = -C[lo * k1 - (lo * (lo - 1)) // 2 + hi - lo, pi]
                    if u == v:
                        val += D[u, a, b]
                    cb = perm[v * k1 + b]
                    A[ra, cb] = val
                    A[cb, ra] = val


# ---------------------------------------------------------------------- warm-up calls
def _column_problem() -> tuple[np.ndarray, ...]:
    """Two columns over two rows (entries 0, 1 in column 0, entry 2 in column 1)."""
    col_ptr = np.array([0, 2, 3], dtype=np.int64)
    ent = np.array([0, 1, 2], dtype=np.int64)
    rows = np.array([0, 1, 1], dtype=np.int64)
    return col_ptr, ent, rows, np.ones(3)


def _gram_example(kernel: Callable[..., Any]) -> None:
    col_ptr, ent, rows, w = _column_problem()
    for biases, k1 in ((True, 3), (False, 2)):
        kernel(col_ptr, ent, rows, w, np.ones(3), np.ones((2, 2)), biases, np.ones((2, k1)),
               np.empty((2, k1, k1)), np.empty((2, k1)))


def _matvec_example(kernel: Callable[..., Any]) -> None:
    col_ptr, ent, rows, d = _column_problem()
    for biases, k1 in ((True, 3), (False, 2)):
        Ginv = np.ones((2, k1, k1))
        kernel(col_ptr, ent, rows, d, np.ones(3), np.ones((2, 2)), np.ones((2, 2)), Ginv,
               np.ones((2, k1)), np.ones((2, 2)), np.zeros(2 if biases else 0), biases, True,
               np.zeros(3), np.empty((2, k1)))


def _rmatvec_example(kernel: Callable[..., Any]) -> None:
    col_ptr, ent, rows, d = _column_problem()
    for biases, k1 in ((True, 3), (False, 2)):
        Ginv = np.ones((2, k1, k1))
        kernel(col_ptr, ent, rows, d, np.ones(3), np.ones((2, 2)), np.ones((2, 2)), Ginv,
               np.ones((2, k1)), np.ones(3), np.ones((2, k1)), biases, False, np.zeros((2, 2)),
               np.zeros(2 if biases else 0))


def _tri_pairs_example(kernel: Callable[..., Any]) -> None:
    pcol_ptr, _, prow, pw = _column_problem()
    kernel(pcol_ptr, prow, pw, np.ones((2, 3)), np.ones((2, 3, 3)), 0, np.zeros((2, 3)))


def _scatter_example(kernel: Callable[..., Any]) -> None:
    n, k1 = 2, 2
    perm = np.arange(n * k1)
    kernel(np.zeros((3, 3)), np.ones((n, k1, k1)), perm, n, k1, np.empty((n * k1, n * k1)))


#: The stages the Jacobian products share: plain Python until a kernel here is first compiled,
#: which rebinds each name here to its numba version (:func:`lsqmf.kernels.jit.jit_helpers`,
#: inlined into the kernel: the same operations in the same order).
_HELPERS = ("_apply_inverse", "_feature_dot")

KERNELS = (
    Kernel("varpro_gram", _gram_py, example=_gram_example),
    Kernel("varpro_matvec", _matvec_py, helpers=_HELPERS, example=_matvec_example),
    Kernel("varpro_rmatvec", _rmatvec_py, helpers=_HELPERS, example=_rmatvec_example),
    Kernel("normal_tri_pairs", _tri_pairs_py, example=_tri_pairs_example),
    Kernel("normal_scatter", _scatter_py, example=_scatter_example),
)
