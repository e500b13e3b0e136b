"""SIGINT, SIGTERM and SIGHUP on the long commands, sent to a real ``lsqmf`` process.

Every command handles the three signals like Ctrl-C (``lsqmf.cli._signals``): it saves what is
finished and exits 130 with one line on stderr. The tests wait (bounded) until the command is
working, send the signal, and check the exit code and what was kept.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from lsqmf.model.files import load_model

#: Bound on waiting for a command to start working, or to exit after the signal (liveness,
#: not speed: a loaded machine takes long, a hang never ends).
PATIENCE = 180.0

SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGHUP": signal.SIGHUP}


class Running:
    """An ``lsqmf`` process whose output is collected by reader threads."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "lsqmf", *args], cwd=cwd,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL)
        self.out: list[bytes] = []
        self.err: list[bytes] = []
        self.readers = [threading.Thread(target=self._read, args=(s, b), daemon=True)
                        for s, b in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for t in self.readers:
            t.start()

    @staticmethod
    def _read(stream, sink: list[bytes]) -> None:  # type: ignore[no-untyped-def]
        for chunk in iter(lambda: stream.read1(65536), b""):
            sink.append(chunk)

    @property
    def stderr(self) -> str:
        return b"".join(self.err).decode(errors="replace")

    @property
    def stdout(self) -> str:
        return b"".join(self.out).decode(errors="replace")

    def wait_until(self, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + PATIENCE
        while not ready():
            assert self.proc.poll() is None, (
                f"the command ended ({self.proc.returncode}) before it was interrupted:\n"
                f"{self.stderr[-2000:]}")
            assert time.monotonic() < deadline, "the command never started working"
            time.sleep(0.05)

    def interrupt(self, signum: int) -> int:
        self.proc.send_signal(signum)
        code = self.proc.wait(timeout=PATIENCE)
        for t in self.readers:
            t.join(timeout=PATIENCE)
        self.proc.stdout.close()  # type: ignore[union-attr]
        self.proc.stderr.close()  # type: ignore[union-attr]
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=PATIENCE)


@pytest.fixture
def running(tmp_path: Path):  # type: ignore[no-untyped-def]
    started: list[Running] = []

    def start(*args: str) -> Running:
        r = Running(list(args), tmp_path)
        started.append(r)
        return r

    yield start
    for r in started:
        r.kill()


@pytest.fixture(scope="module")
def ratings_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    n_rows, n_cols, rank = 300, 200, 4
    R = rng.normal(size=(n_rows, rank)) @ rng.normal(size=(rank, n_cols)) / 2 + 3
    mask = rng.random((n_rows, n_cols)) < 0.2
    rows, cols = np.nonzero(mask)
    path = tmp_path_factory.mktemp("signals") / "ratings.csv"
    lines = [f"{i + 1},{j + 1},{R[i, j]:.3f}" for i, j in zip(rows, cols, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _iterating(r: Running, n: int = 2) -> Callable[[], bool]:
    """Ready when the solver has logged iteration ``n`` (``-v``: a line per iteration)."""
    return lambda: re.search(rf"iteration {n} ", r.stderr) is not None


def _interrupted_line(stderr: str, command: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.startswith(f"lsqmf {command}:")]
    assert lines, stderr[-2000:]
    return lines[-1]


# ------------------------------------------------------------------------------ fit
# The default selection uses bmf, which runs all its sweeps: als with tol 0 can reach an exact
# fixed point (a cost change of exactly 0) on this small file before a signal sent on a loaded
# machine arrives, and then rightly saves its converged model (seen in a CI run at load 15).
FIT_CASES = [
    pytest.param("bmf", "SIGTERM", id="bmf-SIGTERM"),
    pytest.param("bmf", "SIGHUP", id="bmf-SIGHUP"),
    pytest.param("als", "SIGINT", id="als-SIGINT", marks=pytest.mark.slow),
    pytest.param("als", "SIGTERM", id="als-SIGTERM", marks=pytest.mark.slow),
    pytest.param("gd", "SIGHUP", id="gd-SIGHUP", marks=pytest.mark.slow),
    pytest.param("lsq", "SIGTERM", id="lsq-SIGTERM", marks=pytest.mark.slow),
]
_LONG = {"als": ["--max-iter", "1000000", "--tol", "0"],
         "bmf": ["--max-iter", "1000000"],
         "gd": ["--max-iter", "1000000", "--tol", "0"],
         "lsq": ["--max-iter", "1000000", "--tol", "1e-300", "--tr-solver", "lsmr"]}


@pytest.mark.parametrize(("solver", "name"), FIT_CASES)
def test_fit_signal_saves_the_iterate_and_exits_130(running, ratings_csv: Path, tmp_path: Path,
                                                    solver: str, name: str) -> None:
    out = tmp_path / "model.npz"
    r = running("-v", "fit", str(ratings_csv), "--solver", solver, "--rank", "3",
                *_LONG[solver], "--seed", "0", "--out", str(out))
    r.wait_until(_iterating(r) if solver != "lsq" else lambda: "evaluation" in r.stderr
                 or re.search(r"iteration 2 |nfev 2 ", r.stderr) is not None)
    assert r.interrupt(SIGNALS[name]) == 130
    assert _interrupted_line(r.stderr, "fit") == (
        "lsqmf fit: interrupted; the model saved is the last iterate")
    model, _ = load_model(out)
    assert (model.status, model.success, model.solver) == (-5, False, solver)
    assert np.all(np.isfinite(model.P)) and model.P.shape[1] == 3
    assert f"saved {solver} model to {out}" in r.stdout


# ------------------------------------------------------------------------------ other commands
@pytest.mark.parametrize("name", [
    pytest.param("SIGTERM"),
    pytest.param("SIGHUP", marks=pytest.mark.slow),
    pytest.param("SIGINT", marks=pytest.mark.slow),
])
def test_evaluate_signal_exits_130_with_one_line(running, ratings_csv: Path, name: str) -> None:
    # bmf runs all its sweeps (it never stops early on a converged cost, as als with tol 0
    # can on this small file), so the signal always arrives while it works
    r = running("-v", "evaluate", str(ratings_csv), str(ratings_csv), "--solver", "bmf",
                "--rank", "3", *_LONG["bmf"])
    r.wait_until(_iterating(r))
    assert r.interrupt(SIGNALS[name]) == 130
    line = _interrupted_line(r.stderr, "evaluate")
    assert line.startswith("lsqmf evaluate: interrupted"), line
    assert "Traceback" not in r.stderr


def _cv_args(ratings_csv: Path, out: Path) -> list[str]:
    # 58 cells: the signal after the first row finds work left even on a loaded machine (a cell
    # can end early when its cost stops changing exactly)
    return ["cv", str(ratings_csv), "--solver", "als", "--rank", *map(str, range(2, 31)),
            "--reg", "0.1", "--folds", "2", "--seed", "0", "--max-iter", "300", "--tol", "0",
            "--out", str(out), "--no-progress"]


def _interrupt_cv(running, args: list[str], results: Path, signum: int) -> list[str]:  # type: ignore[no-untyped-def]
    r = running(*args)
    r.wait_until(lambda: results.exists() and len(results.read_text().splitlines()) >= 2)
    assert r.interrupt(signum) == 130
    kept = results.read_text().splitlines()
    line = _interrupted_line(r.stderr, "cv")
    assert line.startswith("lsqmf cv: interrupted"), line
    assert re.search(rf"interrupted after (\d+) of 58 cells; they are in "
                     rf"{re.escape(str(results))}; rerun the same command to resume", r.stderr)
    assert len(kept) >= 2 and "Traceback" not in r.stderr
    return kept


@pytest.mark.parametrize("name", ["SIGTERM", pytest.param("SIGHUP", marks=pytest.mark.slow)])
def test_cv_signal_keeps_finished_cells(running, ratings_csv: Path, tmp_path: Path,
                                        name: str) -> None:
    out = tmp_path / "cv"
    _interrupt_cv(running, _cv_args(ratings_csv, out), out / "cv_results.csv", SIGNALS[name])


@pytest.mark.slow
def test_cv_after_sigterm_resumes(running, ratings_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "cv"
    args = _cv_args(ratings_csv, out)
    results = out / "cv_results.csv"
    kept = _interrupt_cv(running, args, results, signal.SIGTERM)
    done = subprocess.run([sys.executable, "-m", "lsqmf", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=PATIENCE, check=False)
    assert done.returncode == 0, done.stderr
    assert all(row in results.read_text().splitlines() for row in kept[1:])
    assert "best: rank=" in done.stdout


def test_solve_sigterm_prints_the_result_and_exits_130(running, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    dense = rng.normal(size=(200, 4)) @ rng.normal(size=(4, 150))
    dense[rng.random(dense.shape) < 0.7] = np.nan
    np.save(tmp_path / "r.npy", dense)
    out = tmp_path / "m.npz"
    r = running("-v", "solve", "r.npy", "--rank", "6", "--ftol", "1e-300", "--max-nfev",
                "1000000", "--tr-solver", "lsmr", "--out", str(out))
    r.wait_until(lambda: "lsqmf.solve: iteration 2:" in r.stderr)
    assert r.interrupt(signal.SIGTERM) == 130
    assert "train RMSE" in r.stdout and "status: -5" in r.stdout
    assert _interrupted_line(r.stderr, "solve").startswith("lsqmf solve: interrupted")
    assert load_model(out)[0].status == -5


@pytest.mark.slow
def test_tune_sigterm_exits_130_with_one_line(running, ratings_csv: Path) -> None:
    r = running("-v", "tune", str(ratings_csv), "--solver", "bmf", "--seed", "0")
    started = time.monotonic()  # tune logs nothing while it works: give it time to start
    r.wait_until(lambda: time.monotonic() > started + 3)
    assert r.interrupt(signal.SIGTERM) == 130
    assert _interrupted_line(r.stderr, "tune").startswith("lsqmf tune: interrupted")
    assert "Traceback" not in r.stderr


_GRID = """
name = "signals"
problems = "seed"
[problem]
n = [10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 34, 36, 38, 40]
k_factor = [0.2]
sparsity = [0.5]
[solve]
missing = 0
[[configs]]
method = "trf"
tr_solver = ["exact", "lsmr"]
loss = "linear"
"""


@pytest.mark.slow
def test_bench_sigterm_keeps_rows_and_resumes(running, tmp_path: Path) -> None:
    grid = tmp_path / "grid.toml"
    grid.write_text(_GRID)
    out = tmp_path / "out"
    args = ["bench", "--grid", str(grid), "--out", str(out), "--repeats", "3", "--no-progress",
            "--no-plots"]
    r = running(*args)
    raw = out / "raw.csv"
    r.wait_until(lambda: raw.exists() and len(raw.read_text().splitlines()) >= 2)
    assert r.interrupt(signal.SIGTERM) == 130
    kept = raw.read_text().splitlines()
    assert len(kept) >= 2 and "Traceback" not in r.stderr
    done = subprocess.run([sys.executable, "-m", "lsqmf", *args, "--resume"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=PATIENCE, check=False)
    assert done.returncode == 0, done.stderr
    assert kept[1] in raw.read_text().splitlines()
    assert "interrupted; finished cells are in" in r.stderr


# ------------------------------------------------------------------------------ in process
def test_deferred_stop_first_signal_requests_second_raises() -> None:
    from lsqmf.cli._signals import Terminated, deferred_stop

    before = signal.getsignal(signal.SIGTERM)
    with deferred_stop() as stop:
        callback = stop.wrap(None)
        assert callback(None) is None and not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signum == signal.SIGTERM and callback(None) is True
        with pytest.raises(Terminated, match="received SIGHUP"):
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(1)  # the handler runs at the next bytecode
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.parametrize(("status", "requested", "expect"),
                         [(-2, True, -5), (2, True, 2), (-2, False, -2)],
                         ids=["callback-stop", "converged-anyway", "no-request"])
def test_stop_request_marks_only_its_own_stop(status: int, requested: bool,
                                              expect: int) -> None:
    from lsqmf import FitResult
    from lsqmf.cli._signals import StopRequest

    stop = StopRequest()
    if requested:
        stop.signum = signal.SIGTERM
    model = FitResult(P=np.ones((2, 1)), Q=np.ones((1, 2)), mu=0.0, status=status,
                      success=status > 0, message="m", cost=0.0, solver="als")
    marked = stop.mark(model)
    assert (marked.status, marked.success) == (expect, expect > 0)


# ------------------------------------------------------------------------------ workers
@pytest.mark.parametrize(("n_jobs", "tasks", "expect"), [
    (64, [1, 2], 2), (-1, list(range(100)), os.cpu_count()), (10**6, iter(range(5)),
                                                              os.cpu_count()),
    (3, [], 1), (1, [1, 2, 3], 1),
], ids=["more-jobs-than-tasks", "all-cores", "uncounted-tasks", "no-tasks", "one"])
def test_worker_count_bounded_by_work_and_cores(n_jobs: int, tasks, expect: int) -> None:  # type: ignore[no-untyped-def]
    from lsqmf.runtime.parallel import _n_workers

    assert _n_workers(n_jobs, tasks) == expect


_ORPHAN_SCRIPT = """
import os, sys, time
from lsqmf.runtime.parallel import map_tasks

def task(shared, i):
    open(os.path.join(shared, f"worker{i}"), "w").write(str(os.getpid()))
    time.sleep(3600)

for _ in map_tasks(task, [0, 1], shared=sys.argv[1], n_jobs=2):
    pass
"""


def test_workers_exit_after_kill_9_of_their_parent(tmp_path: Path) -> None:
    script = tmp_path / "orphans.py"
    script.write_text(_ORPHAN_SCRIPT)
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path)], cwd=tmp_path)
    files = [tmp_path / "worker0", tmp_path / "worker1"]
    try:
        deadline = time.monotonic() + PATIENCE
        while not all(f.exists() and f.read_text() for f in files):
            assert parent.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        parent.kill()
        parent.wait(timeout=PATIENCE)
    pids = [int(f.read_text()) for f in files]
    deadline = time.monotonic() + 60  # liveness bound: each worker polls every 0.5 s
    while any(Path(f"/proc/{pid}").exists() and Path(f"/proc/{pid}/stat").read_text()
              .rsplit(")", 1)[1].split()[0] not in ("Z", "X") for pid in pids):
        assert time.monotonic() < deadline, f"workers {pids} outlived their parent"
        time.sleep(0.1)
