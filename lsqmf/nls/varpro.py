r"""Variable projection (VarPro): eliminate one factor in closed form, optimize the other.

Setting
-------
The joint problem of :mod:`lsqmf.model.problem` (formulations ``'l2'`` and ``'none'``) has the
residual :math:`F(\theta, z)` with :math:`\theta = (P, b)` (row factors and, with biases, row
biases) and :math:`z = (Q, c)` (column factors and column biases). For fixed :math:`\theta`,
:math:`F` is affine in :math:`z` and separates over the columns: column ``i`` sees the
features :math:`a_u = [p_u; 1]` (just :math:`p_u` without biases, :math:`k_1 = k + 1` or
:math:`k` entries) of the rows ``u`` that observe it, with targets
:math:`y_t = v_t - \mu - b_{u_t}` (:math:`v_t` without biases), and

.. math::

    z_i^*(\theta) = \arg\min_z \sum_{t \in \Omega_i} w_t (a_{u_t}^\top z - y_t)^2
        + z^\top \Lambda_i z = G_i^{-1} h_i,\qquad
    G_i = \sum_{t\in\Omega_i} w_t a_{u_t} a_{u_t}^\top + \Lambda_i,\quad
    h_i = \sum_{t\in\Omega_i} w_t y_t a_{u_t},

with :math:`\Lambda_i = \mathrm{diag}(\sigma_i^2, \dots, \sigma_i^2, \gamma_i^2)` the squared
regularization scales of column ``i`` (zero under ``'none'``): the ALS half-step. So the
column bias is eliminated together with :math:`q_i` by augmenting ``P`` with a column of
ones, the row bias is optimized with ``P``, and :math:`\mu` stays the training mean; the
model is unchanged. The *reduced residual* is the joint residual at the eliminated optimum,

.. math:: r(\theta) = F(\theta, z^*(\theta)),

in the joint problem's layout (data rows, then the regularization rows of ``P``, ``Q``,
``b``, ``c``), so the reduced cost :math:`\tfrac12\|r(\theta)\|^2` *is* the joint cost at
:math:`(\theta, z^*(\theta))`, and its minimizers are the joint minimizers.

Jacobians
---------
Write :math:`J_\theta = \partial F/\partial\theta` and :math:`J_z = \partial F/\partial z`
(both at :math:`(\theta, z^*)`). :math:`J_z` is block diagonal over columns: block ``i`` has
the rows :math:`d_t a_{u_t}^\top` (:math:`d_t = \sqrt{w_t}`, :math:`t \in \Omega_i`) and the
diagonal :math:`\Lambda_i^{1/2}` (the regularization rows of :math:`q_i, c_i`), so
:math:`J_z^\top J_z = \mathrm{blockdiag}(G_i)`. The optimality of :math:`z^*`,
:math:`J_z^\top F = 0`, differentiated along :math:`\delta\theta`, gives

.. math::

    (\partial_{\delta\theta} J_z)^\top F + J_z^\top (J_\theta\,\delta\theta
        + J_z\,\delta z) = 0
    \;\Rightarrow\;
    \delta z = -G^{-1}\big(J_z^\top J_\theta\,\delta\theta + H\delta\theta\big),
    \qquad H\delta\theta = (\partial_{\delta\theta} J_z)^\top F,

and :math:`J = \mathrm{d}r/\mathrm{d}\theta = J_\theta + J_z\,\mathrm{d}z^*/\mathrm{d}\theta`:

.. math::

    J_{\mathrm{GP}} = \underbrace{(I - J_z G^{-1} J_z^\top) J_\theta}_{J_{\mathrm{K}}}
                     - J_z G^{-1} H .

This is the full Golub-Pereyra Jacobian (``varpro_jacobian='full'`` of :func:`lsqmf.solve`).
Kaufman's approximation (``'kaufman'``, the default) keeps the first term, the projection of
:math:`J_\theta` onto the orthogonal complement of the range of :math:`J_z`; the dropped term
is proportional to the residual :math:`F`, so it vanishes at a zero-residual solution. In
entries: only the data rows of :math:`J_z` depend on :math:`\theta` (row ``t`` is
:math:`d_t [p_{u_t}; 1]^\top`), so :math:`(H\delta\theta)_i = \sum_{t \in \Omega_i} d_t F_t
[\delta p_{u_t}; 0]`. Products in :math:`O(Nk + mk_1^2)` with :math:`G_i^{-1}` computed
once per :math:`\theta`:

- :math:`J\delta\theta`: :math:`v = J_\theta\delta\theta` (data rows
  :math:`d_t(\delta p_{u_t}^\top q_{i_t} + \delta b_{u_t})`, the regularization rows of
  :math:`\theta`), :math:`s_i = G_i^{-1}(\sum_{t\in\Omega_i} d_t v_t a_{u_t}
  [+ (H\delta\theta)_i])`, then :math:`J\delta\theta = v - J_z s` (data rows
  :math:`v_t - d_t a_{u_t}^\top s_{i_t}`, the rows of :math:`z`: :math:`-\Lambda_i^{1/2}s_i`).
- :math:`J^\top y`: :math:`s_i = G_i^{-1}(J_z^\top y)_i = G_i^{-1}(\sum_t d_t y_t a_{u_t} +
  \Lambda_i^{1/2} y_{z_i})`, :math:`\tilde y = y - J_z s`, then :math:`J^\top y =
  J_\theta^\top \tilde y\ [- H^\top s]` with :math:`(H^\top s)_{p_u} = \sum_{t: u_t = u}
  d_t F_t s_{i_t, 1:k}` (the projection is symmetric, so one solve per column serves both
  terms).

:meth:`ReducedProblem.operator` applies these matrix-free (numba kernels, or numpy as the
fallback and the oracle): nothing of size ``n_obs x n_unknowns`` is formed, which is what
``tr_solver='lsmr'`` uses. :meth:`ReducedProblem.jacobian` builds the same matrices by sparse
algebra (``J_theta - J_z (G^{-1} (J_z^T J_theta [+ H]))``), and
:meth:`ReducedProblem.dense_jacobian` as a dense array (``tr_solver='exact'``, ``method='lm'``),
one BLAS product per column.

Gauge
-----
:math:`r` is invariant under :math:`P \to PA` for invertible :math:`A` under ``'none'``
(:math:`z^*` absorbs :math:`A^{-1}`), so :math:`J` has a :math:`k^2`-dimensional null space
there; trf's regularized subproblem (and LSMR's minimum-norm steps) handle it.

Defined treatments
------------------
- A column with fewer observations than :math:`k_1` has a singular :math:`G_i` unless
  :math:`\Lambda_i` is positive: under ``'none'`` (or ``'l2'`` with ``reg=0``) such columns
  are an error that names them (use ``'l2'`` with ``reg > 0``, the ridge, or drop them).
  A column with no observation at all is in no data residual: its :math:`z_i = 0` (the
  minimizer of its ridge, if any; with ``count_scaled`` its ridge is 0 too).
- A :math:`G_i` that is singular for the current ``P`` (rank-deficient features) is inverted
  by the pseudo-inverse.
- Robust losses, two treatments. (a) With ``scipy``'s methods the inner solve stays least
  squares, so ``least_squares`` minimizes :math:`\tfrac12\sum\rho(r_j(\theta)^2)` over the
  *least-squares* :math:`z^*(\theta)`. Both Jacobians are exact for that reduced residual,
  and for the linear loss the reduced problem is exactly the joint one; with a robust loss
  the result is not in general a stationary point of the joint robust objective.
  ``tests/test_varpro.py`` checks both statements. (b) With a ``loss`` row given to
  :func:`build_reduced` (what ``method='lm-normal'`` does, formulation ``'none'``) the inner
  problem is the robust one, :math:`z^*(\theta) = \arg\min_z \tfrac12 f^2\sum_t
  \rho(F_t(\theta, z)^2 / f^2)`, solved per column by iteratively reweighted least squares
  (weights :math:`\omega_t = \rho'(F_t^2/f^2)` on the closed-form solves, from the
  least-squares solution, until :math:`z` changes by less than :data:`IRLS_TOL` relative).
  The reduced cost is then the joint robust cost at the eliminated optimum, its gradient is
  :math:`J_\theta^\top(\omega \odot F)` (the inner problem is stationary: envelope
  theorem), and lm-normal's normal matrix is Kaufman's for the least-squares problem with
  the fixed weights :math:`\omega` (:meth:`ReducedProblem.weighted`: the IRLS
  Gauss-Newton model, exact in the gradient). ``tests/test_varpro_robust.py`` checks the
  gradient against finite differences.
- Bounds apply to the optimized factor (and its biases); the eliminated factor cannot be
  bounded (its closed form is unconstrained): bounds with more entries are an error.

Eliminating ``P`` instead (``eliminate='P'``) runs the same on the transposed ratings and
swaps the factors back.

This module is the reduced problem only; :func:`lsqmf.solve` with ``eliminate`` runs it
through the one pipeline (:mod:`lsqmf.nls.plan` builds it, :mod:`lsqmf.nls.run` runs
``least_squares`` or lm-normal on it, :mod:`lsqmf.nls.result` maps ``theta`` back to the
factors).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator

from .._validation import check_choice
from ..data.ratings import Ratings
from ..kernels.registry import select_kernels
from ..model.problem import Problem, build_problem
from .tables import VARPRO_JACOBIANS, Loss

__all__ = [
    "IRLS_MAX_ITER",
    "IRLS_TOL",
    "InnerSolution",
    "ReducedProblem",
    "build_reduced",
    "transpose_ratings",
]


#: The robust inner solve's IRLS stops when the eliminated factor changes by less than this
#: (relative to its largest entry), or after :data:`IRLS_MAX_ITER` reweightings.
IRLS_TOL = 1e-9
IRLS_MAX_ITER = 50
#: The Newton weights of the robust inner solve are at least this fraction of ``rho'``.
_NEWTON_FLOOR = 1e-2

# ---------------------------------------------------------------------- compiled kernels
#: The products' compiled kernels (lsqmf.kernels.varpro), by the name the code below uses.
_KERNEL_NAMES = {"gram": "varpro_gram", "matvec": "varpro_matvec", "rmatvec": "varpro_rmatvec"}


def _resolve_backend(backend: str) -> dict[str, Callable[..., Any]] | None:
    """The compiled products for ``backend`` from the kernel registry, or None for numpy."""
    kernels = select_kernels(_KERNEL_NAMES.values(), backend)
    return None if kernels is None else dict(zip(_KERNEL_NAMES, kernels, strict=True))


# ---------------------------------------------------------------------- the reduced problem
@dataclass
class InnerSolution:
    """The eliminated optimum at one ``theta`` and what the Jacobians need there."""

    theta: np.ndarray
    P: np.ndarray  # (n, k)
    b: np.ndarray | None  # (n,)
    Z: np.ndarray  # (m, k1): rows [q_i, c_i]
    Ginv: np.ndarray  # (m, k1, k1)
    x: np.ndarray  # joint decision vector at (theta, z*)
    residual: np.ndarray  # joint residual there
    omega: np.ndarray | None = None  # robust inner solve: rho'(F_t^2 / f^2) of the data rows


@dataclass(frozen=True, eq=False)
class _Linearization:
    """What the reduced Jacobian's products capture at one ``theta``."""

    P: np.ndarray  # (n, k)
    Qt: np.ndarray  # (m, k): the eliminated q_i
    Ginv: np.ndarray  # (m, k1, k1)
    e: np.ndarray  # (N,) data residuals
    full: bool  # the Golub-Pereyra term too
    theta_reg: np.ndarray | None  # regularization scale of every theta entry
    z_rows: np.ndarray | None  # (m, k1) residual rows of z's regularization
    A_rows: np.ndarray  # (N, k1) features of each entry's row (numpy products)
    Qc: np.ndarray  # (N, k) q of each entry's column (numpy products)
    de: np.ndarray  # (N,) d * e


@dataclass(frozen=True, eq=False)
class ReducedProblem:
    """The reduced (variable-projection) problem over ``theta = [vec(P) row-major, b]``.

    Build it with :func:`build_reduced`. ``problem`` is the joint problem (``Q`` eliminated:
    for ``eliminate='P'`` it is built on the transposed ratings).
    """

    problem: Problem
    col_ptr: np.ndarray
    ent: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    d: np.ndarray
    w: np.ndarray
    lsq: np.ndarray  # (m, k1) square roots of Lambda_i's diagonal
    kernels: dict[str, Callable[..., Any]] | None
    loss: Loss | None = None  # a robust inner solve (IRLS) with this loss, or least squares
    f_scale: float = 1.0

    @property
    def n_rows(self) -> int:
        return self.problem.n_rows

    @property
    def n_cols(self) -> int:
        return self.problem.n_cols

    @property
    def rank(self) -> int:
        return self.problem.rank

    @property
    def k1(self) -> int:
        return self.rank + (1 if self.problem.biases else 0)

    @property
    def n_params(self) -> int:
        """Length of ``theta``."""
        n = self.n_rows
        return n * self.rank + (n if self.problem.biases else 0)

    @property
    def n_residuals(self) -> int:
        return self.problem.n_residuals

    def split(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Views ``(P, b)`` into ``theta`` (``b`` None without biases)."""
        n, k = self.n_rows, self.rank
        P = theta[: n * k].reshape(n, k)
        return P, (theta[n * k :] if self.problem.biases else None)

    def pack(self, P: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
        parts = [np.asarray(P, dtype=np.float64).ravel()]
        if self.problem.biases:
            parts.append(np.zeros(self.n_rows) if b is None else np.ravel(b))
        return np.concatenate(parts).astype(np.float64, copy=False)

    # ------------------------------------------------------------------ inner solve
    def gram(self, theta: np.ndarray, omega: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """``G`` (m, k1, k1) and ``h`` (m, k1) of every column's normal equations (the data
        weights times ``omega``, the IRLS weights, when given)."""
        P, b = self.split(np.asarray(theta, dtype=np.float64))
        pr = self.problem
        w = self.w if omega is None else self.w * omega
        y = pr.ratings.values - (pr.mu + b[self.rows] if b is not None else 0.0)
        m, k1 = self.n_cols, self.k1
        lam = self.lsq**2
        if self.kernels is not None:
            G = np.empty((m, k1, k1))
            h = np.empty((m, k1))
            self.kernels["gram"](
                self.col_ptr, self.ent, self.rows, w, np.ascontiguousarray(y),
                np.ascontiguousarray(P), pr.biases, lam, G, h,
            )
            return G, h
        A = self._features(P)  # (n, k1)
        Wt = self._incidence_w() if omega is None else sp.csr_matrix(
            (w, (self.cols, self.rows)), shape=(m, self.n_rows))
        O = (A[:, :, None] * A[:, None, :]).reshape(self.n_rows, k1 * k1)
        G = np.asarray(Wt @ O).reshape(m, k1, k1)
        G[:, np.arange(k1), np.arange(k1)] += lam
        wy = w * y
        h = np.asarray(
            sp.csr_matrix((wy, (self.cols, self.rows)), shape=(m, self.n_rows)) @ A
        )
        return G, h

    def _features(self, P: np.ndarray) -> np.ndarray:
        if self.problem.biases:
            return np.hstack([P, np.ones((P.shape[0], 1))])
        return np.ascontiguousarray(P)

    def _incidence_w(self) -> sp.csr_matrix:
        cached = self.__dict__.get("_wt_cache")
        if cached is None:
            cached = sp.csr_matrix(
                (self.w, (self.cols, self.rows)), shape=(self.n_cols, self.n_rows)
            )
            object.__setattr__(self, "_wt_cache", cached)
        return cached

    def inner(self, theta: np.ndarray) -> InnerSolution:
        """Solve every column's normal equations at ``theta`` (cached for the last theta);
        with a ``loss``, the robust inner problem by IRLS (:meth:`_irls`)."""
        theta = np.asarray(theta, dtype=np.float64)
        last = self.__dict__.get("_inner_cache")
        if last is not None and last.theta.shape == theta.shape and np.array_equal(
            last.theta, theta
        ):
            return last
        sol = self._solve(theta, None) if self.loss is None else self._irls(theta)
        object.__setattr__(self, "_inner_cache", sol)
        return sol

    def _inverse(self, G: np.ndarray) -> np.ndarray:
        """``G_i^{-1}`` of every column (pseudo-inverse if one is singular; 0 without data)."""
        empty = np.diff(self.col_ptr) == 0
        G[empty] = np.eye(self.k1)  # no data: z_i = 0 (Ginv_i = 0 below)
        try:
            Ginv = np.linalg.inv(G)
            if not np.all(np.isfinite(Ginv)):
                raise np.linalg.LinAlgError("non-finite inverse")
        except np.linalg.LinAlgError:
            Ginv = np.linalg.pinv(G, hermitian=True)
        Ginv[empty] = 0.0
        return Ginv

    def _solution(self, theta: np.ndarray, Z: np.ndarray, Ginv: np.ndarray,
                  omega: np.ndarray | None) -> InnerSolution:
        P, b = self.split(theta)
        k = self.rank
        x = self.problem.pack(P, Z[:, :k].T, b, Z[:, k] if self.problem.biases else None)
        return InnerSolution(
            theta=np.array(theta, copy=True), P=np.array(P), b=None if b is None else np.array(b),
            Z=Z, Ginv=Ginv, x=x, residual=self.problem.residual(x), omega=omega,
        )

    def _solve(self, theta: np.ndarray, omega: np.ndarray | None) -> InnerSolution:
        """The (weighted) least-squares inner solution at ``theta``."""
        G, h = self.gram(theta, omega)
        Ginv = self._inverse(G)
        return self._solution(theta, np.einsum("mij,mj->mi", Ginv, h), Ginv, omega)

    def _robust_terms(self, theta: np.ndarray, Z: np.ndarray) -> tuple[np.ndarray, ...]:
        """At ``(theta, Z)``: every column's robust cost, the IRLS weights ``rho'`` and the
        Newton weights ``rho' + 2 z rho''`` (floored at :data:`_NEWTON_FLOOR` ``rho'``, so
        that a column with few inliers keeps a regular Newton matrix) of the data rows."""
        assert self.loss is not None
        P, b = self.split(theta)
        pr = self.problem
        y = pr.ratings.values - (pr.mu + b[self.rows] if b is not None else 0.0)
        e = self.d * (np.einsum("tk,tk->t", self._features(P)[self.rows], Z[self.cols]) - y)
        z = e**2 / self.f_scale**2
        rho = np.asarray(self.loss.rho(z))
        col_cost = np.bincount(self.cols, weights=rho[0], minlength=self.n_cols)
        omega = np.maximum(rho[1], 0.0)
        return col_cost, omega, np.maximum(rho[1] + 2.0 * z * rho[2], _NEWTON_FLOOR * omega)

    def _irls(self, theta: np.ndarray) -> InnerSolution:
        """The robust inner solution: from least squares, per column the best of the IRLS
        step (``G_omega^{-1} h_omega``: monotone for a concave ``rho``) and the Newton step
        (weights ``rho' + 2 z rho''``) times 1, 1/2, 1/4, 1/8, until ``Z`` moves by less
        than :data:`IRLS_TOL` (relative). Its ``omega`` are the weights at the returned
        ``Z``. Each column starts from the better of its least-squares solution and the
        last inner solution's (a warm start: the same minimizer for a convex ``rho``)."""
        Z = self._solve(theta, None).Z
        last = self.__dict__.get("_inner_cache")
        if last is not None and last.Z.shape == Z.shape:
            warm = self._robust_terms(theta, last.Z)[0] < self._robust_terms(theta, Z)[0]
            Z[warm] = last.Z[warm]
        _, omega, hess = self._robust_terms(theta, Z)
        for _ in range(IRLS_MAX_ITER):
            G, h = self.gram(theta, omega)
            grad = np.einsum("mij,mj->mi", G, Z) - h
            Z_new = np.einsum("mij,mj->mi", self._inverse(G), h)
            best = self._robust_terms(theta, Z_new)[0]
            newton = np.einsum("mij,mj->mi", self._inverse(self.gram(theta, hess)[0]), grad)
            for step in (1.0, 0.5, 0.25, 0.125):
                trial = Z - step * newton
                cost = self._robust_terms(theta, trial)[0]
                better = np.isfinite(cost) & (cost < best)
                Z_new[better], best[better] = trial[better], cost[better]
            change = float(np.max(np.abs(Z_new - Z), initial=0.0))
            Z = Z_new
            _, omega, hess = self._robust_terms(theta, Z)
            if change <= IRLS_TOL * max(float(np.max(np.abs(Z), initial=0.0)), 1e-300):
                break
        return self._solution(theta, Z, self._inverse(self.gram(theta, omega)[0]), omega)

    def cost_of(self, r: np.ndarray) -> float:
        """The cost of a residual vector: ``0.5 ||r||^2``, or the loss's (scipy's cost)."""
        if self.loss is None:
            return 0.5 * float(r @ r)
        return self.loss.cost(r, self.f_scale)

    def weighted(self, theta: np.ndarray) -> ReducedProblem:
        """The least-squares reduced problem with the data weights times the IRLS weights
        ``omega`` at ``theta`` (robust inner solve), its inner solution at ``theta`` set: the
        residual scaled by ``sqrt(omega)``, so its gradient ``J_theta^T r`` is the robust
        reduced cost's and its Kaufman normal matrix the IRLS Gauss-Newton model."""
        sol = self.inner(theta)
        if sol.omega is None:
            return self
        N = self.problem.ratings.nnz
        root = np.sqrt(sol.omega)
        out = dataclasses.replace(self, d=self.d * root, w=self.w * sol.omega, loss=None)
        residual = sol.residual.copy()
        residual[:N] *= root
        object.__setattr__(out, "_inner_cache", dataclasses.replace(sol, residual=residual))
        for key in ("_col_inc", "_row_inc"):
            if key in self.__dict__:
                object.__setattr__(out, key, self.__dict__[key])
        return out

    def residual(self, theta: np.ndarray) -> np.ndarray:
        """The reduced residual ``r(theta) = F(theta, z*(theta))``, shape (n_residuals,)."""
        return self.inner(theta).residual.copy()

    def cost(self, theta: np.ndarray) -> float:
        """The reduced cost at ``theta`` (the loss's, with a robust inner solve)."""
        return self.cost_of(self.inner(theta).residual)

    def joint_x(self, theta: np.ndarray) -> np.ndarray:
        """The joint decision vector ``x`` at ``(theta, z*(theta))``."""
        return self.inner(theta).x.copy()

    # ------------------------------------------------------------------ index helpers
    def _theta_columns(self) -> np.ndarray:
        """Columns of the joint x that hold theta, in theta's order."""
        n, m, k = self.n_rows, self.n_cols, self.rank
        idx = [np.arange(n * k)]
        if self.problem.biases:
            idx.append(n * k + k * m + np.arange(n))
        return np.concatenate(idx)

    def _z_columns(self) -> np.ndarray:
        """Columns of the joint x that hold z, in block order (column i: q_i then c_i)."""
        n, m, k, k1 = self.n_rows, self.n_cols, self.rank, self.k1
        out = np.empty((m, k1), dtype=np.int64)
        out[:, :k] = n * k + np.arange(k)[None, :] * m + np.arange(m)[:, None]
        if self.problem.biases:
            out[:, k] = n * k + k * m + n + np.arange(m)
        return out.ravel()

    def _z_rows(self) -> np.ndarray | None:
        """Residual rows of z's regularization, (m, k1) in block order, or None."""
        if not self.problem.has_reg:
            return None
        return self.problem.ratings.nnz + self._z_columns().reshape(self.n_cols, self.k1)

    def _theta_reg(self) -> np.ndarray | None:
        """Regularization scale of every theta entry (None under 'none')."""
        pr = self.problem
        if not pr.has_reg:
            return None
        assert pr.P_scale is not None
        parts = [np.repeat(pr.P_scale, self.rank)]
        if pr.biases:
            assert pr.row_bias_scale is not None
            parts.append(pr.row_bias_scale)
        return np.concatenate(parts)

    # ------------------------------------------------------------------ Jacobians
    def _check_kind(self, kind: str) -> bool:
        check_choice("jacobian", kind, VARPRO_JACOBIANS)
        return kind == "full"

    def _h_matrix(self, sol: InnerSolution) -> sp.csr_matrix:
        """H of the module docstring as a sparse (m*k1, n_params) matrix."""
        k, k1 = self.rank, self.k1
        N = self.problem.ratings.nnz
        de = self.d * sol.residual[:N]
        ar = np.arange(k)
        r_idx = (self.cols[:, None] * k1 + ar).ravel()
        c_idx = (self.rows[:, None] * k + ar).ravel()
        vals = np.repeat(de, k)
        return sp.csr_matrix(
            (vals, (r_idx, c_idx)), shape=(self.n_cols * k1, self.n_params)
        )

    def _blocks(self, theta: np.ndarray, full: bool) -> tuple[Any, Any, Any]:
        sol = self.inner(theta)
        J = self.problem.jacobian(sol.x).tocsc()
        J_theta = J[:, self._theta_columns()].tocsr()
        J_z = J[:, self._z_columns()].tocsr()
        Ginv_blk = sp.block_diag(list(sol.Ginv), format="csr")
        T = J_z.T @ J_theta
        if full:
            T = T + self._h_matrix(sol)
        return J_theta, J_z, Ginv_blk @ T

    def jacobian(self, theta: np.ndarray, kind: str = "kaufman") -> sp.csr_matrix:
        """The reduced Jacobian as a sparse matrix, shape (n_residuals, n_params).

        ``kind='kaufman'`` or ``'full'`` (see the module docstring); built by sparse algebra
        (it has about :math:`\\sum_i n_i^2 (k+1)` nonzeros: for small problems and tests).
        """
        full = self._check_kind(kind)
        J_theta, J_z, T = self._blocks(theta, full)
        return sp.csr_matrix(J_theta - J_z @ T)

    def dense_jacobian(self, theta: np.ndarray, kind: str = "kaufman") -> np.ndarray:
        """The reduced Jacobian as a dense array (for ``tr_solver='exact'`` and ``'lm'``)."""
        full = self._check_kind(kind)
        sol = self.inner(theta)
        J_theta, _, T = self._blocks(theta, full)
        T = np.asarray(T.toarray())
        out = J_theta.toarray()
        k1 = self.k1
        A = self._features(sol.P)
        for i in range(self.n_cols):
            t = self.ent[self.col_ptr[i] : self.col_ptr[i + 1]]
            if t.size:
                out[t] -= (self.d[t, None] * A[self.rows[t]]) @ T[i * k1 : (i + 1) * k1]
        z_rows = self._z_rows()
        if z_rows is not None:
            Tz = T.reshape(self.n_cols, k1, -1)
            out[z_rows.ravel()] -= (self.lsq[:, :, None] * Tz).reshape(-1, T.shape[1])
        return out

    def operator(
        self, theta: np.ndarray, kind: str = "kaufman", *, backend: str | None = None
    ) -> LinearOperator:
        """Matrix-free reduced Jacobian at ``theta``: products in :math:`O(Nk + mk_1^2)`.

        ``backend`` None uses the problem's (compiled kernels when numba imports); ``'numpy'``
        forces the numpy products (the kernels' oracle).
        """
        full = self._check_kind(kind)
        sol = self.inner(theta)
        kernels = self.kernels if backend is None else _resolve_backend(backend)
        lin = self._linearize(sol, full)
        matvec = self._matvec(lin, kernels)
        rmatvec = self._rmatvec(lin, kernels)

        def matmat(V: np.ndarray) -> np.ndarray:
            return np.column_stack([matvec(V[:, j]) for j in range(V.shape[1])])

        def rmatmat(Y: np.ndarray) -> np.ndarray:
            return np.column_stack([rmatvec(Y[:, j]) for j in range(Y.shape[1])])

        return LinearOperator(
            (self.n_residuals, self.n_params), matvec=matvec, rmatvec=rmatvec, matmat=matmat,
            rmatmat=rmatmat, dtype=np.float64,
        )

    def _linearize(self, sol: InnerSolution, full: bool) -> _Linearization:
        """The arrays the operator's products capture at ``sol`` (contiguous for the kernels)."""
        N = self.problem.ratings.nnz
        P = np.ascontiguousarray(sol.P)
        Qt = np.ascontiguousarray(sol.Z[:, : self.rank])
        e = np.ascontiguousarray(sol.residual[:N])
        return _Linearization(
            P=P, Qt=Qt, Ginv=np.ascontiguousarray(sol.Ginv), e=e, full=full,
            theta_reg=self._theta_reg(), z_rows=self._z_rows(),
            A_rows=self._features(P)[self.rows], Qc=Qt[self.cols], de=self.d * e,
        )

    def _matvec(
        self, lin: _Linearization, kernels: dict[str, Callable[..., Any]] | None
    ) -> Callable[[np.ndarray], np.ndarray]:
        """``v -> J v`` at ``lin``: the compiled kernel, or the numpy products."""
        m, k, k1, N = self.n_cols, self.rank, self.k1, self.problem.ratings.nnz
        n_res, biases, full = self.n_residuals, self.problem.biases, lin.full
        P, Qt, Ginv, e, lsq = lin.P, lin.Qt, lin.Ginv, lin.e, self.lsq
        d, rows, cols = self.d, self.rows, self.cols
        A_rows, Qc, de = lin.A_rows, lin.Qc, lin.de
        theta_reg, z_rows = lin.theta_reg, lin.z_rows
        empty = np.zeros(0)

        def matvec(v: np.ndarray) -> np.ndarray:
            v = np.ascontiguousarray(np.ravel(v), dtype=np.float64)
            dP, db = self.split(v)
            out = np.zeros(n_res)
            if kernels is not None:
                out_z = np.empty((m, k1))
                kernels["matvec"](
                    self.col_ptr, self.ent, rows, d, e, P, Qt, Ginv, lsq,
                    np.ascontiguousarray(dP), empty if db is None else db, biases, full,
                    out[:N], out_z,
                )
            else:
                jv = np.einsum("tk,tk->t", dP[rows], Qc)
                if db is not None:
                    jv += db[rows]
                jv *= d
                hv = (d * jv)[:, None] * A_rows
                if full:
                    hv[:, :k] += de[:, None] * dP[rows]
                s = np.einsum("mij,mj->mi", Ginv, self._col_sum(hv))
                out[:N] = jv - d * np.einsum("tk,tk->t", A_rows, s[cols])
                out_z = -lsq * s
            if theta_reg is not None:
                assert z_rows is not None
                out[self._theta_rows()] = theta_reg * v
                out[z_rows.ravel()] = out_z.ravel()
            return out

        return matvec

    def _rmatvec(
        self, lin: _Linearization, kernels: dict[str, Callable[..., Any]] | None
    ) -> Callable[[np.ndarray], np.ndarray]:
        """``y -> J^T y`` at ``lin``: the compiled kernel, or the numpy products."""
        n, m, k, k1, N = self.n_rows, self.n_cols, self.rank, self.k1, self.problem.ratings.nnz
        biases, full = self.problem.biases, lin.full
        P, Qt, Ginv, e, lsq = lin.P, lin.Qt, lin.Ginv, lin.e, self.lsq
        d, rows, cols = self.d, self.rows, self.cols
        A_rows, Qc, de = lin.A_rows, lin.Qc, lin.de
        theta_reg, z_rows = lin.theta_reg, lin.z_rows
        empty = np.zeros(0)
        A_row_inc = self._row_incidence()

        def rmatvec(y: np.ndarray) -> np.ndarray:
            y = np.ascontiguousarray(np.ravel(y), dtype=np.float64)
            y_data = y[:N]
            y_z = y[z_rows] if z_rows is not None else np.zeros((m, k1))
            if kernels is not None:
                gP = np.zeros((n, k))
                gb = np.zeros(n) if biases else empty
                kernels["rmatvec"](
                    self.col_ptr, self.ent, rows, d, e, P, Qt, Ginv, lsq, y_data,
                    np.ascontiguousarray(y_z), biases, full, gP, gb,
                )
            else:
                g = self._col_sum((d * y_data)[:, None] * A_rows) + lsq * y_z
                s = np.einsum("mij,mj->mi", Ginv, g)
                yt = d * (y_data - d * np.einsum("tk,tk->t", A_rows, s[cols]))
                gP = np.asarray(A_row_inc @ (yt[:, None] * Qc))
                if full:
                    gP -= np.asarray(A_row_inc @ (de[:, None] * s[cols][:, :k]))
                gb = np.asarray(A_row_inc @ yt) if biases else empty
            out = np.concatenate([gP.ravel(), gb]) if biases else gP.ravel().copy()
            if theta_reg is not None:
                out += theta_reg * y[self._theta_rows()]
            return out

        return rmatvec

    def column_norms(self, theta: np.ndarray) -> np.ndarray:
        """Column norms of the Kaufman Jacobian in :math:`O(Nk_1^2)`, without forming it.

        :math:`\\|J_K e_j\\|^2 = \\|J_\\theta e_j\\|^2 - (J_\\theta e_j)^\\top J_z G^{-1}
        J_z^\\top J_\\theta e_j` (the projection is idempotent); for :math:`j = (u, l)` the
        second term is :math:`\\sum_{t: u_t = u} w_t^2 q_{i_t l}^2\\, a_u^\\top G_{i_t}^{-1}
        a_u` (with :math:`q \\to 1` for the bias :math:`b_u`).
        """
        sol = self.inner(theta)
        k = self.rank
        A = self._features(sol.P)[self.rows]  # (N, k1)
        quad = np.einsum("ti,tij,tj->t", A, sol.Ginv[self.cols], A)
        F = sol.Z[self.cols][:, :k]  # q_{i_t}, (N, k)
        if self.problem.biases:
            F = np.hstack([F, np.ones((len(self.rows), 1))])
        inc = self._row_incidence()
        sq = np.asarray(inc @ (self.w[:, None] * F**2)) - np.asarray(
            inc @ ((self.w**2 * quad)[:, None] * F**2)
        )
        out = np.empty(self.n_params)
        n = self.n_rows
        out[: n * k] = sq[:, :k].ravel()
        if self.problem.biases:
            out[n * k :] = sq[:, k]
        reg = self._theta_reg()
        if reg is not None:
            out += reg**2
        return np.sqrt(np.maximum(out, 0.0))

    def _theta_rows(self) -> np.ndarray:
        """Residual rows of theta's regularization, in theta's order."""
        return self.problem.ratings.nnz + self._theta_columns()

    def _col_sum(self, X: np.ndarray) -> np.ndarray:
        """Sum the rows of ``X`` (one per entry) per column: shape (m, X.shape[1])."""
        inc = self.__dict__.get("_col_inc")
        if inc is None:
            N = len(self.cols)
            inc = sp.csr_matrix(
                (np.ones(N), (self.cols, np.arange(N))), shape=(self.n_cols, N)
            )
            object.__setattr__(self, "_col_inc", inc)
        return np.asarray(inc @ X)

    def _row_incidence(self) -> sp.csr_matrix:
        inc = self.__dict__.get("_row_inc")
        if inc is None:
            N = len(self.rows)
            inc = sp.csr_matrix(
                (np.ones(N), (self.rows, np.arange(N))), shape=(self.n_rows, N)
            )
            object.__setattr__(self, "_row_inc", inc)
        return inc


def transpose_ratings(ratings: Ratings) -> Ratings:
    """The ratings of the transposed matrix (rows and columns, and their ids, swapped)."""
    return Ratings(
        ratings.cols, ratings.rows, ratings.values, (ratings.shape[1], ratings.shape[0]),
        weights=ratings.weights, row_ids=ratings.col_ids, col_ids=ratings.row_ids,
    )


def build_reduced(
    ratings: Ratings,
    rank: int,
    *,
    formulation: str = "none",
    reg: float = 0.0,
    reg_bias: float | None = None,
    count_scaled: bool = False,
    biases: bool = False,
    backend: str = "auto",
    loss: Loss | None = None,
    f_scale: float = 1.0,
) -> ReducedProblem:
    """The reduced problem eliminating ``Q`` (and the column biases) of ``ratings``; with a
    ``loss`` row (not the linear one), its inner problem is the robust one (IRLS).

    Raises
    ------
    ValueError
        For ``formulation='prior'`` (its anchor on ``Q`` has no closed-form elimination here)
        and for columns with fewer observations than ``rank`` (+1 with biases) when their
        normal equations have no ridge.
    """
    check_choice("formulation", formulation, ("l2", "none"))
    problem = build_problem(
        ratings, rank, formulation=formulation, reg=reg, reg_bias=reg_bias,
        count_scaled=count_scaled, biases=biases,
    )
    if loss is not None and loss.name != "linear" and problem.has_reg:
        raise ValueError(
            f"a robust inner solve (loss={loss.name!r}) needs formulation='none' (or reg=0): "
            "the regularization rows would be reweighted too; got formulation="
            f"{formulation!r}, reg={reg!r}. Use method='trf' (least-squares inner solves).")
    k, m = problem.rank, problem.n_cols
    k1 = k + (1 if biases else 0)
    lsq = np.zeros((m, k1))
    if problem.has_reg:
        assert problem.Q_scale is not None
        lsq[:, :k] = problem.Q_scale[:, None]
        if biases:
            assert problem.col_bias_scale is not None
            lsq[:, k] = problem.col_bias_scale
    counts = ratings.col_counts()
    # a column without data is in no residual (its ridge rows, if any, are 0 at z_i = 0):
    # z_i = 0 is its minimizer under every formulation, as in the other solvers
    bad = np.flatnonzero((counts > 0) & (counts < k1) & np.any(lsq == 0, axis=1))
    if bad.size:
        shown = ", ".join(str(int(i)) for i in bad[:10]) + (" ..." if bad.size > 10 else "")
        raise ValueError(
            f"{bad.size} eliminated column(s) have fewer than {k1} observations (rank {k}"
            f"{' + the bias' if biases else ''}), so their least-squares solution is not "
            f"unique: columns {shown} (counts {', '.join(str(int(counts[i])) for i in bad[:10])})"
            ". Use formulation='l2' with reg > 0 (a ridge), eliminate the other factor, or "
            "drop those columns."
        )
    rows = np.ascontiguousarray(ratings.rows, dtype=np.int64)
    cols = np.ascontiguousarray(ratings.cols, dtype=np.int64)
    ent = np.argsort(cols, kind="stable").astype(np.int64)
    col_ptr = np.searchsorted(cols[ent], np.arange(m + 1)).astype(np.int64)
    d = np.ascontiguousarray(problem.data_scale, dtype=np.float64)
    return ReducedProblem(
        problem=problem, col_ptr=col_ptr, ent=ent, rows=rows, cols=cols, d=d, w=d * d,
        lsq=lsq, kernels=_resolve_backend(backend),
        loss=None if loss is None or loss.name == "linear" else loss, f_scale=float(f_scale),
    )
