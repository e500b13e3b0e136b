"""Progress of long CLI work (the policy of :mod:`lsqmf.runtime.progress`): ``lsqmf plot``,
``lsqmf bench`` and ``lsqmf cv`` write progress to stderr only; off a terminal a short run is
silent by default, ``--progress`` adds a last status line, ``--no-progress`` silences it;
``plot --facet``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lsqmf.cli import main

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
method = ["trf"]
tr_solver = ["exact", "lsmr"]
loss = ["linear", "huber"]
"""
N_CELLS = 2 * 4

RATINGS = "userId,movieId,rating,timestamp\n" + "".join(
    f"{u},{i},{(u * i) % 5 + 1},0\n" for u in range(1, 9) for i in (10, 20, 30, 40, 50)
    if (u + i // 10) % 3
)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("bench")
    grid = tmp / "tiny.toml"
    grid.write_text(TINY, encoding="utf-8")
    out = tmp / "out"
    assert main(["bench", "--grid", str(grid), "--out", str(out), "--repeats", "1",
                 "--no-progress", "--no-plots"]) == 0
    return out / "results.csv"


def _only_wrote_lines(out: str) -> None:
    lines = out.strip().splitlines()
    assert lines and all(line.startswith("wrote ") for line in lines)
    assert "\r" not in out and "lsqmf plot" not in out


def test_plot_progress_bar_goes_to_stderr_only(results: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["plot", str(results), "--out", str(tmp_path), "--progress"]) == 0
    captured = capsys.readouterr()
    _only_wrote_lines(captured.out)
    assert captured.err.startswith("lsqmf plot: 1/1 steps, ")  # off a terminal: a last line
    assert (tmp_path / "timings.png").is_file()


@pytest.mark.parametrize("flags", [["--no-progress"], []], ids=["no-progress", "not-a-tty"])
def test_plot_no_progress_is_silent(results: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str], flags: list[str]) -> None:
    capsys.readouterr()  # capsys's stderr is not a terminal: no bar by default either
    assert main(["plot", str(results), "--out", str(tmp_path), *flags]) == 0
    captured = capsys.readouterr()
    _only_wrote_lines(captured.out)
    assert captured.err == ""


def test_plot_progress_names_the_convergence_step(results: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from lsqmf.bench.plots import convergence_study

    csv = tmp_path / "convergence.csv"
    convergence_study(8, 6, 2, 0.6, max_time=None).to_csv(csv, index=False)
    capsys.readouterr()
    assert main(["plot", str(results), "--out", str(tmp_path), "--convergence", str(csv),
                 "--progress"]) == 0
    captured = capsys.readouterr()
    _only_wrote_lines(captured.out)
    assert captured.err.startswith("lsqmf plot: 2/2 steps, ")
    assert (tmp_path / "convergence.png").is_file()


def test_plot_facet_reaches_plot_timings(results: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from lsqmf.bench import plots

    seen: list[dict[str, Any]] = []
    original = plots.plot_timings

    def recording(*args: Any, **kwargs: Any) -> list[Path]:
        seen.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(plots, "plot_timings", recording)
    assert main(["plot", str(results), "--out", str(tmp_path), "--facet", "loss"]) == 0
    assert seen == [{"style": None, "facet": "loss", "incomplete": None}]
    assert (tmp_path / "timings.png").stat().st_size > 1000
    capsys.readouterr()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--facet", "nope"], "`facet` column 'nope' is not in `results`."),
        (["--facet", "loss", "--style", "loss"],
         "`style` and `facet` must differ; both are 'loss'."),
    ],
)
def test_plot_bad_facet_is_a_one_line_error(results: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str],
                                            flags: list[str], message: str) -> None:
    capsys.readouterr()
    assert main(["plot", str(results), "--out", str(tmp_path), "--no-progress", *flags]) == 2
    err = capsys.readouterr().err
    assert err == f"lsqmf plot: error: {message}\n"


@pytest.mark.parametrize(("flag", "bar"), [("--progress", True), ("--no-progress", False)])
def test_cv_per_fit_bar_on_stderr_and_switchable(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str],
                                                 flag: str, bar: bool) -> None:
    ratings = tmp_path / "ratings.csv"
    ratings.write_text(RATINGS)
    capsys.readouterr()
    assert main(["cv", str(ratings), "--solver", "als", "--rank", "1", "2", "--reg", "0.1",
                 "--folds", "2", "--max-iter", "3", flag]) == 0
    captured = capsys.readouterr()
    assert "best: rank=" in captured.out
    assert "fit" not in captured.out.replace("fit_s_mean", "") and "\r" not in captured.out
    assert ("grid search" in captured.err) is bar and ("4/4" in captured.err) is bar
    if not bar:
        assert "\r" not in captured.err and "it/s" not in captured.err
