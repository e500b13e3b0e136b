"""Model selection: cross-validation and grid search over cells that are never lost.

:func:`cross_validate` runs :func:`~lsqmf.evaluate.scoring.fit_and_score` over k folds into a
tidy DataFrame (one row per fold); :func:`grid_search` cross-validates every combination of a
parameter grid (with a tqdm progress bar), picks the lowest mean validation RMSE and refits it
on all the data.

Cells, backends and checkpoints
-------------------------------
Every (configuration, fold) fit is a *cell*, seeded by its fold number (or the fixed
``random_state``), so it gives the same numbers wherever it runs: serially (``n_jobs=1``),
on local processes (``n_jobs=2``) or on a Dask cluster (``scheduler='tcp://host:8786'``),
through :func:`lsqmf.runtime.parallel.map_tasks`, which sends the ratings and folds to each
worker once. Rows come back as cells finish and are returned in cell order. Nothing finished is
lost: a cell that raises is a row with its ``error`` and NaN scores (a :class:`RuntimeWarning`
names the failures); ``out=`` appends every finished row to a CSV at once, and a rerun with the
same ``out`` runs only the missing (or failed) cells; Ctrl-C raises
:class:`SearchInterrupted` (a ``KeyboardInterrupt``) carrying the finished rows.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._validation import check_choice, describe
from ..data.ratings import Ratings
from ..model.result import COLD_START_POLICIES, FitResult

if TYPE_CHECKING:
    import pandas as pd
from .scoring import (
    _fit,
    _ranking_field_names,
    _resolve_with_rank,
    _scalar,
    fit_and_score,
    resolve_solver,
)
from .splits import _check_ratings, _complement, _kfold_parts

logger = logging.getLogger(__name__)

__all__ = [
    "GridSearchResult",
    "SearchInterrupted",
    "cross_validate",
    "grid_search",
]


# ------------------------------------------------------------------ cells: CV and grid search
#: Fields of :func:`fit_and_score`'s dict before the solver's parameters, in its order.
_SCORE_FIELDS = ["solver", "rmse", "mae", "fit_s", "n_test", "n_scored", "n_cold_start",
                 "train_rmse", "cost", "n_iter", "status", "success", "rank"]


#: Float fields of a cell row (NaN in a failed row).
_FLOAT_FIELDS = ["rmse", "mae", "fit_s", "train_rmse", "cost"]


class SearchInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`cross_validate` or :func:`grid_search`.

    Attributes
    ----------
    results : pandas.DataFrame
        The rows of every cell finished before the interrupt (also in ``out`` when given),
        in cell order.
    n_cells : int
        How many cells the run has in all.
    """

    def __init__(self, results: pd.DataFrame, n_cells: int) -> None:
        super().__init__(f"interrupted after {len(results)} of {n_cells} cells")
        self.results = results
        self.n_cells = n_cells


@dataclass(frozen=True)
class _Cell:
    """One (configuration, fold) fit: what a worker needs besides the shared data."""

    index: int
    config: int
    fold: int
    params: dict[str, Any]
    cell_id: str


class _CellData:
    """Shared by every cell (sent once to each worker): the ratings, the folds' test indices,
    the solver and the scoring options. Folds are built on first use and kept."""

    def __init__(self, ratings: Ratings, parts: list[np.ndarray], solver: Any,
                 cold_start: str, clip: Any) -> None:
        self.ratings = ratings
        self.parts = parts
        self.solver = solver
        self.cold_start = cold_start
        self.clip = clip
        self._folds: dict[int, tuple[Ratings, Ratings]] = {}

    def fold(self, f: int) -> tuple[Ratings, Ratings]:
        if f not in self._folds:
            self._folds[f] = _complement(self.ratings, self.parts[f])
        return self._folds[f]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_folds": {}}


def _score_cell(data: _CellData, cell: _Cell) -> dict[str, Any]:
    """fit_and_score on one cell; an exception becomes the row's ``error`` (never raised)."""
    train, test = data.fold(cell.fold)
    try:
        row = fit_and_score(data.solver, train, test, cold_start=data.cold_start,
                            clip=data.clip, **cell.params)
    except Exception as err:
        return {"error": f"{type(err).__name__}: {err}".replace("\n", " ").strip()[:500]}
    return {**row, "error": ""}


def _fingerprint(ratings: Ratings, parts: list[np.ndarray], solver: Any, cold_start: str,
                 clip: Any) -> hashlib.blake2b:
    h = hashlib.blake2b(digest_size=8)
    h.update(repr((ratings.shape, ratings.nnz, _solver_name(solver), cold_start,
                   repr(clip))).encode())
    for a in (ratings.rows, ratings.cols, ratings.values, *parts):
        h.update(np.ascontiguousarray(a).tobytes())
    return h


def _solver_name(solver: Any) -> str:
    return solver if isinstance(solver, str) else getattr(solver, "__name__", "custom")


def _make_cells(data: _CellData, configs: list[dict[str, Any]],
                params_of: Callable[[dict[str, Any], int], dict[str, Any]]) -> list[_Cell]:
    base = _fingerprint(data.ratings, data.parts, data.solver, data.cold_start, data.clip)
    cells: list[_Cell] = []
    for c, cfg in enumerate(configs):
        for f in range(len(data.parts)):
            params = params_of(cfg, f)
            h = base.copy()
            h.update(repr((f, sorted((k, repr(v)) for k, v in params.items()))).encode())
            cells.append(_Cell(len(cells), c, f, params, h.hexdigest()))
    return cells


def _columns(head: list[str], data: _CellData, cell: _Cell) -> list[str]:
    """Columns of a cell row: ``head``, fit_and_score's fields, ``error``, ``cell_id``."""
    if isinstance(data.solver, str):
        try:
            params = resolve_solver(data.solver, cell.params)[2]
        except (ValueError, TypeError, KeyError):
            params = dict(cell.params)
    else:
        params = dict(cell.params)
    cols = list(head)
    ranking = params.get("ranking")
    ranked = _ranking_field_names(ranking) if isinstance(ranking, Mapping) else []
    for k in [*_SCORE_FIELDS, *(k for k, v in params.items() if _scalar(v)), *ranked]:
        if k not in cols:
            cols.append(k)
    return [*cols, "error", "cell_id"]


def _failed_text(frame: pd.DataFrame, keys: list[str]) -> str:
    bad = frame[frame["error"].astype(str).str.len() > 0]
    parts = []
    for _, r in bad.head(5).iterrows():
        where = ", ".join(f"{k}={_py(r[k])}" for k in keys)
        parts.append(f"fold {r['fold']}{' (' + where + ')' if where else ''}: {r['error']}")
    more = f"; and {len(bad) - 5} more" if len(bad) > 5 else ""
    return "; ".join(parts) + more


def _read_frame(path: Path, columns: list[str]) -> pd.DataFrame:
    import pandas as pd

    frame = pd.read_csv(path, dtype={"error": str, "cell_id": str, "solver": str})
    frame["error"] = frame["error"].fillna("")
    return frame[columns]


def _done_cells(path: Path | None, cells: list[_Cell], by_id: dict[str, _Cell],
                columns: list[str], desc: str) -> set[str]:
    """Ids of the cells that an earlier run already finished in ``path`` (without error)."""
    from ..runtime.checkpoint import parse_bool, parse_float, parse_int, read_checkpoint

    done: set[str] = set()
    if path is not None:
        if path.is_dir():
            raise ValueError(f"`out` must be a CSV file path; got the directory {str(path)!r}.")
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.stat().st_size:
            parsers: dict[str, Callable[[str], Any]] = {
                **dict.fromkeys(_FLOAT_FIELDS, parse_float),
                **dict.fromkeys(["n_test", "n_scored", "n_cold_start", "fold"], parse_int),
                "success": lambda s: s == "" or parse_bool(s),
            }
            rows = read_checkpoint(path, columns, known=by_id, parsers=parsers,
                                   keep=lambda r: r["error"] == "", what=desc)
            done = {r["cell_id"] for r in rows}
            logger.info("%s: %d of %d cells already done in %s", desc, len(done), len(cells),
                        path)
    return done


def _cells_frame(path: Path | None, columns: list[str], by_id: dict[str, _Cell],
                 rows_by_index: dict[int, dict[str, Any]]) -> pd.DataFrame:
    """The rows so far in cell order: read back from ``path``, else the rows in memory."""
    import pandas as pd

    if path is not None:
        table = _read_frame(path, columns)
        order = table["cell_id"].map({cid: c.index for cid, c in by_id.items()})
        return table.iloc[np.argsort(order.to_numpy(), kind="stable")].reset_index(
            drop=True
        )
    rows = [rows_by_index[i] for i in sorted(rows_by_index)]
    return pd.DataFrame(rows, columns=columns)


def _cell_row(outcome: Any, data: _CellData, head_of: Callable[[_Cell], dict[str, Any]],
              columns: list[str], extra_seen: set[str], desc: str) -> dict[str, Any]:
    """The row of a finished cell (scores or its error); warns once per unrecorded field."""
    cell: _Cell = outcome.task
    value = outcome.value if outcome.ok else {"error": outcome.error}
    row = {**head_of(cell), **value, "cell_id": cell.cell_id}
    row.setdefault("solver", _solver_name(data.solver))
    for k in _FLOAT_FIELDS:
        row.setdefault(k, float("nan"))
    extra = set(row) - set(columns) - extra_seen
    if extra:
        extra_seen |= extra
        logger.warning("%s: fields %s are not recorded", desc, sorted(extra))
    return row


def _run_cells(
    data: _CellData,
    cells: list[_Cell],
    head_of: Callable[[_Cell], dict[str, Any]],
    columns: list[str],
    *,
    n_jobs: int,
    scheduler: Any,
    out: Any,
    progress: bool | None,
    desc: str,
) -> pd.DataFrame:
    """Run (or resume) the cells; one row per cell in cell order; rows written as they finish.

    With ``out``, the finished cells of an earlier run with the same data, folds, solver and
    parameters are kept (failed ones run again) and every new row is appended at once.
    """
    path = None if out is None else Path(out)
    with _out_lock(path):  # two runs never append to the same checkpoint
        return _run_cells_locked(data, cells, head_of, columns, n_jobs=n_jobs,
                                 scheduler=scheduler, path=path, progress=progress, desc=desc)


def _out_lock(path: Path | None) -> Any:
    """The lock of ``out`` (``<out>.lock``, holding the owner's pid), or no lock."""
    import contextlib

    from ..runtime.checkpoint import FileLock

    if path is None:
        return contextlib.nullcontext()
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(path.with_name(path.name + ".lock"), f"`out` file {str(path)!r}")


def _run_cells_locked(
    data: _CellData, cells: list[_Cell], head_of: Callable[[_Cell], dict[str, Any]],
    columns: list[str], *, n_jobs: int, scheduler: Any, path: Path | None,
    progress: bool | None, desc: str,
) -> pd.DataFrame:
    from ..runtime.checkpoint import RowWriter, sort_rows
    from ..runtime.parallel import map_tasks, plan_backend
    from ..solvers import warm_up_solvers

    by_id = {c.cell_id: c for c in cells}
    done = _done_cells(path, cells, by_id, columns, desc)
    todo = [c for c in cells if c.cell_id not in done]
    backend = plan_backend(n_jobs, scheduler)  # connects (or fails) before any work
    rows_by_index: dict[int, dict[str, Any]] = {}
    writer = RowWriter(path, columns) if path is not None else None
    from ..runtime.progress import Progress

    bar = Progress(desc, len(todo), progress=progress, unit="fits")
    extra_seen: set[str] = set()
    try:
        for outcome in map_tasks(_score_cell, todo, shared=data, backend=backend,
                                 warm_up=warm_up_solvers, label=desc.replace(" ", "-")):
            row = _cell_row(outcome, data, head_of, columns, extra_seen, desc)
            rows_by_index[outcome.task.index] = row
            if writer is not None:
                writer.write(row)
            bar.advance()
    except KeyboardInterrupt:
        if writer is not None:
            writer.close()
            writer = None
        bar.close()
        raise SearchInterrupted(_cells_frame(path, columns, by_id, rows_by_index),
                                len(cells)) from None
    finally:
        if writer is not None:
            writer.close()
        bar.close()
        backend.close()
    if path is not None:  # appended in completion order; left in cell order
        sort_rows(path, lambda r: by_id[r["cell_id"]].index)
    return _cells_frame(path, columns, by_id, rows_by_index)


def _warn_failures(results: pd.DataFrame, keys: list[str], what: str) -> None:
    n_bad = int((results["error"].astype(str).str.len() > 0).sum())
    if n_bad:
        warnings.warn(
            f"{n_bad} of {len(results)} {what} cells failed (their rows have the error and NaN "
            f"scores): {_failed_text(results, keys)}",
            RuntimeWarning,
            stacklevel=3,
        )


def cross_validate(
    ratings: Any,
    *,
    solver: str | Callable[..., FitResult] = "als",
    n_splits: int = 5,
    random_state: int | np.random.Generator | None = 0,
    cold_start: str = "bias",
    clip: Any = "auto",
    n_jobs: int = 1,
    scheduler: Any = None,
    out: str | Path | None = None,
    progress: bool = False,
    **params: Any,
) -> pd.DataFrame:
    """K-fold cross-validation of one solver configuration.

    The folds come from :func:`kfold` with ``random_state``; the solver's own
    ``random_state`` (initial factors, shuffles) is ``params['random_state']`` if given, else
    the fold number. The folds run in parallel as :func:`grid_search`'s cells do.

    Parameters
    ----------
    n_jobs, scheduler, out, progress
        As in :func:`grid_search`.

    Returns
    -------
    pandas.DataFrame
        One row per fold: ``fold``, ``fit_s``, ``rmse``, ``mae``, ``n_cold_start``, the other
        fields of :func:`fit_and_score`, ``error`` (empty unless the fold failed: then the
        scores are NaN and a :class:`RuntimeWarning` names it) and ``cell_id``.

    Raises
    ------
    SearchInterrupted
        On Ctrl-C (a ``KeyboardInterrupt``), with the finished folds in ``results``.

    Examples
    --------
    >>> from lsqmf.data.synthetic import make_low_rank
    >>> from lsqmf.evaluate.search import cross_validate
    >>> ratings, _ = make_low_rank(40, 30, 2, density=0.5, noise=0.1, random_state=0)
    >>> cv = cross_validate(ratings, solver="als", n_splits=3, rank=2, reg=0.1, biases=False,
    ...                     count_scaled=False, random_state=0)
    >>> list(cv["fold"]), bool((cv["rmse"] < 0.5).all())
    ([0, 1, 2], True)
    """
    ratings = _check_ratings(ratings)
    _check_solver(solver)
    check_choice("cold_start", cold_start, COLD_START_POLICIES)
    data = _CellData(ratings, _kfold_parts(ratings, n_splits, random_state), solver,
                     cold_start, clip)
    cells = _make_cells(data, [{}], lambda cfg, f: {"random_state": f, **params})
    first = ["fold", "solver", "fit_s", "rmse", "mae", "n_cold_start"]
    columns = _columns(first, data, cells[0])
    results = _run_cells(data, cells, lambda c: {"fold": c.fold}, columns, n_jobs=n_jobs,
                         scheduler=scheduler, out=out, progress=progress,
                         desc="cross-validation")
    _warn_failures(results, [], "cross-validation")
    return results


@dataclass(frozen=True)
class GridSearchResult:
    """What :func:`grid_search` returns.

    Attributes
    ----------
    results : pandas.DataFrame
        One row per (configuration, fold), in that order: ``config`` (index of the
        configuration), ``fold``, the grid parameters, the :func:`fit_and_score` fields,
        ``error`` (empty unless the cell failed) and ``cell_id``.
    summary : pandas.DataFrame
        One row per configuration: the grid parameters, mean and std of validation RMSE and
        MAE (NaN unless every fold finished), mean fit time, total cold-start pairs,
        ``n_failed``; sorted by mean RMSE.
    best_params : dict
        The configuration with the lowest mean validation RMSE (empty if none finished).
    best_score : float
        Its mean validation RMSE.
    best_model : FitResult or None
        That configuration refitted on all the ratings (None with ``refit=False``).
    """

    results: pd.DataFrame
    summary: pd.DataFrame
    best_params: dict[str, Any]
    best_score: float
    best_model: FitResult | None


#: The most cells (configurations x folds) one search runs; a larger grid is refused before any
#: cell is built (each cell is a fit: a grid this size would run for days).
MAX_CELLS = 100_000


def _check_solver(solver: Any) -> None:
    """A registry name or a callable; a typo is refused before any cell runs (the message
    lists the names)."""
    if not callable(solver):
        from ..solvers import get_spec

        get_spec(solver)


def _expand_grid(param_grid: Mapping[str, Sequence[Any]], n_splits: Any = 1
                 ) -> list[dict[str, Any]]:
    if not isinstance(param_grid, Mapping) or not param_grid:
        raise TypeError(
            f"`param_grid` must be a non-empty dict of parameter -> list of values; got "
            f"{describe(param_grid)}."
        )
    keys = list(param_grid)
    values = []
    for k in keys:
        v = param_grid[k]
        if isinstance(v, str) or not isinstance(v, Sequence) or len(v) == 0:
            raise ValueError(
                f"`param_grid[{k!r}]` must be a non-empty list of values; got {describe(v)}."
            )
        values.append(list(v))
    n_cells = math.prod(len(v) for v in values) * (n_splits if isinstance(n_splits, int) else 1)
    if n_cells > MAX_CELLS:
        raise ValueError(
            f"`param_grid` x `n_splits` makes {n_cells:,} cells (fits), more than the "
            f"{MAX_CELLS:,} one search runs; search a coarser grid first."
        )
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]


def _mean_all(s: pd.Series) -> float:
    return float(s.mean(skipna=False))


def _summarize(results: pd.DataFrame, configs: list[dict[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    res = results.assign(failed=results["error"].astype(str).str.len() > 0)
    summary = (
        res.groupby("config")
        .agg(
            rmse_mean=("rmse", _mean_all), rmse_std=("rmse", "std"),
            mae_mean=("mae", _mean_all), mae_std=("mae", "std"),
            fit_s_mean=("fit_s", "mean"), n_cold_start=("n_cold_start", "sum"),
            n_failed=("failed", "sum"),
        )
        .reset_index()
    )
    params_frame = pd.DataFrame(configs)
    params_frame["config"] = range(len(configs))
    summary = params_frame.merge(summary, on="config").sort_values("rmse_mean", kind="stable")
    return summary.reset_index(drop=True)


def grid_search(
    ratings: Any,
    solver: str | Callable[..., FitResult] = "als",
    param_grid: Mapping[str, Sequence[Any]] | None = None,
    *,
    n_splits: int = 5,
    random_state: int | np.random.Generator | None = 0,
    n_jobs: int = 1,
    scheduler: Any = None,
    out: str | Path | None = None,
    progress: bool | None = None,
    refit: bool = True,
    cold_start: str = "bias",
    clip: Any = "auto",
    **fixed: Any,
) -> GridSearchResult:
    """Cross-validate every combination of ``param_grid`` and refit the best on all data.

    Every (configuration, fold) *cell* is one fit; cells run serially, on local processes
    or on a Dask cluster (:mod:`lsqmf.runtime.parallel`) with the same seeds, so the results are the
    same rows in the same order on every backend.

    Parameters
    ----------
    ratings : Ratings or anything :func:`lsqmf.as_ratings` accepts
    solver : str or callable, default='als'
    param_grid : dict of str -> list
        E.g. ``{'rank': [10, 20, 50], 'reg': [0.02, 0.05, 0.1]}``.
    n_splits : int, default=5
    random_state : int, Generator or None, default=0
        Seeds the folds (one permutation shared by every configuration). Each fit is seeded
        by ``fixed['random_state']`` if given, else by its fold number.
    n_jobs : int, default=1
        Local worker processes (joblib) over the cells; -1 uses every core; 1 is serial.
    scheduler : str, distributed.Client or cluster, optional
        Run the cells on a Dask cluster (``'tcp://host:8786'``; needs ``lsqmf[cluster]``); the
        ratings are sent to each worker once. Also used: an enclosing
        ``joblib.parallel_config(backend='dask')``. An unreachable scheduler raises
        :class:`~lsqmf.runtime.parallel.SchedulerUnreachableError` before any work.
    out : str or Path, optional
        A CSV checkpoint: every finished cell is appended at once, and a rerun with the same
        path (same data, folds, solver and parameters) keeps the finished cells and runs the
        others (failed cells run again). Rows that are broken or belong to other cells are
        dropped with a warning.
    progress : bool or None, default=None
        Progress on stderr by :mod:`lsqmf.runtime.progress`'s policy: None a bar on a
        terminal, else a status line every 30 s; True also a last line; False nothing.
    refit : bool, default=True
        Refit the best configuration on all of ``ratings``.
    cold_start, clip
        As in :func:`fit_and_score`.
    **fixed
        Parameters shared by every configuration (e.g. ``biases=True``, ``max_iter=20``).

    Returns
    -------
    GridSearchResult
        A cell that raised is a row with its ``error`` and NaN scores (a
        :class:`RuntimeWarning` names the failures); its configuration is not eligible as the
        best.

    Raises
    ------
    SearchInterrupted
        On Ctrl-C (a ``KeyboardInterrupt``), with the finished cells in ``results`` (and in
        ``out``).
    """
    ratings = _check_ratings(ratings)
    _check_solver(solver)
    configs = _expand_grid(param_grid if param_grid is not None else {}, n_splits)
    check_choice("cold_start", cold_start, COLD_START_POLICIES)
    data = _CellData(ratings, _kfold_parts(ratings, n_splits, random_state), solver,
                     cold_start, clip)
    cells = _make_cells(
        data, configs,
        lambda cfg, f: {**fixed, "random_state": fixed.get("random_state", f), **cfg},
    )
    keys = list(configs[0])
    columns = _columns(["config", "fold", *keys], data, cells[0])
    results = _run_cells(
        data, cells, lambda c: {"config": c.config, "fold": c.fold, **configs[c.config]},
        columns, n_jobs=n_jobs, scheduler=scheduler, out=out, progress=progress,
        desc="grid search",
    )
    _warn_failures(results, keys, "grid search")
    summary = _summarize(results, configs)
    if not np.isfinite(summary.loc[0, "rmse_mean"]):
        warnings.warn("no configuration finished every fold: there is no best one.",
                      RuntimeWarning, stacklevel=2)
        return GridSearchResult(results=results, summary=summary, best_params={},
                                best_score=float("nan"), best_model=None)
    best_cfg = configs[int(summary.loc[0, "config"])]
    return GridSearchResult(
        results=results, summary=summary, best_params={k: _py(best_cfg[k]) for k in keys},
        best_score=float(summary.loc[0, "rmse_mean"]),
        best_model=_refit(ratings, solver, {**fixed, **best_cfg}) if refit else None,
    )


def _refit(ratings: Ratings, solver: str | Callable[..., FitResult],
           params: Mapping[str, Any]) -> FitResult:
    """The best configuration fitted on all of ``ratings`` (seed 0 unless given)."""
    _, fn, rank, resolved = _resolve_with_rank(solver, params)
    resolved.setdefault("random_state", 0)
    return _fit(fn, ratings, rank, resolved, quiet=True)


def _py(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v
