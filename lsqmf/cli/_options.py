"""Command-line options built from the library's own tables, never retyped.

Choices come from :data:`lsqmf.solvers.SOLVER_SPECS`, :data:`lsqmf.nls.solve.METHODS`,
:data:`~lsqmf.nls.solve.TR_SOLVERS`, :data:`~lsqmf.nls.solve.LOSSES`,
:data:`~lsqmf.nls.solve.JAC_KINDS`
and :data:`lsqmf.model.problem.FORMULATIONS`; defaults of ``lsqmf solve`` are those of
:func:`lsqmf.solve`'s signature (read with :mod:`inspect`); the solver options of ``fit``,
``evaluate`` and ``cv`` default to None, which means "the registry's default"
(:data:`lsqmf.solvers.SOLVER_DEFAULTS`, the same as a direct call's and ``lsqmf tune``'s; the
help shows each solver's value). ``fit``, ``evaluate`` and ``cv`` share the default solver
(:data:`lsqmf.solvers.DEFAULT_SOLVER`) and its default rank. ``fit`` and ``evaluate`` read a
configuration saved by ``lsqmf tune --out`` with ``--config FILE`` (its solver and
parameters; flags given on the command line win). ``--seed`` defaults to the library's
``random_state=None``: a seed is drawn and recorded in the result's options, so any run can be
replayed with ``--seed``.

Progress (``solve``, ``fit``, ``evaluate``, ``cv``, ``tune``) follows the one policy of
:mod:`lsqmf.runtime.progress`: on a terminal a bar on stderr; off a terminal a status line
(iteration, cost, elapsed) every 30 s; ``--progress`` also prints a last line,
``--no-progress`` nothing. ``-v`` gives the solvers ``verbose=2``, a line per iteration on
stderr (through ``logging``), which then replaces the default progress (``--progress`` keeps
both).
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._params import Param

__all__ = [
    "LSQ_OPTIONS",
    "add_lsq_options",
    "add_progress_options",
    "add_solve_options",
    "add_solver_options",
    "apply_config",
    "own_option_flags",
    "progress_callback",
    "read_config",
    "solve_defaults",
    "solver_params",
    "verbose_level",
]

#: Options of :func:`lsqmf.solve` that ``fit``/``evaluate``/``cv`` accept for the ``lsq``
#: solver (the registry's ``lsq`` passes them on).
LSQ_OPTIONS = ("loss", "f_scale", "jac", "bounds")


def solve_defaults() -> dict[str, Any]:
    """Keyword defaults of :func:`lsqmf.solve`, from its signature."""
    from ..nls.solve import solve

    return {
        name: p.default for name, p in inspect.signature(solve).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def _tr_solver(value: str) -> str | None:
    return None if value.lower() == "none" else value


def _tr_solver_choices() -> list[str | None]:
    from ..nls.tables import TR_SOLVERS

    return list(TR_SOLVERS)


def _bounds_help() -> str:
    return "lower and upper bound of every unknown (lsqmf.solve's bounds=(LOW, HIGH))"


def solve_flag_params() -> tuple[Param, ...]:
    """The options of :func:`lsqmf.solve` that ``lsqmf solve`` offers as flags (declared in
    :data:`lsqmf.nls.options.SOLVE_PARAMS`; ``--rank``, ``--seed``, ``--bounds`` and
    ``--missing`` are added by the command itself)."""
    from ..nls.options import SOLVE_PARAMS

    return tuple(p for p in SOLVE_PARAMS if p.cli and p.name != "rank")


def _none_or(kind: type) -> Callable[[str], Any]:
    """An argparse type that reads ``none`` as None (for options whose None means something)."""
    def convert(text: str) -> Any:
        return None if text.lower() == "none" else kind(text)

    convert.__name__ = kind.__name__
    return convert


def add_solve_options(p: argparse.ArgumentParser) -> None:
    """The options of ``lsqmf solve``, generated from :func:`lsqmf.solve`'s declarations: type,
    choices, the requirement and the real default in the help."""
    for param in solve_flag_params():
        flag = "--" + param.name.replace("_", "-")
        text = f"{param.help}: {param.requirement()} (default: {param.default!r})"
        if param.kind == "bool":
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=param.default,
                           help=text)
        elif param.choices:
            names = [str(c) for c in param.choices]
            p.add_argument(flag, type=_none_or(str) if None in param.choices else str,
                           default=param.default,
                           choices=list(param.choices), metavar="{" + ",".join(names) + "}",
                           help=text)
        else:
            kind = {"int": int, "float": float}[param.kind]
            p.add_argument(flag, type=_none_or(kind) if param.allow_none else kind,
                           default=param.default, help=text,
                           metavar=param.name.upper().replace("_", "-"))
    p.add_argument("--bounds", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help=_bounds_help())
    p.add_argument("--seed", type=int, default=None,
                   help="random_state of the initial factors (default: drawn, and recorded "
                   "in the result's options)")


def own_option_flags() -> dict[str, tuple[Param, list[str]]]:
    """Every solver-own option of the registry -> (its declaration, solvers that take it)."""
    from ..solvers import SOLVER_SPECS

    flags: dict[str, tuple[Param, list[str]]] = {}
    for name, spec in SOLVER_SPECS.items():
        for param in spec.params:
            if param.name in ("method", "tr_solver") or not param.cli:  # lsq: add_lsq_options
                continue
            flags.setdefault(param.name, (param, []))[1].append(name)
    return flags


def _defaults_text(option: str, names: list[str] | None = None) -> str:
    """The default of ``option`` per solver, grouped: ``'als, ...: 20; bmf: 10'`` (``reg``: its
    rule, ``0.15 x std(ratings)``; an option a solver refuses: ``not used``)."""
    from ..solvers import SOLVER_DEFAULTS, default_of, get_spec, reg_rule

    by_value: dict[str, list[str]] = {}
    for name in names or list(SOLVER_DEFAULTS):
        if option == "reg":
            text = reg_rule(name).split(" (")[0]
        elif option in get_spec(name).unused:
            text = "not used"
        else:
            text = repr(default_of(name, option))
        by_value.setdefault(text, []).append(name)
    if len(by_value) == 1:
        return next(iter(by_value))
    return "; ".join(f"{', '.join(ns)}: {v}" for v, ns in by_value.items())


def _param_flag(p: argparse.ArgumentParser | Any, param: Param, help_text: str,
                **overrides: Any) -> None:
    """One ``--flag`` for a declared option (default None: "not given")."""
    flag = "--" + param.name.replace("_", "-")
    kwargs: dict[str, Any] = {"default": None, "help": help_text}
    if param.kind == "bool":
        kwargs["action"] = argparse.BooleanOptionalAction
    elif param.kind == "choice":
        kwargs["choices"] = [c for c in param.choices if c is not None]
    else:
        kwargs["type"] = {"int": int, "float": float}.get(param.kind, str)
        kwargs["metavar"] = param.name.upper().replace("_", "-")
    kwargs.update(overrides)
    p.add_argument(flag, **kwargs)


def add_lsq_options(p: argparse.ArgumentParser) -> None:
    """``--method``, ``--tr-solver``, ``--loss``, ``--f-scale``, ``--jac``, ``--bounds`` for
    the ``lsq`` solver (default None: the registry's ``lsq`` defaults, then lsqmf.solve's)."""
    from ..nls.tables import JAC_KINDS, LOSSES, METHODS

    g = p.add_argument_group("lsq solver options (lsqmf.solve)")
    g.add_argument("--method", choices=list(METHODS), default=None)
    g.add_argument("--tr-solver", type=_tr_solver, default=None, choices=_tr_solver_choices())
    g.add_argument("--loss", choices=list(LOSSES), default=None)
    g.add_argument("--f-scale", type=float, default=None)
    g.add_argument("--jac", choices=list(JAC_KINDS), default=None)
    g.add_argument("--bounds", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help=_bounds_help())


def add_solver_options(p: argparse.ArgumentParser, *, multi: bool = False) -> None:
    """The shared solver options, every registry solver's own options, and the lsq group,
    generated from the declarations (:data:`lsqmf.solvers.SHARED_PARAMS`, each solver's
    ``params``): type, choices, the requirement and the real by-name default per solver."""
    from ..solvers import DEFAULT_SOLVER, SHARED_PARAMS, SOLVER_SPECS

    # one default solver (and so one default rank) for fit, evaluate, cv and tune
    p.add_argument("--solver", choices=list(SOLVER_SPECS), default=None,
                   help=f"solver name (default: {DEFAULT_SOLVER}): "
                   + "; ".join(f"{n}: {s.description}" for n, s in SOLVER_SPECS.items()))
    shared = {param.name: param for param in SHARED_PARAMS}
    for name in ("rank", "reg"):
        param = shared[name]
        text = f"{param.help}: {param.requirement()} (default: {_defaults_text(name)})"
        if multi and name == "rank":
            _param_flag(p, param, "ranks to try; " + text, nargs="+")
        elif multi:
            _param_flag(p, param, "values to try; " + text, nargs="+")
        else:
            _param_flag(p, param, text)
    for name in _SHARED_FLAGS:
        param = shared[name]
        _param_flag(p, param, f"{param.help}: {param.requirement()} "
                    f"(default: {_defaults_text(name)})")
    for option, (param, names) in own_option_flags().items():
        _param_flag(p, param, f"{param.help}, for {', '.join(names)}: {param.requirement()} "
                    f"(default: {_defaults_text(option, names)})")
    add_lsq_options(p)
    p.add_argument("--seed", type=int, default=None,
                   help="random_state (default: drawn, printed and recorded in the result's "
                   "options)")
    if not multi:
        p.add_argument("--config", type=Path, default=None, metavar="FILE",
                       help="a configuration saved by 'lsqmf tune --out FILE' (JSON: solver "
                       "and params); options given here override it")


def apply_config(args: argparse.Namespace) -> None:
    """Resolve ``args.solver`` (``--config``'s, else :data:`lsqmf.solvers.DEFAULT_SOLVER`) and
    fill the solver flags not given on the command line from ``--config FILE``. Idempotent.

    Raises
    ------
    ValueError
        For an unreadable configuration, one naming another solver than ``--solver``, or a
        parameter the command line does not offer.
    """
    from ..solvers import DEFAULT_SOLVER

    if getattr(args, "_config_applied", False):
        return
    path = getattr(args, "config", None)
    if path is not None:
        solver, params = read_config(path)
        if args.solver is not None and args.solver != solver:
            raise ValueError(f"--solver {args.solver} differs from the solver of --config "
                             f"{str(path)!r} ({solver}); drop one of them.")
        args.solver = solver
        for key, value in params.items():
            if not hasattr(args, key):
                raise ValueError(f"--config {str(path)!r}: parameter {key!r} is not an option "
                                 "of this command.")
            if getattr(args, key) is None:
                setattr(args, key, tuple(value) if key == "bounds" else value)
    if args.solver is None:
        args.solver = DEFAULT_SOLVER
    args._config_applied = True


def read_config(path: Path) -> tuple[str, dict[str, Any]]:
    """``(solver, params)`` of a configuration file (what ``TuneResult.save`` writes).

    Raises
    ------
    ValueError
        When the file cannot be read or has no ``solver`` string and ``params`` object.
    """
    import json

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"--config {str(path)!r}: cannot read a JSON configuration "
                         f"({err}).") from err
    if (not isinstance(data, dict) or not isinstance(data.get("solver"), str)
            or not isinstance(data.get("params", {}), dict)):
        raise ValueError(f"--config {str(path)!r}: expected an object with 'solver' (a name) "
                         "and 'params' (an object), as 'lsqmf tune --out' writes.")
    return data["solver"], dict(data.get("params", {}))


#: Shared options of add_solver_options besides rank and reg (which cv grids over): those of
#: :data:`lsqmf.solvers.SHARED_PARAMS` the command line offers.
_SHARED_FLAGS = ("reg_bias", "biases", "count_scaled", "max_iter", "tol", "max_time", "init_scale",
                 "backend")


def solver_params(args: argparse.Namespace, *, grid: bool = False) -> dict[str, Any]:
    """The options given on the command line (None: not given), checked against the solver.

    Raises
    ------
    ValueError
        For an option the chosen solver does not take (the message names the ones that do).
    """
    from ..solvers import get_spec

    apply_config(args)
    spec = get_spec(args.solver)
    params: dict[str, Any] = {"random_state": args.seed}
    for name in (*_SHARED_FLAGS, *(() if grid else ("rank", "reg"))):
        value = getattr(args, name)
        if value is not None:
            params[name] = value
    for option, (_, names) in own_option_flags().items():
        value = getattr(args, option)
        if value is None:
            continue
        if args.solver not in names:
            raise ValueError(
                f"--{option.replace('_', '-')} applies to the {', '.join(names)} solver(s); "
                f"got --solver {args.solver}."
            )
        params[option] = value
    for option in ("method", "tr_solver", *LSQ_OPTIONS):
        value = getattr(args, option)
        if value is None:
            continue
        if spec.name != "lsq":
            raise ValueError(
                f"--{option.replace('_', '-')} applies to the lsq solver; got --solver "
                f"{args.solver}."
            )
        params[option] = tuple(value) if option == "bounds" else value
    return params


def add_progress_options(p: argparse.ArgumentParser, *, default: bool | None = None,
                         solver_log: bool = False) -> None:
    """``--progress/--no-progress`` (default None: the policy's default, see
    :mod:`lsqmf.runtime.progress`); ``solver_log``: the command's ``-v`` logs every solver
    iteration, which replaces the default progress (:func:`progress_setting`)."""
    from ..runtime.progress import PROGRESS_HELP

    note = "; -v (a line per iteration) replaces the default" if solver_log else ""
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=default,
                   help=PROGRESS_HELP + note)


def verbose_level(args: argparse.Namespace) -> int:
    """The solvers' ``verbose`` for the global ``-v`` count: 2 (a line per iteration) or 0."""
    return 2 if getattr(args, "verbose", 0) else 0


def progress_setting(args: argparse.Namespace) -> bool | None:
    """The policy's tri-state for a solver run: ``--progress/--no-progress`` as given; by
    default None, or False under ``-v`` (its line per iteration is the progress)."""
    if args.progress is not None:
        return bool(args.progress)
    return False if getattr(args, "verbose", 0) else None


@contextlib.contextmanager
def progress_callback(
    args: argparse.Namespace, total: int | None, desc: str
) -> Iterator[Callable[[Any], None] | None]:
    """A solver ``callback`` that reports its iteration and cost by the progress policy of
    :mod:`lsqmf.runtime.progress` (a bar on a terminal, else a status line every 30 s), or
    None when progress is off."""
    from ..runtime.progress import Progress

    bar = Progress(desc, total, progress=progress_setting(args), unit="iterations",
                   estimate=False)
    if not bar.enabled:
        yield None
        return

    def callback(info: Any) -> None:
        bar.update(int(info.step), f"cost {info.cost:.4g}")

    try:
        yield callback
    finally:
        bar.close()
