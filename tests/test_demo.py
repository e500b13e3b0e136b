"""``lsqmf demo``: plain-text help, and a small end-to-end run (MovieLens skipped)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lsqmf.cli import demo, main


def test_demo_help_is_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "``" not in text and ":func:" not in text  # no reST markup
    assert "OUT/seed/timings.png" in text
    assert "lsqmf demo --out demo" in text


def test_demo_runs_and_prints_the_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(demo, "QUICK_WHERE", "n <= 5")  # 84 cells of milliseconds each
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--skip-movielens", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    for name in ("results.csv", "timings.png", "timings.svg", "README.md"):
        assert (out / "seed" / name).stat().st_size > 0
        assert f"wrote {out / 'seed' / name}" in printed or name == "results.csv"
    assert "84 cells timed, 0 reused from an earlier run (0 recorded an error)" in printed
    assert "LSMR vs exact (the seed's claim: LSMR strongly preferred): " in printed
    report = (out / "seed" / "README.md").read_text(encoding="utf-8")
    assert "This demo timed the problems with n <= 5 once each." in report
    # the demo's timings ran on one BLAS thread (every BLAS library; OpenMP is not BLAS)
    header = json.loads((out / "seed" / "run.json").read_text(encoding="utf-8"))
    blas = [lib for lib in header["blas"]["libraries"] if lib["user_api"] == "blas"]
    assert blas and all(lib["num_threads"] == 1 for lib in blas), blas
    # the limit was measured inside the cells and held for every library (numba's too)
    assert header["blas"]["requested"] == 1 and header["warnings"] == []
    assert all(lib["num_threads"] == 1 for lib in header["blas"]["libraries"])

    # a rerun reuses the cells and says so: it does not claim to have timed them
    before = (out / "seed" / "run.json").read_bytes()
    assert main(["demo", "--out", str(out), "--skip-movielens", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "0 cells timed, 84 reused from an earlier run (0 recorded an error)" in captured.out
    assert "already in" in captured.err and "reusing them" in captured.err
    assert (out / "seed" / "run.json").read_bytes() == before
