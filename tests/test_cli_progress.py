"""Progress of long CLI work (the policy of :mod:`lsqmf.runtime.progress`): ``lsqmf plot``,
``bench``, ``cv``, ``fit``, ``evaluate``, ``solve`` and ``tune`` write progress to stderr only;
off a terminal a short run is silent by default, ``--progress`` adds a last status line,
``--no-progress`` silences it, and with the interval shortened every update is a status line;
on a pseudo-terminal a bar redrawn in place; ``plot --facet``; ``--blas-threads`` reaches
scipy's own OpenBLAS inside a command."""

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


# ---------------------------------------------- fit, evaluate, solve, tune: the same policy
def _tune_ratings(tmp_path: Path) -> Path:
    from lsqmf.data.synthetic import make_low_rank

    R, _ = make_low_rank(30, 20, 2, density=0.5, noise=0.05, random_state=0, scale=(1.0, 5.0))
    path = tmp_path / "tune.csv"
    path.write_text("userId,movieId,rating\n" + "".join(
        f"{u},{i},{v:.3f}\n" for u, i, v in zip(R.rows, R.cols, R.values, strict=True)))
    return path


def _command(name: str, tmp_path: Path) -> tuple[list[str], str, str]:
    """The argv of a short run of ``name``, the prefix of its status lines and their unit."""
    ratings = tmp_path / "ratings.csv"
    ratings.write_text(RATINGS)
    solver = ["--solver", "als", "--rank", "1", "--max-iter", "3"]
    if name == "fit":
        return (["fit", str(ratings), *solver, "--out", str(tmp_path / "m.npz"), "--force"],
                "lsqmf fit als: ", "/3 iterations")
    if name == "evaluate":
        return (["evaluate", str(ratings), str(ratings), *solver],
                "lsqmf evaluate als: ", "/3 iterations")
    if name == "solve":
        return ["solve", str(ratings), "--rank", "1"], "lsqmf solve: ", " iterations"
    pytest.importorskip("numba")
    return (["tune", str(_tune_ratings(tmp_path)), "--solver", "als_cg", "--max-time", "0"],
            "lsqmf tune: ", "/6 fits")


COMMANDS = ["fit", "evaluate", "solve", "tune"]


@pytest.mark.parametrize("name", COMMANDS)
def test_off_a_terminal_status_lines_every_interval(name: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """capsys's stderr is not a terminal: with the interval shortened to 0 every update is a
    status line (iteration or fits done, cost, elapsed); nothing on stdout, no bar."""
    from lsqmf.runtime import progress

    monkeypatch.setattr(progress, "STATUS_INTERVAL", 0.0)
    argv, prefix, unit = _command(name, tmp_path)
    assert main(argv) == 0
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.startswith(prefix)]
    assert lines and all(unit in line and " elapsed" in line for line in lines)
    if name != "tune":
        assert all("; now cost " in line for line in lines)
    assert "\r" not in captured.err and prefix not in captured.out


@pytest.mark.parametrize("name", COMMANDS)
@pytest.mark.parametrize(("flag", "lines"), [("--no-progress", 0), ("--progress", 1), (None, 0)],
                         ids=["no-progress", "progress", "default"])
def test_off_a_terminal_a_short_run(name: str, flag: str | None, lines: int, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """At the real 30 s interval a short run prints nothing by default or with
    --no-progress, and a last status line with --progress."""
    argv, prefix, unit = _command(name, tmp_path)
    assert main([*argv, *([flag] if flag else [])]) == 0
    err = capsys.readouterr().err
    status = [line for line in err.splitlines() if line.startswith(prefix)]
    assert len(status) == lines and "\r" not in err
    if lines:
        assert unit in status[0] and " elapsed" in status[0]


@pytest.mark.parametrize("name", COMMANDS)
def test_on_a_pseudo_terminal_a_bar(name: str, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """stderr a real pseudo-terminal: the status redrawn in place (carriage returns), ended
    by one newline."""
    import os
    import sys
    import threading

    argv, prefix, unit = _command(name, tmp_path)
    master, slave = os.openpty()
    chunks: list[bytes] = []

    def drain() -> None:  # a full pty buffer would block the writer
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    with os.fdopen(slave, "w") as tty:
        monkeypatch.setattr(sys, "stderr", tty)
        assert main(argv) == 0
        tty.flush()
        monkeypatch.undo()
    reader.join(timeout=10)
    os.close(master)
    out = b"".join(chunks).decode()
    assert f"\r{prefix}" in out or f"] {prefix}" in out
    bar = out[out.index("\r"):]
    assert unit in bar and " elapsed" in bar and "\r\n" in bar
    if name in ("fit", "evaluate"):
        assert "[" in bar and "] " + prefix in bar  # a known iteration limit: a filled bar


# ------------------------------------------------ --blas-threads reaches every BLAS copy
BLAS_SCRIPT = """
import json, sys
import lsqmf.cli as cli
from threadpoolctl import threadpool_info

argv = json.loads(sys.argv[1])
seen = []
original = cli.build_parser

def run(args):
    import scipy.linalg  # what the command's solve loads: scipy's own OpenBLAS
    seen.extend(i for i in threadpool_info() if i["user_api"] == "blas")
    return 0

def patched(command=None):
    parser = original(command)
    sub = next(a for a in parser._actions if a.dest == "command")
    sub.choices[argv[0]].set_defaults(func=run)
    return parser

cli.build_parser = patched
assert cli.main(["--blas-threads", "1", *argv]) == 0
print(json.dumps([[i["filepath"], i["num_threads"]] for i in seen]))
"""


@pytest.mark.parametrize("argv", [["fit", "x", "--out", "m.npz"], ["evaluate", "x", "x"],
                                  ["solve", "x", "--rank", "1"], ["tune", "x"]],
                         ids=["fit", "evaluate", "solve", "tune"])
def test_blas_threads_limits_scipys_openblas_too(argv: list[str]) -> None:
    """In a fresh interpreter (scipy.linalg not loaded yet, as in ``lsqmf``), every BLAS copy
    that threadpoolctl sees inside the command -- numpy's and scipy's -- runs one thread."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "OPENBLAS_NUM_THREADS": "3"}  # a default above the limit
    out = subprocess.run([sys.executable, "-c", BLAS_SCRIPT, json.dumps(argv)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    libraries = json.loads(out.stdout.splitlines()[-1])
    assert any("scipy" in path for path, _ in libraries), libraries
    assert all(threads == 1 for _, threads in libraries), libraries
