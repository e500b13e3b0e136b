"""Run a benchmark grid: time every selected cell, append rows as they finish, resume.

Files written into the output directory
---------------------------------------
``raw.csv``
    One row per (cell, repeat), appended and flushed as soon as the solve finishes. It is the
    run's log: a run with ``resume=True`` (``lsqmf bench --resume``) reads it and skips every
    (cell, repeat) already there, so an interrupted run (Ctrl-C, a killed process) loses at
    most the cell that was running. On resume every row is validated (one field per column,
    numbers that parse, a cell id of this grid); broken rows -- a line cut by a hard kill,
    garbage -- are dropped with a warning that counts them, and their cells run again.
``.lock``
    The pid (and host) of the run using the directory, created exclusively (``O_EXCL``): a
    second run on the same directory is refused while the first is alive; a lock left by a
    killed run (its pid is gone) is taken over.
``results.csv``
    One row per cell: the repeat with the smallest ``dur`` (best of), with ``repeats`` (how
    many repeats were run) and ``n_failed``. Rewritten at the end of every run, also after an
    interrupt.
``run.json``
    The run header: versions, the thread count of every BLAS/OpenMP library *measured inside
    the timed cells* (``blas``; the request is ``threads_requested``), CPU count, host,
    platform, command line, start and end time, grid file and fingerprint, and a ``warnings``
    list (e.g. a library that ran more threads than requested, named). ``sessions`` is the
    history of the runs that timed cells into the directory (a resume adds one).

Runs are never mixed
--------------------
An ``out`` that already holds a run is refused unless ``resume=True``, and a resume is refused
(with what differs) when the run there is another one: another grid, host, platform, CPU
count, Python/lsqmf/numpy/scipy version or thread request; or when it has nothing left to
time (a finished run). A refused directory is left byte-identical. A resume that is
interrupted before it times a cell leaves ``run.json`` and ``results.csv`` as they were.

Threads
-------
With ``threads`` (default 1) every cell runs under
:func:`lsqmf.runtime.threads.pinned_threads`: every BLAS copy (numpy's and scipy's), OpenMP and
numba's threading layer limited to ``threads`` after they are all loaded, whatever the import
order, and measured inside the cell (:func:`~lsqmf.runtime.threads.measure_threads`), in the
process that times it (the child process below, or a worker); a library above the request is
named in a warning.

Ctrl-C
------
Serial cells run in one child process (:class:`lsqmf.bench.cells.CellWorker`: started at the
first cell and reused, so start-up is paid once a run), which the harness kills on Ctrl-C or
SIGTERM: the interrupt is acted on within a fraction of a second even inside a minute-long
LAPACK call that holds the interpreter lock. The running cell is abandoned, ``results.csv``
and ``run.json`` are written, and :class:`KeyboardInterrupt` is re-raised after a message
(``notify``) that says which cell was abandoned and how many rows are saved. With
``isolate=False`` the cells run in this process, in a helper thread
(:func:`lsqmf.runtime.progress.call_interruptibly`): the same numbers, but an interrupt waits
for the running LAPACK call.

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

import contextlib
import json
import logging
import os
import platform
import sys
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
from .cells import (  # resolve_solver and CORE_SOLVER are part of this module's API
    _PINNED,
    CORE_SOLVER,
    CellWorker,
    _failed_row,
    _run_cell,
    _Task,
    resolve_solver,
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
    "OutState",
    "aggregate",
    "blas_info",
    "out_state",
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

    from .._version import __version__

    return {"python": platform.python_version(), "lsqmf": __version__,
            "numpy": np.__version__, "scipy": scipy.__version__, "pandas": pd.__version__,
            "joblib": joblib.__version__}


def _identity(threads: int | None) -> dict[str, Any]:
    """What makes two runs comparable: versions, machine, thread request."""
    return {"versions": _versions(), "host": platform.node(), "platform": platform.platform(),
            "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "threads_requested": threads}


def _differences(header: Mapping[str, Any], grid: Grid, threads: int | None) -> list[str]:
    """How the run recorded in ``header`` differs from this one (empty: the same run)."""
    here = _identity(threads)
    out = []
    if header.get("grid_fingerprint") not in (None, grid.fingerprint()):
        out.append(f"grid {header.get('grid_file')} (fingerprint "
                   f"{header.get('grid_fingerprint')}) there, {grid.source} "
                   f"({grid.fingerprint()}) here")
    there_v = header.get("versions") or {}
    for lib in ("python", "lsqmf", "numpy", "scipy"):
        if lib in there_v and there_v[lib] != here["versions"][lib]:
            out.append(f"{lib} {there_v[lib]} there, {here['versions'][lib]} here")
    for key in ("host", "platform", "machine", "cpu_count"):
        if key in header and header[key] != here[key]:
            out.append(f"{key} {header[key]!r} there, {here[key]!r} here")
    if "threads_requested" in header:
        if header["threads_requested"] != threads:
            out.append(f"threads {header['threads_requested']} there, {threads} here")
    elif (header.get("blas") or {}).get("max_threads") not in (None, threads):
        out.append(f"BLAS threads {header['blas']['max_threads']} there, {threads} here")
    return out


def _session_header(grid: Grid, *, repeats: int, where: str | None, jobs: int,
                    command: str | None, preset: str | None,
                    threads: int | None) -> dict[str, Any]:
    warn = []
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
        **_identity(threads),
        "blas": None,  # measured inside the cells: see _Threads
        "processor": platform.processor(),
        "warnings": warn,
    }


# ---------------------------------------------------------------------------- the run
def _tasks(grid: Grid, selected: list[dict[str, Any]], repeats: int,
           done: set[tuple[str, int]], shared_folds: bool = False,
           threads: int | None = None) -> Iterator[_Task]:
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
                        fold, threads)


def _load_folds(grid: Grid) -> list[Any]:
    from ..data.readers import load_builtin
    from ..evaluate.splits import kfold

    p = grid.problem
    ratings = load_builtin(p["dataset"])
    return [tuple(f) for f in kfold(ratings, p["n_splits"], p["random_state"])]


# ---------------------------------------------------------------------------- expected cost
def cell_key(cell: Mapping[str, Any]) -> str:
    """A cell's kind for the progress estimate and the interrupt message: ``method-tr_solver``
    (``lm`` alone), else the solver name."""
    method, tr = cell.get("method"), cell.get("tr_solver")
    if method is not None and str(method) == "lm":
        return "lm"
    if method is not None:
        return f"{method}-{tr}"
    return str(cell.get("solver", "cell"))


def expected_cost(cell: Mapping[str, Any]) -> float:
    """The expected cost of a cell, in arbitrary units comparable within one :func:`cell_key`.

    Seed-style cells (``n, m, k``): with ``u = (n + m) k`` unknowns and ``r = n m + u``
    residuals (data and prior rows), a dense step (``exact``, ``lm``: an SVD or QR of the
    r x u Jacobian) costs ``r u^2`` and an LSMR step ``r u``. Synthetic cells: ``n m density
    k``. Cross-validation cells: 1.
    """
    try:
        n, m, k = float(cell["n"]), float(cell["m"]), float(cell["k"])
    except (KeyError, TypeError, ValueError):
        return 1.0
    if "density" in cell:
        return max(n * m * float(cell["density"]) * k, 1.0)
    u = (n + m) * k
    r = n * m + u
    dense = str(cell.get("tr_solver")) != "lsmr"
    return max(r * u * u if dense else r * u, 1.0)


def _cell_text(cell: Mapping[str, Any]) -> str:
    """E.g. ``n=40 k=32 trf-exact-huber (repeat 2)``."""
    parts = [f"{c}={cell[c]:g}" if isinstance(cell[c], float) else f"{c}={cell[c]}"
             for c in ("n", "k", "sparsity", "density", "fold") if c in cell]
    label = cell_key(cell)
    if cell.get("loss") not in (None, "linear"):
        label += f"-{cell['loss']}"
    return " ".join([*parts, label])


# ---------------------------------------------------------------------------- out directory
@dataclass(frozen=True)
class OutState:
    """What an ``out`` directory holds, for a run of ``grid`` (see :func:`out_state`).

    ``header`` is its ``run.json`` (None: no run there); ``n_done`` the valid (cell, repeat)
    rows of its ``raw.csv`` among the selected ones, ``n_todo`` the selected (cell, repeat)
    pairs still to time; ``differences`` how the run there differs from this one (empty: the
    same run).
    """

    path: Path
    header: dict[str, Any] | None
    n_done: int
    n_todo: int
    differences: list[str]

    @property
    def has_run(self) -> bool:
        """Whether the directory holds a run (a ``run.json`` or rows in ``raw.csv``)."""
        raw = self.path / RAW_CSV
        return self.header is not None or (raw.exists() and raw.stat().st_size > 0)


def _read_done(path: Path, columns: list[str], known: set[str]) -> set[tuple[str, int]]:
    """The (cell_id, repeat) pairs of a raw.csv, read only (broken rows skipped, the file
    untouched: :func:`_repair` drops them when the run starts)."""
    import csv

    done: set[tuple[str, int]] = set()
    if not path.exists():
        return done
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        head = next(reader, None)
        if head != columns:
            return done
        at_id, at_rep = columns.index("cell_id"), columns.index("repeat")
        for fields in reader:
            if len(fields) != len(columns) or fields[at_id] not in known:
                continue
            try:
                done.add((fields[at_id], _nonneg_int(fields[at_rep])))
            except ValueError:
                continue
    return done


def out_state(grid: Grid, out: str | Path, *, repeats: int | None = None,
              where: str | None = None, threads: int | None = 1) -> OutState:
    """What ``out`` holds for a run of ``grid`` (read only: nothing is written).

    Parameters are those of :func:`run_grid`.
    """
    out = Path(out)
    repeats = grid.repeats if repeats is None else repeats
    json_path = out / RUN_JSON
    header = None
    if json_path.exists():
        try:
            header = json.loads(json_path.read_text(encoding="utf-8"))
        except ValueError as err:
            raise ValueError(f"`out` directory {str(out)!r} has an unreadable {RUN_JSON} "
                             f"({err}); use another --out directory.") from None
    cells = grid.cells()
    selected = select_cells(cells, where)
    done = _read_done(out / RAW_CSV, _columns(grid), {c["cell_id"] for c in cells})
    wanted = {(c["cell_id"], r) for c in selected for r in range(repeats)}
    differences = _differences(header, grid, threads) if header is not None else []
    raw = out / RAW_CSV
    if header is None and raw.exists() and raw.stat().st_size and not done:
        differences.append(f"its {RAW_CSV} is not of this grid")
    return OutState(out, header, len(wanted & done), len(wanted - done), differences)


def _refusal(state: OutState, resume: bool) -> str | None:
    """Why a run must not write into ``state.path`` (None: it may)."""
    where = f"`out` directory {str(state.path)!r}"
    if not state.has_run:
        return None
    what = (state.header or {}).get("command") or "an earlier run"
    if state.differences:
        return (f"{where} holds another run ({what}): " + "; ".join(state.differences)
                + ". Runs are never mixed: use a new --out directory.")
    if not resume:
        return (f"{where} already holds a run ({what}; {state.n_done} of the selected cell "
                f"repeats done, {state.n_todo} to time). Pass --resume (resume=True) to "
                "continue it, or use a new --out directory.")
    if state.n_todo == 0:
        return (f"{where} holds a finished run ({what}): every selected cell repeat "
                f"({state.n_done}) is already timed, nothing to resume; left as it is. Use a "
                "new --out directory to time again (e.g. `lsqmf bench --reproduce DIR --out "
                "NEW`).")
    return None


def run_grid(
    grid: Grid,
    out: str | Path,
    *,
    repeats: int | None = None,
    where: str | None = None,
    jobs: int = 1,
    scheduler: Any = None,
    progress: bool | None = False,
    command: str | None = None,
    preset: str | None = None,
    threads: int | None = 1,
    resume: bool = False,
    notify: Callable[[str], None] | None = None,
    isolate: bool = True,
) -> pd.DataFrame:
    """Run (or resume) the cells of ``grid`` selected by ``where``; write CSVs into ``out``.

    Parameters
    ----------
    grid : Grid
        From :func:`~lsqmf.bench.grid.load_grid`.
    out : str or Path
        Output directory; created if needed. It must not hold another run; one's own
        (interrupted, or to be topped up with more ``repeats``) is continued with ``resume``.
    repeats : int, optional
        Best-of count (default ``grid.repeats``).
    where : str, optional
        A pandas query over the cell columns, e.g. ``"tr_solver == 'lsmr' and n <= 10"``.
    jobs : int, default=1
        Cells run in parallel on local processes when > 1 (timings then interfere; 1 is
        serial).
    scheduler : str, distributed.Client or cluster, optional
        Run the cells on a Dask cluster (see :func:`lsqmf.runtime.parallel.plan_backend`);
        ``jobs`` is then ignored. An unreachable scheduler is an error before anything is
        written.
    progress : bool or None, default=False
        The policy of :mod:`lsqmf.runtime.progress` (None: a bar on a terminal, status lines
        every 30 s otherwise; True: also a last line; False: nothing).
    command, preset : str, optional
        Recorded in ``run.json``.
    threads : int or None, default=1
        Every thread pool (each BLAS copy, OpenMP, numba) is limited to this many threads in
        every cell and measured there (see the module docstring); None leaves them alone.
    resume : bool, default=False
        Continue the run in ``out`` (same grid, machine, versions and threads), timing only
        the (cell, repeat) pairs not yet there.
    notify : callable, optional
        Receives the lines a user should see (what a resume reuses and times, what an
        interrupt abandons and saves); default: the log (INFO).
    isolate : bool, default=True
        Serial cells run in one child process (started at the first cell, reused by the
        next ones, killed on an interrupt: see :mod:`lsqmf.bench.cells`), so that Ctrl-C or
        SIGTERM is acted on within a second even while a cell holds the interpreter lock in
        LAPACK. False runs them in this process (in a helper thread: an interrupt then waits
        for the running LAPACK call). Local processes and Dask run cells in their workers
        either way.

    Returns
    -------
    pandas.DataFrame
        The best-of rows of every selected cell run so far (also written to ``results.csv``).

    Raises
    ------
    ValueError
        For a bad ``repeats``/``jobs``/``threads``/``where``/``scheduler``; an ``out`` holding
        another run, or a run without ``resume``, or a finished run (nothing to time); an
        ``out`` in use by another run (its lock file). ``out`` is then left as it was.
    KeyboardInterrupt
        Re-raised after ``raw.csv``, ``results.csv`` and ``run.json`` are consistent.
    """
    from ..runtime.parallel import plan_backend

    repeats = grid.repeats if repeats is None else check_int("repeats", repeats, min_value=1)
    jobs = check_int("jobs", jobs, min_value=1)
    if threads is not None:
        threads = check_int("threads", threads, min_value=1)
    cells = grid.cells()
    selected = select_cells(cells, where)
    say = notify if notify is not None else logger.info
    out = Path(out)
    state = out_state(grid, out, repeats=repeats, where=where, threads=threads)
    refusal = _refusal(state, resume)
    if refusal is not None:  # before the directory is touched
        raise ValueError(refusal)
    backend = plan_backend(jobs, scheduler)  # reach the cluster before writing anything
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock = FileLock(out / LOCK_FILE, f"`out` directory {str(out)!r}")
        lock.acquire()
    except BaseException:
        backend.close()
        raise
    try:
        state = out_state(grid, out, repeats=repeats, where=where, threads=threads)
        refusal = _refusal(state, resume)  # again, under the lock
        if refusal is not None:
            raise ValueError(refusal)
        if state.has_run:
            say(f"resuming the run in {out}: {state.n_done} cell repeats reused, "
                f"{state.n_todo} to time")
        run = _Run(grid, out, cells, selected, repeats=repeats, threads=threads, say=say)
        run.isolate = isolate and backend.kind == "serial"
        with _process_pinned(None if run.isolate else threads):  # the child pins its own
            return run.execute(backend, where=where, jobs=jobs, progress=progress,
                               command=command, preset=preset)
    finally:
        lock.release()
        backend.close()


@contextlib.contextmanager
def _process_pinned(threads: int | None) -> Iterator[None]:
    """This process's thread pools limited to ``threads`` for the run (None: as they are)."""
    if threads is None:
        yield
        return
    from ..runtime.threads import pinned_threads

    pid = os.getpid()
    previous = _PINNED.get(pid)
    with pinned_threads(threads):
        _PINNED[pid] = threads
        try:
            yield
        finally:
            if previous is None:
                _PINNED.pop(pid, None)
            else:
                _PINNED[pid] = previous


class _Threads:
    """The thread counts measured inside the cells: the most seen per library."""

    def __init__(self, requested: int | None, say: Callable[[str], None]) -> None:
        self.requested, self.say = requested, say
        self.libraries: dict[tuple[Any, Any, Any], dict[str, Any]] = {}
        self.cells = 0
        self.warned: set[tuple[Any, Any, Any]] = set()
        self.warnings: list[str] = []

    def add(self, measured: list[dict[str, Any]] | None) -> None:
        from ..runtime.threads import thread_warnings

        if not measured:
            return
        self.cells += 1
        for info in measured:
            key = (info.get("user_api"), info.get("internal_api"), info.get("filepath"))
            seen = self.libraries.get(key)
            if seen is None or (info.get("num_threads") or 0) > (seen.get("num_threads") or 0):
                self.libraries[key] = dict(info)
            if self.requested is not None and key not in self.warned:
                for msg in thread_warnings([info], self.requested):
                    self.warned.add(key)
                    self.warnings.append(msg)
                    logger.warning(msg)

    def record(self) -> dict[str, Any] | None:
        """The ``blas`` entry of ``run.json``: what the cells ran on."""
        if not self.cells:
            return None
        libs = list(self.libraries.values())
        counts = [lib["num_threads"] for lib in libs
                  if lib.get("user_api") == "blas" and lib.get("num_threads")]
        return {"source": "threadpoolctl and numba, measured inside the timed cells",
                "cells_measured": self.cells, "requested": self.requested,
                "libraries": libs, "max_threads": max(counts) if counts else None}


class _Run:
    """One session of a run: its header, the cells it times, and how it closes."""

    def __init__(self, grid: Grid, out: Path, cells: list[dict[str, Any]],
                 selected: list[dict[str, Any]], *, repeats: int, threads: int | None,
                 say: Callable[[str], None]) -> None:
        self.grid, self.out, self.cells, self.selected = grid, out, cells, selected
        self.repeats, self.threads, self.say = repeats, threads, say
        self.raw_path, self.json_path = out / RAW_CSV, out / RUN_JSON
        self.results_path = out / RESULTS_CSV
        # what the directory held, restored when this session times nothing
        self.before = {p: (p.read_bytes() if p.exists() else None)
                       for p in (self.raw_path, self.json_path, self.results_path)}
        self.measured = _Threads(threads, say)
        self.isolate = False  # serial cells in a child process (CellWorker)

    def execute(self, backend: Any, *, where: str | None, jobs: int, progress: bool | None,
                command: str | None, preset: str | None) -> pd.DataFrame:
        columns = _columns(self.grid)
        header: dict[str, Any] = {}
        if self.before[self.json_path] is not None:
            header = json.loads(self.before[self.json_path] or b"{}")
        session = _session_header(self.grid, repeats=self.repeats, where=where, jobs=jobs,
                                  command=command, preset=preset, threads=self.threads)
        session["backend"] = backend.kind
        if backend.kind == "dask":
            session["scheduler"] = backend.address
            msg = (f"cells ran on the Dask cluster at {backend.address}; timings of "
                   "concurrent cells interfere.")
            session["warnings"].append(msg)
            logger.warning(msg)
        sessions = [*header.get("sessions", []), session]
        self._write_header(session, sessions, "running")
        done: set[tuple[str, int]] = set()
        if self.raw_path.exists() and self.raw_path.stat().st_size:
            done = _repair(self.raw_path, columns, {c["cell_id"] for c in self.cells})
        todo = [(c, r) for c in self.selected for r in range(self.repeats)
                if (c["cell_id"], r) not in done]
        logger.info("%d cells selected x %d repeats; %d to run, %d already done",
                    len(self.selected), self.repeats, len(todo),
                    len(self.selected) * self.repeats - len(todo))
        session.update(n_cells=len(self.cells), n_selected=len(self.selected), n_run=0,
                       n_reused=len(self.selected) * self.repeats - len(todo))
        writer = RowWriter(self.raw_path, columns)
        status = "interrupted"
        try:
            self._run_cells(done, todo, backend=backend, writer=writer, session=session,
                            progress=progress)
            status = "complete"
        finally:
            result = self._close(session, sessions, status)
        return result

    def _write_header(self, session: dict[str, Any], sessions: list[dict[str, Any]],
                      status: str) -> None:
        header = {**session, "sessions": sessions, "status": status}
        self.json_path.write_text(json.dumps(header, indent=2, default=str), encoding="utf-8")

    def _run_cells(self, done: set[tuple[str, int]], todo: list[tuple[dict[str, Any], int]],
                   *, backend: Any, writer: RowWriter, session: dict[str, Any],
                   progress: bool | None) -> None:
        """Run the cells not ``done``, writing each row as it finishes; closes ``writer``."""
        from ..runtime.parallel import map_tasks
        from ..runtime.progress import Progress

        grid = self.grid
        bar = Progress(f"bench {grid.name}", len(todo), progress=progress, unit="cell repeats",
                       expected=[(cell_key(c), expected_cost(c)) for c, _ in todo])
        serial = backend.kind == "serial"
        worker = CellWorker(tick=bar.tick) if self.isolate else None

        def announced(tasks: Iterator[_Task]) -> Iterator[_Task]:
            for task in tasks:  # serial: pulled right before it runs
                if serial:
                    bar.begin(_cell_text(task.columns) + f" (repeat {task.repeat})")
                yield task

        try:
            shared = not serial and grid.problems == "movielens"
            tasks = _tasks(grid, self.selected, self.repeats, done, shared_folds=shared,
                           threads=self.threads)
            folds = _load_folds(grid) if shared else None
            for outcome in map_tasks(worker or _run_cell, announced(tasks), shared=folds,
                                     backend=backend, label=f"bench-{grid.name}"):
                row = (outcome.value if outcome.ok
                       else _failed_row(outcome.task, str(outcome.error)))
                self.measured.add(row.pop("_threads", None))
                writer.write(row)
                session["n_run"] += 1
                cell = outcome.task.columns
                bar.advance(cell_key(cell), expected_cost(cell), row.get("dur"))
        except KeyboardInterrupt:
            bar.message(self._interrupted(bar.current, session, killed=worker is not None))
            raise
        finally:
            if worker is not None:
                worker.close()  # already killed after an interrupt
            writer.close()
            bar.close()

    def _interrupted(self, current: str | None, session: dict[str, Any], *,
                     killed: bool) -> str:
        """The line an interrupt prints: the abandoned cell and what is saved."""
        running = ""
        if current:
            how = " (its worker process killed)" if killed else ""
            running = f"the running cell ({current}) is abandoned{how}; "
        return (f"interrupted: {running}{session['n_run']} cell repeats timed in this session "
                f"are saved in {self.raw_path} ({session['n_reused']} reused); writing "
                f"{RESULTS_CSV} and {RUN_JSON}")

    def _close(self, session: dict[str, Any], sessions: list[dict[str, Any]],
               status: str) -> pd.DataFrame:
        """Write the results of every cell run so far and the session's end to the header; the
        aggregated results of the ``selected`` cells. A session that timed nothing leaves the
        directory's files as they were."""
        order = [c["cell_id"] for c in self.cells]
        session["end_time"] = datetime.now(UTC).isoformat(timespec="seconds")
        session["status"] = status
        session["blas"] = self.measured.record()
        session["warnings"] += self.measured.warnings
        if session["n_run"] == 0:
            for path, content in self.before.items():
                if content is None:
                    path.unlink(missing_ok=True)
                elif path.read_bytes() != content:
                    path.write_bytes(content)
        else:
            aggregate(read_raw(self.raw_path), order=order).to_csv(self.results_path,
                                                                   index=False)
            self._write_header(session, sessions, status)
        if not self.raw_path.exists():
            return aggregate(_empty_raw(_columns(self.grid)))
        raw = read_raw(self.raw_path)
        keep = {c["cell_id"] for c in self.selected}
        raw = raw[raw["cell_id"].astype(str).isin(keep)]
        return aggregate(raw, order=order)


def _empty_raw(columns: list[str]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(columns=columns)
