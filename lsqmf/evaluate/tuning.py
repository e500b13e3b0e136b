"""Choose a solver, its rank and its regularization on training data only.

:func:`tune` scores every configuration of a search space on inner splits of the training
ratings -- a seeded holdout (``n_splits=1``, the default: ``test_size`` of the entries) or a
seeded k-fold -- with :func:`lsqmf.evaluate.scoring.fit_and_score` (the same cold-start policy and
clipping as ``lsqmf evaluate``), and returns the configuration with the lowest mean held-out
RMSE. The test data never enters: what it returns can be evaluated once on a test set.

Configurations run through :func:`lsqmf.runtime.parallel.map_tasks` (serially, on local processes
with ``n_jobs``, or on a Dask scheduler). They are ordered cheapest first (by
``rank * max_iter``), and with ``max_time`` no new configuration is started once the budget is
spent; the result says how many were completed. A configuration that raises is recorded with
its error and is not eligible.
"""

from __future__ import annotations

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

from .._validation import check_float, check_int
from ..data.ratings import Ratings, as_ratings
from ..solvers import DEFAULT_SOLVER, SOLVER_SPECS
from .scoring import fit_and_score
from .splits import holdout_split, kfold

__all__ = ["DEFAULT_SPACE", "TuneResult", "tune"]

logger = logging.getLogger(__name__)

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

    def to_dict(self) -> dict[str, Any]:
        """The chosen configuration as a JSON-ready dict (what ``lsqmf tune --out`` saves)."""
        return {
            "solver": self.solver, "params": _plain(self.params), "rmse": self.rmse,
            "n_splits": self.n_splits, "random_state": self.random_state,
            "n_configs": self.n_configs, "n_completed": self.n_completed,
            "elapsed_s": self.elapsed,
        }

    def save(self, path: str | Path) -> None:
        """Write :meth:`to_dict` as JSON to ``path``."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def _plain(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in d.items()}


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
        return float(d.get("rank", 1)) * float(d.get("max_iter", 1))

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
            "rmse": out["rmse"], "mae": out["mae"], "fit_s": out["fit_s"], "error": None}


def _failed_row(task: tuple, error: str | None) -> dict[str, Any]:
    """The row of a (configuration, split) that raised ``error``: NaN scores."""
    config, split, solver, params, _ = task
    return {"config": config, "split": split, "solver": solver, **params,
            "rmse": np.nan, "mae": np.nan, "fit_s": np.nan, "error": error}


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
    progress: bool = False,
) -> TuneResult:
    """Pick the solver and parameters with the lowest held-out RMSE on inner splits.

    Parameters
    ----------
    ratings : Ratings or anything :func:`lsqmf.as_ratings` accepts
        The *training* ratings only.
    space : mapping, optional
        Solver name -> parameter name -> values (default :data:`DEFAULT_SPACE`); the grid of
        each solver is its full product.
    n_splits : int, default=1
        1: one seeded holdout of ``test_size`` of the entries; ``k >= 2``: seeded k-fold.
    test_size : float, default=0.1
    random_state : int or None, default=0
        Seeds the splits and every fit.
    n_jobs : int, default=1
        Local worker processes (see :func:`lsqmf.runtime.parallel.map_tasks`); ``scheduler`` a Dask
        scheduler address or client.
    max_time : float, optional
        Seconds; no configuration after the first is started once the budget is spent.
    progress : bool, default=False
        A progress bar on stderr (tqdm).

    Returns
    -------
    TuneResult

    Raises
    ------
    ValueError
        For an unknown solver, an empty space, bad split settings, or when no configuration
        could be scored (the message gives the first error).

    Examples
    --------
    >>> from lsqmf.data.synthetic import make_low_rank
    >>> from lsqmf.evaluate.tuning import tune
    >>> R, _ = make_low_rank(40, 30, 2, density=0.5, noise=0.01, random_state=0)
    >>> res = tune(R, space={"als_cg": {"rank": [1, 2], "reg": [0.01]}})
    >>> res.solver, res.params["rank"]
    ('als_cg', 2)
    """
    from ..runtime.parallel import in_order, map_tasks
    from ..solvers import warm_up_solvers

    t0 = time.perf_counter()
    ratings, n_splits, test_size, max_time, n_jobs = _check_tune_args(
        ratings, n_splits, test_size, max_time, n_jobs
    )
    configs = _configs(DEFAULT_SPACE if space is None else space)
    splits = (
        [holdout_split(ratings, test_size=test_size, random_state=random_state)]
        if n_splits == 1 else kfold(ratings, n_splits, random_state=random_state)
    )
    outcomes = map_tasks(_score, _tasks(configs, len(splits), random_state, t0, max_time),
                         shared=splits, n_jobs=n_jobs, scheduler=scheduler, label="lsqmf-tune",
                         warm_up=warm_up_solvers)
    finished = _consume(outcomes, len(configs) * len(splits), progress)
    rows = [o.value if o.ok else _failed_row(o.task, o.error) for o in in_order(finished)]
    complete = _complete_means(rows, len(splits))
    best = min(complete, key=lambda c: (complete[c], c))
    solver, params = configs[best]
    result = TuneResult(
        solver=solver, params=dict(params), rmse=complete[best], rows=rows,
        n_configs=len(configs), n_completed=len(complete), n_splits=len(splits),
        random_state=random_state, elapsed=time.perf_counter() - t0,
    )
    logger.info("tune: chose %s %s (held-out RMSE %.4f) from %d of %d configurations",
                solver, params, result.rmse, result.n_completed, result.n_configs)
    return result


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


def _consume(outcomes: Iterable[Any], total: int, progress: bool) -> list[Any]:
    """Every outcome as it finishes, with a progress bar (tqdm, on stderr) if ``progress``."""
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="lsqmf tune", unit="fit", leave=False)
    finished = []
    try:
        for o in outcomes:
            finished.append(o)
            if bar is not None:
                bar.update(1)
                if o.ok and o.value["error"] is None:
                    bar.set_postfix_str(f"{o.value['solver']} rmse {o.value['rmse']:.4f}")
    finally:
        if bar is not None:
            bar.close()
    return finished


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
