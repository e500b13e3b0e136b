r"""Levenberg-Marquardt on the reduced normal equations of variable projection.

``lsqmf.solve(..., eliminate=..., method='lm-normal')`` (the ``'lm_normal'`` runner of
:mod:`lsqmf.nls.run`) runs this module's damped Gauss-Newton iteration on the reduced
problem of :mod:`lsqmf.nls.varpro` with Kaufman's Jacobian :math:`J_K`. It is lsqmf's own
solver, *not* ``scipy.optimize.least_squares(method='lm')``: it never forms :math:`J_K`
(``n_obs x n_theta``), only the small dense matrix :math:`A = J_K^\top J_K`
(``n_theta x n_theta``, ``n_theta = n k`` [``+ n`` with biases]), which it factors by
Cholesky. This is the approach of the VarPro matrix-factorization papers (Kaufman's
approximation, "RW2" in their terms), and it pays off when ``n_theta`` is small (up to a few
thousand) and the number of observations large.

The normal matrix without the Jacobian
--------------------------------------
With the notation of :mod:`lsqmf.nls.varpro` (:math:`a_u = [p_u; 1]` the features of row
``u``, :math:`e_i = [q_i; 1]` the derivative of a data residual with respect to
:math:`[p_u; b_u]`, just :math:`a_u = p_u`, :math:`e_i = q_i` without biases, :math:`d_t =
\sqrt{w_t}`), :math:`J_K = (I - J_z G^{-1} J_z^\top) J_\theta` and the projection is
symmetric and idempotent, so

.. math::

    A = J_K^\top J_K = J_\theta^\top J_\theta - J_\theta^\top J_z G^{-1} J_z^\top J_\theta
      = J_\theta^\top J_\theta - \sum_i B_i^\top G_i^{-1} B_i,

with :math:`B_i = (J_z^\top J_\theta)_i` the :math:`k_1 \times n_\theta` block of column
``i`` (the regularization rows of :math:`z` do not meet :math:`J_\theta`, and those of
:math:`\theta` do not meet :math:`J_z`, so only the data rows contribute). Order
:math:`\theta` by rows, :math:`(u, l)` with :math:`l < k_1` (``l = k`` the bias):

- :math:`J_\theta^\top J_\theta` is block diagonal, block ``u`` being
  :math:`\sum_{t: u_t = u} w_t\, e_{i_t} e_{i_t}^\top` plus the squared regularization
  scales of :math:`\theta` on the diagonal.
- The :math:`(u, l)` column of :math:`B_i` is :math:`\sum_{t \in \Omega_i, u_t = u} w_t\,
  a_u\, (e_i)_l`, so the :math:`(u, v)` block of :math:`B_i^\top G_i^{-1} B_i` is
  :math:`M_i[u, v]\, e_i e_i^\top` with :math:`M_i = (W_i A_i) G_i^{-1} (W_i A_i)^\top`
  (:math:`n_i \times n_i`; :math:`A_i` the features of the rows that observe column ``i``,
  :math:`W_i` their weights; repeated entries add up).

So :math:`C = \sum_i B_i^\top G_i^{-1} B_i` is one matrix product: scatter the
:math:`M_i` of a block of columns into an ``(n*n, block)`` array :math:`S` and multiply by
the ``(block, k1*k1)`` array of the flattened :math:`e_i e_i^\top`; :math:`S E` is
:math:`C` laid out as ``(n, n, k1, k1)``. The blocks are sized to stay within
``_BLOCK_BYTES``; :math:`O(\sum_i n_i^2 (1 + k_1^2))` work, no ``n_obs x n_theta`` array.
``n_theta`` above :data:`MAX_NORMAL_PARAMS` is refused (use ``tr_solver='lsmr'``).

The gradient
------------
:math:`J_K^\top r = J_\theta^\top r - J_\theta^\top J_z G^{-1} J_z^\top r` and
:math:`J_z^\top r = 0` at the inner optimum, so :math:`g = J_\theta^\top r`: for
:math:`(u, l)` the sum :math:`\sum_{t: u_t = u} d_t r_t (e_{i_t})_l`, plus the
regularization rows. It is the exact gradient of the reduced cost (the eliminated optimum
is stationary in :math:`z`), with either Jacobian.

The iteration
-------------
Each iteration solves :math:`(A + \lambda D)\,\delta = -g` by Cholesky, with :math:`D =
\mathrm{diag}(A)` floored at ``1e-10 * max(diag(A))`` (``x_scale='jac'``, Marquardt's
scaling) or :math:`D = \mathrm{diag}(1/x_{\text{scale}}^2)` (numbers). A failed factorization
raises :math:`\lambda` (a single-precision factorization, half the time, was tried: with
one step of iterative refinement its steps kept relative residuals of ``1e-5`` on the
giraffe benchmark, where :math:`\kappa(A + \lambda D)` reaches ``1e5``-``1e6``, and it
reached the optimum less often). A trial step is accepted when the reduced cost
decreases; the gain ratio :math:`\rho` = actual / predicted decrease drives Nielsen's update
(:math:`\lambda \leftarrow \lambda \max(1/3, 1 - (2\rho - 1)^3)` on success, else
:math:`\lambda \leftarrow \nu\lambda`, :math:`\nu \leftarrow 2\nu`). Rejected steps reuse
:math:`A` and :math:`g` (only the factorization and the trial inner solve repeat).

*The gauge.* Without regularization the reduced residual is invariant under :math:`P \to P
+ P M` (and, with biases, :math:`b \to b + P v + t`: the eliminated factor absorbs them),
so :math:`A` has a null space of dimension :math:`k^2` (:math:`+ k + 1`) that
:math:`g` is orthogonal to. In exact arithmetic the damped step has no part there; in
floating point its part there is rounding amplified by :math:`1/\lambda`, which with small
:math:`\lambda` wrecks trial steps (the gain ratio falls to -10 and :math:`\lambda` is
pushed back up, a cycle that cost a third of all evaluations on the giraffe benchmark). So
the step is projected onto the orthogonal complement of the gauge directions
(:func:`_gauge_basis`), the projection constraint of the VarPro papers, and an accepted
point is *retracted* to orthonormal columns of ``P`` (thin QR, :math:`P \to PR^{-1}`: the
reduced residual does not change, and the inner Gram matrices stay well conditioned).

*Longer steps.* On the giraffe benchmark accepted steps have :math:`\rho \approx 1.8`
for dozens of iterations: the cost falls twice as much as the model says, i.e. the
Gauss-Newton matrix overestimates the curvature along the step, and the iteration
converges linearly. When :math:`\rho >` ``_EXTEND_RHO`` the step is improved without a
new factorization (:func:`_longer_step`): the quadratic model of the cost on the plane of
this step :math:`s` and the previous accepted step :math:`d` uses the curvature along
:math:`s` measured by the trial itself and :math:`H d \approx y` (the change of the exact
gradient over :math:`d`, carried through the retraction); its minimizer is tried with one
residual evaluation and kept if it is lower. When that model is not convex (or on the
first step) the step is doubled while the cost falls (up to ``_EXTEND_MAX`` times). This
cut the iterations to the giraffe optimum by about 40% in the runs behind
``reports/varpro``.

Stopping follows ``least_squares``: ``ftol`` (an accepted step with ratio > 0.25 whose cost
decrease is below ``ftol * cost``), ``xtol`` (a step with :math:`\|\delta\| < x_{tol}
(x_{tol} + \|\theta\|)`), ``gtol`` (:math:`\|g\|_\infty < g_{tol}`), ``max_nfev``
(default ``100 * n_theta``; the longer-step evaluations count); ``None`` disables a
tolerance.

The assembly of :math:`C` runs in a compiled kernel by default (``normal_tri_pairs`` of
:mod:`lsqmf.kernels.varpro`: the products of the distinct rows ``u <= v`` of every column,
then one product with the symmetric :math:`e_i e_i^\top`, about a quarter of the numpy
version's work); the numpy assembly (``backend='numpy'``) is its oracle in the tests.

*Inner damping (DRW).* The damped-Wiberg variant of the VarPro papers also damps the
eliminated block of the joint system: it factors :math:`J_\theta^\top J_\theta - \sum_i
B_i^\top (G_i + \lambda\,\mathrm{diag}\,G_i)^{-1} B_i` (the Schur complement of the joint
damped normal matrix) at the same :math:`\lambda` (:data:`_INNER_DAMPING`, off, one
assembly per trial). On the giraffe benchmark it reached the optimum from 5 of 20 starts
against 20 of 20 without it (``benchmarks/bench_varpro_damping.py``), so it is not offered
as an option.

*Robust losses* (formulation ``'none'``): the reduced problem's inner solve is the robust
one, by IRLS (:mod:`lsqmf.nls.varpro`); the cost is the loss's, the gradient
:math:`J_\theta^\top(\omega \odot r)` is exact, and :math:`A` is Kaufman's normal matrix of
the least-squares problem with the data weights times the IRLS weights :math:`\omega =
\rho'(r^2/f^2)` at the iterate (IRLS's Gauss-Newton model; :func:`_model`).

No bounds; Kaufman's Jacobian only (the full Golub-Pereyra matrix
:math:`J_{GP}^\top J_{GP}` is not implemented here).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from scipy.optimize import OptimizeResult

from ..kernels.registry import get_kernel
from ..model.result import STATUS_MESSAGES, Status
from .result import data_cost
from .tables import MAX_NORMAL_PARAMS

if TYPE_CHECKING:
    from .options import SolveOptions
    from .varpro import InnerSolution, ReducedProblem

__all__ = [
    "DECREMENT_TOL",
    "MAX_NORMAL_PARAMS",
    "METHOD",
    "lm_normal",
    "normal_equations",
]

logger = logging.getLogger(__name__)

#: The method name in :func:`lsqmf.solve` (its row of :data:`lsqmf.nls.tables.METHODS`).
METHOD = "lm-normal"
# MAX_NORMAL_PARAMS, the largest n_theta for which the dense normal matrix is formed, lives in
# the light nls.tables (the auto choices of solve's validation read it without this module).
#: Gain ratio above which an accepted step is extended (:func:`_extend`), and the longest
#: extension (in multiples of the step).
_EXTEND_RHO = 1.25
_EXTEND_MAX = 8.0
#: How many accepted steps :func:`_longer_step` remembers.
_MEMORY = 1
#: Damp the eliminated block too (DRW): the factored matrix uses (G_i + mu diag G_i)^-1.
_INNER_DAMPING = False
#: Nielsen's initial damping: ``mu_0 = _TAU * max(diag(A) / D)``.
_TAU = 1e-3
#: An ftol/xtol stop is taken only where the Gauss-Newton step would remove at most this
#: fraction of ``cost + 1e-12 cost_0`` (:func:`_decrement`); the same bound decides
#: ``success`` at the end. Otherwise the iteration goes on (a tiny step with a large
#: gradient raises the damping) and, when the damping overflows, stops with success=False.
DECREMENT_TOL = 1e-8
#: The absolute part of that bound, relative to the cost of the zero factorization
#: (:func:`data_cost`; zero-residual fits).
_DECREMENT_FLOOR = 1e-12
#: Memory bound of the scatter blocks of ``C``.
_BLOCK_BYTES = 256 * 2**20


@dataclass
class _Layout:
    """Index structures of one reduced problem, built once per solve."""

    n: int
    k: int
    k1: int
    perm: np.ndarray  # theta index of block index u*k1 + l
    pcol_ptr: np.ndarray  # distinct rows of every column (CSC): pointers,
    prow: np.ndarray  # ... the rows (ascending),
    pw: np.ndarray  # ... and their summed weights
    row_inc: sp.csr_matrix  # (n, N) entry -> row incidence
    row_col_w: sp.csr_matrix  # (n, m) summed weights of the entries of (row, column)
    theta_reg: np.ndarray | None
    theta_rows: np.ndarray | None
    pair_buffer: np.ndarray | None = None  # the compiled assembly's (m, n_pairs) buffer


def _layout(red: ReducedProblem) -> _Layout:
    n, k, k1 = red.n_rows, red.rank, red.k1
    if red.n_params > MAX_NORMAL_PARAMS:
        raise ValueError(
            f"method={METHOD!r} forms the dense reduced normal matrix of n_theta x n_theta; "
            f"this problem has n_theta = {red.n_params} > {MAX_NORMAL_PARAMS} unknowns "
            "(rows of the optimized factor times rank [+ biases]). Use method='trf' with "
            "tr_solver='lsmr' (matrix-free), or eliminate the other factor."
        )
    u = np.repeat(np.arange(n), k1)
    lvec = np.tile(np.arange(k1), n)
    perm = np.where(lvec < k, u * k + np.minimum(lvec, k - 1), n * k + u)
    N = len(red.rows)
    row_inc = sp.csr_matrix((np.ones(N), (red.rows, np.arange(N))), shape=(n, N))
    summed = sp.csc_matrix((red.w, (red.rows, red.cols)), shape=(n, red.n_cols))
    summed.sum_duplicates()
    summed.sort_indices()
    theta_reg = red._theta_reg()
    theta_rows = None if theta_reg is None else red._theta_rows()
    return _Layout(
        n, k, k1, perm,
        summed.indptr.astype(np.int64), summed.indices.astype(np.int64),
        summed.data.astype(np.float64), row_inc, summed.tocsr(), theta_reg, theta_rows,
    )


def _to_theta(lay: _Layout, blk: np.ndarray) -> np.ndarray:
    """Permute a matrix in block order ((u, l), (v, l')) to theta's order."""
    out = np.empty_like(blk)
    out[np.ix_(lay.perm, lay.perm)] = blk
    return out


@dataclass(frozen=True)
class _Pieces:
    """What the normal matrix at one ``theta`` is made of."""

    sol: InnerSolution
    E: np.ndarray  # (m, k1) e_i
    feats: np.ndarray  # (n, k1) a_u
    D: np.ndarray  # (n, k1, k1) the blocks of J_theta^T J_theta


def _pieces(red: ReducedProblem, lay: _Layout, theta: np.ndarray) -> _Pieces:
    sol = red.inner(theta)
    k, k1 = lay.k, lay.k1
    E = np.ones((red.n_cols, k1))
    E[:, :k] = sol.Z[:, :k]
    # J_theta^T J_theta: block diagonal, D_u = sum_i w_ui e_i e_i^T
    outer = (E[:, :, None] * E[:, None, :]).reshape(-1, k1 * k1)
    D = np.asarray(lay.row_col_w @ outer).reshape(lay.n, k1, k1)
    return _Pieces(sol, E, red._features(sol.P), D)


def _matrix(red: ReducedProblem, lay: _Layout, pc: _Pieces, Ginv: np.ndarray) -> np.ndarray:
    """``J_theta^T J_theta - sum_i B_i^T Ginv_i B_i`` (+ the regularization of theta)."""
    if red.kernels is None:
        A = _assemble_numpy(red, lay, Ginv, pc.E, pc.feats, pc.D)
    else:
        A = _assemble_compiled(lay, Ginv, pc.E, pc.feats, pc.D)
    if lay.theta_reg is not None:
        dg = np.diag_indices_from(A)
        A[dg] += lay.theta_reg**2
    return A


def _normal(red: ReducedProblem, lay: _Layout, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pc = _pieces(red, lay, theta)
    return _matrix(red, lay, pc, pc.sol.Ginv), _gradient(red, lay, theta, pc.E[red.cols])


def _model(red: ReducedProblem, lay: _Layout, theta: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """The normal matrix and gradient at ``theta``; with a robust inner solve, those of the
    least-squares problem weighted by the IRLS weights there (:meth:`ReducedProblem.weighted`:
    the exact gradient of the robust reduced cost, IRLS's Gauss-Newton matrix)."""
    if red.loss is None:
        return _normal(red, lay, theta)
    weighted = red.weighted(theta)
    return _normal(weighted, _layout(weighted), theta)


def _damped_inner(red: ReducedProblem, theta: np.ndarray, lam: float) -> np.ndarray:
    """``(G_i + lam diag(G_i))^{-1}`` for every column (0 for columns without data): the
    eliminated block of the joint LM system with Marquardt's damping (the DRW variant)."""
    G, _ = red.gram(theta)
    idx = np.arange(G.shape[1])
    G[:, idx, idx] *= 1.0 + lam
    empty = np.diff(red.col_ptr) == 0
    G[empty] = np.eye(G.shape[1])
    out = np.linalg.inv(G)
    out[empty] = 0.0
    return out


def _assemble_compiled(
    lay: _Layout, Ginv: np.ndarray, E: np.ndarray, feats: np.ndarray, D: np.ndarray
) -> np.ndarray:
    """``A`` in theta's order: the pair products of every column by the compiled kernel
    (upper triangle ``u <= v`` only), times the symmetric ``e_i e_i^T`` by one product."""
    tri_pairs, scatter = get_kernel("normal_tri_pairs"), get_kernel("normal_scatter")
    n, k1 = lay.n, lay.k1
    m = E.shape[0]
    n_pairs = n * (n + 1) // 2
    ia, ib = np.triu_indices(k1)
    Esym = E[:, ia] * E[:, ib]  # (m, k1 (k1 + 1) / 2)
    C = np.zeros((ia.size, n_pairs))  # C^T: the product below reads T row by row
    Ginv = np.ascontiguousarray(Ginv)
    block = max(1, min(m, _BLOCK_BYTES // (8 * n_pairs)))
    for start in range(0, m, block):
        stop = min(m, start + block)
        # the kernel writes the same entries at every call: a buffer kept from the last call
        # (a single block) needs no zeroing
        T = lay.pair_buffer if block == m else None
        if T is None:
            T = np.zeros((stop - start, n_pairs))
            if block == m:
                lay.pair_buffer = T
        tri_pairs(lay.pcol_ptr, lay.prow, lay.pw, feats, Ginv, start, T)
        C += Esym[start:stop].T @ T
    A = np.empty((n * k1, n * k1))
    scatter(C, np.ascontiguousarray(D), lay.perm, n, k1, A)
    return A


def _assemble_numpy(
    red: ReducedProblem,
    lay: _Layout,
    Ginv: np.ndarray,
    E: np.ndarray,
    feats: np.ndarray,
    D: np.ndarray,
) -> np.ndarray:
    """``A`` in theta's order by numpy (the oracle of :func:`_assemble_compiled`)."""
    n, k1 = lay.n, lay.k1
    m = E.shape[0]
    # C = sum_i B_i^T G_i^{-1} B_i as (n*n, k1*k1) = S @ Eflat, S scattered per block of columns
    Eflat = (E[:, :, None] * E[:, None, :]).reshape(m, k1 * k1)
    Cflat = np.zeros((n * n, k1 * k1))
    block = max(1, min(m, _BLOCK_BYTES // (8 * n * n)))
    for start in range(0, m, block):
        stop = min(m, start + block)
        S = np.zeros((n * n, stop - start))
        for j, i in enumerate(range(start, stop)):
            t = red.ent[red.col_ptr[i] : red.col_ptr[i + 1]]
            if t.size == 0:
                continue
            r = red.rows[t]  # distinct: Ratings refuses repeated (row, column) pairs
            WA = red.w[t][:, None] * feats[r]
            S[(r[:, None] * n + r[None, :]).ravel(), j] = (WA @ Ginv[i] @ WA.T).ravel()
        Cflat += S @ Eflat[start:stop]
    A_blk = -Cflat.reshape(n, n, k1, k1).transpose(0, 2, 1, 3).reshape(n * k1, n * k1)
    idx = np.arange(n)
    A4 = A_blk.reshape(n, k1, n, k1)
    A4[idx, :, idx, :] += D
    A = _to_theta(lay, A_blk)
    return 0.5 * (A + A.T)


def _gradient(
    red: ReducedProblem, lay: _Layout, theta: np.ndarray, Et: np.ndarray | None = None
) -> np.ndarray:
    """``J_theta^T r`` at the inner optimum (= ``J_K^T r``)."""
    sol = red.inner(theta)
    if Et is None:
        E = np.ones((red.n_cols, lay.k1))
        E[:, : lay.k] = sol.Z[:, : lay.k]
        Et = E[red.cols]
    N = len(red.rows)
    dr = red.d * sol.residual[:N]
    g_blk = np.asarray(lay.row_inc @ (dr[:, None] * Et))  # (n, k1)
    g = np.empty(red.n_params)
    g[lay.perm] = g_blk.ravel()
    if lay.theta_reg is not None:
        assert lay.theta_rows is not None
        g += lay.theta_reg * sol.residual[lay.theta_rows]
    return g


def normal_equations(red: ReducedProblem, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``A = J_K^T J_K`` (dense, n_theta x n_theta) and the gradient ``g = J_K^T r`` at
    ``theta``, without forming ``J_K`` (module docstring).

    Raises
    ------
    ValueError
        When ``n_theta`` exceeds :data:`MAX_NORMAL_PARAMS`.
    """
    theta = np.asarray(theta, dtype=np.float64)
    return _normal(red, _layout(red), theta)


def _retract(red: ReducedProblem, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``P -> orth(P) = P R^{-1}`` (thin QR, ``diag(R) > 0``) and ``R``: the reduced
    residual is invariant under ``P -> P M`` without regularization, and orthonormal
    columns keep ``G_i`` well conditioned."""
    P, b = red.split(theta)
    Qf, Rf = np.linalg.qr(P)
    sign = np.where(np.diag(Rf) < 0, -1.0, 1.0)
    return red.pack(Qf * sign, b), Rf * sign[:, None]


def _to_retracted(
    red: ReducedProblem, R: np.ndarray, d: np.ndarray, g: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A direction and a gradient at ``P`` expressed at ``P R^{-1}`` (the curve ``P + t D``
    becomes ``(P + t D) R^{-1}``; the gradient of ``P' -> f(P' R)`` is ``G R^T``)."""
    n, k = red.n_rows, red.rank
    d, g = d.copy(), g.copy()
    cols = d.reshape(d.shape[0], -1)
    gcols = g.reshape(g.shape[0], -1)
    for j in range(cols.shape[1]):
        cols[: n * k, j] = np.linalg.solve(R.T, cols[: n * k, j].reshape(n, k).T).T.ravel()
        gcols[: n * k, j] = (gcols[: n * k, j].reshape(n, k) @ R.T).ravel()
    return d, g


def _gauge_basis(red: ReducedProblem, theta: np.ndarray) -> np.ndarray:
    """An orthonormal basis (n_theta x g) of the directions that leave the unregularized
    reduced residual unchanged at ``theta``: ``P -> P + P M`` (``k^2``) and, with biases,
    ``b -> b + P v`` (``k``) and ``b -> b + t`` (1); the eliminated ``Q`` absorbs them."""
    P, b = red.split(theta)
    n, k = P.shape
    vecs = [np.einsum("ua,bc->ucab", P, np.eye(k)).reshape(n * k, k * k)]
    if b is None and _orthonormal(P):
        return vecs[0]  # <vec(P E_ab), vec(P E_cd)> = [a == c][b == d]: orthonormal already
    if b is not None:
        vecs = [np.vstack([vecs[0], np.zeros((n, k * k))])]
        vecs.append(np.vstack([np.zeros((n * k, k + 1)), np.hstack([P, np.ones((n, 1))])]))
    return np.asarray(scipy.linalg.orth(np.hstack(vecs)))


def _damping(diag: np.ndarray, x_scale: Any) -> np.ndarray:
    """The damping's diagonal ``D`` from ``diag(A)`` (``x_scale='jac'``) or ``x_scale``."""
    if isinstance(x_scale, str):
        top = float(diag.max()) if diag.size else 1.0
        return np.maximum(diag, 1e-10 * max(top, 1e-300))
    s = np.broadcast_to(np.asarray(x_scale, dtype=np.float64), diag.shape)
    return 1.0 / s**2


def _raise_damping(st: _State) -> None:
    """After a rejected step or a failed factorization: ``mu <- nu mu``, ``nu <- 2 nu``
    (Nielsen)."""
    assert st.mu is not None
    st.mu *= st.nu
    st.nu *= 2.0


def _half_squares(r: np.ndarray) -> float:
    return 0.5 * float(r @ r)


@dataclass
class _State:
    """The iterate of :func:`lm_normal` and its counters."""

    x: np.ndarray
    r: np.ndarray
    cost: float
    A: np.ndarray  # the normal matrix
    g: np.ndarray
    gauge: np.ndarray | None = None  # basis V of the gauge directions at x (unregularized)
    gauge_c: float = 0.0  # the factored matrix is A + gauge_c V V^T (+ the damping)
    gauge_P: np.ndarray | None = None  # orthonormal P (V V^T = P P^T kron I) or None
    gauge_term: np.ndarray | None = None  # c V V^T, dense, when P is not orthonormal
    pieces: _Pieces | None = None  # with the inner damping (DRW): what A is made of
    mu: float | None = None
    nu: float = 2.0
    nfev: int = 1
    njev: int = 1
    cost0: float = 0.0
    # the last accepted steps (columns, in x's coordinates) and the gradient changes over them
    steps: np.ndarray | None = None
    dgs: np.ndarray | None = None
    cost_of: Callable[[np.ndarray], float] = _half_squares  # the loss's cost of a residual


@dataclass(frozen=True)
class _Run:
    """One :func:`lm_normal` call: the residual, the reduced problem and its index layout,
    the solve's options (:class:`~lsqmf.nls.options.SolveOptions`, the one record), the
    damping's ``x_scale`` and the hook called at every new normal matrix."""

    fun: Callable[[np.ndarray], np.ndarray]
    red: ReducedProblem
    lay: _Layout
    options: SolveOptions
    x_scale: Any
    linearized: Callable[[np.ndarray], None]

    def tol(self, name: str) -> float:
        """``ftol``, ``xtol`` or ``gtol`` (None disables it: 0)."""
        value = getattr(self.options, name)
        return 0.0 if value is None else float(value)

    @property
    def max_nfev(self) -> int:
        """``max_nfev``, by default ``100 * n_theta``."""
        given = self.options.max_nfev
        return 100 * self.red.n_params if given is None else int(given)

    @property
    def retract(self) -> bool:
        """Without regularization the gauge is projected out and ``P`` retracted."""
        return not self.red.problem.has_reg


def lm_normal(
    fun: Callable[[np.ndarray], np.ndarray],
    red: ReducedProblem,
    theta0: np.ndarray,
    options: SolveOptions,
    *,
    x_scale: Any = "jac",
    linearized: Callable[[np.ndarray], None] | None = None,
) -> OptimizeResult:
    """Minimize ``0.5 ||fun(theta)||^2`` by LM on the reduced normal equations.

    ``fun`` is the reduced residual (it records the history, and may raise to stop: the
    caller's callback and ``max_time``); the normal matrix comes from ``red`` at the same
    point (its inner solution is cached). ``options`` gives ``ftol``, ``xtol``, ``gtol`` and
    ``max_nfev``; ``x_scale`` is ``'jac'`` or the scales (the plan's); ``linearized(theta)``
    is called at every point where the normal matrix is formed (an iteration). Returns an
    ``OptimizeResult`` with the fields of ``least_squares``' (``x``, ``cost``, ``fun``,
    ``grad``, ``optimality``, ``status``, ``message``, ``success``, ``nfev``, ``njev``).
    """
    run = _Run(fun, red, _layout(red), options, x_scale,
               linearized if linearized is not None else (lambda x: None))
    x = np.array(theta0, dtype=np.float64, copy=True)
    r = fun(x)
    run.linearized(x)
    st = _State(x, r, red.cost_of(r), *_model(red, run.lay, x), cost_of=red.cost_of)
    st.cost0 = data_cost(red.problem)
    if _INNER_DAMPING:
        st.pieces = _pieces(red, run.lay, x)
    if run.retract:
        _set_gauge(red, st)
    status: Status | None = None
    while status is None:
        status = _iteration(run, st)
    return _result(run, st, status)


def _decrement(run: _Run, st: _State) -> float:
    """The decrease the Gauss-Newton step at ``st.x`` predicts (``g^T A^+ g / 2``, the gauge
    lifted, a ``1e-10`` relative damping), over ``cost + 1e-12 data_cost``; inf when no such
    step can be formed (``A`` not positive definite even with damping ``1e-4``)."""
    Dd = _damping(np.diag(st.A), "jac")
    scale = st.cost + _DECREMENT_FLOOR * st.cost0
    for damp in (1e-10, 1e-8, 1e-6, 1e-4):
        try:
            p, pred = _Factor.of(st, damp * Dd).step(st.g)
        except (np.linalg.LinAlgError, ValueError):
            continue
        if np.all(np.isfinite(p)) and np.isfinite(pred):
            return max(float(pred), 0.0) / max(scale, 1e-300)
    return float("inf")


def _converged(run: _Run, st: _State) -> bool:
    """An ftol/xtol stop is taken only here (:data:`DECREMENT_TOL`)."""
    return _decrement(run, st) <= DECREMENT_TOL


def _iteration(run: _Run, st: _State) -> Status | None:
    """One accepted step (or a stop): trial steps with growing damping until the cost
    decreases; a new normal matrix at the accepted point. Returns the status if it stops."""
    xtol, max_nfev = run.tol("xtol"), run.max_nfev
    if float(np.max(np.abs(st.g), initial=0.0)) < run.tol("gtol"):
        return Status.GTOL
    if st.nfev >= max_nfev:
        return Status.MAX_ITER
    diag = np.diag(st.A)
    Dd = _damping(diag, run.x_scale)
    if st.mu is None:
        st.mu = max(_TAU * float(np.max(diag / Dd, initial=1.0)), 1e-300)
    while True:
        damped = _damped_step(run.red, run.lay, st, Dd)
        if damped is None:
            return Status.XTOL
        step, pred = damped
        trial = _evaluate(run.fun, st, st.x + step)
        actual = st.cost - trial[2]
        rho = actual / pred if pred > 0 else -1.0
        small_step = float(np.linalg.norm(step)) < xtol * (xtol + float(np.linalg.norm(st.x)))
        logger.debug("lm-normal: mu %.3g rho %.3g cost %.12g", st.mu, rho, trial[2])
        if actual > 0:
            if rho > _EXTEND_RHO and not small_step and st.nfev < max_nfev:
                trial = _longer_step(run.fun, st, step, trial, max_nfev)
            return _accept(run, st, trial, rho, small_step)
        _raise_damping(st)
        if small_step and _converged(run, st):
            return Status.XTOL
        if st.nfev >= max_nfev:
            return Status.MAX_ITER


#: A trial point: ``(theta, residual, cost)``.
_Point = tuple[np.ndarray, np.ndarray, float]


def _evaluate(fun: Callable[[np.ndarray], np.ndarray], st: _State, x: np.ndarray) -> _Point:
    """The reduced residual and cost at ``x`` (one evaluation)."""
    r = fun(x)
    st.nfev += 1
    return x, r, st.cost_of(r)


def _longer_step(
    fun: Callable[[np.ndarray], np.ndarray],
    st: _State,
    step: np.ndarray,
    trial: _Point,
    max_nfev: int,
) -> _Point:
    """A better point than the accepted ``trial = x + step`` when the cost fell by more
    than the model said (gain ratio above :data:`_EXTEND_RHO`: the Gauss-Newton matrix
    overestimates the curvature along ``step``).

    With the last accepted steps ``d_j`` (and the changes ``y_j`` of the gradient over them,
    so ``H d_j ~ y_j``), minimize the quadratic model of the cost on ``x + a step + D b``:
    its curvature along ``step`` from the trial itself (``cost1 = cost + g.s + s.H s / 2``),
    the rest from the ``y_j``. One more residual evaluation; no factorization. Without
    stored steps (the first step), or when that model is not convex, :func:`_extend`."""
    if st.steps is None or st.dgs is None:
        return _extend(fun, st, step, trial, max_nfev)
    B = np.column_stack([step, st.steps])
    H = np.empty((B.shape[1], B.shape[1]))
    H[0, 0] = 2.0 * (trial[2] - st.cost - float(st.g @ step))
    HB = B.T @ st.dgs  # (m+1, m): B_i . y_j ~ B_i . H d_j
    H[0, 1:] = HB[0]
    H[1:, 0] = HB[0]
    H[1:, 1:] = 0.5 * (HB[1:] + HB[1:].T)
    try:
        L = np.linalg.cholesky(H)
    except np.linalg.LinAlgError:
        return _extend(fun, st, step, trial, max_nfev)
    if np.min(np.diag(L)) ** 2 < 1e-12 * np.max(np.diag(H)):
        return _extend(fun, st, step, trial, max_nfev)
    c = scipy.linalg.cho_solve((L, True), -(B.T @ st.g))
    if not np.all(np.isfinite(c)) or abs(c[0]) > 4 * _EXTEND_MAX:
        return _extend(fun, st, step, trial, max_nfev)
    point = _evaluate(fun, st, st.x + B @ c)
    logger.debug("lm-normal: subspace step %s: cost %.12g (trial %.12g)", c, point[2], trial[2])
    return point if point[2] < trial[2] else trial


def _extend(
    fun: Callable[[np.ndarray], np.ndarray],
    st: _State,
    step: np.ndarray,
    trial: _Point,
    max_nfev: int,
) -> _Point:
    """Longer steps along an accepted direction whose decrease beat the model's: ``x + 2
    step``, ``x + 4 step``, ... (up to :data:`_EXTEND_MAX` times) while the cost keeps
    falling; one residual evaluation (an inner solve) per try, no factorization."""
    best = trial
    a_prev, a = 1.0, 2.0
    while a > a_prev and st.nfev < max_nfev:
        point = _evaluate(fun, st, st.x + a * step)
        if not point[2] < best[2]:
            break
        best, a_prev = point, a
        a = min(2.0 * a, _EXTEND_MAX)
    logger.debug("lm-normal: extended the step %.3g times", a_prev)
    return best


def _damped_step(
    red: ReducedProblem, lay: _Layout, st: _State, Dd: np.ndarray
) -> tuple[np.ndarray, float] | None:
    """The step solving ``(A + c V V^T + mu D) step = -g`` by Cholesky (raising ``mu`` until
    it factors) with the gauge part dropped, and its predicted decrease; None when ``mu``
    overflows."""
    assert st.mu is not None
    while st.mu <= 1e300:
        try:
            A = None
            if st.pieces is not None:  # DRW: the eliminated block damped as well
                Ginv = _damped_inner(red, st.x, st.mu)
                A = _matrix(red, lay, st.pieces, Ginv)
            step, pred = _Factor.of(st, st.mu * Dd, A).step(st.g)
            if np.all(np.isfinite(step)) and np.isfinite(pred):
                return step, pred
        except (np.linalg.LinAlgError, ValueError):
            pass
        _raise_damping(st)
    return None


@dataclass(frozen=True)
class _Factor:
    """A Cholesky factor of ``K = A + c V V^T + diag(damp)`` and the steps it gives."""

    cho: tuple[np.ndarray, bool]
    A: np.ndarray
    gauge: np.ndarray | None

    @classmethod
    def of(cls, st: _State, damp: np.ndarray, A: np.ndarray | None = None) -> _Factor:
        """Factor ``K`` (LinAlgError when it is not positive definite); ``A`` in place of
        ``st.A`` in ``K`` (the model keeps ``st.A``)."""
        M = (st.A if A is None else A).copy()  # the factorization overwrites it
        _add_gauge(st, M)
        M[np.diag_indices_from(M)] += damp
        # M is symmetric: its transpose is a Fortran-ordered view, which LAPACK takes as it is
        # (a C-ordered matrix is first copied to Fortran order: a third of the time at n = 1000)
        cho = scipy.linalg.cho_factor(M.T, lower=True, overwrite_a=True, check_finite=False)
        return cls(cho, st.A, st.gauge)

    def step(self, g: np.ndarray) -> tuple[np.ndarray, float]:
        """The step ``p = -K^{-1} g`` without its gauge part (rounding, amplified by
        ``1/mu``) and the decrease the model predicts, ``-(g.p + p.A p / 2)``."""
        p = -scipy.linalg.cho_solve(self.cho, g, check_finite=False)
        if self.gauge is not None:
            p = p - self.gauge @ (self.gauge.T @ p)
        return p, -(float(g @ p) + 0.5 * float(p @ (self.A @ p)))


def _accept(run: _Run, st: _State, trial: _Point, rho: float, small_step: bool
            ) -> Status | None:
    """Move to the trial point (retracted), update the damping, test ftol/xtol, and form
    the normal matrix there if the run goes on."""
    assert st.mu is not None
    red = run.red
    x_new, r_new, cost_new = trial
    actual = st.cost - cost_new
    st.mu *= max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
    st.nu = 2.0
    f_conv = actual < run.tol("ftol") * st.cost and rho > 0.25
    d, g_old = x_new - st.x, st.g
    st.x, st.r, st.cost = x_new, r_new, cost_new
    if run.retract:
        st.x, R = _retract(red, st.x)
        d, g_old = _to_retracted(red, R, d, g_old)
        if st.steps is not None and st.dgs is not None:
            st.steps, st.dgs = _to_retracted(red, R, st.steps, st.dgs)
    run.linearized(st.x)
    st.A, st.g = _model(red, run.lay, st.x)
    if _INNER_DAMPING:
        st.pieces = _pieces(red, run.lay, st.x)
    st.njev += 1
    _remember(st, d, st.g - g_old)
    if st.gauge is not None:
        _set_gauge(red, st)
    if (f_conv or small_step) and _converged(run, st):
        # a stop only where the Gauss-Newton step has next to nothing left to remove
        return Status.FTOL_XTOL if f_conv and small_step else (
            Status.FTOL if f_conv else Status.XTOL)
    return None


def _set_gauge(red: ReducedProblem, st: _State) -> None:
    """The gauge basis ``V`` at ``st.x`` and the term ``c V V^T`` that the factored matrix
    gets (:func:`_add_gauge`).

    ``A V = 0`` and ``V^T g = 0``, so adding ``c V V^T`` leaves the (projected) damped step
    unchanged in exact arithmetic, but lifts the gauge null space, whose rounding-level
    (also negative) eigenvalues otherwise make ``A + mu D`` fail to factor for small ``mu``
    (each failure a wasted Cholesky). ``c`` is the mean diagonal of ``A``."""
    st.gauge = _gauge_basis(red, st.x)
    st.gauge_c = float(np.trace(st.A)) / max(st.A.shape[0], 1)
    P, b = red.split(st.x)
    st.gauge_P = np.array(P) if b is None and _orthonormal(P) else None
    st.gauge_term = None if st.gauge_P is not None else st.gauge_c * (st.gauge @ st.gauge.T)


def _orthonormal(P: np.ndarray) -> bool:
    return bool(np.allclose(P.T @ P, np.eye(P.shape[1]), rtol=0, atol=1e-10))


def _add_gauge(st: _State, M: np.ndarray) -> None:
    """``M += c V V^T`` (nothing without a gauge)."""
    if st.gauge is None:
        return
    if st.gauge_P is not None:
        # orthonormal P: V V^T = (P P^T) kron I_k, nonzero only where the components match
        n, k = st.gauge_P.shape
        M4 = M.reshape(n, k, n, k)
        cPPt = st.gauge_c * (st.gauge_P @ st.gauge_P.T)
        for a in range(k):
            M4[:, a, :, a] += cPPt
    else:
        assert st.gauge_term is not None
        M += st.gauge_term


def _remember(st: _State, d: np.ndarray, y: np.ndarray) -> None:
    """Keep the last :data:`_MEMORY` accepted steps and gradient changes (columns)."""
    if st.steps is None or st.dgs is None:
        st.steps, st.dgs = d[:, None], y[:, None]
    else:
        st.steps = np.column_stack([d, st.steps])[:, :_MEMORY]
        st.dgs = np.column_stack([y, st.dgs])[:, :_MEMORY]


def _verdict(run: _Run, st: _State, status: Status) -> tuple[bool, str]:
    """``(success, message)``: a positive status is a success only at a point where the
    optimized factor has full rank (without regularization a rank-deficient one is a saddle
    of the reduced cost, e.g. the all-zero factorization) and the Gauss-Newton decrement is
    at most :data:`DECREMENT_TOL`."""
    message = STATUS_MESSAGES[status]
    if status <= 0:
        return False, message
    if run.retract:
        P, _ = run.red.split(st.x)
        sv = np.linalg.svd(P, compute_uv=False)
        if sv.size and (not np.all(np.isfinite(sv)) or sv[-1] <= 1e-10 * max(sv[0], 1e-300)):
            rank = int(np.sum(sv > 1e-10 * max(sv[0], 1e-300)))
            return False, (
                f"{message} But the optimized factor has rank {rank} < {P.shape[1]}: a saddle "
                "of the reduced cost (e.g. a zero start), not a minimum. Start from another "
                "point (random_state) or use lsqmf.multistart.")
    dec = _decrement(run, st)
    if dec > DECREMENT_TOL:
        return False, (
            f"{message} But the Gauss-Newton step there would still remove {dec:.3g} of the "
            f"cost (more than {DECREMENT_TOL:g}): the iteration stalled at a point that is "
            "not a minimum (a tiny or rejected step with a large gradient, e.g. next to "
            "nearly rank-deficient inner problems). Try another start or lsqmf.multistart.")
    return True, message


def _result(run: _Run, st: _State, status: Status) -> OptimizeResult:
    red, lay = run.red, run.lay
    status = Status(status)
    success, message = _verdict(run, st, status)
    # the gradient at the returned point (cheap; A is not needed there)
    g = st.g if status in (Status.GTOL, Status.MAX_ITER) or red.loss is not None else (
        _gradient(red, lay, st.x))
    logger.debug("lm-normal: status %d after %d evaluations, cost %.6g", status, st.nfev, st.cost)
    return OptimizeResult(
        x=st.x,
        cost=st.cost,
        fun=st.r,
        grad=g,
        optimality=float(np.max(np.abs(g), initial=0.0)),
        status=int(status),
        message=message,
        success=success,
        nfev=st.nfev,
        njev=st.njev,
        active_mask=np.zeros(red.n_params, dtype=int),
    )
