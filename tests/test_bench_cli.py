"""``lsqmf bench``, ``lsqmf plot`` and ``lsqmf report`` in process, plus ``python -m lsqmf``."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from lsqmf.bench.harness import read_raw
from lsqmf.cli import main

TINY = """
name = "tiny"
problems = "seed"
[problem]
n = [4, 6]
k_factor = [0.5]
sparsity = [0.25, 0.75]
[solve]
missing = 0
[[configs]]
method = ["trf", "dogbox"]
tr_solver = ["exact", "lsmr"]
loss = ["linear", "huber"]
[[configs]]
method = "lm"
tr_solver = "none"
"""
N_CELLS = 4 * 9


@pytest.fixture
def grid_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY, encoding="utf-8")
    return path


def _png_ok(path: Path) -> bool:
    return path.stat().st_size > 1000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _svg_ok(path: Path) -> bool:
    return path.stat().st_size > 1000 and b"<svg" in path.read_bytes()[:2000]


def test_bench_runs_plots_and_resumes(grid_file: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    argv = ["bench", "--grid", str(grid_file), "--out", str(out), "--repeats", "1",
            "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"{N_CELLS} cells" in printed
    results = read_raw(out / "results.csv")
    assert len(results) == N_CELLS and results["cell_id"].is_unique
    assert _png_ok(out / "timings.png") and _svg_ok(out / "timings.svg")
    header = json.loads((out / "run.json").read_text())
    assert header["command"] == (f"lsqmf bench --grid {grid_file} --repeats 1 --out {out} "
                                 "--no-progress")
    # a rerun is refused: the directory holds a run; with --resume, a finished one
    before = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    capsys.readouterr()
    assert main(argv) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main([*argv, "--resume"]) == 2
    assert "holds a finished run" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in sorted(out.iterdir())} == before


def test_bench_resume_reports_what_it_reuses(grid_file: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    argv = ["bench", "--grid", str(grid_file), "--out", str(out), "--repeats", "1",
            "--no-progress", "--no-plots"]
    assert main([*argv, "--where", "n == 4"]) == 0
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 0
    err = capsys.readouterr().err
    half = N_CELLS // 2
    assert f"resuming the run in {out}: {half} cell repeats reused, {half} to time" in err
    header = json.loads((out / "run.json").read_text())
    assert [s["n_run"] for s in header["sessions"]] == [half, half]


def test_bench_where_selects_cells(grid_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["bench", "--grid", str(grid_file), "--out", str(out), "--where",
                 "tr_solver == 'lsmr' and n <= 4", "--no-progress", "--no-plots"]) == 0
    results = read_raw(out / "results.csv")
    header = json.loads((out / "run.json").read_text())
    argv = shlex.split(header["command"])
    assert argv[argv.index("--where") + 1] == "tr_solver == 'lsmr' and n <= 4"
    assert len(results) == 2 * 2 * 2  # sparsity x method x loss
    assert set(results["tr_solver"]) == {"lsmr"} and set(results["n"]) == {4}
    assert not (out / "timings.png").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        pytest.param(["--where", "n >"], "`where` query", id="bad-where"),
        pytest.param(["--repeats", "0"], "`repeats` must be an int >= 1", id="bad-repeats"),
        pytest.param(["--jobs", "0"], "`jobs` must be an int >= 1", id="bad-jobs"),
    ],
)
def test_bench_bad_input_exits_2(grid_file: Path, tmp_path: Path, extra: list[str],
                                 message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "--grid", str(grid_file), "--out", str(tmp_path / "o"),
                 "--no-progress", *extra])
    assert code == 2
    assert message in capsys.readouterr().err


def test_bench_bad_grid_file_exits_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.replace("n = [4, 6]", "n = [4, 6]\nsizes = 1"), encoding="utf-8")
    assert main(["bench", "--grid", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "problem.sizes" in err and str(bad) in err


def test_bench_needs_a_grid_or_preset(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["bench", "--out", str(tmp_path)])


def test_plot_and_report_from_a_csv(grid_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["bench", "--grid", str(grid_file), "--out", str(out), "--no-progress",
                 "--no-plots"]) == 0
    figs = tmp_path / "figs"
    assert main(["plot", str(out / "results.csv"), "--out", str(figs), "--style", "loss"]) == 0
    assert _png_ok(figs / "timings.png") and _svg_ok(figs / "timings.svg")
    from lsqmf.bench.plots import convergence_study

    convergence_study(8, 6, 2, 0.6, max_time=None).to_csv(out / "convergence.csv", index=False)
    assert main(["plot", str(out / "results.csv"), "--out", str(out), "--convergence",
                 str(out / "convergence.csv")]) == 0
    assert _png_ok(out / "convergence.png") and _svg_ok(out / "convergence.svg")
    assert main(["report", str(out / "results.csv")]) == 0
    text = (out / "README.md").read_text()
    assert "## Convergence on a larger problem (n = 8, m = 6, rank 2" in text
    assert "![convergence](convergence.png)" in text
    assert "## Conclusion" in text and "lsmr" in text and "best of **1**" in text
    assert "Fastest configuration per panel" in text


def test_plot_missing_file_exits_2(tmp_path: Path) -> None:
    assert main(["plot", str(tmp_path / "nope.csv")]) == 2


def test_python_m_lsqmf_bench_help() -> None:
    proc = subprocess.run([sys.executable, "-m", "lsqmf", "bench", "--help"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0
    assert "--where" in proc.stdout and "--jobs" in proc.stdout
