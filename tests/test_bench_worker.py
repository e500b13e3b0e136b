"""The child process that times benchmark cells (lsqmf.bench.cells.CellWorker): the same rows
as in this process, reused across cells, killed on Ctrl-C, a death of its own is an error row
(issue #22: Ctrl-C within a second or two in every cell)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lsqmf.bench import cells
from lsqmf.bench.cells import CellWorker, _run_task, _Task
from lsqmf.bench.grid import ProblemData, parse_grid
from lsqmf.bench.harness import RAW_CSV, read_raw, run_grid

DENSE = """
name = "dense"
problems = "seed"
[problem]
n = [6, 8]
k_factor = [0.5]
sparsity = [0.25]
[solve]
missing = 0
[[configs]]
method = "trf"
tr_solver = ["exact", "lsmr"]
"""

#: Seconds a liveness wait may take before the test fails (not a timing assertion).
PATIENCE = 120


class _OnUnpickle:
    """An argument whose unpickling (in the child) calls ``fn(*args)``."""

    def __init__(self, fn: Any, *args: Any) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.fn, self.args


def _task(*args: Any, threads: int | None = 1) -> _Task:
    return _Task("fit", "solve", {"rank": 2, "random_state": 0},
                 ProblemData(args=args, stats={"nnz": 0}), {"n": 1, "method": "trf"}, 0,
                 threads=threads)


def _ratings() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.random((8, 6)) @ np.eye(6)


def test_the_child_gives_the_rows_of_this_process_and_is_reused() -> None:
    worker = CellWorker()
    try:
        rows = [worker(None, _task(_ratings())) for _ in range(2)]
        assert worker.started == 1 and worker.proc is not None  # one child for both cells
    finally:
        worker.close()
    assert worker.proc is None
    here = _run_task(_task(_ratings()))
    for row in rows:
        for key in ("cost", "nfev", "njev", "status", "success", "error"):
            assert row[key] == here[key], key  # the same numbers, to the bit
        blas = [t for t in row["_threads"] if t["user_api"] == "blas"]
        assert blas and all(t["num_threads"] == 1 for t in blas)  # pinned, measured there


def test_a_child_that_dies_by_itself_is_an_error_row_and_is_replaced() -> None:
    worker = CellWorker()
    try:
        row = worker(None, _task(_OnUnpickle(os._exit, 3)))
        assert "the worker process died running the cell (exit code 3" in row["error"]
        assert np.isnan(row["dur"]) and row["success"] is False
        assert worker(None, _task(_ratings()))["error"] == ""  # a new child
        assert worker.started == 2
    finally:
        worker.close()


def test_a_child_stopped_by_sigterm_is_an_interrupt() -> None:
    worker = CellWorker()
    try:
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
            worker(None, _task(_OnUnpickle(signal.raise_signal, signal.SIGTERM)))
    finally:
        worker.close()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_kills_the_child_while_its_cell_runs() -> None:
    worker = CellWorker()
    worker(None, _task(_ratings()))  # the child is up
    proc = worker.proc
    assert proc is not None
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            worker(None, _task(_OnUnpickle(time.sleep, PATIENCE)))  # busy in the child
    finally:
        timer.cancel()
        worker.close()
    assert worker.proc is None
    assert proc.returncode == -signal.SIGKILL  # killed, not waited for


def test_run_grid_in_a_child_and_in_process_agree(tmp_path: Path) -> None:
    grid = parse_grid(DENSE)
    child = run_grid(grid, tmp_path / "child", repeats=1)
    here = run_grid(grid, tmp_path / "here", repeats=1, isolate=False)
    for key in ("cell_id", "cost", "nfev", "status", "error"):
        assert list(child[key]) == list(here[key]), key


def test_a_solver_patched_in_this_process_does_not_reach_the_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Why the tests that stand in for the solver pass ``isolate=False``."""
    called: list[str] = []
    monkeypatch.setattr(cells, "resolve_solver", lambda name: called.append(name))
    run_grid(parse_grid(DENSE), tmp_path, repeats=1, where="n == 6")
    assert called == []
    assert (read_raw(tmp_path / RAW_CSV)["error"] == "").all()


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_in_a_long_dense_cell_exits_130_and_keeps_the_rows(tmp_path: Path) -> None:
    """`lsqmf bench`: SIGINT inside an n = 40 exact cell (a minute of LAPACK that holds the
    interpreter lock) ends the run with 130, naming the cell; the finished row is kept.
    (The latency is measured by benchmarks/bench_ctrl_c.py, not here.)"""
    grid = tmp_path / "grid.toml"
    grid.write_text(DENSE.replace("n = [6, 8]", "n = [4, 40]").replace(
        '["exact", "lsmr"]', '["lsmr", "exact"]').replace("k_factor = [0.5]",
                                                          "k_factor = [0.8]"))
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lsqmf", "bench", "--grid", str(grid), "--out", str(out),
         "--repeats", "1", "--no-plots", "--no-progress", "--where", "n == 40 or "
         "tr_solver == 'lsmr'"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    raw = out / RAW_CSV
    deadline = time.monotonic() + PATIENCE
    while not (raw.exists() and len(raw.read_text().splitlines()) >= 3):  # two lsmr rows
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(3)  # inside the exact n = 40 cell
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=PATIENCE)
    assert proc.returncode == 130, stderr
    assert "trf-exact (repeat 0)) is abandoned (its worker process killed)" in stderr
    assert "Traceback" not in stderr
    assert len(read_raw(raw)) == 2
