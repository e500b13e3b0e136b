"""Benchmark grids as data: the TOML schema, its validation, and the enumeration of cells.

A *grid* is a set of problems times a set of solver configurations; every (problem,
configuration) pair is a *cell*, timed ``repeats`` times (best of). Grids are TOML files (the
presets live in the repository's ``benchmarks/`` directory) parsed with :mod:`tomllib`.

Schema
------
Top-level keys::

    name = "seed"                 # str, required: names the grid in reports
    description = "..."           # str, optional
    repeats = 3                   # int >= 1, optional (default 1): best-of count
    problems = "seed"             # str, required: the problem generator (see below)

    [problem]                     # the generator's parameters (keys depend on `problems`)
    n = [5, 10, 20, 40]

    [solve]                       # optional: keyword arguments given to every configuration
    missing = 0

    [[configs]]                   # one or more solver configurations
    solver = "solve"              # "solve" (lsqmf.solve, the default) or a registry name
    method = ["trf", "dogbox"]    # any other key is a solver keyword argument;
    tr_solver = ["exact", "lsmr"] # a list expands into one configuration per value
    loss = "linear"               # (Cartesian product over the listed keys)

``solver = "solve"`` is :func:`lsqmf.solve` itself with its own defaults (the seed
formulation ``'prior'``, ``ftol=1e-3``); any other name (``"lsq"``, ``"als"``, ``"gd"``,
``"sgd"``, ...) is resolved in the solver registry with the one by-name rule of
:func:`lsqmf.solvers.resolve_solver`, in every problem kind: the keys a grid does not set come
from :data:`lsqmf.solvers.SOLVER_DEFAULTS` (the solver's iteration settings and the
MovieLens objective: biases, count-scaled ``reg``; set ``biases = false`` and
``count_scaled = false`` for the plain ``'l2'`` objective, as ``scale.toml`` does), so a
name runs with the same settings here, in :func:`lsqmf.evaluate.scoring.fit_and_score` and on the
command line. An unknown name is not an error when the grid is loaded: its cells become rows
with the error, so a grid can name a solver another build does not ship.

Values are strings, numbers or booleans (or lists of them, which expand). TOML has no null: the
string ``"none"`` stands for Python ``None`` (e.g. ``tr_solver = "none"`` with ``method =
"lm"``). A key of a configuration overrides the same key of ``[solve]``. An unknown key, a
wrong type or an empty list is a :class:`GridError` naming the file and the key.

Problem generators (``problems``) and their ``[problem]`` keys
---------------------------------------------------------------
``"seed"`` -- the seed timing study, one shared ``numpy.random.default_rng(random_state)``::

    for repeat in range(repeats):
        for n in n:                                 # list of int
            m = int(m_factor * n)                   # m_factor: float, default 0.8
            for kf in k_factor:                     # list of float in (0, 1]
                k = int(kf * n)
                P = rng.random((n, k)); Q = rng.random((k, m)); R_h = P @ Q
                for s in sparsity:                  # list of float in [0, 1)
                    R = R_h.round(value_decimals) * (rng.random(R_h.shape) > s)
                    # solved as solve(R, P0=P.round(prior_decimals), Q0=Q.round(...), ...)

    ``random_state`` (int, default 0), ``value_decimals`` (int, default 2), ``prior_decimals``
    (int, default 1). Cell columns: ``sparsity, k_factor, n, m, k``. The data of every
    (repeat, n, k_factor, sparsity) is drawn whether or not its cells run, so a filtered or
    resumed run times exactly the problems of the full run.

``"synthetic"`` -- sparse low-rank problems at scale, each drawn from its own generator
``default_rng([random_state, repeat, index])``: ``n`` (list of int), ``m_factor`` (float,
default 0.8), ``rank`` (int, default 10), ``density`` (list of float in (0, 1]: fraction
observed), ``noise`` (float >= 0, default 0.1: std of Gaussian noise added to ``P @ Q``),
``random_state`` (int, default 0). Drawn by :func:`lsqmf.data.synthetic.make_low_rank` (standard
normal hidden factors scaled by ``1/sqrt(rank)``, observed positions uniform without
replacement, no n x m array). Solved as
``solver(ratings, rank, **params)`` (the problem's ``rank`` overrides the registry's).
Cell columns: ``n, m, k, density``.

``"movielens"`` -- cross-validation on a built-in dataset: ``dataset`` (str, default
``"ml-latest-small"``), ``n_splits`` (int >= 2, default 5), ``random_state`` (int, default 0).
Cells are configuration x fold; each runs
``lsqmf.evaluate.scoring.fit_and_score(solver, train, test, **params)`` and records ``fit_s``,
``rmse`` and ``mae``. Cell columns: ``fold``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "GENERATORS",
    "PRESETS",
    "Grid",
    "GridError",
    "ProblemData",
    "load_grid",
    "parse_grid",
    "preset_path",
]

#: Preset name -> TOML file name in the repository's ``benchmarks/`` directory.
PRESETS = {"seed": "seed.toml", "scale": "scale.toml", "realdata": "realdata.toml"}

_TOP_KEYS = {"name", "description", "repeats", "problems", "problem", "solve", "configs"}
_NONE = "none"


class GridError(ValueError):
    """A grid file is malformed; the message names the file and the key."""


@dataclass(frozen=True)
class ProblemData:
    """One generated problem: how to call the solver on it, and its measured columns.

    ``args`` are the positional arguments of the solver call (the ratings, and the rank when
    the problem gives no initial factors), ``kwargs`` the problem-specific keywords (``P0``,
    ``Q0``); ``stats`` are columns measured on the data (``nnz``). For ``"movielens"``,
    ``args`` is ``(train, test)``.
    """

    args: tuple[Any, ...]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    stats: Mapping[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------- parameter specs
# key -> (kind, default, check); kind is 'int', 'float', 'str', with a 'list:' prefix for lists
_Spec = tuple[str, Any, Any]


def _in_open01(v: float) -> bool:
    return 0.0 < v <= 1.0


_GENERATOR_SPECS: dict[str, dict[str, _Spec]] = {
    "seed": {
        "n": ("list:int", None, lambda v: v >= 1),
        "k_factor": ("list:float", None, _in_open01),
        "sparsity": ("list:float", None, lambda v: 0.0 <= v < 1.0),
        "m_factor": ("float", 0.8, lambda v: v > 0),
        "random_state": ("int", 0, lambda v: v >= 0),
        "value_decimals": ("int", 2, lambda v: v >= 0),
        "prior_decimals": ("int", 1, lambda v: v >= 0),
    },
    "synthetic": {
        "n": ("list:int", None, lambda v: v >= 2),
        "density": ("list:float", None, _in_open01),
        "m_factor": ("float", 0.8, lambda v: v > 0),
        "rank": ("int", 10, lambda v: v >= 1),
        "noise": ("float", 0.1, lambda v: v >= 0),
        "random_state": ("int", 0, lambda v: v >= 0),
    },
    "movielens": {
        "dataset": ("str", "ml-latest-small", None),
        "n_splits": ("int", 5, lambda v: v >= 2),
        "random_state": ("int", 0, lambda v: v >= 0),
    },
}

#: Problem generator name -> the names of its ``[problem]`` keys.
GENERATORS = {name: tuple(spec) for name, spec in _GENERATOR_SPECS.items()}


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    raise AssertionError(kind)


def _check_param(source: str, key: str, value: Any, spec: _Spec) -> Any:
    kind, _, check = spec
    where = f"{source}: key `problem.{key}`"
    if kind.startswith("list:"):
        base = kind[5:]
        if not isinstance(value, list):
            value = [value]
        if not value:
            raise GridError(f"{where} must be a non-empty list of {base}; got [].")
        items = value
    else:
        base = kind
        items = [value]
    for v in items:
        if not _type_ok(base, v):
            raise GridError(
                f"{where} must be {'a list of' if kind.startswith('list:') else 'a'} {base}; "
                f"got {v!r} ({type(v).__name__})."
            )
        if base == "float" and not math.isfinite(v):
            raise GridError(f"{where} must be finite; got {v!r}.")
        if check is not None and not check(v):
            raise GridError(f"{where} has an out-of-range value {v!r}.")
    if base == "float":
        items = [float(v) for v in items]
    return items if kind.startswith("list:") else items[0]


def _check_scalar(source: str, key: str, value: Any) -> Any:
    if isinstance(value, bool | int | str):
        return None if value == _NONE else value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise GridError(f"{source}: key `{key}` must be finite; got {value!r}.")
        return value
    raise GridError(
        f"{source}: key `{key}` must be a string, number or boolean (or a list of them); got "
        f"{type(value).__name__}."
    )


def _solver_params(source: str, table_name: str, table: Any) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise GridError(f"{source}: `{table_name}` must be a table; got {type(table).__name__}.")
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{table_name}.{key}"
        if isinstance(value, list):
            if not value:
                raise GridError(f"{source}: key `{name}` must not be an empty list.")
            out[key] = [_check_scalar(source, name, v) for v in value]
        else:
            out[key] = _check_scalar(source, name, value)
    return out


# ---------------------------------------------------------------------------- the grid
@dataclass(frozen=True)
class Grid:
    """A validated benchmark grid.

    Attributes
    ----------
    name : str
    description : str
    repeats : int
        Default best-of count.
    problems : str
        The problem generator, a key of :data:`GENERATORS`.
    problem : dict
        The generator's parameters, defaults filled in.
    solve : dict
        Keyword arguments common to every configuration.
    configs : list of dict
        The expanded configurations, each with a ``solver`` key.
    source : str
        The file the grid came from (or ``"<string>"``).
    """

    name: str
    description: str
    repeats: int
    problems: str
    problem: dict[str, Any]
    solve: dict[str, Any]
    configs: list[dict[str, Any]]
    source: str = "<string>"

    # ------------------------------------------------------------------ enumeration
    @property
    def config_columns(self) -> list[str]:
        """Column names of the configurations, ``solver`` first, in order of appearance."""
        cols = ["solver"]
        for cfg in self.configs:
            cols += [k for k in cfg if k not in cols]
        return cols

    @property
    def problem_columns(self) -> list[str]:
        """Column names that identify a problem."""
        return {
            "seed": ["sparsity", "k_factor", "n", "m", "k"],
            "synthetic": ["n", "m", "k", "density"],
            "movielens": ["fold"],
        }[self.problems]

    def problem_keys(self) -> list[dict[str, Any]]:
        """The identifying columns of every problem, in generation order (one repeat)."""
        p = self.problem
        keys: list[dict[str, Any]] = []
        if self.problems == "seed":
            for n in p["n"]:
                m = int(p["m_factor"] * n)
                for kf in p["k_factor"]:
                    k = int(kf * n)
                    for s in p["sparsity"]:
                        keys.append({"sparsity": s, "k_factor": kf, "n": n, "m": m, "k": k})
        elif self.problems == "synthetic":
            for n in p["n"]:
                m = int(p["m_factor"] * n)
                for d in p["density"]:
                    keys.append({"n": n, "m": m, "k": p["rank"], "density": d})
        else:
            keys = [{"fold": f} for f in range(p["n_splits"])]
        return keys

    def cells(self) -> list[dict[str, Any]]:
        """Every cell's columns (problem columns, then configuration columns) and ``cell_id``.

        Configuration keys a configuration does not set are None. ``tr_solver=None`` and
        other explicit ``"none"`` values are kept as the string ``"none"`` so that they can
        be selected with a query.
        """
        cfg_cols = self.config_columns
        out = []
        for pi, key in enumerate(self.problem_keys()):
            for ci, cfg in enumerate(self.configs):
                row = dict(key)
                for c in cfg_cols:
                    if c in cfg:
                        row[c] = _NONE if cfg[c] is None else cfg[c]
                    else:
                        row[c] = None
                row["cell_id"] = cell_id(row)
                row["_problem"] = pi
                row["_config"] = ci
                out.append(row)
        return out

    def params(self, config_index: int) -> dict[str, Any]:
        """Keyword arguments of configuration ``config_index`` (``[solve]`` merged in)."""
        cfg = dict(self.configs[config_index])
        cfg.pop("solver")
        return {**self.solve, **cfg}

    def iter_problems(self, repeats: int) -> Iterator[tuple[int, int, ProblemData | None]]:
        """Yield ``(repeat, problem_index, data)`` for every problem, in RNG order.

        The random stream is consumed the same way whatever is later run, so problem
        ``(repeat, index)`` is identical in every run of this grid.
        """
        if self.problems == "seed":
            yield from _seed_problems(self.problem, repeats)
        elif self.problems == "synthetic":
            for r in range(repeats):
                for i, key in enumerate(self.problem_keys()):
                    yield r, i, _LazySynthetic(self.problem, r, i, key)  # type: ignore[misc]
        else:
            for r in range(repeats):
                for i in range(self.problem["n_splits"]):
                    yield r, i, None

    def fingerprint(self) -> str:
        """A hash of the grid's content (not its file name or repeats)."""
        payload = json.dumps(
            [self.problems, self.problem, self.solve, self.configs], sort_keys=True, default=str
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def cell_id(row: Mapping[str, Any]) -> str:
    """A stable text key of a cell from its columns (None columns and private keys skipped)."""
    parts = []
    for k, v in row.items():
        if v is None or k.startswith("_") or k == "cell_id":
            continue
        parts.append(f"{k}={v}")
    return "|".join(parts)


# ---------------------------------------------------------------------------- generators
def _seed_problems(p: Mapping[str, Any], repeats: int) -> Iterator[tuple[int, int, ProblemData]]:
    rng = np.random.default_rng(p["random_state"])
    vd, pd_ = p["value_decimals"], p["prior_decimals"]
    for r in range(repeats):
        i = 0
        for n in p["n"]:
            m = int(p["m_factor"] * n)
            for kf in p["k_factor"]:
                k = int(kf * n)
                P = rng.random((n, k))
                Q = rng.random((k, m))
                R_h = P @ Q
                P0, Q0 = P.round(pd_), Q.round(pd_)
                for s in p["sparsity"]:
                    R = R_h.round(vd) * (rng.random(R_h.shape) > s)
                    data = ProblemData(
                        args=(R,), kwargs={"P0": P0, "Q0": Q0},
                        stats={"nnz": int(np.count_nonzero(R))},
                    )
                    yield r, i, data
                    i += 1


class _LazySynthetic:
    """A synthetic problem generated on first use from its own seed."""

    def __init__(self, p: Mapping[str, Any], repeat: int, index: int, key: Mapping) -> None:
        self.p, self.repeat, self.index, self.key = dict(p), repeat, index, dict(key)

    def build(self) -> ProblemData:
        from ..data.synthetic import make_low_rank

        p, key = self.p, self.key
        rng = np.random.default_rng([p["random_state"], self.repeat, self.index])
        ratings, _ = make_low_rank(
            key["n"], key["m"], key["k"], density=key["density"], noise=p["noise"],
            random_state=rng, cover=False,
        )
        return ProblemData(args=(ratings, key["k"]), stats={"nnz": ratings.nnz})


# ---------------------------------------------------------------------------- parsing
def _load_table(text_or_dict: str | Mapping[str, Any], source: str) -> dict[str, Any]:
    """The grid as a dict: TOML text parsed, a mapping copied."""
    if isinstance(text_or_dict, str):
        try:
            return tomllib.loads(text_or_dict)
        except tomllib.TOMLDecodeError as err:
            raise GridError(f"{source}: not valid TOML: {err}") from err
    return dict(text_or_dict)


def _check_top_level(raw: Mapping[str, Any], source: str) -> int:
    """Known top-level keys, the required ones present, strings where needed; ``repeats``."""
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise GridError(
            f"{source}: unknown top-level key(s) {unknown}; allowed: {sorted(_TOP_KEYS)}."
        )
    for key in ("name", "problems"):
        if key not in raw:
            raise GridError(f"{source}: missing required key `{key}`.")
    for key in ("name", "description", "problems"):
        if key in raw and not isinstance(raw[key], str):
            raise GridError(
                f"{source}: key `{key}` must be a string; got {type(raw[key]).__name__}."
            )
    repeats = raw.get("repeats", 1)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise GridError(f"{source}: key `repeats` must be an int >= 1; got {repeats!r}.")
    return repeats


def _parse_problem(raw: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The ``[problem]`` table checked against the generator of ``problems``, with defaults."""
    problems = raw["problems"]
    if problems not in _GENERATOR_SPECS:
        raise GridError(
            f"{source}: key `problems` must be one of {sorted(_GENERATOR_SPECS)}; got "
            f"{problems!r}."
        )
    spec = _GENERATOR_SPECS[problems]
    ptable = raw.get("problem", {})
    if not isinstance(ptable, dict):
        raise GridError(f"{source}: `problem` must be a table; got {type(ptable).__name__}.")
    unknown = sorted(set(ptable) - set(spec))
    if unknown:
        raise GridError(
            f"{source}: unknown key(s) {['problem.' + u for u in unknown]} for problems="
            f"{problems!r}; allowed: {sorted(spec)}."
        )
    problem: dict[str, Any] = {}
    for key, s in spec.items():
        if key in ptable:
            problem[key] = _check_param(source, key, ptable[key], s)
        elif s[1] is None:
            raise GridError(f"{source}: missing required key `problem.{key}`.")
        else:
            problem[key] = s[1]
    return problem


def _parse_solve(raw: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The ``[solve]`` table: solver options shared by every configuration, no lists."""
    solve = _solver_params(source, "solve", raw.get("solve", {}))
    for key, value in solve.items():
        if isinstance(value, list):
            raise GridError(
                f"{source}: key `solve.{key}` must be a single value (lists expand only inside "
                "[[configs]])."
            )
    return solve


def _expand_configs(raw: Mapping[str, Any], source: str) -> list[dict[str, Any]]:
    """Every ``[[configs]]`` table expanded over its lists (solver first)."""
    raw_configs = raw.get("configs")
    if not isinstance(raw_configs, list) or not raw_configs:
        raise GridError(f"{source}: missing `[[configs]]`: at least one configuration needed.")
    configs: list[dict[str, Any]] = []
    for j, table in enumerate(raw_configs):
        params = _solver_params(source, f"configs[{j}]", table)
        solvers = params.pop("solver", "solve")
        for solver in solvers if isinstance(solvers, list) else [solvers]:
            if not isinstance(solver, str):
                raise GridError(
                    f"{source}: key `configs[{j}].solver` must be a string (\"solve\" or a "
                    f"name in lsqmf.solvers.SOLVERS) or a list of them; got {solver!r}."
                )
        keys = ["solver", *params]
        lists = [solvers if isinstance(solvers, list) else [solvers]]
        lists += [v if isinstance(v, list) else [v] for v in params.values()]
        for combo in itertools.product(*lists):
            configs.append(dict(zip(keys, combo, strict=True)))
    return configs


def parse_grid(text_or_dict: str | Mapping[str, Any], source: str = "<string>") -> Grid:
    """Validate a grid given as TOML text or an already-parsed mapping.

    Raises
    ------
    GridError
        Naming ``source`` and the offending key.
    """
    raw = _load_table(text_or_dict, source)
    repeats = _check_top_level(raw, source)
    problem = _parse_problem(raw, source)
    solve = _parse_solve(raw, source)
    configs = _expand_configs(raw, source)
    return Grid(
        name=raw["name"],
        description=raw.get("description", ""),
        repeats=repeats,
        problems=raw["problems"],
        problem=problem,
        solve=solve,
        configs=configs,
        source=source,
    )


def benchmarks_dir() -> Path:
    """The repository's ``benchmarks/`` directory (next to the ``lsqmf`` package)."""
    return Path(__file__).resolve().parents[2] / "benchmarks"


def preset_path(name: str) -> Path:
    """The TOML file of preset ``name``.

    Installed from a wheel, the presets are in ``lsqmf/bench/presets/``; in a source checkout
    (or an editable install) they are the files in the repository's ``benchmarks/``.
    """
    if name not in PRESETS:
        raise ValueError(f"`preset` must be one of {', '.join(map(repr, PRESETS))}; got {name!r}.")
    candidates = [Path(__file__).resolve().parent / "presets" / PRESETS[name],
                  benchmarks_dir() / PRESETS[name]]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"preset {name!r} was found neither in {candidates[0].parent} nor in "
        f"{candidates[1].parent}; pass the grid file with --grid FILE instead."
    )


def load_grid(grid: str | Path | None = None, *, preset: str | None = None) -> Grid:
    """Load and validate a grid from a TOML file or a preset name (exactly one of them)."""
    if (grid is None) == (preset is None):
        raise ValueError("give exactly one of `grid` (a TOML file) and `preset`.")
    path = preset_path(preset) if preset is not None else Path(grid)  # type: ignore[arg-type]
    if not path.is_file():
        raise FileNotFoundError(f"`grid` file {str(path)!r} does not exist.")
    return parse_grid(path.read_text(encoding="utf-8"), source=str(path))


def select_cells(cells: Sequence[dict[str, Any]], where: str | None) -> list[dict[str, Any]]:
    """The cells for which the pandas query ``where`` is true (all cells when None)."""
    if where is None or not where.strip():
        return list(cells)
    import pandas as pd

    frame = pd.DataFrame([{k: v for k, v in c.items() if not k.startswith("_")} for c in cells])
    try:
        keep = frame.query(where, engine="python").index
    except Exception as err:  # pandas raises many kinds here
        cols = ", ".join(c for c in frame.columns if c != "cell_id")
        raise ValueError(
            f"`where` query {where!r} could not be evaluated ({type(err).__name__}: {err}); "
            f"the cell columns are: {cols}."
        ) from err
    return [cells[i] for i in keep]
