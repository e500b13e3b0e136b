r"""What every comparison solver shares: validation, the objective, the iteration loop, the result.

Every solver in :mod:`lsqmf.solvers` minimizes the ``'l2'`` objective of
:func:`lsqmf.build_problem`,

.. math::

    F(P, Q, b, c) = \tfrac12\Big[\sum_{(u,i)\in\Omega} w_{ui}\,(\mu + b_u + c_i + p_u^\top q_i
    - v_{ui})^2 + \lambda\big(\sum_u s_u\|p_u\|^2 + \sum_i t_i\|q_i\|^2\big)
    + \lambda_b\big(\sum_u s_u b_u^2 + \sum_i t_i c_i^2\big)\Big],

with :math:`s_u` (:math:`t_i`) the number of ratings of user ``u`` (item ``i``) when
``count_scaled`` and 1 otherwise, and the bias terms only when ``biases``. Each solver reports
``problem.cost(x)`` -- exactly :math:`F` -- after every iteration (epoch for SGD), so their
histories are comparable point by point.

Stopping rules (shared)
-----------------------
After iteration ``j`` with cost :math:`F_j`:

- status 2 when :math:`|F_{j-1} - F_j| \le \mathrm{tol}\cdot F_{j-1}` (relative change below
  ``tol``; ``success=True``);
- status -2 (``Status.CALLBACK``) when ``callback(IterationInfo(j, F_j, time))`` returns
  True;
- status -4 (``Status.MAX_TIME``) when the elapsed time exceeds ``max_time``;
- status 0 after ``max_iter`` iterations (``success=False`` and a
  :class:`~lsqmf.ConvergenceWarning`: the only early stop that is a real non-convergence).

Rows (columns) without any observed entry carry only the regularization term, whose minimizer
is 0: their factors and biases start (and stay) at 0 in every solver.
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._threads import blas_single_thread, numba_available
from .._validation import (
    check_array,
    check_bool,
    check_float,
    check_int,
    check_random_state,
    describe,
)
from ..problem import Problem, build_problem
from ..ratings import Ratings, as_ratings
from ..result import (
    STATUS_MESSAGES,
    FitResult,
    History,
    IterationInfo,
    Status,
    warn_not_converged,
)
from ..solve import NonFiniteResidualError

__all__ = ["Setup", "prepare", "run_iterations"]


@dataclass
class Setup:
    """Validated inputs of one solver call."""

    name: str
    ratings: Ratings
    problem: Problem
    x0: np.ndarray
    rng: np.random.Generator
    max_iter: int
    tol: float
    max_time: float | None
    callback: Callable[[IterationInfo], Any] | None
    t_start: float
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def reg_row(self) -> np.ndarray:
        """:math:`\\lambda s_u`, the factor regularization weight of each row, shape (n_rows,)."""
        s = self.problem.P_scale
        assert s is not None
        return s**2

    @property
    def reg_col(self) -> np.ndarray:
        """:math:`\\lambda t_i`, shape (n_cols,)."""
        s = self.problem.Q_scale
        assert s is not None
        return s**2

    @property
    def reg_row_bias(self) -> np.ndarray:
        """:math:`\\lambda_b s_u` (zeros without biases), shape (n_rows,)."""
        s = self.problem.row_bias_scale
        return np.zeros(self.problem.n_rows) if s is None else s**2

    @property
    def reg_col_bias(self) -> np.ndarray:
        """:math:`\\lambda_b t_i` (zeros without biases), shape (n_cols,)."""
        s = self.problem.col_bias_scale
        return np.zeros(self.problem.n_cols) if s is None else s**2


def prepare(
    name: str,
    R: Any,
    rank: Any,
    *,
    reg: Any,
    reg_bias: Any,
    count_scaled: Any,
    biases: Any,
    weights: Any,
    random_state: Any,
    max_iter: Any,
    tol: Any,
    max_time: Any,
    callback: Any,
    P0: Any,
    Q0: Any,
    init_scale: Any,
) -> Setup:
    """Validate the shared arguments, build the ``'l2'`` problem and the starting point."""
    t_start = time.perf_counter()
    rank = check_int("rank", rank, min_value=1)
    reg = check_float("reg", reg, min_value=0.0)
    reg_bias = check_float("reg_bias", reg_bias, min_value=0.0, allow_none=True)
    count_scaled = check_bool("count_scaled", count_scaled)
    biases = check_bool("biases", biases)
    max_iter = check_int("max_iter", max_iter, min_value=1)
    tol = check_float("tol", tol, min_value=0.0)
    max_time = check_float("max_time", max_time, min_value=0.0, allow_none=True)
    init_scale = check_float("init_scale", init_scale, min_value=0.0, min_inclusive=False)
    if callback is not None and not callable(callback):
        raise TypeError(f"`callback` must be callable; got {describe(callback)}.")
    rng = check_random_state(random_state)
    ratings = as_ratings(R, weights=weights)
    n, m = ratings.shape
    P = (
        init_scale * rng.standard_normal((n, rank))
        if P0 is None
        else check_array("P0", P0, shape=(n, rank), copy=True)
    )
    Q = (
        init_scale * rng.standard_normal((rank, m))
        if Q0 is None
        else check_array("Q0", Q0, shape=(rank, m), copy=True)
    )
    P[ratings.row_counts() == 0] = 0.0
    Q[:, ratings.col_counts() == 0] = 0.0
    problem = build_problem(
        ratings, rank, formulation="l2", reg=reg, reg_bias=reg_bias,
        count_scaled=count_scaled, biases=biases,
    )
    x0 = problem.pack(P, Q)
    options = {
        "rank": rank, "reg": reg, "reg_bias": reg_bias, "count_scaled": count_scaled,
        "biases": biases, "weights": ratings.weights is not None, "max_iter": max_iter,
        "tol": tol, "max_time": max_time, "init_scale": init_scale,
        "random_state": random_state if isinstance(random_state, numbers.Integral) else None,
    }
    return Setup(
        name=name, ratings=ratings, problem=problem, x0=x0, rng=rng, max_iter=max_iter,
        tol=tol, max_time=max_time, callback=callback, t_start=t_start, options=options,
    )


def run_iterations(
    setup: Setup,
    step: Callable[[np.ndarray, int], np.ndarray],
    *,
    hint: str,
    options: dict[str, Any] | None = None,
) -> FitResult:
    """Run ``x = step(x, j)`` for ``j = 1, 2, ...`` under the shared stopping rules.

    ``hint`` completes the message of the error raised on non-finite factors ("what to try").
    """
    problem = setup.problem
    x = setup.x0.copy()
    cost = problem.cost(x)
    t0 = setup.t_start
    steps, costs, times = [0], [cost], [time.perf_counter() - t0]
    status = 0
    j = 0
    # the steps alternate numpy work with numba's parallel kernels (ALS half-steps, Jacobian
    # products) when numba is installed: one BLAS thread, see blas_single_thread
    with blas_single_thread(numba_available()):
        for j in range(1, setup.max_iter + 1):
            x = step(x, j)
            new_cost = problem.cost(x) if np.all(np.isfinite(x)) else float("nan")
            elapsed = time.perf_counter() - t0
            if not np.isfinite(new_cost):
                raise NonFiniteResidualError(
                    f"lsqmf.solvers.{setup.name}: the factors became non-finite (NaN or "
                    f"infinite) at iteration {j} (last finite cost {cost:.6g}); {hint}"
                )
            steps.append(j)
            costs.append(new_cost)
            times.append(elapsed)
            change = abs(cost - new_cost)
            cost = new_cost
            if setup.callback is not None and setup.callback(IterationInfo(j, cost, elapsed)):
                status = Status.CALLBACK
                break
            if change <= setup.tol * max(abs(costs[-2]), np.finfo(float).tiny):
                status = 2
                break
            if setup.max_time is not None and elapsed > setup.max_time:
                status = Status.MAX_TIME
                break
    P, Q, b, c = problem.unpack(x)
    all_options = {**setup.options, **(options or {})}
    result = FitResult(
        P=P, Q=Q, mu=problem.mu, row_bias=b, col_bias=c, success=status == 2, status=status,
        message=STATUS_MESSAGES[status], nfev=j, njev=None, cost=float(cost), optimality=None,
        history=History.from_lists(steps, costs, times),
        wall_time=time.perf_counter() - t0, options=all_options, solver=setup.name,
        row_ids=setup.ratings.row_ids, col_ids=setup.ratings.col_ids,
        row_counts=setup.ratings.row_counts(), col_counts=setup.ratings.col_counts(),
    )
    if status == 0:
        warn_not_converged(
            f"lsqmf.solvers.{setup.name}: `max_iter`={setup.max_iter} iterations reached "
            f"before the relative cost change fell below tol={setup.tol:g} (cost "
            f"{cost:.6g}); returning the last factors. Increase `max_iter` or `tol`.",
            stacklevel=4,
        )
    return result
