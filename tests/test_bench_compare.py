"""Reproduce means measure: the comparison of a new run with a committed one, on a small
committed subset of ``reports/seed`` (``tests/data/seed_subset``), and ``lsqmf bench
--reproduce`` end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from lsqmf.bench.compare import DIFFERS, FAILS, HOLDS, compare_runs, panel_ratios
from lsqmf.bench.harness import read_raw
from lsqmf.cli import main

SUBSET = Path(__file__).parent / "data" / "seed_subset"


def _new_run(tmp_path: Path, scale_lsmr: float = 1.0, scale_exact: float = 1.0) -> Path:
    """A "new" run: the committed best-of results with LSMR's and exact's times scaled."""
    res = read_raw(SUBSET / "results.csv")
    res.loc[res["tr_solver"] == "lsmr", "dur"] *= scale_lsmr
    res.loc[res["tr_solver"] == "exact", "dur"] *= scale_exact
    out = tmp_path / "new"
    out.mkdir()
    res.to_csv(out / "results.csv", index=False)
    return out


def test_the_committed_subset_has_a_spread() -> None:
    table = panel_ratios(read_raw(SUBSET / "results.csv"), read_raw(SUBSET / "raw.csv"))
    assert len(table) == 4 and (table["n_max"] == 10).all() and (table["repeats"] == 3).all()
    assert (table["spread_lo"] <= table["spread_hi"]).all()


def test_the_same_times_hold(tmp_path: Path) -> None:
    table = compare_runs(SUBSET, _new_run(tmp_path))
    assert list(table["verdict"]) == [HOLDS] * 4
    pd.testing.assert_series_equal(table["committed_ratio"], table["new_ratio"],
                                   check_names=False)


def test_a_ratio_outside_the_spread_differs(tmp_path: Path) -> None:
    table = compare_runs(SUBSET, _new_run(tmp_path, scale_lsmr=0.5))  # LSMR twice as fast
    moved = table[table["committed_crossover"] == table["new_crossover"]]
    assert len(moved) and (moved["verdict"] == DIFFERS).all()
    assert moved["why"].str.contains("outside the committed").all()


def test_a_flipped_side_does_not_hold(tmp_path: Path) -> None:
    table = compare_runs(SUBSET, _new_run(tmp_path, scale_exact=1000.0))  # exact 1000x slower
    assert (table["verdict"] == FAILS).all()
    assert table["why"].str.contains("exact was faster, now LSMR|crossover").all()
    assert (table["new_crossover"] == 5).all()


def test_only_common_cells_are_compared(tmp_path: Path) -> None:
    new = _new_run(tmp_path)
    res = read_raw(new / "results.csv")
    res[res["n"] == 5].to_csv(new / "results.csv", index=False)
    table = compare_runs(SUBSET, new)
    assert (table["n_max"] == 5).all()  # the committed side is cut to n = 5 as well
    assert (table["verdict"] == HOLDS).all()


def test_reproduce_retimes_into_a_new_folder_and_compares(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    committed = tmp_path / "committed"
    shutil.copytree(SUBSET, committed)
    before = {p.name: p.read_bytes() for p in sorted(committed.iterdir())}
    out = tmp_path / "again"
    assert main(["bench", "--reproduce", str(committed), "--out", str(out), "--repeats", "1",
                 "--where", "n == 5 and loss == 'linear'", "--no-progress",
                 "--no-plots"]) == 0
    printed = capsys.readouterr().out
    assert "# Reproduction of" in printed and "| panel | n |" in printed
    table = pd.read_csv(out / "compare.csv")
    assert len(table) == 4 and set(table["verdict"]) <= {HOLDS, DIFFERS, FAILS}
    assert (out / "compare.md").read_text(encoding="utf-8").startswith("# Reproduction of")
    header = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert header["preset"] == "seed" and header["command"].startswith(
        f"lsqmf bench --reproduce {committed}")
    assert len(read_raw(out / "results.csv")) == 4 * 2  # 4 panels x trf-{exact,lsmr}
    # the committed run is untouched
    assert {p.name: p.read_bytes() for p in sorted(committed.iterdir())} == before


def test_reproduce_refuses_the_committed_folder_as_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    committed = tmp_path / "committed"
    shutil.copytree(SUBSET, committed)
    assert main(["bench", "--reproduce", str(committed), "--out", str(committed)]) == 2
    assert "is the committed run" in capsys.readouterr().err
