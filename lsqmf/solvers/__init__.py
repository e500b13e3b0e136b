"""Comparison solvers: the same observed ratings, the same objective, the same result type.

Every solver takes the observed ratings (anything :func:`lsqmf.as_ratings` accepts) and
``rank``, minimizes the ``'l2'`` objective of :func:`lsqmf.build_problem` (``reg``,
``reg_bias``, ``count_scaled``, ``biases``, ``weights``), accepts ``random_state``,
``max_iter``, ``tol``, ``max_time``, ``callback``, ``P0``/``Q0``, and returns a
:class:`lsqmf.FitResult` whose ``cost`` is ``problem.cost(x)`` at the returned factors and whose
``history`` records that cost against iterations and wall time. See
:mod:`lsqmf.solvers._common` for the objective and the shared stopping rules.

=========== =================================================================================
name        method
=========== =================================================================================
``lsq``     :func:`lsqmf.solve` (Gauss-Newton trust region, ``trf`` + ``lsmr``)
``als``     alternating exact ridge solves, batched over all users / items
``gd``      full-batch gradient descent (Adam or fixed step)
``als_gd``  alternating blocks of exact-line-search gradient steps
``als_sgd`` exact user solves alternating with SGD epochs over the items
``sgd``     Funk SGD over the observed entries (numba)
=========== =================================================================================

:data:`SOLVERS` is the one lookup table from name to function: the command line, the evaluation
helpers and the benchmark resolve names there (through :func:`get_solver`).
:data:`SOLVER_DEFAULTS` holds settings that work on MovieLens-like data (ratings 0.5--5).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..result import FitResult
from .als import als
from .als_gd import als_gd
from .als_sgd import als_sgd
from .gd import gd
from .lsq import lsq
from .sgd import sgd

__all__ = ["SOLVERS", "SOLVER_DEFAULTS", "als", "als_gd", "als_sgd", "gd", "get_solver", "lsq",
           "sgd"]

#: Solver name -> function ``solver(R, rank, **options) -> FitResult``.
SOLVERS: dict[str, Callable[..., FitResult]] = {
    "lsq": lsq,
    "als": als,
    "gd": gd,
    "als_gd": als_gd,
    "als_sgd": als_sgd,
    "sgd": sgd,
}

_MOVIELENS_OBJECTIVE: dict[str, Any] = {
    "rank": 20,
    "reg": 0.15,
    "count_scaled": True,
    "biases": True,
}

#: Solver name -> keyword arguments that work on MovieLens-like ratings (0.5--5 stars, a few
#: hundred to a few thousand ratings per user): biases, count-scaled ("weighted-lambda")
#: regularization ``reg=0.15`` (the best rank-20 value of the sweep in
#: ``reports/realdata/README.md``), rank 20, and per-solver iteration settings.
SOLVER_DEFAULTS: dict[str, dict[str, Any]] = {
    "lsq": {**_MOVIELENS_OBJECTIVE, "max_iter": 50, "tol": 1e-4},
    "als": {**_MOVIELENS_OBJECTIVE, "max_iter": 15, "tol": 1e-3},
    "gd": {**_MOVIELENS_OBJECTIVE, "max_iter": 300, "tol": 1e-5, "optimizer": "adam",
           "learning_rate": 0.01},
    "als_gd": {**_MOVIELENS_OBJECTIVE, "max_iter": 40, "tol": 1e-4, "inner_steps": 2},
    "als_sgd": {**_MOVIELENS_OBJECTIVE, "max_iter": 30, "tol": 1e-4, "learning_rate": 0.01},
    "sgd": {**_MOVIELENS_OBJECTIVE, "max_iter": 30, "tol": 1e-4, "learning_rate": 0.01},
}


def get_solver(name: str) -> Callable[..., FitResult]:
    """The solver function registered under ``name`` in :data:`SOLVERS`.

    Raises
    ------
    ValueError
        If ``name`` is not a registered solver (the message lists the names).
    """
    try:
        return SOLVERS[name]
    except (KeyError, TypeError):
        names = ", ".join(repr(n) for n in SOLVERS)
        raise ValueError(f"`solver` must be one of {names}; got {name!r}.") from None
