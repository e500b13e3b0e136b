"""Comparison solvers: the same observed ratings, the same objective, the same result type.

Every solver is a function ``solver(R, rank, **options) -> FitResult`` that takes the observed
ratings (anything :func:`lsqmf.as_ratings` accepts), minimizes the ``'l2'`` objective of
:func:`lsqmf.build_problem` and accepts the shared options of
:class:`~lsqmf.solvers._common.SolverOptions` (``reg``, ``reg_bias``, ``count_scaled``,
``biases``, ``weights``, ``random_state``, ``max_iter``, ``tol``, ``max_time``, ``callback``,
``P0``/``Q0``, ``init_scale``, ``verbose``) plus its own (the ``defaults`` of its entry
below). The result's ``cost`` is ``problem.cost(x)`` at the returned factors and its
``history`` records that cost against iterations and wall time. See
:mod:`lsqmf.solvers._common` for the contract, the stopping rules and which defaults apply.

=========== =================================================================================
name        method
=========== =================================================================================
``lsq``     :func:`lsqmf.solve` (Gauss-Newton trust region, ``trf`` + ``lsmr``)
``als``     alternating exact ridge solves, batched over all users / items
``gd``      full-batch gradient descent (Adam or fixed step)
``als_gd``  alternating blocks of exact-line-search gradient steps
``als_sgd`` exact user solves alternating with SGD epochs over the items
``sgd``     Funk SGD over the observed entries (numba)
``als_cg``  ALS with a few warm-started conjugate-gradient steps per row, O(nnz k) a sweep
``bsgd``    biased SGD with a decaying step, seeded shuffles (numba, serial: deterministic)
``bmf``     Bayesian MF by Gibbs sampling, the posterior-mean prediction (the default)
=========== =================================================================================

:data:`DEFAULT_SOLVER` (``'bmf'``) is the solver of ``lsqmf evaluate`` and ``lsqmf fit``
without ``--solver``: the most accurate on MovieLens latest-small in
``reports/peers/README.md``, within a few thousandths of its best setting at a fraction of
the time.

The registry
------------
:data:`SOLVER_SPECS` is the one table: name -> :class:`SolverSpec` (function, defaults,
description). Every entry point -- the evaluation helpers, grid search, the benchmark harness
and grids, the command line -- resolves a name with :func:`resolve_solver`, and nowhere else.
:data:`SOLVERS` (name -> function) and :data:`SOLVER_DEFAULTS` (name -> the keywords a
by-name call uses: :data:`MOVIELENS_OBJECTIVE` plus the solver's defaults) are views of it.

Defaults, once: a solver called directly uses the contract's objective defaults (``reg=0.1``,
no biases) and its entry's ``defaults``; resolved by name it uses :data:`SOLVER_DEFAULTS`
(the same iteration settings, with the MovieLens objective). Given keywords override both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from ..kernels.registry import warm_up
from ..model.result import FitResult
from ._common import SHARED_OPTIONS, SHARED_PARAMS, SolverOptions, SolverSpec
from .als import SPEC as _ALS
from .als import als
from .als_cg import SPEC as _ALS_CG
from .als_cg import als_cg
from .als_dask import SPEC as _ALS_DASK
from .als_gd import SPEC as _ALS_GD
from .als_gd import als_gd
from .als_sgd import SPEC as _ALS_SGD
from .als_sgd import als_sgd
from .bmf import SPEC as _BMF
from .bmf import bmf
from .bsgd import SPEC as _BSGD
from .bsgd import bsgd
from .gd import SPEC as _GD
from .gd import gd
from .lsq import SPEC as _LSQ
from .lsq import lsq
from .sgd import SPEC as _SGD
from .sgd import sgd

__all__ = [
    "DEFAULT_SOLVER",
    "MOVIELENS_OBJECTIVE",
    "SHARED_OPTIONS",
    "SHARED_PARAMS",
    "SOLVERS",
    "SOLVER_DEFAULTS",
    "SOLVER_KERNELS",
    "SOLVER_SPECS",
    "SolverOptions",
    "SolverSpec",
    "als",
    "als_cg",
    "als_gd",
    "als_sgd",
    "bmf",
    "bsgd",
    "gd",
    "get_solver",
    "get_spec",
    "lsq",
    "resolve_solver",
    "sgd",
    "solver_by_name",
    "warm_up_solver",
    "warm_up_solvers",
]

#: The objective a by-name call fits unless told otherwise, chosen for MovieLens-like ratings
#: (0.5--5 stars, a few hundred to a few thousand ratings per user): biases, count-scaled
#: ("weighted-lambda") regularization ``reg=0.15`` (the best rank-20 value of the sweep in
#: ``reports/realdata/README.md``) and rank 20.
MOVIELENS_OBJECTIVE: Mapping[str, Any] = MappingProxyType(
    {"rank": 20, "reg": 0.15, "count_scaled": True, "biases": True}
)

#: Solver name -> its registry entry (each defined beside its function, in the solver's own
#: module: its defaults, declared options, kernels and tuning space), in listing order.
SOLVER_SPECS: Mapping[str, SolverSpec] = MappingProxyType({
    spec.name: spec
    for spec in (_LSQ, _ALS, _GD, _ALS_GD, _ALS_SGD, _SGD, _ALS_CG, _BSGD, _BMF, _ALS_DASK)
})

#: The solver of ``lsqmf evaluate`` and ``lsqmf fit`` without ``--solver``.
DEFAULT_SOLVER = "bmf"

#: Solver name -> objective settings a by-name call uses instead of
#: :data:`MOVIELENS_OBJECTIVE`'s (``rank`` cannot be a solver default: it is positional).
#: bmf's rank 10 with 70 sweeps (15 burn-in) was chosen on inner holdouts of MovieLens
#: latest-small training folds (RMSE within 0.003 of rank 20 with 160 sweeps, at a sixth of
#: the time); bsgd's reg 0.05 on the same holdouts (with count_scaled, it is the per-rating
#: weight of Funk's rule).
BY_NAME_OBJECTIVE: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "bmf": MappingProxyType({"rank": 10}),
    "bsgd": MappingProxyType({"reg": 0.05}),
})

#: Solver name -> function ``solver(R, rank, **options) -> FitResult`` (a view of the registry).
SOLVERS: Mapping[str, Callable[..., FitResult]] = MappingProxyType(
    {name: spec.function for name, spec in SOLVER_SPECS.items()}
)

#: Solver name -> the keywords a by-name call starts from: :data:`MOVIELENS_OBJECTIVE` and the
#: solver's own defaults (a view of the registry).
SOLVER_DEFAULTS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {name: MappingProxyType({**MOVIELENS_OBJECTIVE, **BY_NAME_OBJECTIVE.get(name, {}),
                             **spec.defaults})
     for name, spec in SOLVER_SPECS.items()}
)


def get_spec(name: str) -> SolverSpec:
    """The registry entry of ``name``.

    Raises
    ------
    ValueError
        If ``name`` is not a registered solver (the message lists the names).
    """
    try:
        return SOLVER_SPECS[name]
    except (KeyError, TypeError):
        names = ", ".join(repr(n) for n in SOLVER_SPECS)
        raise ValueError(f"`solver` must be one of {names}; got {name!r}.") from None


#: Every kernel a registered solver can run (what a process that fits any of them may load).
SOLVER_KERNELS: tuple[str, ...] = tuple(
    dict.fromkeys(name for spec in SOLVER_SPECS.values() for name in spec.kernels)
)


def warm_up_solver(name: str, backend: str = "auto") -> float:
    """``warm_up(spec.kernels, backend)`` for the solver ``name``, before its clock starts.

    Loads (numba's disk cache) or compiles exactly the kernels of :attr:`SolverSpec.kernels`;
    a name outside the registry (a user's callable) gets :data:`SOLVER_KERNELS`. A no-op for
    the numpy backend, which loads no numba. Returns seconds.
    """
    spec = SOLVER_SPECS.get(name)
    return warm_up(SOLVER_KERNELS if spec is None else spec.kernels, backend)


def warm_up_solvers(backend: str = "auto") -> float:
    """``warm_up(SOLVER_KERNELS, backend)``: every kernel a registered solver can run (and no
    kernel only the tests use). What a Dask worker runs once before its first fit
    (``map_tasks(..., warm_up=warm_up_solvers)``). Returns seconds."""
    return warm_up(SOLVER_KERNELS, backend)


def get_solver(name: str) -> Callable[..., FitResult]:
    """The solver function registered under ``name`` (see :func:`get_spec`)."""
    return get_spec(name).function


def resolve_solver(
    solver: str | Callable[..., FitResult], params: Mapping[str, Any] | None = None
) -> tuple[str, Callable[..., FitResult], dict[str, Any]]:
    """``(name, function, params)`` for a by-name call: the one resolution rule.

    A registry name gets :data:`SOLVER_DEFAULTS` for every parameter not in ``params``
    (``rank`` included); a callable is used as it is, with ``params`` unchanged.

    Raises
    ------
    ValueError
        If ``solver`` is a string that is not a registered name.
    """
    params = dict(params or {})
    if callable(solver):
        return getattr(solver, "__name__", "custom"), solver, params
    spec = get_spec(solver)
    return spec.name, spec.function, {**SOLVER_DEFAULTS[spec.name], **params}


def solver_by_name(name: str) -> Callable[..., FitResult]:
    """``call(R, rank=None, **params)``: the registered solver with :func:`resolve_solver`'s
    defaults, for callers that receive a name and call it like a function (the benchmark
    harness). A ``rank`` given positionally or as a keyword overrides the default.

    Raises
    ------
    ValueError
        If ``name`` is not a registered solver.
    """
    spec = get_spec(name)

    def call(R: Any, rank: Any = None, /, **params: Any) -> FitResult:
        if rank is not None:
            params["rank"] = rank
        _, fn, resolved = resolve_solver(spec.name, params)
        return fn(R, resolved.pop("rank"), **resolved)

    call.__name__ = spec.name
    call.__doc__ = f"lsqmf.solvers.{spec.name} with the registry's by-name defaults."
    return call
