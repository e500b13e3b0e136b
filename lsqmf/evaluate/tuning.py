"""Choose a solver, its rank and its regularization on training data only.

:func:`tune` scores every configuration of a search space on inner splits of the training
ratings -- a seeded holdout (``n_splits=1``, the default: ``test_size`` of the entries) or a
seeded k-fold -- with :func:`lsqmf.evaluate.scoring.fit_and_score` (the same cold-start policy and
clipping as ``lsqmf evaluate``), and returns the configuration with the lowest mean held-out
RMSE. The test data never enters: what it returns can be evaluated once on a test set.

Every parameter outside the search space is the registry's default
(:data:`lsqmf.solvers.SOLVER_DEFAULTS`, the same as a direct call's and the command line's):
:func:`full_params` is the configuration a fit runs with, and what :meth:`TuneResult.save`
writes, so ``lsqmf fit --config FILE`` and ``lsqmf evaluate --config FILE`` fit exactly it.

The choice rule: cost against accuracy
--------------------------------------
``rule='cheapest'`` (the default) returns the *cheapest* configuration (lowest mean fit time)
whose mean held-out RMSE is within the noise of the best one: ``rmse <= best + noise``, with
``noise`` the standard error of the best configuration's mean over the splits (its fold spread,
``std / sqrt(k)``) for ``k >= 2`` splits, and ``best / sqrt(2 n)`` (the standard error of an
RMSE over ``n`` held-out ratings) for one holdout. A setting that is 11 times slower for an
RMSE lower by less than that noise is not chosen. ``rule='best'`` returns the lowest mean RMSE
whatever its cost. Both are reported (:attr:`TuneResult.best`).

Time budget and checkpoints
---------------------------
Configurations run through :func:`lsqmf.runtime.parallel.map_tasks` (serially, on local
processes with ``n_jobs``, or on a Dask ``scheduler``). They are ordered cheapest first (by
``rank * max_iter``), and with ``max_time`` no new configuration is started once the budget is
spent; the result says how many were completed. A configuration that raises is recorded with
its error and is not eligible. With ``checkpoint`` (a CSV path) every finished (configuration,
split) is appended at once; a rerun with the same data, splits, seed and space skips them (an
interrupted search -- Ctrl-C, SIGTERM -- resumes where it stopped).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from .._validation import check_choice, check_float, check_int
from ..data.ratings import Ratings, as_ratings
from ..solvers import DEFAULT_SOLVER, SOLVER_SPECS
from .scoring import fit_and_score
from .splits import holdout_split, kfold

__all__ = ["DEFAULT_SPACE", "RULES", "TuneResult", "full_params", "tune"]

logger = logging.getLogger(__name__)

#: The choice rules of :func:`tune` (see the module docstring).
RULES = ("cheapest", "best")

#: Solver name -> parameter name -> values tried: the search space of ``lsqmf tune``, a view of
#: the registry (each solver's :attr:`~lsqmf.solvers.SolverSpec.tuning`). Every other parameter
#: comes from the registry (:data:`lsqmf.solvers.SOLVER_DEFAULTS`). The default solver comes
#: first, then the registry's order.
DEFAULT_SPACE: Mapping[str, Mapping[str, Sequence[Any]]] = MappingProxyType({
    name: MappingProxyType({k: list(v) for k, v in spec.tuning.items()})
    for name, spec in sorted(SOLVER_SPECS.items(), key=lambda kv: kv[0] != DEFAULT_SOLVER)
    if spec.tuning
})


@dataclass(frozen=True)
class TuneResult:
    """What :func:`tune` chose and everything it scored.

    Attributes
    ----------
    solver : str
        The chosen solver.
    params : dict
        The chosen parameters (those of the search space; the rest are the registry's).
    rmse : float
        Mean held-out RMSE of the chosen configuration over the inner splits.
    rule : {'cheapest', 'best'}
        The choice rule used.
    best : dict
        The lowest-RMSE configuration (``solver``, ``params``, ``rmse``, ``fit_s``), the
        chosen one's ``fit_s`` and the ``noise`` the cheapest rule allowed.
    rows : list of dict
        One row per (configuration, split): ``config``, ``split``, ``solver``, the
        parameters, ``rmse``, ``mae``, ``fit_s`` and ``error``.
    n_configs, n_completed : int
        Configurations in the space and configurations scored on every split.
    n_splits : int
    random_state : int or None
    elapsed : float
        Seconds.
    """

    solver: str
    params: dict[str, Any]
    rmse: float
    rows: list[dict[str, Any]] = field(repr=False)
    n_configs: int
    n_completed: int
    n_splits: int
    random_state: int | None
    elapsed: float
    rule: str = "cheapest"
    best: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The chosen configuration as a JSON-ready dict (what ``lsqmf tune --out`` saves):
        ``solver`` and ``params`` -- every parameter of the fit, the registry's defaults
        included (:func:`full_params`), which ``lsqmf fit/evaluate --config FILE`` read --
        then the scores and the search's record."""
        return {
            "solver": self.solver, "params": _plain(full_params(self.solver, self.params)),
            "searched": _plain(self.params), "rmse": self.rmse, "rule": self.rule,
            "best": {k: (_plain(v) if isinstance(v, dict) else v) for k, v in self.best.items()
                     if k not in ("fit_s", "chosen_fit_s")},  # timings: in rows, not here
            "n_splits": self.n_splits, "random_state": self.random_state,
            "n_configs": self.n_configs, "n_completed": self.n_completed,
            "elapsed_s": self.elapsed,
        }

    def save(self, path: str | Path) -> None:
        """Write :meth:`to_dict` as JSON to ``path``."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def _plain(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in d.items()}


def full_params(solver: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Every parameter a configuration of ``solver`` fits with: the registry's defaults
    (:data:`lsqmf.solvers.SOLVER_DEFAULTS`) and ``params`` over them -- exactly what
    :func:`lsqmf.solvers.resolve_solver` gives a by-name fit."""
    from ..solvers import resolve_solver

    return resolve_solver(solver, params)[2]


def _configs(space: Mapping[str, Mapping[str, Sequence[Any]]]) -> list[tuple[str, dict]]:
    from ..solvers import SOLVER_DEFAULTS, get_spec

    out = []
    for solver, grid in space.items():
        get_spec(solver)  # an unknown name fails here, before any work
        if not isinstance(grid, Mapping):
            raise TypeError(f"`space[{solver!r}]` must be a mapping of parameter -> values; "
                            f"got {type(grid).__name__}.")
        names = list(grid)
        for values in itertools.product(*(list(grid[n]) for n in names)):
            out.append((solver, dict(zip(names, values, strict=True))))
    if not out:
        raise ValueError("`space` must hold at least one configuration; got none.")

    def cost(item: tuple[str, dict]) -> float:
        solver, params = item
        d = {**SOLVER_DEFAULTS[solver], **params}
        return float(d.get("rank") or 1) * float(d.get("max_iter") or 1)

    return sorted(out, key=cost)


def _score(shared: list[tuple[Ratings, Ratings]], task: tuple) -> dict[str, Any]:
    """One (configuration, split): a row with the scores or the error."""
    config, split, solver, params, seed = task
    train, val = shared[split]
    try:
        out = fit_and_score(solver, train, val, random_state=seed, **params)
    except Exception as err:  # recorded, never raised: one bad cell must not stop a search
        return _failed_row(task, f"{type(err).__name__}: {err}")
    return {"config": config, "split": split, "solver": solver, **params,
            "rmse": out["rmse"], "mae": out["mae"], "fit_s": out["fit_s"],
            "n_val": out["n_scored"], "error": None}


def _failed_row(task: tuple, error: str | None) -> dict[str, Any]:
    """The row of a (configuration, split) that raised ``error``: NaN scores."""
    config, split, solver, params, _ = task
    return {"config": config, "split": split, "solver": solver, **params,
            "rmse": np.nan, "mae": np.nan, "fit_s": np.nan, "n_val": 0, "error": error}


def tune(
    ratings: Any,
    *,
    space: Mapping[str, Mapping[str, Sequence[Any]]] | None = None,
    n_splits: int = 1,
    test_size: float = 0.1,
    random_state: int | None = 0,
    n_jobs: int = 1,
    scheduler: Any = None,
    max_time: float | None = None,
    rule: str = "cheapest",
    checkpoint: str | Path | None = None,
    progress: bool | None = None,
) -> TuneResult:
    """Pick the solver and parameters on inner splits: the cheapest within noise of the best.

    Parameters
    ----------
    ratings : Ratings or anything :func:`lsqmf.as_ratings` accepts
        The *training* ratings only.
    space : mapping, optional
        Solver name -> parameter name -> values (default :data:`DEFAULT_SPACE`); the grid of
        each solver is its full product; other parameters are the registry's defaults.
    n_splits : int, default=1
        1: one seeded holdout of ``test_size`` of the entries; ``k >= 2``: seeded k-fold.
    test_size : float, default=0.1
    random_state : int or None, default=0
        Seeds the splits and every fit.
    n_jobs : int, default=1
        Local worker processes (see :func:`lsqmf.runtime.parallel.map_tasks`).
    scheduler : str or dask.distributed.Client, optional
        Run the fits on a Dask scheduler (``n_jobs`` is then ignored).
    max_time : float, optional
        Time budget in seconds; no configuration after the first is started once it is spent.
    rule : {'cheapest', 'best'}, default='cheapest'
        ``'cheapest'``: the lowest mean fit time among the configurations within the noise of
        the best mean RMSE; ``'best'``: the lowest mean RMSE (see the module docstring).
    checkpoint : path, optional
        A CSV file: every finished (configuration, split) is appended at once, and the rows
        of an earlier run of the same search are reused (resume after an interrupt).
    progress : bool or None, default=None
        Progress on stderr by :mod:`lsqmf.runtime.progress`'s policy: None a bar on a
        terminal, else a status line every 30 s (fits done, elapsed, time left estimated per
        solver); True also a last line off a terminal; False nothing.

    Returns
    -------
    TuneResult

    Raises
    ------
    ValueError
        For an unknown solver or rule, an empty space, bad split settings, a checkpoint of
        another search, or when no configuration could be scored (the message gives the
        first error).

    Examples
    --------
    >>> from lsqmf.data.synthetic import make_low_rank
    >>> from lsqmf.evaluate.tuning import tune
    >>> R, _ = make_low_rank(40, 30, 2, density=0.5, noise=0.01, random_state=0)
    >>> res = tune(R, space={"als_cg": {"rank": [1, 2], "reg": [0.01]}}, rule="best")
    >>> res.solver, res.params["rank"]
    ('als_cg', 2)
    """
    from ..runtime.parallel import in_order, map_tasks
    from ..solvers import warm_up_solvers

    t0 = time.perf_counter()
    ratings, n_splits, test_size, max_time, n_jobs = _check_tune_args(
        ratings, n_splits, test_size, max_time, n_jobs
    )
    check_choice("rule", rule, RULES)
    configs = _configs(DEFAULT_SPACE if space is None else space)
    splits = (
        [holdout_split(ratings, test_size=test_size, random_state=random_state)]
        if n_splits == 1 else kfold(ratings, n_splits, random_state=random_state)
    )
    store = _Checkpoint(checkpoint, ratings, configs, len(splits), test_size, random_state)
    tasks = (t for t in _tasks(configs, len(splits), random_state, t0, max_time)
             if (t[0], t[1]) not in store.done)
    outcomes = map_tasks(_score, tasks, shared=splits, n_jobs=n_jobs, scheduler=scheduler,
                         label="lsqmf-tune", warm_up=warm_up_solvers)
    expected = [(solver, 1.0) for c, (solver, _) in enumerate(configs)
                for s in range(len(splits)) if (c, s) not in store.done]
    finished = _consume(outcomes, expected, progress, store)
    rows = sorted([*store.done.values(),
                   *(o.value if o.ok else _failed_row(o.task, o.error)
                     for o in in_order(finished))],
                  key=lambda r: (r["config"], r["split"]))
    complete = _complete_means(rows, len(splits))
    chosen, best = _choose(rows, complete, configs, len(splits), rule)
    solver, params = configs[chosen]
    result = TuneResult(
        solver=solver, params=dict(params), rmse=complete[chosen], rows=rows,
        n_configs=len(configs), n_completed=len(complete), n_splits=len(splits),
        random_state=random_state, elapsed=time.perf_counter() - t0, rule=rule, best=best,
    )
    logger.info("tune: chose %s %s (held-out RMSE %.4f, rule %s) from %d of %d configurations",
                solver, params, result.rmse, rule, result.n_completed, result.n_configs)
    return result


def _choose(rows: list[dict[str, Any]], complete: dict[int, float],
            configs: list[tuple[str, dict]], n_splits: int,
            rule: str) -> tuple[int, dict[str, Any]]:
    """``(chosen config, record)`` by ``rule``: the best mean RMSE, or the cheapest mean fit
    time within the noise of it (see the module docstring)."""
    best = min(complete, key=lambda c: (complete[c], c))
    mine = [r for r in rows if r["config"] == best]
    if n_splits >= 2:
        rmses = np.array([r["rmse"] for r in mine], dtype=float)
        noise = float(np.std(rmses, ddof=1) / np.sqrt(n_splits))
    else:
        noise = float(complete[best] / np.sqrt(2.0 * max(int(mine[0].get("n_val") or 1), 1)))
    fit_s = {c: float(np.mean([r["fit_s"] for r in rows if r["config"] == c]))
             for c in complete}
    chosen = best
    if rule == "cheapest":
        near = [c for c in complete if complete[c] <= complete[best] + noise]
        chosen = min(near, key=lambda c: (fit_s[c], complete[c], c))
    record = {"solver": configs[best][0], "params": dict(configs[best][1]),
              "rmse": complete[best], "fit_s": fit_s[best], "chosen_fit_s": fit_s[chosen],
              "noise": noise}
    return chosen, record


def _check_tune_args(ratings: Any, n_splits: Any, test_size: Any, max_time: Any,
                     n_jobs: Any) -> tuple[Ratings, int, float, float | None, int]:
    """The checked ``ratings``, ``n_splits``, ``test_size``, ``max_time`` and ``n_jobs``."""
    ratings = ratings if isinstance(ratings, Ratings) else as_ratings(ratings)
    n_splits = check_int("n_splits", n_splits, min_value=1)
    test_size = check_float("test_size", test_size, min_value=0.0, max_value=1.0,
                            min_inclusive=False, max_inclusive=False)
    max_time = check_float("max_time", max_time, min_value=0.0, allow_none=True)
    n_jobs = check_int("n_jobs", n_jobs)
    return ratings, n_splits, test_size, max_time, n_jobs


def _tasks(configs: list[tuple[str, dict]], n_splits: int, random_state: int | None,
           t0: float, max_time: float | None) -> Iterator[tuple]:
    """Every (configuration, split) task, configuration by configuration; no configuration
    after the first once ``max_time`` seconds have passed since ``t0``."""
    for c, (solver, params) in enumerate(configs):
        if c and max_time is not None and time.perf_counter() - t0 > max_time:
            logger.info("tune: time budget %.1f s spent after %d of %d configurations",
                        max_time, c, len(configs))
            return
        for s in range(n_splits):
            yield (c, s, solver, params, random_state)


def _consume(outcomes: Iterable[Any], expected: list[tuple[str, float]],
             progress: bool | None, store: _Checkpoint) -> list[Any]:
    """Every outcome as it finishes (each scored row written to the checkpoint at once), with
    progress by :mod:`lsqmf.runtime.progress`'s policy (``expected``: the solver of every fit
    to run, which prices the time left)."""
    from ..runtime.progress import Progress

    bar = Progress("lsqmf tune", len(expected), progress=progress, unit="fits",
                   expected=expected)
    finished = []
    try:
        for o in outcomes:
            finished.append(o)
            scored = o.ok and o.value["error"] is None
            if scored:
                store.write(o.value)
            bar.advance(o.task[2], 1.0, seconds=o.value["fit_s"] if scored else None)
    finally:
        store.close()
        bar.close()
    return finished


class _Checkpoint:
    """The CSV of finished (configuration, split) rows of one search: ``done`` (rows of an
    earlier run, by ``(config, split)``) and :meth:`write` (append one row, flushed)."""

    COLUMNS = ("cell_id", "config", "split", "solver", "params", "rmse", "mae", "fit_s",
               "n_val", "error")

    def __init__(self, path: str | Path | None, ratings: Ratings,
                 configs: list[tuple[str, dict]], n_splits: int, test_size: float,
                 random_state: int | None) -> None:
        self.path = None if path is None else Path(path)
        self.writer: Any = None
        self.done: dict[tuple[int, int], dict[str, Any]] = {}
        base = hashlib.blake2b(digest_size=16)
        for a in (ratings.rows, ratings.cols, ratings.values):
            base.update(np.ascontiguousarray(a).tobytes())
        base.update(repr((ratings.shape, n_splits, test_size, random_state)).encode())
        self.ids: dict[str, tuple[int, int]] = {}
        for c, (solver, params) in enumerate(configs):
            for s in range(n_splits):
                h = base.copy()
                h.update(json.dumps([solver, _plain(params), s], sort_keys=True,
                                    default=repr).encode())
                self.ids[h.hexdigest()] = (c, s)
        self.by_cell = {v: k for k, v in self.ids.items()}
        if self.path is not None:
            self._resume(configs)

    def _resume(self, configs: list[tuple[str, dict]]) -> None:
        from ..runtime.checkpoint import RowWriter, parse_float, parse_int, read_checkpoint

        assert self.path is not None
        if self.path.is_dir():
            raise ValueError(f"`checkpoint` must be a CSV file path; got the directory "
                             f"{str(self.path)!r}.")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self.path.stat().st_size:
            parsers = {"rmse": parse_float, "mae": parse_float, "fit_s": parse_float,
                       "n_val": parse_int}
            for r in read_checkpoint(self.path, list(self.COLUMNS), known=self.ids, parsers=parsers,
                                     keep=lambda r: r["error"] == "", what="lsqmf tune"):
                c, s = self.ids[r["cell_id"]]
                solver, params = configs[c]
                self.done[(c, s)] = {"config": c, "split": s, "solver": solver, **params,
                                     "rmse": float(r["rmse"]), "mae": float(r["mae"]),
                                     "fit_s": float(r["fit_s"]), "n_val": parse_int(r["n_val"]),
                                     "error": None}
            logger.info("tune: %d of %d fits already done in %s", len(self.done),
                        len(self.ids), self.path)
        self.writer = RowWriter(self.path, list(self.COLUMNS))

    def write(self, row: dict[str, Any]) -> None:
        """Append the scored ``row`` (flushed at once)."""
        if self.writer is None:
            return
        params = {k: v for k, v in row.items() if k not in (
            "config", "split", "solver", "rmse", "mae", "fit_s", "n_val", "error")}
        self.writer.write({**row, "cell_id": self.by_cell[(row["config"], row["split"])],
                           "params": json.dumps(_plain(params), sort_keys=True, default=repr),
                           "error": ""})

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _complete_means(rows: list[dict[str, Any]], n_splits: int) -> dict[int, float]:
    """Mean RMSE of every configuration scored on all ``n_splits`` splits; raises if none."""
    by_config: dict[int, list[float]] = {}
    for row in rows:
        by_config.setdefault(row["config"], []).append(row["rmse"])
    complete = {c: float(np.mean(v)) for c, v in by_config.items()
                if len(v) == n_splits and np.all(np.isfinite(v))}
    if not complete:
        errors = [r["error"] for r in rows if r.get("error")]
        raise ValueError(
            "no configuration could be scored"
            + (f"; first error: {errors[0]}" if errors else " within `max_time`.")
        )
    return complete
