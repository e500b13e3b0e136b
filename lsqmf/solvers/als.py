r"""Alternating least squares: an exact ridge solve for every user, then for every item.

With ``Q`` and the item biases ``c`` fixed, the ``'l2'`` objective (see
:mod:`lsqmf.solvers._common`) separates over users, and for user ``u`` it is a ridge
regression in :math:`z_u = [p_u; b_u]` (just :math:`p_u` without biases) on the features
:math:`a_i = [q_i; 1]` of the items it rated, with targets :math:`y_{ui} = v_{ui} - \mu - c_i`:

.. math::

    \min_{z_u}\ \tfrac12\sum_{i \in \Omega_u} w_{ui}(a_i^\top z_u - y_{ui})^2
        + \tfrac12 z_u^\top \Lambda_u z_u, \qquad
    \Lambda_u = \mathrm{diag}(\lambda s_u, \dots, \lambda s_u, \lambda_b s_u),

so :math:`z_u = (G_u + \Lambda_u)^{-1} h_u` with :math:`G_u = \sum_i w_{ui} a_i a_i^\top` and
:math:`h_u = \sum_i w_{ui} y_{ui} a_i`. For a row with a single rating (a third of the
items of MovieLens latest-small) Sherman-Morrison gives it in closed form,
:math:`z = w y\,\Lambda^{-1}a / (1 + w\,a^\top\Lambda^{-1}a)`, without a solve. The bias is
the constant-1 coordinate of the same solve. Items are updated the same way with the roles
swapped. Each half-sweep decreases :math:`F` (it minimizes it exactly over one block), so the
cost history is monotone.

Vectorization
-------------
There is no Python loop over users. All Gram matrices of a block of rows come from one sparse
product :math:`G = W O` (``W`` the weights at the observed entries, ``O`` the outer products
:math:`a_i a_i^\top` of the fixed side), all right-hand sides from
:math:`h = W_y F`, and the ``(n, k+1, k+1)`` stack is solved with one batched
``np.linalg.solve``. Blocks are sized so that no temporary exceeds a few million floats.
Time per sweep is :math:`O(N k^2 + (n + m) k^3)`.

Compiled half-step
------------------
With the compiled backend (``backend='compiled'``, what ``'auto'`` gives) each half-step runs the
kernel ``als_rows`` of :mod:`lsqmf.kernels.core`: rows in parallel, each accumulating its own
:math:`G_u + \Lambda_u` and :math:`h_u` and solving by Cholesky -- the same normal equations,
so the same minimizer up to rounding, without the :math:`(n, (k+1)^2)` temporaries. A row
whose Cholesky factorization breaks down (singular: only with ``reg = 0``) is solved by the
numpy path above, with its semantics. ``backend='numpy'`` uses the numpy path throughout (the
oracle the tests compare the kernel against).
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..model.result import FitResult
from ._common import Setup, SolverSpec, prepare, run_iterations

__all__ = ["SPEC", "als"]

#: Largest temporary (in float64 elements, 64 MiB) built while forming Gram matrices.
_BLOCK_ELEMENTS = 8_388_608

def _compiled_kernel(backend: str = "auto") -> Callable[..., Any] | None:
    """The compiled ``als_rows`` kernel for ``backend``, or None for the numpy path.

    Raises
    ------
    ImportError
        If ``backend='compiled'`` and numba is not installed.
    """
    from ..kernels.registry import select_kernels

    kernels = select_kernels(("als_rows",), backend)
    return None if kernels is None else kernels[0]


class SideSolver:
    """Exact ridge updates of one side (rows or columns) of the factorization.

    Parameters
    ----------
    own, other : ndarray of int, shape (nnz,)
        Index of each observed entry on the solving side and on the fixed side.
    n_own, n_other : int
    values : ndarray, shape (nnz,)
    weights : ndarray or None, shape (nnz,)
    reg_factor, reg_bias : ndarray, shape (n_own,)
        :math:`\\lambda s_u` and :math:`\\lambda_b s_u` (the latter used only with biases).
    backend : {'auto', 'compiled', 'numpy'}, default='auto'
        The compiled half-step (``als_rows``) or the numpy path (its oracle).

    Notes
    -----
    The Gram matrices are :math:`G = W O` with ``W`` the sparse ``(n_own, n_other)`` matrix of
    weights at the observed entries and ``O`` the ``(n_other, (k+1)^2)`` outer products of the
    fixed side's features: one sparse-times-dense product per block, in :math:`O(N k^2)`.
    ``G`` is formed in row blocks, and ``O`` in row chunks when it is large, so that no
    temporary exceeds about :data:`_BLOCK_ELEMENTS` floats.
    """

    def __init__(
        self,
        own: np.ndarray,
        other: np.ndarray,
        n_own: int,
        n_other: int,
        values: np.ndarray,
        weights: np.ndarray | None,
        reg_factor: np.ndarray,
        reg_bias: np.ndarray,
        backend: str = "auto",
    ) -> None:
        order = np.argsort(own, kind="stable")
        self.other = other[order]
        self.values = values[order]
        self.weights = np.ones(len(order)) if weights is None else weights[order]
        counts = np.bincount(own, minlength=n_own)
        self.indptr = np.concatenate([[0], np.cumsum(counts)])
        self.counts = counts
        self.n_own, self.n_other = n_own, n_other
        self._W: sp.csr_matrix | None = None  # the numpy path's; built on first use
        self.reg_factor = reg_factor
        self.reg_bias = reg_bias
        self._kernel = _compiled_kernel(backend)
        if self._kernel is not None:
            self._indptr64 = np.ascontiguousarray(self.indptr, dtype=np.int64)
            self._other64 = np.ascontiguousarray(self.other, dtype=np.int64)
            self._weights64 = np.ascontiguousarray(self.weights, dtype=np.float64)
            self._reg_factor64 = np.ascontiguousarray(reg_factor, dtype=np.float64)
            self._reg_bias64 = np.ascontiguousarray(reg_bias, dtype=np.float64)

    @property
    def W(self) -> sp.csr_matrix:
        """The sparse ``(n_own, n_other)`` matrix of the weights (the numpy path only: the
        compiled half-step reads ``indptr``/``other``/``weights``, so it never pays for it)."""
        if self._W is None:
            self._W = sp.csr_matrix((self.weights, self.other, self.indptr),
                                    shape=(self.n_own, self.n_other))
        return self._W

    def solve(
        self, features: np.ndarray, offset: np.ndarray | None, with_bias: bool
    ) -> np.ndarray:
        """New ``z`` for every row of the solving side, shape (n_own, k [+1]).

        Parameters
        ----------
        features : ndarray, shape (n_other, k)
            Factors of the fixed side (a constant-1 column is appended when ``with_bias``).
        offset : ndarray, shape (n_other,) or None
            Subtracted from the values: :math:`\\mu + c_i` for the user side (None: 0).
        with_bias : bool
            Append the constant-1 coordinate (solve for the bias too).
        """
        if self._kernel is None:
            return self.solve_numpy(features, offset, with_bias)
        y = self.values if offset is None else self.values - offset[self.other]
        k1 = features.shape[1] + (1 if with_bias else 0)
        out = np.empty((self.n_own, k1))
        failed = np.empty(self.n_own, dtype=bool)
        n_failed = self._kernel(
            self._indptr64, self._other64, np.ascontiguousarray(y, dtype=np.float64),
            self._weights64, np.ascontiguousarray(features, dtype=np.float64),
            self._reg_factor64, self._reg_bias64, bool(with_bias), out, failed,
        )
        if n_failed:  # singular rows (reg = 0): the numpy path's answer for them
            out[failed] = self.solve_numpy(features, offset, with_bias)[failed]
        return out

    def solve_numpy(
        self, features: np.ndarray, offset: np.ndarray | None, with_bias: bool
    ) -> np.ndarray:
        """:meth:`solve` by sparse products and a batched ``np.linalg.solve`` (no numba)."""
        F, y, h, lam = self._normal_terms(features, offset, with_bias)
        n_other, k1 = F.shape
        chunk_rows = max(1, _BLOCK_ELEMENTS // (k1 * k1))  # rows of O (and of G) per chunk
        out = np.zeros((self.n_own, k1))
        diag = np.arange(k1)
        O = None
        if n_other <= chunk_rows:  # all outer products fit in one temporary: form them once
            O = (F[:, :, None] * F[:, None, :]).reshape(n_other, k1 * k1)
        for start in range(0, self.n_own, chunk_rows):
            end = min(self.n_own, start + chunk_rows)
            nonempty = self._solve_single_entry_rows(start, end, F, y, lam[start:end], out)
            if not nonempty.any():
                continue  # no row needs a batched solve (no entries: the minimizer is 0)
            G = self._gram_block(start, end, F, O, chunk_rows)
            all_rows = bool(nonempty.all())
            if not all_rows:
                G = G[nonempty]
            G[:, diag, diag] += lam[start:end] if all_rows else lam[start:end][nonempty]
            z = _solve_batch(G, h[start:end] if all_rows else h[start:end][nonempty])
            if all_rows:
                out[start:end] = z
            else:
                out[np.arange(start, end)[nonempty]] = z
        return out

    def _normal_terms(
        self, features: np.ndarray, offset: np.ndarray | None, with_bias: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The features ``F`` (``(n_other, k1)``, contiguous), the targets ``y``, the
        right-hand sides ``h = W_y F`` and the diagonals of :math:`\\Lambda` (``(n_own, k1)``)."""
        n_other, k = features.shape
        F = np.hstack([features, np.ones((n_other, 1))]) if with_bias else features
        F = np.ascontiguousarray(F)
        y = self.values if offset is None else self.values - offset[self.other]
        Wy = sp.csr_matrix((self.weights * y, self.other, self.indptr),
                           shape=(self.n_own, self.n_other))
        h = np.asarray(Wy @ F)  # (n_own, k1)
        lam = np.empty((self.n_own, F.shape[1]))
        lam[:, :k] = self.reg_factor[:, None]
        if with_bias:
            lam[:, k] = self.reg_bias
        return F, y, h, lam

    def _solve_single_entry_rows(self, start: int, end: int, F: np.ndarray, y: np.ndarray,
                                 lam_blk: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``out`` for the rows of ``start:end`` with one entry and a positive-definite
        :math:`\\Lambda` (Sherman-Morrison closed form); returns the mask of the other rows of
        the block that have entries (they need a solve)."""
        counts = self.counts[start:end]
        single = (counts == 1) & np.all(lam_blk > 0, axis=1)
        if single.any():
            rows1 = np.flatnonzero(single)
            t = self.indptr[start + rows1]
            a = F[self.other[t]]
            u = a / lam_blk[rows1]
            w = self.weights[t]
            out[start + rows1] = ((w * y[t]) / (1.0 + w * np.einsum("ij,ij->i", a, u)))[
                :, None
            ] * u
        return (counts > 0) & ~single

    def _gram_block(self, start: int, end: int, F: np.ndarray, O: np.ndarray | None,
                    chunk_rows: int) -> np.ndarray:
        """The Gram matrices ``W O`` of the rows ``start:end``, shape ``(end - start, k1, k1)``,
        from the outer products ``O`` when given, else from chunks of ``chunk_rows`` of them."""
        k1 = F.shape[1]
        W_block = self.W if start == 0 and end == self.n_own else self.W[start:end]
        if O is not None:
            return np.asarray(W_block @ O).reshape(end - start, k1, k1)
        G = np.zeros((end - start, k1 * k1))
        W_csc = W_block.tocsc()
        for o0 in range(0, F.shape[0], chunk_rows):
            o1 = min(F.shape[0], o0 + chunk_rows)
            O_chunk = (F[o0:o1, :, None] * F[o0:o1, None, :]).reshape(o1 - o0, -1)
            G += np.asarray(W_csc[:, o0:o1] @ O_chunk)
        return G.reshape(end - start, k1, k1)


def _solve_batch(G: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """``z`` with ``G[n] z[n] = rhs[n]`` for the stack ``G``; if a system is singular (only with
    ``reg = 0``), the minimum-norm solutions."""
    try:
        return np.linalg.solve(G, rhs[:, :, None])[:, :, 0]
    except np.linalg.LinAlgError:
        return np.einsum("nij,nj->ni", np.linalg.pinv(G), rhs)


# duplicates: each solver's numpydoc and doctest example share one shape
def als(R: Any, rank: int | None = None, **options: Any) -> FitResult:
    r"""Fit the ``'l2'`` objective by alternating exact ridge solves (ALS; ALS-WR with
    ``count_scaled=True``).

    Parameters
    ----------
    R : ndarray, scipy.sparse matrix, pandas.DataFrame or Ratings
        The observed ratings (anything :func:`lsqmf.as_ratings` accepts).
    rank : int, default=20
        Number of latent factors (the registry's ``SOLVER_SPECS['als'].rank``).
    **options
        The shared options of :class:`lsqmf.solvers.SolverOptions` (``reg``, ``biases``,
        ``random_state``, ``max_iter``, ``tol``, ``verbose`` ...); ``max_iter`` counts full
        sweeps (users then items). ALS has no options of its own. Defaults: the registry's
        (``lsqmf.solvers.SOLVER_SPECS['als'].defaults``).

    Returns
    -------
    FitResult
        ``solver='als'``; ``nfev`` is the number of sweeps; ``cost`` is ``problem.cost(x)``.

    Raises
    ------
    NonFiniteResidualError
        If the factors become non-finite (only possible with ``reg=0`` and extreme data).

    Notes
    -----
    See the module docstring for the per-user normal equations; time per sweep is
    :math:`O(N k^2 + (n+m) k^3)`.

    Examples
    --------
    >>> import numpy as np
    >>> from lsqmf.solvers import als
    >>> rng = np.random.default_rng(0)
    >>> R = rng.random((6, 2)) @ rng.random((2, 5))
    >>> fit = als(R, 2, reg=0.01, biases=False, count_scaled=False, tol=1e-8, max_iter=1000,
    ...           random_state=0)
    >>> fit.status, bool(np.allclose(fit.P @ fit.Q, R, atol=0.01))
    (2, True)
    """
    setup = prepare(SPEC, R, rank, options)
    step = als_step_factory(setup)
    return run_iterations(
        setup, step,
        hint="increase `reg` (or use biases and count_scaled=True) and check the ratings.",
    )


def user_side(setup: Setup) -> SideSolver:
    """The :class:`SideSolver` of the rows (users) of ``setup``'s problem."""
    r = setup.ratings
    return SideSolver(
        r.rows, r.cols, r.shape[0], r.shape[1], r.values, r.weights, setup.reg_row,
        setup.reg_row_bias, backend=setup.backend,
    )


def item_side(setup: Setup) -> SideSolver:
    """The :class:`SideSolver` of the columns (items)."""
    r = setup.ratings
    return SideSolver(
        r.cols, r.rows, r.shape[1], r.shape[0], r.values, r.weights, setup.reg_col,
        setup.reg_col_bias, backend=setup.backend,
    )


def update_users(setup: Setup, side: SideSolver, x: np.ndarray) -> np.ndarray:
    """``x`` with the user block ``(P, b)`` replaced by its exact minimizer."""
    problem = setup.problem
    _, Q, _, c = problem.unpack(x)
    offset = None if c is None else problem.mu + c
    z = side.solve(Q.T, offset, problem.biases)
    k = problem.rank
    return problem.pack(z[:, :k], Q, z[:, k] if problem.biases else None, c)


def update_items(setup: Setup, side: SideSolver, x: np.ndarray) -> np.ndarray:
    """``x`` with the item block ``(Q, c)`` replaced by its exact minimizer."""
    problem = setup.problem
    P, _, b, _ = problem.unpack(x)
    offset = None if b is None else problem.mu + b
    z = side.solve(P, offset, problem.biases)
    k = problem.rank
    return problem.pack(P, z[:, :k].T, b, z[:, k] if problem.biases else None)


def als_step_factory(setup: Setup) -> Callable[[np.ndarray, int], np.ndarray]:
    """One ALS sweep (users, then items) as a ``step(x, j)`` function."""
    users, items = user_side(setup), item_side(setup)

    def step(x: np.ndarray, j: int) -> np.ndarray:
        x = update_users(setup, users, x)
        return update_items(setup, items, x)

    return step


#: The solver's registry entry (collected by :data:`lsqmf.solvers.SOLVER_SPECS`).
SPEC = SolverSpec(
    "als", als, MappingProxyType({"max_iter": 15, "tol": 1e-3}),
    "alternating exact ridge solves (ALS; ALS-WR when count-scaled)",
    kernels=("als_rows", "residual_sse"),
)
