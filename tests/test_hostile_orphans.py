"""Local worker processes of ``lsqmf cv`` (issue #23 item 9): bounded by the work and the cores,
and gone soon after their parent is killed with SIGKILL. Real processes, counted in /proc."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

#: Upper bound of every wait (the machine is shared and loaded); never a timing assertion.
PATIENCE = 180.0


def _children() -> dict[int, list[int]]:
    """parent pid -> child pids, from /proc."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] in ("Z", "X"):
            continue
        tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _workers(root: int) -> list[int]:
    """Descendants of ``root`` that are joblib/loky worker processes."""
    tree, found, todo = _children(), [], [root]
    while todo:
        for child in tree.get(todo.pop(), []):
            todo.append(child)
            try:
                cmd = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if b"loky" in cmd and b"resource_tracker" not in cmd:
                found.append(child)
    return found


def _ratings_file(path: Path, n_rows: int, n_cols: int, density: float) -> Path:
    rng = np.random.default_rng(0)
    mask = rng.random((n_rows, n_cols)) < density
    rows, cols = np.nonzero(mask)
    values = rng.integers(1, 6, rows.size)
    path.write_text("".join(f"{r},{c},{v}\n" for r, c, v in zip(rows, cols, values, strict=True)))
    return path


def _lsqmf(*args: str, cwd: Path) -> subprocess.Popen[bytes]:
    """Output to files, not pipes: a surviving worker holding a pipe would block the wait."""
    with open(cwd / "stdout", "wb") as out, open(cwd / "stderr", "wb") as err:
        return subprocess.Popen([sys.executable, "-m", "lsqmf", *args], cwd=cwd, stdout=out,
                                stderr=err)


@pytest.mark.slow
def test_cv_with_64_jobs_on_two_fits_starts_at_most_two_workers(tmp_path: Path) -> None:
    data = _ratings_file(tmp_path / "r.csv", 30, 20, 0.5)
    proc = _lsqmf("cv", str(data), "--solver", "als", "--rank", "1", "--folds", "2",
                  "--jobs", "64", "--max-iter", "200", "--tol", "0", "--no-progress",
                  cwd=tmp_path)
    most = 0
    deadline = time.monotonic() + PATIENCE
    while proc.poll() is None:
        most = max(most, len(_workers(proc.pid)))
        assert time.monotonic() < deadline, "lsqmf cv did not finish"
        time.sleep(0.02)
    assert proc.wait(timeout=PATIENCE) == 0, (tmp_path / "stderr").read_text()
    assert 1 <= most <= min(2, os.cpu_count() or 1), most


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("when", [
    "starting",
    pytest.param("fitting", marks=pytest.mark.slow),
])
def test_workers_of_a_killed_cv_exit(tmp_path: Path, when: str) -> None:
    """kill -9 of ``lsqmf cv --jobs 2`` as soon as its workers exist (still starting, before
    any task) or once each has spent a second of CPU on its fit: they end too."""
    data = _ratings_file(tmp_path / "r.csv", 300, 200, 0.3)
    proc = _lsqmf("cv", str(data), "--solver", "als", "--rank", "5", "--folds", "4",
                  "--jobs", "2", "--max-iter", "1000000", "--tol", "0", "--no-progress",
                  cwd=tmp_path)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + PATIENCE
        while len(workers) < min(2, os.cpu_count() or 1):
            assert proc.poll() is None, (tmp_path / "stderr").read_text()
            assert time.monotonic() < deadline, "no worker process started"
            workers = _workers(proc.pid)
            time.sleep(0.05)
        while when == "fitting" and min(_cpu_seconds(pid) for pid in workers) < 1.0:
            assert proc.poll() is None, (tmp_path / "stderr").read_text()
            assert time.monotonic() < deadline, "the workers never started fitting"
            time.sleep(0.1)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=PATIENCE)
    deadline = time.monotonic() + 60  # a liveness bound: each worker checks every 0.5 s
    while any(_alive(pid) for pid in workers):
        assert time.monotonic() < deadline, f"workers {workers} outlived their parent"
        time.sleep(0.1)
