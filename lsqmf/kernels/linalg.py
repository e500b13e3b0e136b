r"""Stages of the compiled row-solve kernels: ridge normal equations, Cholesky, substitutions.

Plain Python functions over numpy arrays, one stage each, shared by ``als_rows``
(:mod:`lsqmf.kernels.core`) and ``gibbs_rows`` (:mod:`lsqmf.kernels.solvers`). A kernel module
imports them and, before compiling its kernels, rebinds them to their numba versions with
:func:`lsqmf.kernels.jit.jit_helpers` (the compiled kernel runs the same operations in the same
order as one written in a single body). Nothing here imports numba or the rest of lsqmf.

For row ``r`` of the solving side with entries ``t`` in ``start:end`` and features
:math:`a_t = [F_{\mathrm{other}[t]}; 1]` (the constant 1 only with ``with_bias``), the kernels
solve :math:`(\Lambda_r + \sum_t w_t a_t a_t^\top) z = c_r + \sum_t w_t y_t a_t` (``als_rows``:
:math:`\Lambda_r` diagonal, :math:`c_r = 0`; ``gibbs_rows``: the prior's precision and
:math:`\Lambda_0 \mu_0`, weights :math:`\alpha w_t`) by :math:`G = L L^\top` (``L`` in the lower
triangle of ``G``), :math:`L v = h`, :math:`L^\top z = v`. Every sum runs in index order; no
fast-math.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "back_substitution",
    "cholesky_in_place",
    "forward_substitution",
    "gather_entries",
    "ridge_normal_equations",
]


# duplicates: varpro's gram reads via ent; sharing would copy entries each call
def ridge_normal_equations(
    start: int,
    end: int,
    other: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    F: np.ndarray,
    with_bias: bool,
    a: np.ndarray,
    G: np.ndarray,
    h: np.ndarray,
) -> None:
    """Add the entries ``start:end`` to the lower triangle of ``G`` (``sum_t w a a^T``) and to
    ``h`` (``sum_t (w y) a``), with ``w = weights[t]``; ``a`` is work space."""
    k = F.shape[1]
    k1 = G.shape[0]
    for t in range(start, end):
        j = other[t]
        for p in range(k):
            a[p] = F[j, p]
        if with_bias:
            a[k] = 1.0
        w = weights[t]
        wy = w * y[t]
        for p in range(k1):
            h[p] += wy * a[p]
            wa = w * a[p]
            for q in range(p + 1):
                G[p, q] += wa * a[q]


def cholesky_in_place(G: np.ndarray, rtol: float, check: bool) -> bool:
    """In-place Cholesky ``G = L L^T`` of the lower triangle of ``G`` (``L`` written there).

    With ``check``, stops and returns False at the first pivot that is not above ``rtol``
    times its diagonal entry (singular or not finite); without, never stops (a non-positive
    pivot then gives NaN). Returns True otherwise.
    """
    k1 = G.shape[0]
    for p in range(k1):
        d = G[p, p]
        for s in range(p):
            d -= G[p, s] * G[p, s]
        if check and not d > rtol * G[p, p]:  # also catches NaN
            return False
        d = np.sqrt(d)
        G[p, p] = d
        for q in range(p + 1, k1):
            v = G[q, p]
            for s in range(p):
                v -= G[q, s] * G[p, s]
            G[q, p] = v / d
    return True


def forward_substitution(G: np.ndarray, h: np.ndarray, v: np.ndarray) -> None:
    """``v`` with ``L v = h`` (``L`` in the lower triangle of ``G``)."""
    k1 = G.shape[0]
    for p in range(k1):
        x = h[p]
        for s in range(p):
            x -= G[p, s] * v[s]
        v[p] = x / G[p, p]


def back_substitution(G: np.ndarray, v: np.ndarray, out: np.ndarray, r: int) -> None:
    """``out[r] = z`` with ``L^T z = v`` (``L`` in the lower triangle of ``G``)."""
    k1 = G.shape[0]
    for p in range(k1 - 1, -1, -1):
        x = v[p]
        for s in range(p + 1, k1):
            x -= G[s, p] * out[r, s]
        out[r, p] = x / G[p, p]


def gather_entries(
    order: np.ndarray,
    s0: int,
    rows: np.ndarray,
    cols: np.ndarray,
    values: np.ndarray,
    weights: np.ndarray,
    us: np.ndarray,
    its: np.ndarray,
    vs: np.ndarray,
    ws: np.ndarray,
) -> int:
    """Copy the entries ``order[s0:s0 + len(us)]`` into the buffers; returns how many.

    The SGD epochs read a block of shuffled entries ahead before updating (their loads are then
    independent, so the processor overlaps their cache misses). An empty ``weights`` leaves
    ``ws`` as it is (the caller's ones).
    """
    n = min(us.shape[0], order.shape[0] - s0)
    weighted = weights.shape[0] > 0
    for j in range(n):
        t = order[s0 + j]
        us[j] = rows[t]
        its[j] = cols[t]
        vs[j] = values[t]
        if weighted:
            ws[j] = weights[t]
    return n
