"""Time one benchmark cell: in this process, or in a child process that can be killed.

:func:`_timed` times one (cell, repeat) -- the solver call between two
``time.perf_counter`` readings -- and turns its result, warnings and errors into a row of
``raw.csv``; :func:`_run_task` pins and measures the thread pools around it.

Why a child process
-------------------
A Ctrl-C must stop a run within a second or two, and a cell can sit in one LAPACK call for
a minute. A helper thread does not help there: scipy.linalg's LAPACK wrappers (the SVD of
``trf``/``exact``) hold the interpreter lock for the whole call, so the waiting main thread
does not run until the call returns (13.1 s in an n = 40 cell, ``benchmarks/bench_ctrl_c.py``).
:class:`CellWorker` therefore runs the cells in one child process, started at the first
cell and reused for the following ones (start-up is paid once per run, not per cell). The
parent sends each task down a pipe and waits for its row in short steps; on Ctrl-C or SIGTERM
it kills the child (whatever the child is doing) and re-raises :class:`KeyboardInterrupt`.

The child runs exactly what an in-process cell runs (:func:`_run_task`: the same solver
call, the same clock, the thread pools pinned with threadpoolctl after they are loaded and
measured inside the cell, in the child). It ignores SIGINT (a terminal's Ctrl-C reaches the
whole process group; the parent decides), writes its replies on a private copy of its stdout
(anything the solvers print goes to stderr) and exits when its stdin closes. A child that dies
by itself (out of memory, a crash) gives the cell a row with the reason in ``error`` and the
next cell a new child; one ended by SIGINT, SIGTERM or SIGHUP is an interrupt of the run.
"""

from __future__ import annotations

import math
import os
import pickle
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from .grid import ProblemData

__all__ = ["CORE_SOLVER", "CellWorker", "resolve_solver", "serve"]


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
    threads: int | None = None  # pinned_threads(threads) around the cell; None: as is


def _with_fold(folds: list[Any] | None, task: _Task) -> _Task:
    """``task`` with its fold taken from the shared folds (when it carries none)."""
    if task.data is not None:
        return task
    assert folds is not None and task.fold is not None
    return _Task(task.kind, task.solver, task.params, ProblemData(args=tuple(folds[task.fold])),
                 task.columns, task.repeat, threads=task.threads)


def _run_cell(folds: list[Any] | None, task: _Task) -> dict[str, Any]:
    """:func:`_run_task` with the fold taken from the shared folds (sent once per worker)."""
    return _run_task(_with_fold(folds, task))


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


def _run_task(task: _Task, *, interruptible: bool = True) -> dict[str, Any]:
    """Time one (cell, repeat), its thread pools pinned and measured (``row['_threads']``)
    when ``task.threads`` is set. With ``interruptible`` (this process's main thread) the
    solve runs in a helper thread so that Ctrl-C reaches the caller between LAPACK calls;
    without it (the child process of :class:`CellWorker`) it runs in the calling thread."""
    from ..runtime.progress import call_interruptibly

    def pinned() -> dict[str, Any]:
        if task.threads is None:
            return _timed(task)
        from ..runtime.threads import measure_threads, pinned_thread

        with pinned_thread(task.threads):
            measured = measure_threads()
            row = _timed(task)
        row["_threads"] = measured
        return row

    if task.threads is not None and _PINNED.get(os.getpid()) != task.threads:
        _pin_process(task.threads)  # a worker process: its BLAS for the rest of its life
    return call_interruptibly(pinned) if interruptible else pinned()


#: pid -> the thread count the process's BLAS is limited to (run_grid, or a worker's first
#: cell); a limit object is kept so that it is not undone.
_PINNED: dict[int, int] = {}
_PROCESS_LIMITS: list[Any] = []


def _pin_process(threads: int) -> None:
    from threadpoolctl import threadpool_limits

    from ..runtime.threads import load_thread_pools

    load_thread_pools()
    _PROCESS_LIMITS.append(threadpool_limits(limits=threads))
    _PINNED[os.getpid()] = threads


def _timed(task: _Task) -> dict[str, Any]:
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



# ---------------------------------------------------------------------------- child process
#: The child's program: the parent's import path, then the serve loop.
_BOOT = ("import sys; sys.path[:0] = sys.argv[1:]; "
         "from lsqmf.bench.cells import serve; serve()")

#: Signals that end a child as an interrupt of the run (not a failure of its cell).
_STOP_SIGNALS = {int(s) for s in (signal.SIGINT, signal.SIGTERM,
                                  getattr(signal, "SIGHUP", signal.SIGTERM))}


def serve(stdin: IO[bytes] | None = None, stdout: IO[bytes] | None = None) -> None:
    """The child's loop: read a pickled task, time it, write the pickled row; until EOF.

    Called by the child process of :class:`CellWorker` (with its own stdin and stdout).
    """
    if stdout is None:
        stdout = os.fdopen(os.dup(1), "wb")  # the replies' own channel ...
        os.dup2(2, 1)  # ... and fd 1 to stderr: a stray print cannot corrupt a reply
    if stdin is None:
        stdin = sys.stdin.buffer
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread (a test calls serve in a thread)
        pass
    while True:
        try:
            task = pickle.load(stdin)
        except EOFError:
            return
        if task is None:
            return
        try:
            row = _run_task(task, interruptible=False)
        except BaseException as err:  # a row, whatever happened
            row = _failed_row(task, _err_text(err))
        pickle.dump(row, stdout, protocol=pickle.HIGHEST_PROTOCOL)
        stdout.flush()


def _exchange(proc: subprocess.Popen[bytes], task: _Task) -> dict[str, Any]:
    """Send ``task`` to the child and read its row (EOFError: the child died)."""
    assert proc.stdin is not None and proc.stdout is not None
    pickle.dump(task, proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
    proc.stdin.flush()
    row: dict[str, Any] = pickle.load(proc.stdout)
    return row


class CellWorker:
    """Runs cells in one child process that is killed on an interrupt (see the module
    docstring); a drop-in for :func:`_run_cell` (``worker(folds, task) -> row``).

    Parameters
    ----------
    tick : callable, optional
        Called about every 0.1 s while a cell runs (e.g. :meth:`Progress.tick`).
    """

    def __init__(self, *, tick: Callable[[], None] | None = None) -> None:
        self.tick = tick
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0  # child processes started (a dead one is replaced)

    def __call__(self, folds: list[Any] | None, task: _Task) -> dict[str, Any]:
        from ..runtime.progress import call_interruptibly

        task = _with_fold(folds, task)
        proc = self._process()
        try:
            return call_interruptibly(lambda: _exchange(proc, task), tick=self.tick)
        except KeyboardInterrupt:
            self.kill()
            raise
        except (EOFError, OSError, pickle.UnpicklingError) as err:
            return self._died(task, err)

    def _process(self) -> subprocess.Popen[bytes]:
        if self.proc is None or self.proc.poll() is not None:
            paths = [p for p in sys.path if p]
            self.proc = subprocess.Popen([sys.executable, "-c", _BOOT, *paths],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            self.started += 1
        return self.proc

    def _died(self, task: _Task, err: BaseException) -> dict[str, Any]:
        """The row of a cell whose child died; an interrupt if a stop signal killed it."""
        proc, self.proc = self.proc, None
        assert proc is not None
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        _close_pipes(proc)
        if code is not None and code < 0 and -code in _STOP_SIGNALS:
            raise KeyboardInterrupt(f"the cell's worker process got {signal.Signals(-code).name}")
        how = (f"killed by {signal.Signals(-code).name}" if code is not None and code < 0
               else f"exit code {code}")
        return _failed_row(task, f"the worker process died running the cell ({how}; "
                                 f"{_err_text(err)})")

    def kill(self) -> None:
        """Kill the child now (it is abandoned with its cell)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.kill()
        proc.wait()
        _close_pipes(proc)

    def close(self, timeout: float = 10.0) -> None:
        """Let the child exit (its stdin closed); killed if it does not within ``timeout``."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            _close_pipes(proc)
            proc.wait(timeout=timeout)
        except (subprocess.TimeoutExpired, OSError):
            proc.kill()
            proc.wait()


def _close_pipes(proc: subprocess.Popen[bytes]) -> None:
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            try:
                pipe.close()
            except OSError:
                pass
