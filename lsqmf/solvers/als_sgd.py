r"""Hybrid: exact ridge solve for the users, one SGD epoch for the items, per iteration.

Design
------
Each iteration

1. replaces the user block :math:`(P, b)` by its exact minimizer given :math:`(Q, c)` -- the
   batched ridge solve of :mod:`lsqmf.solvers.als` (users are usually fewer, so this solve is
   the cheap one: :math:`O(N k^2 + n k^3)`);
2. runs one Funk SGD epoch (:mod:`lsqmf.solvers.sgd`) that updates only the item block
   :math:`(Q, c)`, visiting the observed entries in a seeded random order, with the same
   per-rating split of the regularization as ``sgd``.

Step 1 can only decrease the objective; step 2 decreases it in expectation. The item side --
the large one on MovieLens-like data (many more items than users) -- thus never needs the
:math:`O(m k^3)` batched solve, while the user side is solved exactly. The reported cost is
``problem.cost(x)`` after each iteration.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import numpy as np

from ..model.result import FitResult
from ._common import SolverSpec, prepare, run_iterations
from .als import update_users, user_side
from .sgd import STEP_PARAMS, EpochRunner

__all__ = ["SPEC", "als_sgd"]


def als_sgd(R: Any, rank: int | None = None, **options: Any) -> FitResult:
    r"""Fit the ``'l2'`` objective by exact user solves alternating with item SGD epochs.

    Parameters
    ----------
    R, rank
        As in :func:`lsqmf.solvers.als`.
    **options
        The shared options of :class:`lsqmf.solvers.SolverOptions` (``max_iter`` counts
        iterations: one user solve and one item epoch each) and ``learning_rate``,
        ``decay`` as in :func:`lsqmf.solvers.sgd`, for the item epochs (defaults:
        ``lsqmf.solvers.SOLVER_SPECS['als_sgd']``).

    Returns
    -------
    FitResult
        ``solver='als_sgd'``.

    Raises
    ------
    ImportError
        If ``backend='compiled'`` and numba is not installed.

    Examples
    --------
    >>> import numpy as np
    >>> from lsqmf.solvers import als_sgd
    >>> R = np.random.default_rng(0).random((6, 5))
    >>> fit = als_sgd(R, 2, reg=0.01, max_iter=2000, tol=1e-4, learning_rate=0.05,
    ...               random_state=0)
    >>> fit.status, bool(fit.history.cost[-1] < fit.history.cost[0])
    (2, True)
    """
    setup = prepare(SPEC, R, rank, options)
    lr, decay = setup.own["learning_rate"], setup.own["decay"]  # checked by prepare
    users = user_side(setup)
    runner = EpochRunner(setup, lr, decay)

    def step(x: np.ndarray, j: int) -> np.ndarray:
        x = update_users(setup, users, x)
        return runner.epoch(x, j, update_rows=False)

    return run_iterations(
        setup, step,
        hint="lower `learning_rate` (or set `decay` < 1) or increase `reg`.",
        options={"learning_rate": lr, "decay": decay},
    )


#: The solver's registry entry (collected by :data:`lsqmf.solvers.SOLVER_SPECS`).
SPEC = SolverSpec(
    "als_sgd", als_sgd, MappingProxyType({"max_iter": 30, "tol": 1e-4}),
    "exact user solves alternating with SGD epochs over the items",
    params=STEP_PARAMS,
    kernels=("als_rows", "sgd_epoch", "residual_sse"),
)
