"""The ``'lsq'`` entry of the solver table: :func:`lsqmf.solve` on the ``'l2'`` objective.

A thin adapter that gives :func:`lsqmf.solve` the solver contract: ``max_iter`` becomes
``max_nfev`` (residual evaluations, each of which may follow an inner LSMR solve), ``tol``
becomes ``ftol``, and the registry's defaults are ``method='trf'`` with ``tr_solver='lsmr'``.
The start is the shared :func:`lsqmf.model.start.random_start` drawn here (so ``lsq`` and ``als``
start from the same factors on the same seed) and handed to :func:`lsqmf.solve` as
``P0``/``Q0``. Other keyword arguments (``tr_options``, ``xtol``, ``gtol``, ``x_scale``,
``jac``, ``loss``, ``bounds`` ...) go to :func:`lsqmf.solve` unchanged.

As for the other solvers, only a real non-convergence (``max_iter`` exhausted, scipy status 0)
issues a :class:`~lsqmf.ConvergenceWarning`; a stop requested by the callback or by the time
budget returns its factors silently with ``success=False``. ``verbose=2`` logs a line per
residual evaluation.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from types import MappingProxyType
from typing import Any

from .._params import Param
from .._validation import describe, resolve_seed
from ..data.ratings import as_ratings
from ..kernels.backend import resolve_backend
from ..kernels.registry import warm_up
from ..model.problem import build_problem
from ..model.result import FitResult, IterationInfo
from ..model.start import random_start
from ..nls.tables import METHODS, TR_SOLVERS
from ._common import (
    OPERATOR_KERNELS,
    SolverSpec,
    data_scaled_options,
    log_result,
    rating_scale,
    split_options,
)

__all__ = ["SPEC", "lsq"]

logger = logging.getLogger(__name__)

#: Options the adapter sets itself.
_TRANSLATED = ("formulation", "max_nfev", "ftol")


def lsq(R: Any, rank: int | None = None, **options: Any) -> FitResult:
    """Fit the ``'l2'`` objective with ``scipy.optimize.least_squares`` (Gauss-Newton).

    Parameters
    ----------
    R, rank
        As in :func:`lsqmf.solvers.als`.
    **options
        The shared options of :class:`lsqmf.solvers.SolverOptions` (``max_iter`` is passed
        as ``max_nfev``, ``tol`` as ``ftol``), ``method`` : {'trf', 'dogbox', 'lm'} and
        ``tr_solver`` : {None, 'exact', 'lsmr'} (defaults:
        ``lsqmf.solvers.SOLVER_SPECS['lsq']``), and any other :func:`lsqmf.solve` option.

    Returns
    -------
    FitResult
        ``solver='lsq'``; ``cost`` is ``problem.cost(x)`` (the linear loss).

    Raises
    ------
    TypeError
        For ``formulation``, ``max_nfev`` or ``ftol`` (the adapter sets them).
    """
    from ..nls.solve import solve  # here, so that importing the solver table stays cheap

    t_start = time.perf_counter()
    opts, own = _checked_options(rank, options)
    backend = resolve_backend(opts.backend)
    t_warm = time.perf_counter()
    warm_up(SPEC.kernels, backend)  # as solve() does: compile time is not fit time
    t_start += time.perf_counter() - t_warm
    rng, seed = resolve_seed(opts.random_state)
    ratings = as_ratings(R, weights=opts.weights)
    if opts.reg is None:  # the registry's data-scaled default, as prepare() resolves it
        opts = data_scaled_options(SPEC, opts, ratings)
    P, Q = random_start(ratings, opts.rank, rng, init_scale=opts.init_scale, P0=opts.P0,
                        Q0=opts.Q0)
    method = own.pop("method")
    tr_solver = own.pop("tr_solver")
    callback = _logging(opts.callback) if opts.verbose >= 2 else opts.callback
    fit = solve(
        ratings, opts.rank, P0=P, Q0=Q, formulation="l2", reg=opts.reg,
        reg_bias=opts.reg_bias, count_scaled=opts.count_scaled, biases=opts.biases,
        method=method, tr_solver=None if method == "lm" else tr_solver,
        max_nfev=opts.max_iter, ftol=opts.tol, init_scale=opts.init_scale,
        random_state=rng, max_time=opts.max_time, callback=callback, backend=backend,
        **own,
    )
    rms = fit.rms
    if rms is None:
        problem = build_problem(ratings, opts.rank, formulation="l2", reg=opts.reg,
                                reg_bias=opts.reg_bias, count_scaled=opts.count_scaled,
                                biases=opts.biases)
        rms = problem.rms(problem.pack(fit.P, fit.Q, fit.row_bias, fit.col_bias))
    recorded = {**fit.options, "rank": opts.rank, "max_iter": opts.max_iter,
                "tol": opts.tol, "init_scale": opts.init_scale, "random_state": seed,
                "verbose": opts.verbose, "weights": ratings.weights is not None,
                "rating_scale": rating_scale(ratings)}
    train_mean = ratings.mean() if fit.train_mean is None else fit.train_mean
    fit = dataclasses.replace(fit, options=recorded, rms=rms, train_mean=train_mean,
                              wall_time=time.perf_counter() - t_start)
    log_result(logger, opts.verbose, fit)
    return fit


def _checked_options(rank: Any, options: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The validated shared record and lsq's own options; what the adapter sets, and
    ``validation``, are refused."""
    for name in _TRANSLATED:
        if name in options:
            raise TypeError(
                f"`{name}` is set by the 'lsq' adapter (formulation='l2', max_iter -> "
                f"max_nfev, tol -> ftol); got {name}={options[name]!r}."
            )
    opts, own = split_options(SPEC, rank, options)
    if opts.validation is not None:
        raise ValueError(
            "`validation` is not supported by the 'lsq' solver (scipy's least_squares has no "
            "per-iteration hook to score and keep the best iterate); hold out ratings with "
            "lsqmf.evaluate.holdout_split, or use a solver of the iteration loop (als, gd, ...); "
            f"got {describe(opts.validation)}."
        )
    return opts, own


def _logging(user_callback: Any) -> Any:
    """``verbose=2``: a line per residual evaluation, then the caller's callback."""
    def callback(info: IterationInfo) -> Any:
        logger.info("lsq: evaluation %d cost %.6g time %.3f s", info.step, info.cost,
                    info.time)
        return None if user_callback is None else user_callback(info)

    return callback


#: The solver's registry entry (collected by :data:`lsqmf.solvers.SOLVER_SPECS`).
SPEC = SolverSpec(
    "lsq", lsq, MappingProxyType({"max_iter": 50, "tol": 1e-4}),
    "lsqmf.solve on the 'l2' objective (Gauss-Newton trust region)",
    params=(
        Param("method", "choice", "trf", choices=tuple(METHODS),
              help="least-squares method of lsqmf.solve"),
        Param("tr_solver", "choice", "lsmr", choices=TR_SOLVERS,
              help="trust-region solver (None: scipy's choice)"),
    ),
    passthrough=True, kernels=(*OPERATOR_KERNELS, "residual_sse"),
)
