r"""Levenberg-Marquardt on the reduced normal equations of variable projection.

``solve_varpro(..., method='lm-normal')`` (and ``lsqmf.solve(..., eliminate=...,
method='lm-normal')``) runs this module's damped Gauss-Newton iteration on the reduced
problem of :mod:`lsqmf.varpro` with Kaufman's Jacobian :math:`J_K`. It is lsqmf's own
solver, *not* ``scipy.optimize.least_squares(method='lm')``: it never forms :math:`J_K`
(``n_obs x n_theta``), only the small dense matrix :math:`A = J_K^\top J_K`
(``n_theta x n_theta``, ``n_theta = n k`` [``+ n`` with biases]), which it factors by
Cholesky. This is the approach of the VarPro matrix-factorization papers (Kaufman's
approximation, "RW2" in their terms), and it pays off when ``n_theta`` is small (up to a few
thousand) and the number of observations large.

The normal matrix without the Jacobian
--------------------------------------
With the notation of :mod:`lsqmf.varpro` (:math:`a_u = [p_u; 1]` the features of row
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
scaling) or :math:`D = \mathrm{diag}(1/x_{\text{scale}}^2)` (numbers). Under ``'none'``
the gauge :math:`P \to PM` makes :math:`A` singular (a :math:`k^2`-dimensional null
space); the damping keeps the system positive definite, and a failed factorization
raises :math:`\lambda`. A trial step is accepted when the reduced cost decreases; the
gain ratio :math:`\rho` = actual / predicted decrease drives Nielsen's update
(:math:`\lambda \leftarrow \lambda \max(1/3, 1 - (2\rho - 1)^3)` on success, else
:math:`\lambda \leftarrow \nu\lambda`, :math:`\nu \leftarrow 2\nu`). Rejected steps reuse
:math:`A` and :math:`g` (only the factorization and the trial inner solve repeat).
Without regularization an accepted point is *retracted* to orthonormal columns of ``P``
(thin QR, :math:`P \to PR^{-1}`: the reduced residual does not change, the gauge is
fixed and the inner Gram matrices stay well conditioned), as in the VarPro papers.
Stopping follows ``least_squares``: ``ftol`` (an accepted step with ratio > 0.25 whose cost
decrease is below ``ftol * cost``), ``xtol`` (a step with :math:`\|\delta\| < x_{tol}
(x_{tol} + \|\theta\|)`), ``gtol`` (:math:`\|g\|_\infty < g_{tol}`), ``max_nfev``
(default ``100 * n_theta``); ``None`` disables a tolerance.

Only the linear loss and no bounds; Kaufman's Jacobian only (the full Golub-Pereyra matrix
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

from .result import STATUS_MESSAGES, Status

if TYPE_CHECKING:  # varpro imports this module lazily
    from .varpro import ReducedProblem

__all__ = [
    "MAX_NORMAL_PARAMS",
    "METHOD",
    "check_normal_arguments",
    "lm_normal",
    "normal_equations",
]

logger = logging.getLogger(__name__)

#: The method name in :func:`lsqmf.varpro.solve_varpro` and :func:`lsqmf.solve`.
METHOD = "lm-normal"
#: Largest ``n_theta`` for which the dense normal matrix is formed (8000**2 doubles: 512 MB).
MAX_NORMAL_PARAMS = 8000
#: Memory bound of the scatter blocks of ``C``.
_BLOCK_BYTES = 256 * 2**20


def check_normal_arguments(
    *,
    loss: Any,
    bounds: Any,
    tr_solver: Any,
    tr_options: Any,
    jac: Any,
    jacobian: str,
) -> None:
    """Refuse the options ``method='lm-normal'`` has no meaning for (ValueError)."""
    if loss != "linear":
        raise ValueError(
            f"method={METHOD!r} supports only loss='linear'; got loss={loss!r}. Use "
            "method='trf' for a robust loss."
        )
    if bounds is not None:
        raise ValueError(
            f"method={METHOD!r} does not support `bounds`; use method='trf' with bounds."
        )
    if tr_solver is not None:
        raise ValueError(
            f"method={METHOD!r} solves the reduced normal equations by Cholesky and takes no "
            f"`tr_solver`; got tr_solver={tr_solver!r}."
        )
    if tr_options:
        raise ValueError(f"method={METHOD!r} takes no `tr_options`; got {tr_options!r}.")
    if jac != "auto":
        raise ValueError(
            f"method={METHOD!r} forms J^T J itself and takes jac='auto' only; got jac={jac!r}."
        )
    if jacobian != "kaufman":
        raise ValueError(
            f"method={METHOD!r} implements Kaufman's Jacobian only; got "
            f"varpro_jacobian={jacobian!r}. Use jacobian='kaufman', or method='trf' for "
            "'full'."
        )


@dataclass
class _Layout:
    """Index structures of one reduced problem, built once per solve."""

    n: int
    k: int
    k1: int
    perm: np.ndarray  # theta index of block index u*k1 + l
    col_rows: list[np.ndarray]  # rows observing column i
    col_w: list[np.ndarray]  # their weights
    col_flat: list[np.ndarray]  # flattened (u, v) pair indices u*n + v
    duplicates: bool
    row_inc: sp.csr_matrix  # (n, N) entry -> row incidence
    theta_reg: np.ndarray | None
    theta_rows: np.ndarray | None


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
    col_rows, col_w, col_flat = [], [], []
    duplicates = False
    for i in range(red.n_cols):
        t = red.ent[red.col_ptr[i] : red.col_ptr[i + 1]]
        r = red.rows[t]
        if np.unique(r).size != r.size:
            duplicates = True
        col_rows.append(r)
        col_w.append(red.w[t])
        col_flat.append((r[:, None] * n + r[None, :]).ravel())
    N = len(red.rows)
    row_inc = sp.csr_matrix((np.ones(N), (red.rows, np.arange(N))), shape=(n, N))
    theta_reg = red._theta_reg()
    theta_rows = None if theta_reg is None else red._theta_rows()
    return _Layout(
        n, k, k1, perm, col_rows, col_w, col_flat, duplicates, row_inc, theta_reg, theta_rows
    )


def _to_theta(lay: _Layout, blk: np.ndarray) -> np.ndarray:
    """Permute a matrix in block order ((u, l), (v, l')) to theta's order."""
    out = np.empty_like(blk)
    out[np.ix_(lay.perm, lay.perm)] = blk
    return out


def _normal(red: ReducedProblem, lay: _Layout, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sol = red.inner(theta)
    n, k, k1 = lay.n, lay.k, lay.k1
    m = red.n_cols
    E = np.ones((m, k1))
    E[:, :k] = sol.Z[:, :k]
    feats = red._features(sol.P)  # (n, k1)
    # J_theta^T J_theta: block diagonal
    Et = E[red.cols]  # (N, k1)
    outer = (Et[:, :, None] * Et[:, None, :]).reshape(-1, k1 * k1)
    D = np.asarray(lay.row_inc @ (red.w[:, None] * outer)).reshape(n, k1, k1)
    # C = sum_i B_i^T G_i^{-1} B_i as (n*n, k1*k1) = S @ Eflat, S scattered per block of columns
    Eflat = (E[:, :, None] * E[:, None, :]).reshape(m, k1 * k1)
    Cflat = np.zeros((n * n, k1 * k1))
    block = max(1, min(m, _BLOCK_BYTES // (8 * n * n)))
    for start in range(0, m, block):
        stop = min(m, start + block)
        S = np.zeros((n * n, stop - start))
        for j, i in enumerate(range(start, stop)):
            r = lay.col_rows[i]
            if r.size == 0:
                continue
            WA = lay.col_w[i][:, None] * feats[r]
            M = WA @ sol.Ginv[i] @ WA.T
            if lay.duplicates:
                np.add.at(S[:, j], lay.col_flat[i], M.ravel())
            else:
                S[lay.col_flat[i], j] = M.ravel()
        Cflat += S @ Eflat[start:stop]
    A_blk = -Cflat.reshape(n, n, k1, k1).transpose(0, 2, 1, 3).reshape(n * k1, n * k1)
    idx = np.arange(n)
    A4 = A_blk.reshape(n, k1, n, k1)
    A4[idx, :, idx, :] += D
    A = _to_theta(lay, A_blk)
    A = 0.5 * (A + A.T)
    if lay.theta_reg is not None:
        dg = np.diag_indices_from(A)
        A[dg] += lay.theta_reg**2
    return A, _gradient(red, lay, theta, Et)


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


def _orthonormalize(red: ReducedProblem, theta: np.ndarray) -> np.ndarray:
    """``P -> orth(P)`` (thin QR): the reduced residual is invariant under ``P -> P M``
    without regularization, and orthonormal columns keep ``G_i`` well conditioned."""
    P, b = red.split(theta)
    Qf, Rf = np.linalg.qr(P)
    Qf = Qf * np.where(np.diag(Rf) < 0, -1.0, 1.0)
    return red.pack(Qf, b)


def _damping(A: np.ndarray, x_scale: Any) -> np.ndarray:
    if isinstance(x_scale, str):
        d = np.diag(A).copy()
        top = float(d.max()) if d.size else 1.0
        return np.maximum(d, 1e-10 * max(top, 1e-300))
    s = np.broadcast_to(np.asarray(x_scale, dtype=np.float64), (A.shape[0],))
    return 1.0 / s**2


def lm_normal(
    fun: Callable[[np.ndarray], np.ndarray],
    red: ReducedProblem,
    theta0: np.ndarray,
    *,
    ftol: float | None,
    xtol: float | None,
    gtol: float | None,
    max_nfev: int | None,
    x_scale: Any = "jac",
    tau: float = 1e-3,
    retract: bool | None = None,
) -> OptimizeResult:
    """Minimize ``0.5 ||fun(theta)||^2`` by LM on the reduced normal equations.

    ``fun`` is the reduced residual (it records the history, and may raise to stop: the
    caller's callback and ``max_time``); the normal matrix comes from ``red`` at the same
    point (its inner solution is cached). Returns an ``OptimizeResult`` with the fields of
    ``least_squares``' (``x``, ``cost``, ``fun``, ``grad``, ``optimality``, ``status``,
    ``message``, ``success``, ``nfev``, ``njev``).
    """
    lay = _layout(red)
    if retract is None:
        retract = not red.problem.has_reg
    ftol_ = 0.0 if ftol is None else float(ftol)
    xtol_ = 0.0 if xtol is None else float(xtol)
    gtol_ = 0.0 if gtol is None else float(gtol)
    n_par = red.n_params
    if max_nfev is None:
        max_nfev = 100 * n_par
    x = np.array(theta0, dtype=np.float64, copy=True)
    r = fun(x)
    cost = 0.5 * float(r @ r)
    nfev, njev = 1, 1
    A, g = _normal(red, lay, x)
    mu: float | None = None
    nu = 2.0
    status: int | None = None
    while status is None:
        if float(np.max(np.abs(g), initial=0.0)) < gtol_:
            status = Status.GTOL
            break
        if nfev >= max_nfev:
            status = Status.MAX_ITER
            break
        Dd = _damping(A, x_scale)
        if mu is None:
            mu = tau * float(np.max(np.diag(A) / Dd, initial=1.0))
            mu = max(mu, 1e-300)
        while True:
            try:
                cho = scipy.linalg.cho_factor(A + mu * np.diag(Dd), lower=False, check_finite=False)
                step = -scipy.linalg.cho_solve(cho, g, check_finite=False)
                if not np.all(np.isfinite(step)):
                    raise np.linalg.LinAlgError("non-finite step")
            except (np.linalg.LinAlgError, ValueError):
                mu *= nu
                nu *= 2.0
                if mu > 1e300:
                    status = Status.XTOL
                    break
                continue
            pred = 0.5 * float(step @ (mu * Dd * step - g))
            x_new = x + step
            r_new = fun(x_new)
            nfev += 1
            cost_new = 0.5 * float(r_new @ r_new)
            actual = cost - cost_new
            rho = actual / pred if pred > 0 else -1.0
            step_norm = float(np.linalg.norm(step))
            small_step = step_norm < xtol_ * (xtol_ + float(np.linalg.norm(x)))
            if actual > 0:
                mu *= max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
                nu = 2.0
                f_conv = actual < ftol_ * cost and rho > 0.25
                x, r, cost = x_new, r_new, cost_new
                if retract:
                    x = _orthonormalize(red, x)
                if f_conv and small_step:
                    status = Status.FTOL_XTOL
                elif f_conv:
                    status = Status.FTOL
                elif small_step:
                    status = Status.XTOL
                if status is None:
                    A, g = _normal(red, lay, x)
                    njev += 1
                break
            mu *= nu
            nu *= 2.0
            if small_step:
                status = Status.XTOL
                break
            if nfev >= max_nfev:
                status = Status.MAX_ITER
                break
    assert status is not None
    # the gradient at the returned point (cheap; A is not needed there)
    g_final = g if status in (Status.GTOL, Status.MAX_ITER) else _gradient(red, lay, x)
    optimality = float(np.max(np.abs(g_final), initial=0.0))
    status = Status(status)
    logger.debug("lm-normal: status %d after %d evaluations, cost %.6g", status, nfev, cost)
    return OptimizeResult(
        x=x,
        cost=cost,
        fun=r,
        grad=g_final,
        optimality=optimality,
        status=int(status),
        message=STATUS_MESSAGES[status],
        success=status > 0,
        nfev=nfev,
        njev=njev,
        active_mask=np.zeros(n_par, dtype=int),
    )
