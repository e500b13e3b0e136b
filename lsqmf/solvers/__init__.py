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
:data:`SOLVERS` (name -> function) and :data:`SOLVER_DEFAULTS` (name -> its defaults) are
views of it.

Defaults, once: a solver called directly (``als(R)``, ``als(R, 20)``), by name
(:func:`resolve_solver`, :func:`lsqmf.evaluate.fit_and_score`, ``lsqmf tune``) or from the
command line gets the same defaults, :data:`SOLVER_DEFAULTS`: the objective of
:data:`SHARED_PARAMS` (biases, count-scaled regularization, ``reg=None`` scaled by the data:
the spec's ``reg_per_std`` times the standard deviation of the training ratings), the spec's
``rank`` and its settings and own options. Given keywords override them. The value of
``reg`` used is recorded in ``result.options['reg']``, the seed in
``result.options['random_state']``.

======== ==== =========== ====================================================
solver   rank reg_per_std refused shared options (not used by the solver)
======== ==== =========== ====================================================
``bmf``  10   --          ``reg``, ``reg_bias``, ``count_scaled``, ``tol``
others   20   0.15        --
``bsgd`` 20   0.05        --
======== ==== =========== ====================================================
"""

from __future__ import annotations

import textwrap
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
    "OBJECTIVE_OPTIONS",
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
    "default_of",
    "gd",
    "get_solver",
    "get_spec",
    "lsq",
    "reg_rule",
    "resolve_solver",
    "sgd",
    "solver_by_name",
    "warm_up_solver",
    "warm_up_solvers",
]

#: Solver name -> its registry entry (each defined beside its function, in the solver's own
#: module: its defaults, declared options, kernels and tuning space), in listing order.
SOLVER_SPECS: Mapping[str, SolverSpec] = MappingProxyType({
    spec.name: spec
    for spec in (_LSQ, _ALS, _GD, _ALS_GD, _ALS_SGD, _SGD, _ALS_CG, _BSGD, _BMF, _ALS_DASK)
})

#: The solver of ``lsqmf evaluate`` and ``lsqmf fit`` without ``--solver``.
DEFAULT_SOLVER = "bmf"

#: Solver name -> function ``solver(R, rank, **options) -> FitResult`` (a view of the registry).
SOLVERS: Mapping[str, Callable[..., FitResult]] = MappingProxyType(
    {name: spec.function for name, spec in SOLVER_SPECS.items()}
)

#: The shared options whose defaults :data:`SOLVER_DEFAULTS` lists (the objective).
OBJECTIVE_OPTIONS = ("reg", "reg_bias", "count_scaled", "biases")

_SHARED = {p.name: p.default for p in SHARED_PARAMS}

#: Solver name -> its defaults, the same at every entry point (a view of the registry): the
#: spec's ``rank``, the objective's defaults from :data:`SHARED_PARAMS` (``reg=None``: scaled
#: by the data), the spec's settings (``max_iter``, ``tol``) and its own options' defaults.
SOLVER_DEFAULTS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {name: MappingProxyType({"rank": spec.rank, **{k: _SHARED[k] for k in OBJECTIVE_OPTIONS},
                             **spec.defaults})
     for name, spec in SOLVER_SPECS.items()}
)


def _defaults_paragraph(spec: SolverSpec) -> str:
    """The paragraph appended to a solver's docstring: its defaults, read from the registry
    (so ``help(lsqmf.solvers.als)`` shows the values every entry point uses)."""
    d = SOLVER_DEFAULTS[spec.name]
    parts = [f"rank={d['rank']}", f"reg={reg_rule(spec.name)}"]
    parts += [f"{k}={v!r}" for k, v in d.items() if k not in ("rank", "reg")]
    refused = (f" Refused when given (not used by {spec.name}): "
               + ", ".join(f"``{k}``" for k in spec.unused) + ".") if spec.unused else ""
    text = ("Defaults (the registry's, ``lsqmf.solvers.SOLVER_DEFAULTS[" + repr(spec.name)
            + "]``, the same for a direct call, a by-name call, the command line and "
            "``lsqmf tune``): " + ", ".join(parts) + "." + refused)
    return "\n\n    " + "\n    ".join(textwrap.wrap(text, 88)) + "\n"


def default_of(name: str, option: str) -> Any:
    """The default of ``option`` for the solver ``name`` (its spec's, else the shared one)."""
    return SOLVER_DEFAULTS[name].get(option, _SHARED.get(option))


def reg_rule(name: str) -> str:
    """``reg``'s default in words for the solver ``name``: ``'0.15 x std(ratings)'``, or why it
    is refused."""
    spec = get_spec(name)
    if "reg" in spec.unused:
        return f"not used ({spec.unused['reg']})"
    return f"{spec.reg_per_std:g} x std(ratings)"


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

    A registry name gets :data:`SOLVER_DEFAULTS` -- the same defaults as a direct call -- for
    every parameter not in ``params`` (``rank`` included, so the caller can pass it
    positionally); a callable is used as it is, with ``params`` unchanged.

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
    call.__doc__ = f"lsqmf.solvers.{spec.name} with the registry's defaults."
    return call


for _spec in SOLVER_SPECS.values():
    if _spec.function.__doc__ and "Defaults (the registry's" not in _spec.function.__doc__:
        _spec.function.__doc__ = _spec.function.__doc__.rstrip() + _defaults_paragraph(_spec)
