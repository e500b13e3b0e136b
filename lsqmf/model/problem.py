r"""Matrix factorization with missing data as a nonlinear least-squares problem.

Model
-----
An ``(n, m)`` matrix is observed at the entries :math:`\Omega = \{(u_t, i_t)\}_{t=1}^{N}`, in
row-major order, with values :math:`v_t` and optional weights :math:`w_t \ge 0`. The model
predicts

.. math:: \hat r_{ui} = \mu + b_u + c_i + p_u^\top q_i,

with ``P`` of shape ``(n, k)`` (row :math:`p_u`), ``Q`` of shape ``(k, m)`` (column
:math:`q_i`), and, when biases are fitted, the global mean :math:`\mu` of the training values
(fixed, not optimized) and biases :math:`b \in R^n`, :math:`c \in R^m` (otherwise all three are
zero).

Decision vector
---------------
``x = [vec(P) row-major, vec(Q) row-major, b, c]`` of length :math:`nk + km (+ n + m)`:
``P[u, l]`` is ``x[u*k + l]``, ``Q[l, i]`` is ``x[n*k + l*m + i]``, ``b[u]`` is
``x[n*k + k*m + u]`` and ``c[i]`` is ``x[n*k + k*m + n + i]``.

Residual
--------
Every formulation is an anchored ridge problem with per-row scales:

.. math::

    r(x) = \big[\; d_t(\hat r_{u_t i_t} - v_t)\ (t = 1..N);\;
                  s_u (P_{ul} - A_{ul});\; \sigma_i (Q_{li} - B_{li});\;
                  \beta_u b_u;\; \gamma_i c_i \;\big]

and ``least_squares`` minimizes :math:`\tfrac12 \sum \rho(r_j^2)` (:math:`\rho(z) = z` for the
linear loss). The formulations fill in the scales:

- ``prior``: :math:`d_t = \alpha\sqrt{w_t}`; factor rows :math:`s_u = \sigma_i = \beta`
  with anchors ``A = P0``, ``B = Q0``; bias rows :math:`\beta` (anchor 0).
- ``l2``: :math:`d_t = \sqrt{w_t}`; factor rows :math:`s_u = \sqrt{\lambda c_u}`,
  :math:`\sigma_i = \sqrt{\lambda c_i}` with anchor 0; bias rows
  :math:`\sqrt{\lambda_b c_u}`, :math:`\sqrt{\lambda_b c_i}`.
- ``none``: :math:`d_t = \sqrt{w_t}`; no regularization rows.

where :math:`c_u` is the number of observed entries of row ``u`` when ``count_scaled`` (the
weighted-lambda regularization of ALS-WR) and 1 otherwise (likewise per column). So ``l2``
minimizes :math:`\tfrac12[\sum_t w_t e_t^2 + \lambda(\|P\|_F^2 + \|Q\|_F^2) +
\lambda_b(\|b\|^2 + \|c\|^2)]`, and ``prior`` is the seed formulation
:math:`\alpha(\hat P\hat Q - R)_\Omega`, :math:`\beta\,\mathrm{vec}(\hat P - P)`,
:math:`\beta\,\mathrm{vec}(\hat Q - Q)`.

Jacobian
--------
The data block has Kronecker structure. With row-major ``vec``,
:math:`\partial\,\mathrm{vec}(PQ)/\partial\,\mathrm{vec}(P) = I_n \otimes Q^\top` and
:math:`\partial\,\mathrm{vec}(PQ)/\partial\,\mathrm{vec}(Q) = P \otimes I_m`; the data block is
:math:`D\,[\,I_n \otimes Q^\top,\ P \otimes I_m\,]` restricted to the rows
:math:`u m + i` of the observed entries (:math:`D = \mathrm{diag}(d)`), plus a column of
:math:`d_t` at :math:`b_{u_t}` and at :math:`c_{i_t}`. Row ``t`` therefore has exactly
:math:`2k (+2)` nonzeros,

.. math::

    \partial r_t / \partial P_{u_t l} = d_t Q_{l i_t},\quad
    \partial r_t / \partial Q_{l i_t} = d_t P_{u_t l},\quad
    \partial r_t / \partial b_{u_t} = \partial r_t / \partial c_{i_t} = d_t,

in increasing column order, and the regularization rows are a diagonal. :meth:`Problem.jacobian`
builds this CSR matrix straight from the observed indices in :math:`O(Nk)` time and memory: its
index arrays are fixed at construction and only its values depend on ``x``.
:func:`kron_jacobian` is the literal Kronecker-product construction (an oracle for small sizes:
it forms :math:`nm` rows), and :meth:`Problem.operator` is the matrix-free
``LinearOperator`` with :math:`Jv` and :math:`J^\top y` in :math:`O(Nk)`:

.. math::

    (Jv)_t = d_t\,(\delta p_{u_t}^\top q_{i_t} + p_{u_t}^\top \delta q_{i_t}
              [+ \delta b_{u_t} + \delta c_{i_t}]),\qquad
    (J^\top y)_{p_u} = \sum_{t: u_t = u} d_t y_t\, q_{i_t},\quad
    (J^\top y)_{q_i} = \sum_{t: i_t = i} d_t y_t\, p_{u_t}

(plus the diagonal regularization block). With the compiled backend (the default; numpy is
the oracle, ``backend='numpy'``) these sums run in numba kernels that
read the factors in place, in parallel over entries (:math:`Jv`) or over rows and columns
(:math:`J^\top y`, each output row summed by one thread in a fixed order). That is several
times cheaper than a product with the stored CSR matrix, whose :math:`2k` values and column
indices per entry must be streamed from memory.

Nothing here allocates an ``n x m`` array except :func:`kron_jacobian`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import scipy.sparse as sp

from .._validation import check_array, check_choice, check_float, check_int
from ..data.ratings import Ratings

if TYPE_CHECKING:  # imported where used: scipy.sparse.linalg costs ~0.06 s of start-up
    from scipy.sparse.linalg import LinearOperator

__all__ = ["FORMULATIONS", "Problem", "build_problem", "kron_jacobian"]

#: Objective formulations; see the module docstring.
FORMULATIONS = ("prior", "l2", "none")

#: ``d`` of :meth:`Problem.data_sse` without scales (read-only, as ``data_scale`` is: the
#: compiled kernel is typed once for both).
_UNSCALED = np.empty(0)
_UNSCALED.setflags(write=False)


@dataclass(frozen=True, eq=False)
class Problem:
    """A factorization problem: the observed data, the layout of ``x`` and the residual scales.

    Build it with :func:`build_problem`. All arrays are read-only.

    Attributes
    ----------
    ratings : Ratings
    rank : int
    biases : bool
        Whether ``x`` holds row and column biases.
    mu : float
        Global offset (the weighted mean of the training values with biases, else 0).
    data_scale : ndarray, shape (nnz,)
        :math:`d_t`.
    P_scale : ndarray, shape (n_rows,) ; Q_scale : ndarray, shape (n_cols,)
        Scale of the regularization row of each factor entry, per row of ``P`` / column of
        ``Q`` (None when the formulation has no regularization rows).
    row_bias_scale, col_bias_scale : ndarray or None
        Likewise for the biases.
    P_anchor : ndarray, shape (n_rows, rank) or None ; Q_anchor : (rank, n_cols) or None
        Anchors of the factor rows (None means 0).
    formulation : str
    """

    ratings: Ratings
    rank: int
    biases: bool
    mu: float
    data_scale: np.ndarray
    P_scale: np.ndarray | None
    Q_scale: np.ndarray | None
    row_bias_scale: np.ndarray | None
    col_bias_scale: np.ndarray | None
    P_anchor: np.ndarray | None
    Q_anchor: np.ndarray | None
    formulation: str

    # ------------------------------------------------------------------ layout
    @property
    def n_rows(self) -> int:
        return self.ratings.shape[0]

    @property
    def n_cols(self) -> int:
        return self.ratings.shape[1]

    @property
    def n_params(self) -> int:
        """Length of ``x``."""
        n, m, k = self.n_rows, self.n_cols, self.rank
        return n * k + k * m + (n + m if self.biases else 0)

    @property
    def has_reg(self) -> bool:
        """Whether the residual has regularization rows."""
        return self.P_scale is not None

    @property
    def n_residuals(self) -> int:
        """Length of ``r(x)``."""
        return self.ratings.nnz + (self.n_params if self.has_reg else 0)

    def pack(
        self,
        P: np.ndarray,
        Q: np.ndarray,
        row_bias: np.ndarray | None = None,
        col_bias: np.ndarray | None = None,
    ) -> np.ndarray:
        """The decision vector ``x`` from factors (and biases; zeros when omitted)."""
        parts = [np.asarray(P, dtype=float).ravel(), np.asarray(Q, dtype=float).ravel()]
        if self.biases:
            parts.append(np.zeros(self.n_rows) if row_bias is None else np.ravel(row_bias))
            parts.append(np.zeros(self.n_cols) if col_bias is None else np.ravel(col_bias))
        return np.concatenate(parts).astype(np.float64, copy=False)

    def unpack(
        self, x: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Views ``(P, Q, row_bias, col_bias)`` into ``x`` (biases None without biases)."""
        n, m, k = self.n_rows, self.n_cols, self.rank
        P = x[: n * k].reshape(n, k)
        Q = x[n * k : n * k + k * m].reshape(k, m)
        if not self.biases:
            return P, Q, None, None
        o = n * k + k * m
        return P, Q, x[o : o + n], x[o + n : o + n + m]

    # ------------------------------------------------------------------ residual and cost
    def predict_observed(self, x: np.ndarray) -> np.ndarray:
        """Model prediction at every observed entry, shape (nnz,)."""
        P, Q, b, c = self.unpack(x)
        rows, cols = self.ratings.rows, self.ratings.cols
        pred = np.einsum("tk,kt->t", P[rows], Q[:, cols])
        if b is not None and c is not None:
            pred += self.mu + b[rows] + c[cols]
        return pred

    def rms(self, x: np.ndarray, *, backend: str = "numpy") -> float:
        """Root mean square of the model error on the observed entries (unweighted, no
        regularization): ``sqrt(mean((prediction - value)**2))``, by :meth:`data_sse`."""
        nnz = self.ratings.nnz
        return float(np.sqrt(self.data_sse(x, scaled=False, backend=backend) / nnz)) if nnz \
            else float("nan")

    def data_sse(self, x: np.ndarray, *, scaled: bool = True, backend: str = "numpy") -> float:
        """The data term's squared norm, :math:`\\sum_t (d_t(\\hat r_t - v_t))^2`, in one fused
        pass over the entries (``scaled=False``: every :math:`d_t = 1`).

        Never forms an ``(nnz, rank)`` array: the kernel ``residual_sse`` of
        :mod:`lsqmf.kernels.core` (``backend='compiled'``, chunks of entries in parallel) or its
        numpy oracle (``'numpy'``, vectorized over chunks of the entries); ``'auto'``: compiled
        when numba imports. The two sum in the same chunks, so they agree to rounding.
        """
        from ..kernels.registry import get_kernel

        kernel = get_kernel("residual_sse", backend)
        P, Q, b, c = self.unpack(np.asarray(x, dtype=np.float64))
        r = self.ratings
        empty = np.empty(0)
        d = self.data_scale if scaled else _UNSCALED
        return float(kernel(
            r.rows, r.cols, r.values, d, P, np.ascontiguousarray(Q.T),
            empty if b is None else b, empty if c is None else c, float(self.mu),
            self.biases, -np.inf, np.inf,
        ))

    def residual(self, x: np.ndarray) -> np.ndarray:
        """The residual vector ``r(x)``, shape (n_residuals,)."""
        data = self.data_scale * (self.predict_observed(x) - self.ratings.values)
        if not self.has_reg:
            return data
        return np.concatenate([data, self._reg_residual(x)])

    def _reg_residual(self, x: np.ndarray) -> np.ndarray:
        P, Q, b, c = self.unpack(x)
        assert self.P_scale is not None and self.Q_scale is not None
        dP = P if self.P_anchor is None else P - self.P_anchor
        dQ = Q if self.Q_anchor is None else Q - self.Q_anchor
        parts = [(self.P_scale[:, None] * dP).ravel(), (self.Q_scale[None, :] * dQ).ravel()]
        if b is not None and c is not None:
            assert self.row_bias_scale is not None and self.col_bias_scale is not None
            parts += [self.row_bias_scale * b, self.col_bias_scale * c]
        return np.concatenate(parts)

    def cost(self, x: np.ndarray, *, backend: str = "numpy") -> float:
        """``0.5 * ||r(x)||^2``: the objective every lsqmf solver reports (linear loss).

        The data term by :meth:`data_sse` (one fused pass over the entries, by ``backend``),
        the regularization term from the factors: no residual vector and no ``(nnz, rank)``
        array is formed. Agrees with ``0.5 * r @ r`` to rounding.
        """
        total = self.data_sse(x, backend=backend)
        if self.has_reg:
            reg = self._reg_residual(np.asarray(x, dtype=np.float64))
            total += float(reg @ reg)
        return 0.5 * total

    def gradient(self, x: np.ndarray, *, backend: str = "auto") -> np.ndarray:
        """Gradient of :meth:`cost`, ``J(x)^T r(x)``, in :math:`O(Nk)` (products by
        ``backend``, as in :meth:`operator`)."""
        return self.operator(x, backend=backend).rmatvec(self.residual(x))

    # ------------------------------------------------------------------ Jacobian
    def _reg_diagonal(self) -> np.ndarray:
        """Diagonal of the regularization block, one entry per parameter."""
        assert self.P_scale is not None and self.Q_scale is not None
        k = self.rank
        parts = [np.repeat(self.P_scale, k), np.tile(self.Q_scale, k)]
        if self.biases:
            assert self.row_bias_scale is not None and self.col_bias_scale is not None
            parts += [self.row_bias_scale, self.col_bias_scale]
        return np.concatenate(parts)

    def _pattern(self) -> tuple[np.ndarray, np.ndarray]:
        """CSR ``indptr`` and ``indices`` of the Jacobian (cached: they do not depend on x)."""
        cached = self.__dict__.get("_pattern_cache")
        if cached is not None:
            return cached
        n, m, k = self.n_rows, self.n_cols, self.rank
        rows, cols = self.ratings.rows, self.ratings.cols
        N = self.ratings.nnz
        per_row = 2 * k + (2 if self.biases else 0)
        n_idx = N * per_row + (self.n_params if self.has_reg else 0)
        itype = np.int32 if max(n_idx, self.n_params) < np.iinfo(np.int32).max else np.int64
        ar: np.ndarray = np.arange(k, dtype=itype)
        r_idx: np.ndarray = rows.astype(itype)[:, None]
        c_idx: np.ndarray = cols.astype(itype)[:, None]
        blocks = [r_idx * k + ar, n * k + ar * m + c_idx]
        if self.biases:
            o = n * k + k * m
            blocks += [o + r_idx, o + n + c_idx]
        data_indices = np.hstack(blocks).ravel()
        indptr = np.arange(N + 1, dtype=itype) * per_row
        if self.has_reg:
            indices = np.concatenate([data_indices, np.arange(self.n_params, dtype=itype)])
            reg_ptr = indptr[-1] + np.arange(1, self.n_params + 1, dtype=itype)
            indptr = np.concatenate([indptr, reg_ptr])
        else:
            indices = data_indices
        object.__setattr__(self, "_pattern_cache", (indptr, indices))
        return indptr, indices

    def _jacobian_data(self, x: np.ndarray) -> np.ndarray:
        P, Q, _, _ = self.unpack(x)
        rows, cols = self.ratings.rows, self.ratings.cols
        d = self.data_scale[:, None]
        blocks = [d * Q[:, cols].T, d * P[rows]]
        if self.biases:
            blocks += [d, d]
        data = np.hstack(blocks).ravel()
        if self.has_reg:
            data = np.concatenate([data, self._reg_diagonal()])
        return data

    def jacobian(self, x: np.ndarray) -> sp.csr_matrix:
        """The analytic Jacobian as CSR, shape (n_residuals, n_params), built in O(nnz*rank)."""
        indptr, indices = self._pattern()
        return sp.csr_matrix(
            (self._jacobian_data(x), indices, indptr), shape=(self.n_residuals, self.n_params)
        )

    def jac_sparsity(self) -> sp.csr_matrix:
        """The Jacobian's sparsity pattern (ones at structural nonzeros)."""
        indptr, indices = self._pattern()
        ones = np.ones(len(indices), dtype=np.int8)
        return sp.csr_matrix((ones, indices, indptr), shape=(self.n_residuals, self.n_params))

    def jacobian_nnz(self) -> int:
        """Structural nonzeros of the Jacobian: ``nnz*(2*rank [+2]) [+ n_params]``."""
        per_row = 2 * self.rank + (2 if self.biases else 0)
        return self.ratings.nnz * per_row + (self.n_params if self.has_reg else 0)

    def _incidence(self) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """Sparse ``(n_rows, nnz)`` and ``(n_cols, nnz)`` 0/1 matrices that sum over entries."""
        cached = self.__dict__.get("_incidence_cache")
        if cached is not None:
            return cached
        N = self.ratings.nnz
        t = np.arange(N)
        ones = np.ones(N)
        A_row = sp.csr_matrix((ones, (self.ratings.rows, t)), shape=(self.n_rows, N))
        A_col = sp.csr_matrix((ones, (self.ratings.cols, t)), shape=(self.n_cols, N))
        object.__setattr__(self, "_incidence_cache", (A_row, A_col))
        return A_row, A_col

    def _kernel_index(self) -> tuple[np.ndarray, ...]:
        """Index arrays of the compiled products (cached): rows, cols, row and column pointers,
        the entries in column order and their rows, and the data scales, as C-contiguous
        int64/float64 arrays."""
        cached = self.__dict__.get("_kernel_index_cache")
        if cached is not None:
            return cached
        # writable copies: numba types read-only arrays apart from the kernels' signatures
        rows = np.array(self.ratings.rows, dtype=np.int64)
        cols = np.array(self.ratings.cols, dtype=np.int64)
        # Ratings are sorted by row, so a row's entries are contiguous.
        row_ptr = np.searchsorted(rows, np.arange(self.n_rows + 1)).astype(np.int64)
        col_order = np.argsort(cols, kind="stable").astype(np.int64)
        col_ptr = np.searchsorted(cols[col_order], np.arange(self.n_cols + 1)).astype(np.int64)
        col_rows = rows[col_order]
        d = np.array(self.data_scale, dtype=np.float64)
        cached = (rows, cols, row_ptr, col_ptr, col_order, col_rows, d)
        object.__setattr__(self, "_kernel_index_cache", cached)
        return cached

    def operator(self, x: np.ndarray, *, backend: str = "auto") -> LinearOperator:
        """Matrix-free Jacobian at ``x``: a ``LinearOperator`` with O(nnz*rank) products.

        Parameters
        ----------
        x : ndarray, shape (n_params,)
            The point (copied: the operator stays at this ``x``).
        backend : {'auto', 'compiled', 'numpy'}, default='auto'
            ``'compiled'``: the products run in the numba kernels ``jac_matvec`` and
            ``jac_rmatvec`` of :mod:`lsqmf.kernels.core` (no per-entry temporaries; entries, rows
            and columns in parallel). ``'numpy'``: in numpy (:func:`_numpy_operator`, the
            oracle). ``'auto'``: compiled when numba imports. Both compute the same sums, so
            they agree to rounding.

        Raises
        ------
        ImportError
            If ``backend='compiled'`` and numba is not installed.
        """
        from ..kernels.registry import select_kernels

        kernels = select_kernels(("jac_matvec", "jac_rmatvec"), backend)
        if kernels is None:
            return _numpy_operator(self, x)
        return _compiled_operator(self, x, kernels[0], kernels[1])

    def column_norms(self, x: np.ndarray) -> np.ndarray:
        """Euclidean norm of each Jacobian column at ``x`` in O(nnz*rank), without forming J.

        ``x_scale = 1 / column_norms`` is what scipy's ``x_scale='jac'`` computes at ``x``;
        it is used with the matrix-free operator, where scipy refuses ``'jac'``.
        """
        P, Q, _, _ = self.unpack(x)
        rows, cols = self.ratings.rows, self.ratings.cols
        d2 = self.data_scale**2
        A_row, A_col = self._incidence()
        sqP = A_row @ (d2[:, None] * Q[:, cols].T ** 2)  # (n, k)
        sqQ = (A_col @ (d2[:, None] * P[rows] ** 2)).T  # (k, m)
        parts = [sqP.ravel(), sqQ.ravel()]
        if self.biases:
            parts += [A_row @ d2, A_col @ d2]
        sq = np.concatenate(parts)
        if self.has_reg:
            sq += self._reg_diagonal() ** 2
        return np.sqrt(sq)


def _compiled_operator(
    problem: Problem,
    x: np.ndarray,
    matvec_kernel: Callable[..., Any],
    rmatvec_kernel: Callable[..., Any],
) -> LinearOperator:
    """:meth:`Problem.operator` with the compiled products (``jac_matvec``, ``jac_rmatvec``)."""
    P, Q, _, _ = problem.unpack(np.array(x, dtype=np.float64))  # a copy: J stays at this x
    Qt = np.ascontiguousarray(Q.T)
    n, m, k = problem.n_rows, problem.n_cols, problem.rank
    rows, cols, row_ptr, col_ptr, col_order, col_rows, d = problem._kernel_index()
    N = problem.ratings.nnz
    reg_diag = problem._reg_diagonal() if problem.has_reg else None
    o = n * k + k * m
    biases = problem.biases
    n_res, n_par = problem.n_residuals, problem.n_params
    empty = np.empty(0)

    def matvec(v: np.ndarray) -> np.ndarray:
        v = np.ascontiguousarray(np.ravel(v), dtype=np.float64)
        vP = v[: n * k].reshape(n, k)
        vQt = np.ascontiguousarray(v[n * k : o].reshape(k, m).T)
        vb, vc = (v[o : o + n], v[o + n :]) if biases else (empty, empty)
        out = np.empty(n_res)
        matvec_kernel(rows, cols, d, P, Qt, vP, vQt, vb, vc, biases, out[:N])
        if reg_diag is not None:
            np.multiply(reg_diag, v, out=out[N:])
        return out

    def rmatvec(y: np.ndarray) -> np.ndarray:
        y = np.ravel(y)
        dy = np.multiply(d, y[:N], dtype=np.float64)
        g = np.empty(n_par)
        gP = g[: n * k].reshape(n, k)
        gQt = np.empty((m, k))
        gb, gc = (g[o : o + n], g[o + n :]) if biases else (empty, empty)
        rmatvec_kernel(
            row_ptr, cols, col_ptr, col_order, col_rows, dy, P, Qt, biases, gP, gQt, gb, gc
        )
        g[n * k : o].reshape(k, m)[:] = gQt.T
        if reg_diag is not None:
            g += reg_diag * y[N:]
        return g

    return _operator(n_res, n_par, matvec, rmatvec)


def _numpy_operator(problem: Problem, x: np.ndarray) -> LinearOperator:
    """:meth:`Problem.operator` in numpy: gathers the factor rows of every entry once, then
    sums with sparse 0/1 incidence matrices (the oracle of the compiled products)."""
    P, Q, _, _ = problem.unpack(np.array(x, dtype=np.float64))
    n, m, k = problem.n_rows, problem.n_cols, problem.rank
    rows, cols = problem.ratings.rows, problem.ratings.cols
    d = problem.data_scale
    Pr = P[rows]  # (N, k)
    Qc = Q[:, cols].T  # (N, k)
    A_row, A_col = problem._incidence()
    N = problem.ratings.nnz
    reg_diag = problem._reg_diagonal() if problem.has_reg else None
    o = n * k + k * m
    biases = problem.biases
    n_res, n_par = problem.n_residuals, problem.n_params

    def matvec(v: np.ndarray) -> np.ndarray:
        v = np.ravel(v)
        dP = v[: n * k].reshape(n, k)
        dQ = v[n * k : o].reshape(k, m)
        jv = np.einsum("tk,tk->t", dP[rows], Qc) + np.einsum("tk,kt->t", Pr, dQ[:, cols])
        if biases:
            jv += v[o : o + n][rows] + v[o + n :][cols]
        jv *= d
        if reg_diag is None:
            return jv
        return np.concatenate([jv, reg_diag * v])

    def rmatvec(y: np.ndarray) -> np.ndarray:
        y = np.ravel(y)
        yd = d * y[:N]
        gP = A_row @ (yd[:, None] * Qc)  # (n, k)
        gQ = (A_col @ (yd[:, None] * Pr)).T  # (k, m)
        parts = [gP.ravel(), gQ.ravel()]
        if biases:
            parts += [A_row @ yd, A_col @ yd]
        g = np.concatenate(parts)
        if reg_diag is not None:
            g += reg_diag * y[N:]
        return g

    return _operator(n_res, n_par, matvec, rmatvec)


def _operator(
    n_res: int,
    n_par: int,
    matvec: Callable[[np.ndarray], np.ndarray],
    rmatvec: Callable[[np.ndarray], np.ndarray],
) -> LinearOperator:
    """A float64 ``LinearOperator`` whose block products apply ``matvec``/``rmatvec`` per
    column."""

    def matmat(V: np.ndarray) -> np.ndarray:
        return np.column_stack([matvec(V[:, j]) for j in range(V.shape[1])])

    def rmatmat(Y: np.ndarray) -> np.ndarray:
        return np.column_stack([rmatvec(Y[:, j]) for j in range(Y.shape[1])])

    from scipy.sparse.linalg import LinearOperator

    return LinearOperator(
        (n_res, n_par), matvec=matvec, rmatvec=rmatvec, matmat=matmat, rmatmat=rmatmat,
        dtype=np.float64,
    )


def kron_jacobian(problem: Problem, x: np.ndarray) -> sp.csr_matrix:
    """The Jacobian by the literal Kronecker-product construction (oracle, small sizes only).

    Builds ``D [I_n ⊗ Q^T, P ⊗ I_m]`` over all ``n*m`` entries with ``scipy.sparse.kron`` and
    keeps the rows of the observed entries, then appends the bias columns and the diagonal
    regularization block. Shares no code with :meth:`Problem.jacobian`, which it checks. Costs
    O(n*m*k) time and memory.
    """
    n, m, k = problem.n_rows, problem.n_cols, problem.rank
    N = problem.ratings.nnz
    P = x[: n * k].reshape(n, k)
    Q = x[n * k : n * k + k * m].reshape(k, m)
    full = sp.hstack(
        [sp.kron(sp.identity(n), sp.csr_matrix(Q.T)), sp.kron(sp.csr_matrix(P), sp.identity(m))]
    ).tocsr()
    observed = problem.ratings.rows * m + problem.ratings.cols
    data_block = sp.diags(problem.data_scale) @ full[observed]
    if problem.biases:
        ones = problem.data_scale
        t = np.arange(N)
        B = sp.csr_matrix((ones, (t, problem.ratings.rows)), shape=(N, n))
        C = sp.csr_matrix((ones, (t, problem.ratings.cols)), shape=(N, m))
        data_block = sp.hstack([data_block, B, C])
    if not problem.has_reg:
        return sp.csr_matrix(data_block)
    assert problem.P_scale is not None and problem.Q_scale is not None
    diag = [np.kron(problem.P_scale, np.ones(k)), np.kron(np.ones(k), problem.Q_scale)]
    if problem.biases:
        assert problem.row_bias_scale is not None and problem.col_bias_scale is not None
        diag += [problem.row_bias_scale, problem.col_bias_scale]
    reg_block = sp.diags(np.concatenate(diag))
    return sp.csr_matrix(sp.vstack([data_block, reg_block]))


def build_problem(
    ratings: Ratings,
    rank: int,
    *,
    formulation: str = "prior",
    alpha: float = 0.9,
    beta: float = 0.1,
    reg: float = 0.0,
    reg_bias: float | None = None,
    count_scaled: bool = False,
    biases: bool = False,
    P_prior: Any = None,
    Q_prior: Any = None,
) -> Problem:
    """Build a :class:`Problem`; see the module docstring for the formulations.

    Parameters
    ----------
    ratings : Ratings
    rank : int
    formulation : {'prior', 'l2', 'none'}, default='prior'
    alpha, beta : float
        Data and prior weights of the ``prior`` formulation.
    reg : float
        L2 weight :math:`\\lambda` of the ``l2`` formulation.
    reg_bias : float, optional
        L2 weight of the biases in ``l2`` (default: ``reg``).
    count_scaled : bool
        Scale each row's/column's ``l2`` weight by its number of observed entries.
    biases : bool
        Fit a global mean plus row and column biases.
    P_prior : ndarray, shape (n_rows, rank) ; Q_prior : ndarray, shape (rank, n_cols)
        Anchors of the ``prior`` formulation (required for it).
    """
    if not isinstance(ratings, Ratings):
        raise TypeError(f"`ratings` must be lsqmf.Ratings; got {type(ratings).__name__}.")
    rank = check_int("rank", rank, min_value=1)
    check_choice("formulation", formulation, FORMULATIONS)
    sqrt_w = np.ones(ratings.nnz) if ratings.weights is None else np.sqrt(ratings.weights)
    if formulation == "prior":
        scales = _prior_scales(ratings, rank, alpha, beta, P_prior, Q_prior, sqrt_w)
    elif formulation == "l2":
        scales = _l2_scales(ratings, reg, reg_bias, count_scaled, sqrt_w)
    else:
        scales = _Scales(data_scale=sqrt_w)
    if not biases:
        scales = scales._replace(row_bias_scale=None, col_bias_scale=None)
    for a in scales:
        if a is not None:
            a.setflags(write=False)
    return Problem(
        ratings=ratings,
        rank=rank,
        biases=bool(biases),
        mu=ratings.mean() if biases else 0.0,
        data_scale=scales.data_scale,
        P_scale=scales.P_scale,
        Q_scale=scales.Q_scale,
        row_bias_scale=scales.row_bias_scale,
        col_bias_scale=scales.col_bias_scale,
        P_anchor=scales.P_anchor,
        Q_anchor=scales.Q_anchor,
        formulation=formulation,
    )


class _Scales(NamedTuple):
    """The residual scales and anchors of one formulation (fields of :class:`Problem`)."""

    data_scale: np.ndarray
    P_scale: np.ndarray | None = None
    Q_scale: np.ndarray | None = None
    row_bias_scale: np.ndarray | None = None
    col_bias_scale: np.ndarray | None = None
    P_anchor: np.ndarray | None = None
    Q_anchor: np.ndarray | None = None


def _prior_scales(
    ratings: Ratings,
    rank: int,
    alpha: float,
    beta: float,
    P_prior: Any,
    Q_prior: Any,
    sqrt_w: np.ndarray,
) -> _Scales:
    """Scales of the ``prior`` formulation: data ``alpha``, every prior ``beta``, the anchors."""
    n, m = ratings.shape
    alpha = check_float("alpha", alpha, min_value=0.0, min_inclusive=False)  # type: ignore[assignment]
    beta = check_float("beta", beta, min_value=0.0)  # type: ignore[assignment]
    data_scale = alpha * sqrt_w
    if P_prior is None or Q_prior is None:
        raise ValueError("the 'prior' formulation needs `P_prior` and `Q_prior`.")
    P_anchor = check_array("P0", P_prior, shape=(n, rank), copy=True)
    Q_anchor = check_array("Q0", Q_prior, shape=(rank, m), copy=True)
    return _Scales(
        data_scale=data_scale,
        P_scale=np.full(n, beta),
        Q_scale=np.full(m, beta),
        row_bias_scale=np.full(n, beta),
        col_bias_scale=np.full(m, beta),
        P_anchor=P_anchor,
        Q_anchor=Q_anchor,
    )


def _l2_scales(
    ratings: Ratings, reg: float, reg_bias: float | None, count_scaled: bool, sqrt_w: np.ndarray
) -> _Scales:
    """Scales of the ``l2`` formulation: sqrt(reg), times the counts when ``count_scaled``."""
    n, m = ratings.shape
    reg = float(check_float("reg", reg, min_value=0.0))  # type: ignore[arg-type]
    reg_b = reg if reg_bias is None else float(
        check_float("reg_bias", reg_bias, min_value=0.0)  # type: ignore[arg-type]
    )
    row_c = ratings.row_counts().astype(float) if count_scaled else np.ones(n)
    col_c = ratings.col_counts().astype(float) if count_scaled else np.ones(m)
    return _Scales(
        data_scale=sqrt_w,
        P_scale=np.sqrt(reg * row_c),
        Q_scale=np.sqrt(reg * col_c),
        row_bias_scale=np.sqrt(reg_b * row_c),
        col_bias_scale=np.sqrt(reg_b * col_c),
    )
