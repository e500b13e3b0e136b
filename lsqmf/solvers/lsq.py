"""The ``'lsq'`` entry of the solver table: :func:`lsqmf.solve` on the ``'l2'`` objective.

A thin adapter that gives :func:`lsqmf.solve` the comparison solvers' signature: ``max_iter``
becomes ``max_nfev`` (residual evaluations, each of which may follow an inner LSMR solve),
``tol`` becomes ``ftol``, and the default trust-region solver is ``'lsmr'`` with the sparse
analytic Jacobian. Other keyword arguments (``method``, ``tr_options``, ``xtol``, ``gtol``,
``x_scale``, ``jac``, ``loss`` ...) go to :func:`lsqmf.solve` unchanged.

As for the other solvers, only a real non-convergence (``max_iter`` exhausted, scipy status 0)
issues a :class:`~lsqmf.ConvergenceWarning`; a stop requested by the callback or by the time
budget returns its factors silently with ``success=False``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..result import FitResult, IterationInfo
from ..solve import solve

__all__ = ["lsq"]


def lsq(
    R: Any,
    rank: int,
    *,
    reg: float = 0.1,
    reg_bias: float | None = None,
    count_scaled: bool = False,
    biases: bool = False,
    weights: Any = None,
    random_state: int | np.random.Generator | None = None,
    max_iter: int | None = 100,
    tol: float = 1e-4,
    max_time: float | None = None,
    callback: Callable[[IterationInfo], Any] | None = None,
    P0: Any = None,
    Q0: Any = None,
    init_scale: float = 0.1,
    method: str = "trf",
    tr_solver: str | None = "lsmr",
    **kwargs: Any,
) -> FitResult:
    """Fit the ``'l2'`` objective with ``scipy.optimize.least_squares`` (Gauss-Newton).

    Parameters
    ----------
    R, rank, reg, reg_bias, count_scaled, biases, weights, random_state, max_time, callback,
    P0, Q0, init_scale
        As in :func:`lsqmf.solvers.als`.
    max_iter : int or None, default=100
        Passed as ``max_nfev`` (residual evaluations).
    tol : float, default=1e-4
        Passed as ``ftol``.
    method : {'trf', 'dogbox', 'lm'}, default='trf'
    tr_solver : {None, 'exact', 'lsmr'}, default='lsmr'
    **kwargs
        Any other :func:`lsqmf.solve` option.

    Returns
    -------
    FitResult
        ``solver='lsq'``; ``cost`` is ``problem.cost(x)`` (the linear loss).
    """
    for name in ("formulation", "max_nfev", "ftol"):
        if name in kwargs:
            raise TypeError(
                f"`{name}` is set by the 'lsq' adapter (formulation='l2', max_iter -> "
                f"max_nfev, tol -> ftol); got {name}={kwargs[name]!r}."
            )
    return solve(
        R, rank, P0=P0, Q0=Q0, weights=weights, formulation="l2", reg=reg,
        reg_bias=reg_bias, count_scaled=count_scaled, biases=biases, method=method,
        tr_solver=None if method == "lm" else tr_solver, max_nfev=max_iter, ftol=tol,
        init_scale=init_scale, random_state=random_state, max_time=max_time,
        callback=callback, **kwargs,
    )
