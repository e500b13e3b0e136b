"""Run a benchmark grid: time every selected cell, append rows as they finish, resume.

Files written into the output directory
---------------------------------------
``raw.csv``
    One row per (cell, repeat), appended and flushed as soon as the solve finishes. It is the
    run's log: a rerun with the same output directory reads it and skips every (cell, repeat)
    already there, so an interrupted run (Ctrl-C, a killed process) loses at most the cell
    that was running. On resume every row is validated (one field per column, numbers that
    parse, a cell id of this grid); broken rows -- a line cut by a hard kill, garbage -- are
    dropped with a warning that counts them, and their cells run again.
``.lock``
    The pid (and host) of the run using the directory, created exclusively (``O_EXCL``): a
    second run on the same directory is refused while the first is alive; a lock left by a
    killed run (its pid is gone) is taken over.
``results.csv``
    One row per cell: the repeat with the smallest ``dur`` (best of), with ``repeats`` (how
    many repeats were run) and ``n_failed``. Rewritten at the end of every run, also after an
    interrupt.
``run.json``
    The run header: versions, BLAS library and thread counts, CPU count, platform, command
    line, start and end time, grid file and fingerprint, and a ``warnings`` list (e.g. BLAS
    threads > 1). One entry per session in ``sessions``.

Columns
-------
The grid's problem columns (e.g. ``sparsity, k_factor, n, m, k``), its configuration columns
(``solver, method, tr_solver, loss``, ...), then ``nnz`` (observed entries), ``dur`` (seconds
of the solver call, ``time.perf_counter``; NaN when the call failed), ``nfev``, ``njev``,
``cost``, ``success``, ``status``, ``error`` (``"LinAlgError: ..."``; empty when none),
``warning`` (warnings the call emitted, e.g. :class:`~lsqmf.ConvergenceWarning`), and
``cell_id``. ``movielens`` grids add ``fit_s``, ``rmse`` and ``mae``.

Parallel runs
-------------
``jobs > 1`` runs cells on local processes, ``scheduler=`` on a Dask cluster (through
:func:`lsqmf.runtime.parallel.map_tasks`); rows are appended as cells finish (in completion order)
and ``results.csv`` is in grid order, so a parallel or cluster run, and its resume, give the
same rows as a serial one. A ``movielens`` grid sends its folds to each worker once; other
grids send each problem with its cells. A cell whose worker died is a row with the reason in
``error``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._validation import check_int
from ..runtime.checkpoint import (
    FileLock,
    RowWriter,
    parse_bool,
    parse_float,
    parse_int,
    read_checkpoint,
)
from .grid import Grid, ProblemData, select_cells

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CORE_SOLVER",
    "LOCK_FILE",
    "RAW_CSV",
    "RESULTS_CSV",
    "RESULT_COLUMNS",
    "RUN_JSON",
    "aggregate",
    "blas_info",
    "read_raw",
    "resolve_solver",
    "run_grid",
]

logger = logging.getLogger(__name__)

RAW_CSV = "raw.csv"
RESULTS_CSV = "results.csv"
RUN_JSON = "run.json"
LOCK_FILE = ".lock"

#: Measured columns of every row, after the cell's own columns.
RESULT_COLUMNS = [
    "nnz", "dur", "nfev", "njev", "cost", "success", "status", "error", "warning",
]
_CV_COLUMNS = ["fit_s", "rmse", "mae"]


# ---------------------------------------------------------------------------- solvers
#: The grid solver name of the core entry point :func:`lsqmf.solve` itself (its own defaults:
#: ``formulation='prior'``, ``ftol=1e-3``, ...), as opposed to the registry's ``'lsq'`` adapter.
CORE_SOLVER = "solve"


def resolve_solver(name: str) -> Callable[..., Any]:
    """The function a grid's ``solver`` name stands for.

    ``"solve"`` is :func:`lsqmf.solve`; every other name is the registered solver with the
    registry's by-name defaults (:func:`lsqmf.solvers.solver_by_name`, the same rule as
    :func:`lsqmf.evaluate.scoring.fit_and_score`), in every problem kind.

    Raises
    ------
    ValueError
        If the name is not registered (or the registry is not available).
    """
    if name == CORE_SOLVER:
        from ..nls.solve import solve

        return solve
    try:
        from ..solvers import solver_by_name
    except ImportError as err:
        raise ValueError(
            f"solver {name!r} cannot be resolved: the solver registry lsqmf.solvers is not "
            f"available ({err})."
        ) from err
    return solver_by_name(name)


# ---------------------------------------------------------------------------- one cell
@dataclass
class _Task:
    kind: str  # 'fit' or 'cv'
    solver: str
    params: dict[str, Any]
    data: ProblemData | None  # None: fold `fold` of the shared folds
    columns: dict[str, Any]
    repeat: int
    fold: int | None = None


def _run_cell(folds: list[Any] | None, task: _Task) -> dict[str, Any]:
    """:func:`_run_task` with the fold taken from the shared folds (sent once per worker)."""
    if task.data is None:
        assert folds is not None and task.fold is not None
        task = _Task(task.kind, task.solver, task.params, ProblemData(args=tuple(folds[task.fold])),
                     task.columns, task.repeat)
    return _run_task(task)


def _failed_row(task: _Task, error: str) -> dict[str, Any]:
    """The row of a cell that has no result (its worker died)."""
    stats = task.data.stats if task.data is not None else {}
    return {**task.columns, "repeat": task.repeat, **stats, "dur": math.nan, "nfev": None,
            "njev": None, "cost": math.nan, "success": False, "status": None,
            "error": error[:500], "warning": ""}


def _err_text(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".replace("\n", " ").strip()
    return text[:500]


def _warning_text(caught: list[warnings.WarningMessage]) -> str:
    seen: list[str] = []
    for w in caught:
        text = f"{w.category.__name__}: {w.message}".replace("\n", " ")[:300]
        if text not in seen:
            seen.append(text)
    return " || ".join(seen)


def _run_task(task: _Task) -> dict[str, Any]:
    """Time one (cell, repeat); never raises except KeyboardInterrupt."""
    assert task.data is not None
    row: dict[str, Any] = {**task.columns, "repeat": task.repeat, **task.data.stats}
    row.update(dur=math.nan, nfev=None, njev=None, cost=math.nan, success=False, status=None,
               error="", warning="")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if task.kind == "cv":
                from ..evaluate.scoring import fit_and_score

                # a registry name: fit_and_score resolves it (lsqmf.solvers.resolve_solver)
                solver: Any = task.solver
                if solver == CORE_SOLVER:
                    solver = resolve_solver(solver)
                t0 = time.perf_counter()
                score = fit_and_score(solver, *task.data.args, **task.params)
                dur = time.perf_counter() - t0
                _fill_cv(row, score, dur)
            else:
                fn = resolve_solver(task.solver)
                t0 = time.perf_counter()
                res = fn(*task.data.args, **task.data.kwargs, **task.params)
                dur = time.perf_counter() - t0
                if getattr(res, "status", None) == -5:  # lsqmf.solve swallowed a Ctrl-C
                    raise KeyboardInterrupt
                row["dur"] = dur
                _fill_fit(row, res)
        except KeyboardInterrupt:
            raise
        except Exception as err:  # a failing cell is a row, not the end of the run
            row["error"] = _err_text(err)
            row["dur"] = math.nan
            row["success"] = False
    row["warning"] = _warning_text(caught)
    return row


def _fill_fit(row: dict[str, Any], res: Any) -> None:
    for key in ("nfev", "njev", "cost", "success", "status"):
        value = getattr(res, key, None)
        if isinstance(value, np.generic):
            value = value.item()
        row[key] = value
    if row["cost"] is None:
        row["cost"] = math.nan


def _fill_cv(row: dict[str, Any], score: Mapping[str, Any], dur: float) -> None:
    """Copy :func:`lsqmf.evaluate.scoring.fit_and_score`'s dict into the row (``dur = fit_s``)."""
    fit_s = score.get("fit_s")
    row["fit_s"] = dur if fit_s is None else float(fit_s)
    row["dur"] = row["fit_s"]
    for key in ("rmse", "mae", "cost"):
        value = score.get(key)
        row[key] = math.nan if value is None else float(value)
    row["nfev"] = score.get("n_iter")
    row["status"] = score.get("status")
    row["success"] = bool(score.get("success", True))


# ---------------------------------------------------------------------------- CSV I/O
def _columns(grid: Grid) -> list[str]:
    cols = grid.problem_columns + grid.config_columns + ["repeat"] + RESULT_COLUMNS
    if grid.problems == "movielens":
        cols += _CV_COLUMNS
    return [*cols, "cell_id"]


def _nonneg_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"negative: {text!r}")
    return value


#: How every measured field of a raw.csv row must parse.
_PARSERS: dict[str, Callable[[str], Any]] = {
    "repeat": _nonneg_int,
    "nnz": parse_int,
    "dur": parse_float,
    "nfev": parse_int,
    "njev": parse_int,
    "cost": parse_float,
    "success": parse_bool,
    "status": parse_int,
    "fit_s": parse_float,
    "rmse": parse_float,
    "mae": parse_float,
}


def _repair(path: Path, columns: list[str], known: set[str]) -> set[tuple[str, int]]:
    """Validate every row of ``path`` (a raw.csv) and drop the broken ones (with a warning).

    A row is kept when it has one field per column, every measured field parses and its cell
    id belongs to the grid. Returns the finished ``(cell_id, repeat)`` pairs.

    Raises
    ------
    ValueError
        If the header is not that of this grid.
    """
    try:
        rows = read_checkpoint(path, columns, known=known, parsers=_PARSERS, what="grid")
    except ValueError as err:
        raise ValueError(f"{err} (use another --out directory)") from None
    return {(r["cell_id"], int(r["repeat"])) for r in rows}


def read_raw(path: str | Path) -> pd.DataFrame:
    """Read a ``raw.csv`` (or ``results.csv``) into a DataFrame with ``error`` as text."""
    import pandas as pd

    frame = pd.read_csv(path, keep_default_na=False, na_values={"dur": [""], "cost": [""]})
    for col in ("dur", "cost", "fit_s", "rmse", "mae"):
        if col in frame:
            frame[col] = pd.to_numeric(frame[col], errors="coerce")
    for col in ("nnz", "nfev", "njev", "status", "repeat", "repeats", "n_failed"):
        if col in frame:
            frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("Int64")
    if "success" in frame:
        frame["success"] = frame["success"].astype(str).str.lower().eq("true")
    return frame


def aggregate(raw: pd.DataFrame, order: list[str] | None = None) -> pd.DataFrame:
    """Best of the repeats per cell: the row with the smallest ``dur``.

    Adds ``repeats`` (rows of the cell) and ``n_failed`` (rows with an error); when some but
    not all repeats failed, ``error`` says so. Cells whose every repeat failed keep their
    first row (``dur`` NaN). ``order`` lists cell ids in the grid's order.
    """
    import pandas as pd

    if raw.empty:
        cols = [c for c in raw.columns if c != "repeat"] + ["repeats", "n_failed"]
        return pd.DataFrame(columns=cols)
    raw = raw.drop_duplicates(["cell_id", "repeat"], keep="first")
    rows = []
    for _, g in raw.groupby("cell_id", sort=False):
        failed = g["error"].astype(str).str.len() > 0
        ok = g[g["dur"].notna()]
        best = ok.loc[ok["dur"].idxmin()].copy() if len(ok) else g.iloc[0].copy()
        best["repeats"] = len(g)
        best["n_failed"] = int(failed.sum())
        if failed.any() and not best["error"]:
            first = g.loc[failed, "error"].iloc[0]
            best["error"] = f"{int(failed.sum())} of {len(g)} repeats failed: {first}"
        rows.append(best.drop(labels=["repeat"]))
    out = pd.DataFrame(rows).reset_index(drop=True)
    if order is not None:
        rank = {cid: i for i, cid in enumerate(order)}
        out = out.sort_values("cell_id", key=lambda s: s.map(rank).fillna(len(rank)))
        out = out.reset_index(drop=True)
    return out


# ---------------------------------------------------------------------------- run header
def blas_info() -> dict[str, Any]:
    """BLAS/LAPACK libraries and their thread counts (from ``threadpoolctl``).

    ``max_threads`` is the largest count among the BLAS libraries (None when unknown); other
    thread pools that threadpoolctl lists (OpenMP) are in ``libraries`` but not counted.
    """
    import scipy.linalg  # noqa: F401  (load scipy's BLAS too)
    from threadpoolctl import threadpool_info

    libs = [
        {k: info.get(k) for k in ("user_api", "internal_api", "version", "num_threads",
                                  "filepath")}
        for info in threadpool_info()
    ]
    env = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                      "MKL_NUM_THREADS", "BLIS_NUM_THREADS") if k in os.environ}
    # BLAS only: numba's OpenMP pool (user_api 'openmp') is listed too, but is not BLAS
    counts = [lib["num_threads"] for lib in libs
              if lib.get("user_api") == "blas" and lib.get("num_threads")]
    return {"source": "threadpoolctl", "libraries": libs, "env": env,
            "max_threads": max(counts) if counts else None}


def _versions() -> dict[str, str]:
    import joblib
    import pandas as pd
    import scipy

    from .. import __version__

    return {"python": platform.python_version(), "lsqmf": __version__,
            "numpy": np.__version__, "scipy": scipy.__version__, "pandas": pd.__version__,
            "joblib": joblib.__version__}


def _session_header(grid: Grid, *, repeats: int, where: str | None, jobs: int,
                    command: str | None, preset: str | None) -> dict[str, Any]:
    blas = blas_info()
    warn = []
    if blas["max_threads"] is None or blas["max_threads"] > 1:
        msg = (
            f"BLAS may use {blas['max_threads'] or 'an unknown number of'} threads: dense "
            "(exact/lm) cells get a multithreaded speed-up that other cells do not, and timings "
            "depend on machine load; use `lsqmf --blas-threads 1 bench` (the default), "
            "threadpoolctl.threadpool_limits(1) or OPENBLAS_NUM_THREADS=1 for comparable "
            "single-thread timings."
        )
        warn.append(msg)
        logger.warning(msg)
    if jobs != 1:
        msg = f"cells ran in parallel (jobs={jobs}); timings of concurrent cells interfere."
        warn.append(msg)
        logger.warning(msg)
    return {
        "start_time": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command if command is not None else " ".join(sys.argv),
        "preset": preset,
        "grid_file": grid.source,
        "grid_name": grid.name,
        "grid_fingerprint": grid.fingerprint(),
        "repeats": repeats,
        "where": where,
        "jobs": jobs,
        "versions": _versions(),
        "blas": blas,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "warnings": warn,
    }


# ---------------------------------------------------------------------------- the run
def _tasks(grid: Grid, selected: list[dict[str, Any]], repeats: int,
           done: set[tuple[str, int]], shared_folds: bool = False) -> Iterator[_Task]:
    by_problem: dict[int, list[dict[str, Any]]] = {}
    for cell in selected:
        by_problem.setdefault(cell["_problem"], []).append(cell)
    kind = "cv" if grid.problems == "movielens" else "fit"
    folds: list[Any] | None = None
    for r, i, data in grid.iter_problems(repeats):  # consumes the RNG stream in full
        todo = [c for c in by_problem.get(i, []) if (c["cell_id"], r) not in done]
        if not todo:
            continue
        fold = None
        if kind == "cv":
            if shared_folds:  # the folds travel once, as the map's shared data
                data, fold = None, i
            else:
                if folds is None:
                    folds = _load_folds(grid)
                data = ProblemData(args=folds[i])
        elif data is not None and not isinstance(data, ProblemData):
            data = data.build()  # a lazily generated problem
        assert data is not None or fold is not None
        for cell in todo:
            columns = {k: v for k, v in cell.items() if not k.startswith("_")}
            yield _Task(kind, cell["solver"], grid.params(cell["_config"]), data, columns, r,
                        fold)


def _load_folds(grid: Grid) -> list[Any]:
    from ..data.readers import load_builtin
    from ..evaluate.splits import kfold

    p = grid.problem
    ratings = load_builtin(p["dataset"])
    return [tuple(f) for f in kfold(ratings, p["n_splits"], p["random_state"])]


def run_grid(
    grid: Grid,
    out: str | Path,
    *,
    repeats: int | None = None,
    where: str | None = None,
    jobs: int = 1,
    scheduler: Any = None,
    progress: bool = False,
    command: str | None = None,
    preset: str | None = None,
) -> pd.DataFrame:
    """Run (or resume) the cells of ``grid`` selected by ``where``; write CSVs into ``out``.

    Parameters
    ----------
    grid : Grid
        From :func:`~lsqmf.bench.grid.load_grid`.
    out : str or Path
        Output directory; created if needed. Rows already in its ``raw.csv`` are skipped.
    repeats : int, optional
        Best-of count (default ``grid.repeats``).
    where : str, optional
        A pandas query over the cell columns, e.g. ``"tr_solver == 'lsmr' and n <= 10"``.
    jobs : int, default=1
        Cells run in parallel on local processes when > 1 (timings then interfere; 1 is
        serial).
    scheduler : str, distributed.Client or cluster, optional
        Run the cells on a Dask cluster (see :func:`lsqmf.runtime.parallel.plan_backend`); ``jobs``
        is
        then ignored. An unreachable scheduler is an error before anything is written.
    progress : bool, default=False
        Show a tqdm progress bar on stderr.
    command, preset : str, optional
        Recorded in ``run.json``.

    Returns
    -------
    pandas.DataFrame
        The best-of rows of every selected cell run so far (also written to ``results.csv``).

    Raises
    ------
    ValueError
        For a bad ``repeats``/``jobs``/``where``/``scheduler``, an ``out`` holding another
        grid's results, or an ``out`` in use by another run (its lock file).
    KeyboardInterrupt
        Re-raised after ``raw.csv``, ``results.csv`` and ``run.json`` are consistent.
    """
    from ..runtime.parallel import plan_backend

    repeats = grid.repeats if repeats is None else check_int("repeats", repeats, min_value=1)
    jobs = check_int("jobs", jobs, min_value=1)
    cells = grid.cells()
    selected = select_cells(cells, where)
    backend = plan_backend(jobs, scheduler)  # reach the cluster before writing anything
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock = FileLock(out / LOCK_FILE, f"`out` directory {str(out)!r}")
        lock.acquire()
    except BaseException:
        backend.close()
        raise
    try:
        return _run_locked(grid, out, cells, selected, repeats=repeats, where=where,
                           jobs=jobs, backend=backend, progress=progress, command=command,
                           preset=preset)
    finally:
        lock.release()
        backend.close()


def _run_locked(grid: Grid, out: Path, cells: list[dict[str, Any]],
                selected: list[dict[str, Any]], *, repeats: int, where: str | None, jobs: int,
                backend: Any, progress: bool, command: str | None,
                preset: str | None) -> pd.DataFrame:
    columns = _columns(grid)
    raw_path, json_path = out / RAW_CSV, out / RUN_JSON
    session, sessions = _open_session(grid, out, json_path, backend, repeats=repeats,
                                      where=where, jobs=jobs, command=command, preset=preset)
    done: set[tuple[str, int]] = set()
    if raw_path.exists() and raw_path.stat().st_size:
        done = _repair(raw_path, columns, {c["cell_id"] for c in cells})
    n_todo = sum(1 for c in selected for r in range(repeats) if (c["cell_id"], r) not in done)
    logger.info("%d cells selected x %d repeats; %d to run, %d already done",
                len(selected), repeats, n_todo, len(selected) * repeats - n_todo)
    session.update(n_cells=len(cells), n_selected=len(selected), n_run=0)

    writer = RowWriter(raw_path, columns)
    status = "interrupted"
    try:
        _run_cells(grid, selected, repeats, done, backend=backend, writer=writer,
                   session=session, n_todo=n_todo, progress=progress)
        status = "complete"
    finally:
        result = _close_session(out, raw_path, json_path, cells, selected, session, sessions,
                                status)
    return result


def _open_session(grid: Grid, out: Path, json_path: Path, backend: Any, *, repeats: int,
                  where: str | None, jobs: int, command: str | None,
                  preset: str | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Check that ``out`` holds this grid's results (if any), write the header of a new
    session ("running"); the session and the list of all sessions."""
    header: dict[str, Any] = {}
    if json_path.exists():
        header = json.loads(json_path.read_text(encoding="utf-8"))
        if header.get("grid_fingerprint") not in (None, grid.fingerprint()):
            raise ValueError(
                f"`out` directory {str(out)!r} holds results of another grid "
                f"({header.get('grid_file')}, fingerprint {header.get('grid_fingerprint')}); "
                "use another --out directory."
            )
    where_run = backend.address if backend.kind == "dask" else None
    session = _session_header(grid, repeats=repeats, where=where, jobs=jobs,
                              command=command, preset=preset)
    session["backend"] = backend.kind
    if where_run is not None:
        session["scheduler"] = where_run
        msg = (f"cells ran on the Dask cluster at {where_run}; timings of concurrent cells "
               "interfere.")
        session["warnings"].append(msg)
        logger.warning(msg)
    sessions = [*header.get("sessions", []), session]
    header = {**session, "sessions": sessions, "status": "running"}
    json_path.write_text(json.dumps(header, indent=2, default=str), encoding="utf-8")
    return session, sessions


def _run_cells(grid: Grid, selected: list[dict[str, Any]], repeats: int,
               done: set[tuple[str, int]], *, backend: Any, writer: RowWriter,
               session: dict[str, Any], n_todo: int, progress: bool) -> None:
    """Run the cells not ``done``, writing each row as it finishes; closes ``writer``."""
    from ..runtime.parallel import map_tasks

    bar = None
    try:
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=n_todo, desc=f"bench {grid.name}", unit="cell", file=sys.stderr)
        shared = backend.kind != "serial" and grid.problems == "movielens"
        tasks = _tasks(grid, selected, repeats, done, shared_folds=shared)
        folds = _load_folds(grid) if shared else None
        for outcome in map_tasks(_run_cell, tasks, shared=folds, backend=backend,
                                 label=f"bench-{grid.name}"):
            row = outcome.value if outcome.ok else _failed_row(outcome.task, str(outcome.error))
            writer.write(row)
            session["n_run"] += 1
            if bar is not None:
                bar.update()
    finally:
        writer.close()
        if bar is not None:
            bar.close()


def _close_session(out: Path, raw_path: Path, json_path: Path, cells: list[dict[str, Any]],
                   selected: list[dict[str, Any]], session: dict[str, Any],
                   sessions: list[dict[str, Any]], status: str) -> pd.DataFrame:
    """Write the results of every cell run so far and the session's end to the header; the
    aggregated results of the ``selected`` cells."""
    raw = read_raw(raw_path)
    keep = {c["cell_id"] for c in selected}
    raw = raw[raw["cell_id"].astype(str).isin(keep)]
    result = aggregate(raw, order=[c["cell_id"] for c in cells])
    all_raw = read_raw(raw_path)
    aggregate(all_raw, order=[c["cell_id"] for c in cells]).to_csv(
        out / RESULTS_CSV, index=False
    )
    session["end_time"] = datetime.now(UTC).isoformat(timespec="seconds")
    session["status"] = status
    header = {**session, "sessions": sessions, "status": status}
    json_path.write_text(json.dumps(header, indent=2, default=str), encoding="utf-8")
    return result
