r"""Funk SGD: one pass per epoch over the observed entries, in a seeded random order.

The ``'l2'`` objective (see :mod:`lsqmf.solvers._common`) is written as a sum over the
observed entries, :math:`F = \sum_{t} f_t`, by sharing each user's and item's
regularization equally among its ratings:

.. math::

    f_t = \tfrac12 w_t e_t^2 + \tfrac{\lambda s_u}{2 n_u}\|p_u\|^2
          + \tfrac{\lambda t_i}{2 n_i}\|q_i\|^2
          + \tfrac{\lambda_b s_u}{2 n_u} b_u^2 + \tfrac{\lambda_b t_i}{2 n_i} c_i^2,
    \qquad e_t = \mu + b_u + c_i + p_u^\top q_i - v_t,

with :math:`(u, i)` the entry ``t`` and :math:`n_u, n_i` the rating counts (so with
``count_scaled=True`` the per-rating weight is just :math:`\lambda`, Funk's and Surprise's
rule). Each visit takes a step along :math:`-\nabla f_t` with step ``learning_rate``
(multiplied by ``decay`` after every epoch):

.. math::

    b_u \mathrel{-}= \eta(w_t e_t + \rho^b_u b_u),\quad
    c_i \mathrel{-}= \eta(w_t e_t + \rho^b_i c_i),\quad
    p_u \mathrel{-}= \eta(w_t e_t q_i + \rho_u p_u),\quad
    q_i \mathrel{-}= \eta(w_t e_t p_u + \rho_i q_i),

(the ``p_u`` and ``q_i`` updates both use the values from before the visit). Since
:math:`\sum_t \nabla f_t = \nabla F`, a uniformly random visit is an unbiased estimate of
:math:`\nabla F / N`: SGD minimizes :math:`F` in expectation, and with a constant step it
hovers near the minimizer rather than converging to it. The solver reports ``problem.cost(x)``
-- the exact :math:`F` -- at the end of each epoch.

The epoch loop is the compiled kernel :func:`lsqmf.kernels.core.sgd_epoch` (numba,
``pip install 'lsqmf[fast]'``); the visiting order is drawn with the solver's seeded
``numpy.random.Generator`` and passed in, so the kernel is deterministic. Item factors are kept
item-major (``Qt``, one contiguous row per item) and passed as the view ``Qt.T``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import numpy as np

from .._params import Param
from ..model.result import FitResult
from ._common import Setup, SolverSpec, prepare, run_iterations

__all__ = ["SPEC", "STEP_PARAMS", "sgd", "sgd_epoch_kernel", "visit_regs"]


def sgd_epoch_kernel(backend: str) -> Callable[..., float]:
    """:func:`lsqmf.kernels.core.sgd_epoch` for the resolved ``backend`` (the numba kernel,
    or the interpreted loop that imports no numba)."""
    from ..kernels.core import sgd_epoch

    return functools.partial(sgd_epoch, backend=backend)


def visit_regs(setup: Setup) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The regularization one SGD visit applies: ``reg_row, reg_col, reg_row_bias,
    reg_col_bias`` divided by the visited row's / column's count of ratings (at least 1), so
    that an epoch regularizes each row and column once in all."""
    r = setup.ratings
    n_u = np.maximum(r.row_counts(), 1).astype(float)
    n_i = np.maximum(r.col_counts(), 1).astype(float)
    return (setup.reg_row / n_u, setup.reg_col / n_i, setup.reg_row_bias / n_u,
            setup.reg_col_bias / n_i)


class EpochRunner:
    """Holds the contiguous arrays and per-visit weights of SGD epochs for one problem."""

    def __init__(self, setup: Setup, learning_rate: float, decay: float) -> None:
        self.kernel = sgd_epoch_kernel(setup.backend)
        self.setup = setup
        r = setup.ratings
        # contiguous int64 / float64 copies, as the kernel expects
        self.rows = np.array(r.rows, dtype=np.int64)
        self.cols = np.array(r.cols, dtype=np.int64)
        self.values = np.array(r.values, dtype=np.float64)
        self.weights = np.ones(r.nnz) if r.weights is None else np.array(r.weights)
        self.reg_row, self.reg_col, self.reg_row_bias, self.reg_col_bias = visit_regs(setup)
        self.learning_rate = learning_rate
        self.decay = decay

    def epoch(self, x: np.ndarray, j: int, *, update_rows: bool = True) -> np.ndarray:
        """``x`` after epoch ``j`` (1-based), a new array."""
        problem = self.setup.problem
        P, Q, b, c = problem.unpack(x.copy())
        P = np.ascontiguousarray(P)
        Qt = np.ascontiguousarray(Q.T)
        row_bias = np.zeros(problem.n_rows) if b is None else np.ascontiguousarray(b)
        col_bias = np.zeros(problem.n_cols) if c is None else np.ascontiguousarray(c)
        order = self.setup.rng.permutation(len(self.values)).astype(np.int64, copy=False)
        lr = self.learning_rate * self.decay ** (j - 1)
        self.kernel(
            self.rows, self.cols, self.values, self.weights, order, P, Qt.T, row_bias,
            col_bias, float(problem.mu), float(lr), self.reg_row, self.reg_col,
            self.reg_row_bias, self.reg_col_bias, bool(problem.biases),
            update_rows=bool(update_rows), update_cols=True,
        )
        if problem.biases:
            return problem.pack(P, Qt.T, row_bias, col_bias)
        return problem.pack(P, Qt.T)


# duplicates: each solver's numpydoc and doctest example share one shape
def sgd(R: Any, rank: int | None = None, **options: Any) -> FitResult:
    r"""Fit the ``'l2'`` objective by Funk SGD over the observed entries.

    Parameters
    ----------
    R, rank
        As in :func:`lsqmf.solvers.als`.
    **options
        The shared options of :class:`lsqmf.solvers.SolverOptions` (``max_iter`` counts
        epochs, ``random_state`` seeds the initial factors and every epoch's shuffle) and
        sgd's own (defaults: ``lsqmf.solvers.SOLVER_SPECS['sgd']``):

        - ``learning_rate`` : float, step size of each per-rating update
        - ``decay`` : float, the step size is multiplied by ``decay`` after each epoch
          (``0 < decay <= 1``)

    Returns
    -------
    FitResult
        ``solver='sgd'``; ``history.cost`` is the exact objective after each epoch.

    Raises
    ------
    ImportError
        If ``backend='compiled'`` and numba is not installed.
    NonFiniteResidualError
        When the iterates diverge (``learning_rate`` too large), with the best finite
        iterate in ``partial_result``.

    Examples
    --------
    >>> import numpy as np
    >>> from lsqmf.solvers import sgd
    >>> R = np.random.default_rng(0).random((6, 5))
    >>> fit = sgd(R, 2, reg=0.01, max_iter=2000, tol=1e-4, learning_rate=0.05, random_state=0)
    >>> fit.status, bool(fit.history.cost[-1] < fit.history.cost[0])
    (2, True)
    """
    setup = prepare(SPEC, R, rank, options)
    lr, decay = setup.own["learning_rate"], setup.own["decay"]  # checked by prepare
    runner = EpochRunner(setup, lr, decay)
    return run_iterations(
        setup, runner.epoch,
        hint="lower `learning_rate` (or set `decay` < 1) or increase `reg`.",
        options={"learning_rate": lr, "decay": decay},
    )


#: The step options of the SGD solvers (``sgd``, ``als_sgd``; ``bsgd`` with other defaults).
STEP_PARAMS = (
    Param("learning_rate", "float", 0.01, low=0.0, low_open=True, help="SGD step size"),
    Param("decay", "float", 1.0, low=0.0, high=1.0, low_open=True,
          help="step multiplier per epoch"),
)

#: The solver's registry entry (collected by :data:`lsqmf.solvers.SOLVER_SPECS`).
SPEC = SolverSpec(
    "sgd", sgd, MappingProxyType({"max_iter": 30, "tol": 1e-4}),
    "Funk SGD over the observed entries",
    params=STEP_PARAMS,
    kernels=("sgd_epoch", "residual_sse"),
)
