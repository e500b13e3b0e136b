"""The benchmark harness: rows, resume after an interrupt, failures, warnings, filtering."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import lsqmf
from lsqmf.bench import cells, harness
from lsqmf.bench.grid import load_grid, parse_grid
from lsqmf.bench.harness import RAW_CSV, RESULTS_CSV, RUN_JSON, aggregate, read_raw, run_grid

TINY = """
name = "tiny"
problems = "seed"
[problem]
n = [4, 6]
k_factor = [0.5]
sparsity = [0.25]
[solve]
missing = 0
[[configs]]
method = "trf"
tr_solver = ["exact", "lsmr"]
loss = ["linear", "huber"]
"""
N_TINY = 8  # 2 problems x 4 configurations


@pytest.fixture
def grid() -> Any:
    return parse_grid(TINY, source="tiny.toml")


class Recorder:
    """Stands in for the solver: records calls, can fail or interrupt."""

    def __init__(self, interrupt_after: int | None = None, fail_when: dict | None = None):
        self.calls: list[dict[str, Any]] = []
        self.interrupt_after = interrupt_after
        self.fail_when = fail_when or {}

    def __call__(self, R: np.ndarray, **kwargs: Any) -> lsqmf.FitResult:
        if self.interrupt_after is not None and len(self.calls) >= self.interrupt_after:
            raise KeyboardInterrupt
        self.calls.append({"R": R, **kwargs})
        if all(kwargs.get(k) == v for k, v in self.fail_when.items()) and self.fail_when:
            raise np.linalg.LinAlgError("SVD did not converge")
        return lsqmf.solve(R, **kwargs)


def patch_solver(monkeypatch: pytest.MonkeyPatch, fake: Any) -> None:
    """Cells call ``fake``: in this process, so the run needs ``isolate=False``."""
    monkeypatch.setattr(cells, "resolve_solver", lambda name: fake)


def test_run_writes_one_row_per_cell_and_the_header(grid: Any, tmp_path: Path) -> None:
    result = run_grid(grid, tmp_path, repeats=2, command="test")
    assert len(result) == N_TINY
    for col in ["sparsity", "k_factor", "n", "method", "tr_solver", "loss", "dur", "m", "k",
                "nnz", "nfev", "njev", "cost", "success", "error", "repeats"]:
        assert col in result.columns, col
    assert (result["repeats"] == 2).all()
    assert result["success"].all()
    assert (result["dur"] > 0).all()
    assert (result["error"] == "").all()
    on_disk = read_raw(tmp_path / RESULTS_CSV)
    assert list(on_disk["cell_id"]) == list(result["cell_id"])
    raw = read_raw(tmp_path / RAW_CSV)
    assert len(raw) == 2 * N_TINY
    # best of repeats
    best = raw.groupby("cell_id")["dur"].min()
    np.testing.assert_allclose(result.set_index("cell_id")["dur"], best[result["cell_id"]])
    header = json.loads((tmp_path / RUN_JSON).read_text())
    for key in ("versions", "blas", "cpu_count", "platform", "command", "start_time",
                "end_time", "grid_file", "warnings"):
        assert key in header, key
    assert header["status"] == "complete"
    assert header["grid_file"] == "tiny.toml"
    assert {"lsqmf", "numpy", "scipy"} <= set(header["versions"])


def test_interrupted_run_resumes_without_redoing_cells(
    grid: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = Recorder(interrupt_after=3)
    patch_solver(monkeypatch, first)
    with pytest.raises(KeyboardInterrupt):
        run_grid(grid, tmp_path, isolate=False, repeats=1)
    raw = read_raw(tmp_path / RAW_CSV)
    assert len(raw) == 3  # finished cells are on disk, as valid CSV
    assert len(read_raw(tmp_path / RESULTS_CSV)) == 3
    assert json.loads((tmp_path / RUN_JSON).read_text())["status"] == "interrupted"

    second = Recorder()
    patch_solver(monkeypatch, second)
    said: list[str] = []
    result = run_grid(grid, tmp_path, isolate=False, repeats=1, resume=True, notify=said.append)
    assert said == [f"resuming the run in {tmp_path}: 3 cell repeats reused, "
                    f"{N_TINY - 3} to time"]
    assert len(second.calls) == N_TINY - 3
    assert len(result) == N_TINY
    final = read_raw(tmp_path / RESULTS_CSV)
    assert sorted(final["cell_id"]) == sorted(c["cell_id"] for c in grid.cells())
    assert final["cell_id"].is_unique
    header = json.loads((tmp_path / RUN_JSON).read_text())
    assert [s["status"] for s in header["sessions"]] == ["interrupted", "complete"]

    third = Recorder()  # a finished run: nothing to resume, refused, left byte-identical
    patch_solver(monkeypatch, third)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(ValueError, match=r"holds a finished run .* nothing to resume"):
        run_grid(grid, tmp_path, isolate=False, repeats=1, resume=True)
    assert third.calls == []
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_lsqmf_swallowed_ctrl_c_is_an_interrupt(
    grid: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """lsqmf.solve turns Ctrl-C into status -5; the harness must not record that cell."""

    def interrupted(R: np.ndarray, **kwargs: Any) -> lsqmf.FitResult:
        P0 = kwargs["P0"]
        return lsqmf.FitResult(P=P0, Q=kwargs["Q0"], success=False, status=-5)

    patch_solver(monkeypatch, interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_grid(grid, tmp_path, isolate=False, repeats=1)
    assert list(tmp_path.iterdir()) == []  # no cell timed: nothing left behind


def test_truncated_last_row_is_dropped_and_redone(grid: Any, tmp_path: Path) -> None:
    run_grid(grid, tmp_path, repeats=1, where="n == 4")
    raw_path = tmp_path / RAW_CSV
    lines = raw_path.read_text().splitlines(keepends=True)
    assert len(lines) == 1 + 4
    raw_path.write_text("".join(lines[:-1]) + lines[-1][:25])  # a hard kill mid-write
    with pytest.warns(RuntimeWarning, match=r"dropped 1 broken row\(s\) of 4 \(1 with a wrong "
                      r"number of fields\)"):
        result = run_grid(grid, tmp_path, repeats=1, resume=True)
    assert len(result) == N_TINY
    raw = read_raw(raw_path)
    assert len(raw) == N_TINY
    assert raw["cell_id"].is_unique


def test_extra_repeats_top_up_an_existing_run(grid: Any, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    run_grid(grid, tmp_path, isolate=False, repeats=1)
    rec = Recorder()
    patch_solver(monkeypatch, rec)
    result = run_grid(grid, tmp_path, isolate=False, repeats=2, resume=True)
    assert len(rec.calls) == N_TINY
    assert (result["repeats"] == 2).all()
    sessions = json.loads((tmp_path / RUN_JSON).read_text())["sessions"]
    assert [s["n_run"] for s in sessions] == [N_TINY, N_TINY]  # the history of both runs


def test_failing_cell_is_a_row_and_the_run_goes_on(
    grid: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = Recorder(fail_when={"tr_solver": "exact"})
    patch_solver(monkeypatch, rec)
    result = run_grid(grid, tmp_path, isolate=False, repeats=1)
    assert len(result) == N_TINY
    failed = result[result["tr_solver"] == "exact"]
    assert len(failed) == 4
    assert failed["error"].str.startswith("LinAlgError: SVD did not converge").all()
    assert failed["dur"].isna().all()
    assert (~failed["success"]).all()
    ok = result[result["tr_solver"] == "lsmr"]
    assert (ok["error"] == "").all() and ok["success"].all()


def test_convergence_warning_is_recorded_not_raised(tmp_path: Path) -> None:
    grid = parse_grid(TINY.replace("missing = 0", "missing = 0\nmax_nfev = 1"))
    result = run_grid(grid, tmp_path, repeats=1)  # filterwarnings=error would fail here
    assert (~result["success"]).all()
    assert result["warning"].str.contains("ConvergenceWarning").all()
    assert (result["error"] == "").all()
    assert result["dur"].notna().all()


def test_unknown_solver_is_an_error_row(tmp_path: Path) -> None:
    grid = parse_grid(TINY + '\n[[configs]]\nsolver = "no-such-solver"\n')
    result = run_grid(grid, tmp_path, repeats=1, where="solver != 'solve'")
    assert len(result) == 2
    assert result["error"].str.contains("no-such-solver").all()


def test_where_selects_a_subset_and_times_the_full_runs_problems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    grid = load_grid(preset="seed")
    where = "tr_solver == 'lsmr' and loss == 'linear' and method == 'trf' and n <= 10"
    rec = Recorder()
    patch_solver(monkeypatch, rec)
    result = run_grid(grid, tmp_path, isolate=False, repeats=2, where=where)
    assert len(result) == 8  # 2 n x 2 k_factor x 2 sparsity
    assert (result["tr_solver"] == "lsmr").all() and (result["n"] <= 10).all()
    assert len(rec.calls) == 16
    # the problems are those of the full run: same RNG stream
    full = {(r, i): d for r, i, d in grid.iter_problems(2)}
    for call, (r, i) in zip(rec.calls, [(r, i) for r in range(2) for i in range(8)],
                            strict=True):
        np.testing.assert_array_equal(call["R"], full[(r, i)].args[0])
        np.testing.assert_array_equal(call["P0"], full[(r, i)].kwargs["P0"])


def _snapshot(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


@pytest.mark.parametrize("resume", [False, True], ids=["fresh", "resume"])
def test_other_grid_in_the_same_out_dir_is_refused(grid: Any, tmp_path: Path,
                                                   resume: bool) -> None:
    run_grid(grid, tmp_path, repeats=1, where="n == 4 and tr_solver == 'lsmr'")
    before = _snapshot(tmp_path)
    other = parse_grid(TINY.replace('loss = ["linear", "huber"]', 'loss = "cauchy"'))
    with pytest.raises(ValueError, match=r"holds another run .*: grid tiny.toml .* there, "
                       r".* here\. Runs are never mixed"):
        run_grid(other, tmp_path, repeats=1, resume=resume)
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        pytest.param("versions", {"numpy": "1.0.0"}, "numpy 1.0.0 there", id="numpy"),
        pytest.param("host", "elsewhere", "host 'elsewhere' there", id="machine"),
        pytest.param("threads_requested", 4, "threads 4 there, 1 here", id="threads"),
    ],
)
def test_a_foreign_run_is_refused_and_left_byte_identical(
    grid: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, field: str, value: Any,
    says: str
) -> None:
    patch_solver(monkeypatch, Recorder(interrupt_after=2))  # cells left to time
    with pytest.raises(KeyboardInterrupt):
        run_grid(grid, tmp_path, isolate=False, repeats=1)
    header = json.loads((tmp_path / RUN_JSON).read_text())
    header[field] = {**header[field], **value} if isinstance(value, dict) else value
    (tmp_path / RUN_JSON).write_text(json.dumps(header))
    before = _snapshot(tmp_path)
    rec = Recorder()
    patch_solver(monkeypatch, rec)
    with pytest.raises(ValueError, match=rf"holds another run .*{says}"):
        run_grid(grid, tmp_path, isolate=False, repeats=1, resume=True)
    assert rec.calls == [] and _snapshot(tmp_path) == before


def test_an_existing_run_needs_resume(grid: Any, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    patch_solver(monkeypatch, Recorder(interrupt_after=2))
    with pytest.raises(KeyboardInterrupt):
        run_grid(grid, tmp_path, isolate=False, repeats=1)
    before = _snapshot(tmp_path)
    rec = Recorder()
    patch_solver(monkeypatch, rec)
    with pytest.raises(ValueError, match=r"already holds a run .*2 of the selected cell "
                       r"repeats done, 6 to time\). Pass --resume"):
        run_grid(grid, tmp_path, isolate=False, repeats=1)
    assert rec.calls == [] and _snapshot(tmp_path) == before


def test_a_resume_interrupted_before_its_first_cell_changes_nothing(
    grid: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    patch_solver(monkeypatch, Recorder(interrupt_after=2))
    with pytest.raises(KeyboardInterrupt):
        run_grid(grid, tmp_path, isolate=False, repeats=1)
    before = _snapshot(tmp_path)
    patch_solver(monkeypatch, Recorder(interrupt_after=0))
    with pytest.raises(KeyboardInterrupt):
        run_grid(grid, tmp_path, isolate=False, repeats=1, resume=True)
    assert _snapshot(tmp_path) == before  # run.json and results.csv as they were


def test_bad_arguments(grid: Any, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="`repeats` must be an int >= 1"):
        run_grid(grid, tmp_path, repeats=0)
    with pytest.raises(TypeError, match="`jobs` must be an int"):
        run_grid(grid, tmp_path, jobs=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`where` query"):
        run_grid(grid, tmp_path, where="n >")


def test_parallel_cells(grid: Any, tmp_path: Path) -> None:
    result = run_grid(grid, tmp_path, repeats=1, jobs=2)
    assert len(result) == N_TINY and result["success"].all()
    assert any("parallel" in w for w in json.loads((tmp_path / RUN_JSON).read_text())["warnings"])


def test_aggregate_best_of_and_partial_failures() -> None:
    raw = pd.DataFrame({
        "cell_id": ["a", "a", "a", "b", "b"],
        "repeat": [0, 1, 2, 0, 1],
        "dur": [3.0, 1.0, np.nan, np.nan, np.nan],
        "nfev": [5, 4, 0, 0, 0],
        "error": ["", "", "LinAlgError: x", "ValueError: y", "ValueError: y"],
    })
    out = aggregate(raw, order=["b", "a"]).set_index("cell_id")
    assert list(out.index) == ["b", "a"]
    assert out.loc["a", "dur"] == 1.0 and out.loc["a", "nfev"] == 4
    assert out.loc["a", "repeats"] == 3 and out.loc["a", "n_failed"] == 1
    assert out.loc["a", "error"] == "1 of 3 repeats failed: LinAlgError: x"
    assert np.isnan(out.loc["b", "dur"]) and out.loc["b", "error"] == "ValueError: y"


def test_blas_info_reports_threads() -> None:
    info = harness.blas_info()
    assert {"source", "libraries", "max_threads", "env"} <= set(info)
    assert info["max_threads"] is None or info["max_threads"] >= 1


def test_movielens_grid_runs_fit_and_score_per_fold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lsqmf.evaluate import kfold

    rng = np.random.default_rng(0)
    R = np.where(rng.random((12, 10)) < 0.6, rng.integers(1, 6, (12, 10)).astype(float), np.nan)
    monkeypatch.setattr(harness, "_load_folds",
                        lambda grid: kfold(R, grid.problem["n_splits"], 0))
    grid = parse_grid("""
name = "cv"
problems = "movielens"
[problem]
n_splits = 3
[solve]
rank = 2
random_state = 0
[[configs]]
solver = ["als", "no-such-solver"]
max_iter = 3
""")
    result = run_grid(grid, tmp_path, repeats=1)
    assert len(result) == 6
    als = result[result["solver"] == "als"]
    assert list(als["fold"]) == [0, 1, 2]
    assert (als["error"] == "").all()
    assert (als["rmse"] > 0).all() and (als["mae"] > 0).all()
    np.testing.assert_allclose(als["dur"], als["fit_s"])
    assert result[result["solver"] != "als"]["error"].str.contains("no-such-solver").all()


def _set_field(header: str, line: str, name: str, value: str) -> str:
    cols = header.strip().split(",")
    fields = line.rstrip("\n").split(",")
    fields[cols.index(name)] = value
    return ",".join(fields) + "\n"


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        pytest.param(lambda h, rows: [*rows[:-1], rows[-1][:-3] + "\n"], "unknown cell_id",
                     id="truncated-last-field"),
        pytest.param(lambda h, rows: [*rows, "\x00\x01garbage;;\n"], "wrong number of fields",
                     id="garbage-row"),
        pytest.param(lambda h, rows: [*rows, _set_field(h, rows[0], "cell_id", "no-such-cell")],
                     "unknown cell_id", id="unknown-cell-id"),
        pytest.param(lambda h, rows: [_set_field(h, rows[0], "dur", "1.2.3"), *rows[1:]],
                     "that does not parse", id="unparsable-dur"),
        pytest.param(lambda h, rows: [_set_field(h, rows[0], "repeat", "-1"), *rows[1:]],
                     "that does not parse", id="negative-repeat"),
    ],
)
def test_resume_validates_every_row(grid: Any, tmp_path: Path, damage: Any, reason: str,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    run_grid(grid, tmp_path, isolate=False, repeats=1, where="n == 4")
    raw_path = tmp_path / RAW_CSV
    header, *rows = raw_path.read_text().splitlines(keepends=True)
    raw_path.write_text(header + "".join(damage(header, rows)))
    rec = Recorder()
    patch_solver(monkeypatch, rec)
    with pytest.warns(RuntimeWarning, match=rf"dropped 1 broken row\(s\).*{reason}"):
        result = run_grid(grid, tmp_path, isolate=False, repeats=1, resume=True)
    # the broken row's cell (if it was one of the 4) runs again with the other 4 cells
    assert len(rec.calls) in (4, 5)
    raw = read_raw(raw_path)
    assert len(result) == N_TINY and len(raw) == N_TINY and raw["cell_id"].is_unique
    assert set(raw["cell_id"]) == {c["cell_id"] for c in grid.cells()}


def test_lock_refuses_a_second_run_on_the_same_out(grid: Any, tmp_path: Path) -> None:
    lock = tmp_path / harness.LOCK_FILE
    lock.write_text(f"{os.getppid()} {socket.gethostname()}\n")  # a live process: our parent
    with pytest.raises(ValueError, match=r"is in use by another run \(pid \d+, lock file"):
        run_grid(grid, tmp_path, repeats=1)
    assert not (tmp_path / RAW_CSV).exists()  # refused before anything was written
    assert lock.exists()  # not ours to remove


def test_stale_lock_of_a_dead_run_is_taken_over(grid: Any, tmp_path: Path) -> None:
    import subprocess

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # its pid is now free (reuse within the test is practically impossible)
    lock = tmp_path / harness.LOCK_FILE
    lock.write_text(f"{child.pid} {socket.gethostname()}\n")
    result = run_grid(grid, tmp_path, repeats=1, where="n == 4")
    assert len(result) == 4
    assert not lock.exists()  # released at the end


def test_lock_is_released_after_an_interrupt(grid: Any, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    patch_solver(monkeypatch, Recorder(interrupt_after=1))
    with pytest.raises(KeyboardInterrupt):
        run_grid(grid, tmp_path, isolate=False, repeats=1)
    assert not (tmp_path / harness.LOCK_FILE).exists()


def test_concurrent_runs_on_one_out_do_not_duplicate_rows(grid: Any, tmp_path: Path) -> None:
    """Two processes start on the same --out: one runs, the other is refused."""
    import subprocess
    import textwrap

    script = textwrap.dedent(f"""
        import sys, time
        import lsqmf
        from lsqmf.bench import cells, harness
        from lsqmf.bench.grid import parse_grid

        def slow(R, **kwargs):  # holds the directory for a few seconds
            time.sleep(0.5)
            return lsqmf.solve(R, **kwargs)

        harness.resolve_solver = lambda name: slow
        try:
            harness.run_grid(parse_grid({TINY!r}), {str(tmp_path)!r}, repeats=1)
        except ValueError as err:
            print(err)
            sys.exit(3)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate()[0] for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 3], outputs
    assert any("is in use by another run" in o for o in outputs)
    raw = read_raw(tmp_path / RAW_CSV)
    assert len(raw) == N_TINY and not raw.duplicated(["cell_id", "repeat"]).any()
