r"""ALS with a few warm-started conjugate-gradient steps per row (Takács et al. 2011).

The objective is the ``'l2'`` objective of :mod:`lsqmf.solvers._common`. As in exact ALS
(:mod:`lsqmf.solvers.als`), with the items fixed the objective separates over users and user
``u``'s block :math:`z_u = [p_u; b_u]` solves the ridge normal equations

.. math::

    (G_u + \Lambda_u) z_u = h_u, \qquad G_u = \sum_{i\in\Omega_u} w_{ui} a_i a_i^\top,\quad
    h_u = \sum_{i\in\Omega_u} w_{ui}(v_{ui} - \mu - c_i) a_i,\quad a_i = [q_i; 1].

Instead of forming :math:`G_u` (:math:`O(n_u k^2)`) and factoring it (:math:`O(k^3)`), each
half-sweep takes ``cg_steps`` conjugate-gradient steps on that system from the row's current
value, applying :math:`G_u` as :math:`\sum_i w_{ui} a_i (a_i^\top d)` in :math:`O(n_u k)`: a
sweep costs :math:`O(N k \cdot \mathrm{cg\_steps})` instead of :math:`O(N k^2 + (n+m) k^3)`.
CG minimizes the row's strictly convex quadratic over a growing Krylov space that contains
the current value's descent direction, so every step lowers it: the objective decreases
monotonically, like exact ALS, and the fixed points are exact ALS's (a row whose residual is
zero is not moved). Near convergence the warm start is close to the row's minimizer, and a
few steps solve it to rounding.

The kernel is ``cg_rows`` of :mod:`lsqmf.kernels.solvers` (numba; rows in parallel, each row
by one thread in index order, so results do not depend on the thread count); its numpy oracle
``cg_rows_numpy`` is used with ``backend='numpy'``.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import numpy as np

from .._params import Param
from ..kernels.registry import get_kernel
from ..kernels.solvers import kernel_threads
from ..model.result import FitResult
from ._common import Setup, SolverSpec, prepare, run_iterations

__all__ = ["SPEC", "RowData", "als_cg"]


class RowData:
    """One side of the ratings in row-compressed form (the layout the row kernels read).

    Parameters
    ----------
    own, other : ndarray of int, shape (nnz,)
        Index of each entry on this side and on the other side.
    n_own : int
    values, weights : ndarray, shape (nnz,)

    Attributes
    ----------
    indptr : ndarray of int64, shape (n_own + 1,)
    other : ndarray of int64, shape (nnz,)
        Sorted by ``own`` (stable).
    values, weights : ndarray of float64, shape (nnz,)
    counts : ndarray of int64, shape (n_own,)
    """

    def __init__(
        self,
        own: np.ndarray,
        other: np.ndarray,
        n_own: int,
        values: np.ndarray,
        weights: np.ndarray | None,
    ) -> None:
        order = np.argsort(own, kind="stable")
        self.counts = np.bincount(own, minlength=n_own).astype(np.int64)
        self.indptr = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
        self.other = np.ascontiguousarray(other[order], dtype=np.int64)
        self.values = np.ascontiguousarray(values[order], dtype=np.float64)
        self.weights = (
            np.ones(len(order)) if weights is None
            else np.ascontiguousarray(weights[order], dtype=np.float64)
        )

    @classmethod
    def sides(cls, setup: Setup) -> tuple[RowData, RowData]:
        """The user side and the item side of ``setup``'s ratings."""
        r = setup.ratings
        n, m = r.shape
        return (cls(r.rows, r.cols, n, r.values, r.weights),
                cls(r.cols, r.rows, m, r.values, r.weights))

    def targets(self, mu: float, other_bias: np.ndarray | None) -> np.ndarray:
        """``values - mu - other_bias[other]``, the right-hand sides of this side's rows."""
        if other_bias is None:
            return self.values if mu == 0.0 else self.values - mu
        return self.values - mu - other_bias[self.other]


# duplicates: each solver's numpydoc and doctest example share one shape
def als_cg(R: Any, rank: int | None = None, **options: Any) -> FitResult:
    r"""Fit the ``'l2'`` objective by ALS with ``cg_steps`` conjugate-gradient steps per row.

    Parameters
    ----------
    R : ndarray, scipy.sparse matrix, pandas.DataFrame or Ratings
        The observed ratings (anything :func:`lsqmf.as_ratings` accepts).
    rank : int, default=20
        Number of latent factors (the registry's ``SOLVER_SPECS['als_cg'].rank``).
    **options
        The shared options of :class:`lsqmf.solvers.SolverOptions` (``max_iter`` counts
        sweeps: users, then items) and als_cg's own (defaults:
        ``lsqmf.solvers.SOLVER_SPECS['als_cg']``):

        - ``cg_steps`` : int, conjugate-gradient steps per row and half-sweep (3)

    Returns
    -------
    FitResult
        ``solver='als_cg'``; ``cost`` is ``problem.cost(x)``, decreasing over the history.

    Raises
    ------
    ImportError
        With ``backend='compiled'`` when numba is not installed.

    Notes
    -----
    Time per sweep :math:`O(N k \cdot \mathrm{cg\_steps})`; see the module docstring. With
    ``cg_steps >= rank + 1`` each row's solve is exact (CG terminates in at most that many
    steps in exact arithmetic), which makes the sweep exact ALS.

    Examples
    --------
    >>> import numpy as np
    >>> from lsqmf.solvers import als_cg
    >>> rng = np.random.default_rng(0)
    >>> R = rng.random((6, 2)) @ rng.random((2, 5))
    >>> fit = als_cg(R, 2, reg=0.01, biases=False, count_scaled=False, tol=1e-9, max_iter=2000,
    ...              random_state=0)
    >>> fit.status, bool(np.allclose(fit.P @ fit.Q, R, atol=0.01))
    (2, True)
    """
    setup = prepare(SPEC, R, rank, options)
    cg_steps = setup.own["cg_steps"]  # checked by prepare
    step = cg_step_factory(setup, cg_steps, get_kernel("cg_rows", setup.backend))
    return run_iterations(
        setup, step,
        hint="increase `reg` (or use biases and count_scaled=True) and check the ratings.",
        options={"cg_steps": cg_steps},
    )


def cg_step_factory(
    setup: Setup, cg_steps: int, kernel: Callable[..., Any]
) -> Callable[[np.ndarray, int], np.ndarray]:
    """One CG-ALS sweep (users, then items) as a ``step(x, j)`` function."""
    problem = setup.problem
    users, items = RowData.sides(setup)
    k = problem.rank
    with_bias = bool(problem.biases)
    mu = float(problem.mu) if with_bias else 0.0
    k1 = k + 1 if with_bias else k
    reg_u, reg_i = setup.reg_row, setup.reg_col
    reg_ub, reg_ib = setup.reg_row_bias, setup.reg_col_bias

    def step(x: np.ndarray, j: int) -> np.ndarray:
        P, Q, b, c = problem.unpack(x)
        Zu = np.empty((problem.n_rows, k1))
        Zu[:, :k] = P
        Zi = np.empty((problem.n_cols, k1))
        Zi[:, :k] = Q.T
        if with_bias:
            Zu[:, k] = b
            Zi[:, k] = c
        with kernel_threads(len(users.values), setup.backend):
            kernel(users.indptr, users.other, users.targets(mu, c), users.weights,
                   np.ascontiguousarray(Zi[:, :k]), with_bias, reg_u, reg_ub, Zu, cg_steps)
            b_new = Zu[:, k] if with_bias else None
            kernel(items.indptr, items.other, items.targets(mu, b_new), items.weights,
                   np.ascontiguousarray(Zu[:, :k]), with_bias, reg_i, reg_ib, Zi, cg_steps)
        if with_bias:
            return problem.pack(Zu[:, :k], Zi[:, :k].T, Zu[:, k], Zi[:, k])
        return problem.pack(Zu, Zi.T)

    return step


#: The solver's registry entry (collected by :data:`lsqmf.solvers.SOLVER_SPECS`).
SPEC = SolverSpec(
    "als_cg", als_cg, MappingProxyType({"max_iter": 100, "tol": 1e-4}),
    "ALS with warm-started conjugate-gradient row solves (O(nnz k) per sweep)",
    params=(Param("cg_steps", "int", 3, low=1, help="conjugate-gradient steps per row"),),
    kernels=("cg_rows", "residual_sse"),
    tuning=MappingProxyType({"rank": (20, 50), "reg": (0.05, 0.08, 0.15)}),
)
