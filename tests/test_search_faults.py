"""Grid search and cross-validation lose nothing: failed cells, checkpoints, resume, Ctrl-C."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from lsqmf import Ratings
from lsqmf.data.synthetic import make_low_rank
from lsqmf.evaluate import SearchInterrupted, cross_validate, fit_and_score, grid_search
from lsqmf.solvers import get_solver

FAST = {"biases": True, "count_scaled": False, "max_iter": 5}
GRID = {"rank": [1, 2], "reg": [0.1, 10.0]}


@pytest.fixture
def ratings() -> Ratings:
    r, _ = make_low_rank(30, 20, 2, density=0.5, noise=0.05, random_state=0)
    return r


class Solver:
    """ALS that can fail for one ``reg``, or raise KeyboardInterrupt on its n-th call."""

    def __init__(self, fail_reg: float | None = None, interrupt_at: int | None = None) -> None:
        self.calls = 0
        self.fail_reg = fail_reg
        self.interrupt_at = interrupt_at
        self.__name__ = "flaky_als"

    def __call__(self, train: Ratings, rank: int, **params: Any) -> Any:
        self.calls += 1
        if self.interrupt_at is not None and self.calls >= self.interrupt_at:
            raise KeyboardInterrupt
        if params.get("reg") == self.fail_reg:
            raise FloatingPointError("the factors diverged")
        return get_solver("als")(train, rank, **params)


def test_failed_cell_is_a_row_and_the_others_are_kept(ratings: Ratings) -> None:
    solver = Solver(fail_reg=10.0)
    with pytest.warns(RuntimeWarning, match=r"6 of 12 grid search cells failed.*reg=10\.0.*"
                      r"FloatingPointError: the factors diverged"):
        gs = grid_search(ratings, solver, GRID, n_splits=3, progress=False, refit=False,
                         **FAST)
    res = gs.results
    assert len(res) == 12 and list(res["config"]) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    failed = res[res["reg"] == 10.0]
    assert failed["error"].str.startswith("FloatingPointError: the factors diverged").all()
    assert failed["rmse"].isna().all() and failed["mae"].isna().all()
    ok = res[res["reg"] == 0.1]
    assert (ok["error"] == "").all() and (ok["rmse"] > 0).all()
    assert gs.best_params["reg"] == 0.1
    assert set(gs.summary.loc[gs.summary["n_failed"] > 0, "reg"]) == {10.0}
    assert gs.summary["rmse_mean"].iloc[-2:].isna().all()  # failed configurations last


def test_every_cell_failed_gives_no_best(ratings: Ratings) -> None:
    with pytest.warns(RuntimeWarning, match="no configuration finished every fold"), \
            pytest.warns(RuntimeWarning, match="3 of 3 grid search cells failed"):
        gs = grid_search(ratings, Solver(fail_reg=0.1), {"reg": [0.1]}, n_splits=3,
                         progress=False, rank=1, **FAST)
    assert gs.best_params == {} and np.isnan(gs.best_score) and gs.best_model is None


def test_cross_validate_failed_fold(ratings: Ratings) -> None:
    with pytest.warns(RuntimeWarning, match="3 of 3 cross-validation cells failed"):
        cv = cross_validate(ratings, solver=Solver(fail_reg=0.5), n_splits=3, rank=1,
                            reg=0.5, **FAST)
    assert list(cv["fold"]) == [0, 1, 2]
    assert cv["rmse"].isna().all() and cv["error"].str.contains("diverged").all()


def test_checkpoint_written_as_cells_finish_and_resumed(ratings: Ratings,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "cv.csv"
    full = grid_search(ratings, "als", GRID, n_splits=3, progress=False, refit=False,
                       out=out, **FAST)
    on_disk = pd.read_csv(out)
    assert len(on_disk) == 12 and set(on_disk["cell_id"]) == set(full.results["cell_id"])

    solver_calls = Solver()
    # same cells, resumed: nothing runs again (the callable has another name: other cells)
    again = grid_search(ratings, "als", GRID, n_splits=3, progress=False, refit=False,
                        out=out, **FAST)
    pd.testing.assert_frame_equal(again.results, full.results)
    with pytest.raises(ValueError, match="has columns"):
        grid_search(ratings, solver_calls, {"rank": [1]}, n_splits=3, progress=False,
                    out=out, **FAST)


def test_interrupt_keeps_finished_cells_and_resume_runs_the_rest(
    ratings: Ratings, tmp_path: Path
) -> None:
    out = tmp_path / "grid.csv"
    first = Solver(interrupt_at=5)
    with pytest.raises(SearchInterrupted) as info:
        grid_search(ratings, first, GRID, n_splits=3, progress=False, refit=False, out=out,
                    **FAST)
    assert isinstance(info.value, KeyboardInterrupt)
    assert len(info.value.results) == 4 and info.value.n_cells == 12
    assert len(pd.read_csv(out)) == 4
    second = Solver()
    gs = grid_search(ratings, second, GRID, n_splits=3, progress=False, refit=False, out=out,
                     **FAST)
    assert second.calls == 8
    fresh = grid_search(ratings, Solver(), GRID, n_splits=3, progress=False, refit=False,
                        **FAST)
    cols = ["config", "fold", "rank", "reg", "rmse", "mae", "cost", "n_iter", "cell_id"]
    pd.testing.assert_frame_equal(gs.results[cols], fresh.results[cols])


def test_interrupt_without_checkpoint_returns_the_finished_rows(ratings: Ratings) -> None:
    with pytest.raises(SearchInterrupted) as info:
        cross_validate(ratings, solver=Solver(interrupt_at=3), n_splits=4, rank=1, **FAST)
    assert list(info.value.results["fold"]) == [0, 1]


def test_failed_cells_run_again_on_resume(ratings: Ratings, tmp_path: Path) -> None:
    out = tmp_path / "cv.csv"
    with pytest.warns(RuntimeWarning, match="failed"):
        cross_validate(ratings, solver=Solver(fail_reg=0.5), n_splits=3, rank=1, reg=0.5,
                       out=out, **FAST)
    fixed = Solver()
    cv = cross_validate(ratings, solver=fixed, n_splits=3, rank=1, reg=0.5, out=out, **FAST)
    assert fixed.calls == 3 and (cv["error"] == "").all() and len(pd.read_csv(out)) == 3


def _set_field(header: str, line: str, name: str, value: str) -> str:
    cols = header.strip().split(",")
    fields = line.strip().split(",")
    fields[cols.index(name)] = value
    return ",".join(fields) + "\n"


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda lines: [*lines[:-1], lines[-1][:30]], id="truncated-last-row"),
        pytest.param(lambda lines: [*lines, "garbage,row\n"], id="garbage-row"),
        pytest.param(lambda lines: [*lines, lines[-1].rsplit(",", 1)[0] + ",0123456789abcdef\n"],
                     id="unknown-cell-id"),
        pytest.param(lambda lines: [lines[0], _set_field(lines[0], lines[1], "rmse", "1.2.3"),
                                    *lines[2:]], id="unparsable-field"),
    ],
)
def test_broken_checkpoint_rows_are_dropped_and_rerun(
    ratings: Ratings, tmp_path: Path, damage: Any
) -> None:
    out = tmp_path / "cv.csv"
    cv = cross_validate(ratings, solver="als", n_splits=3, rank=1, out=out, **FAST)
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(damage(lines)))
    with pytest.warns(RuntimeWarning, match=r"dropped 1 broken row\(s\)"):
        again = cross_validate(ratings, solver="als", n_splits=3, rank=1, out=out, **FAST)
    pd.testing.assert_frame_equal(again[["fold", "rmse", "cell_id"]],
                                  cv[["fold", "rmse", "cell_id"]])
    assert len(pd.read_csv(out)) == 3


def test_checkpoint_of_another_search_is_refused_not_overwritten(ratings: Ratings,
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "cv.csv"
    cross_validate(ratings, solver="als", n_splits=3, rank=1, out=out, **FAST)
    before = out.read_text()
    with pytest.raises(ValueError, match="holds the results of another cross-validation"):
        cross_validate(ratings, solver="als", n_splits=3, rank=1, out=out, random_state=1,
                       **FAST)
    assert out.read_text() == before


def test_out_must_be_a_file(ratings: Ratings, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="`out` must be a CSV file path"):
        cross_validate(ratings, n_splits=3, rank=1, out=tmp_path, **FAST)


def test_cell_rows_have_every_fit_and_score_field(ratings: Ratings) -> None:
    cv = cross_validate(ratings, solver="als", n_splits=2, rank=1, **FAST)
    from lsqmf.evaluate import kfold

    train, test = kfold(ratings, 2, 0)[0]
    row = fit_and_score("als", train, test, rank=1, random_state=0, **FAST)
    assert set(row) <= set(cv.columns)
    assert cv["rmse"].iloc[0] == row["rmse"]


# ---------------------------------------------------------------------------- the CLI
def _ratings_file(tmp_path: Path, ratings: Ratings) -> Path:
    path = tmp_path / "ratings.csv"
    lines = ["userId,movieId,rating,timestamp"]
    lines += [f"{r + 1},{c + 1},{v:.3f},0" for r, c, v in
              zip(ratings.rows, ratings.cols, ratings.values, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


CV_ARGS = ["--solver", "als", "--rank", "1", "2", "--reg", "0.1", "1.0", "--folds", "3",
           "--max-iter", "3", "--no-progress"]


def test_cli_cv_ctrl_c_saves_finished_cells_exits_130_and_resumes(
    ratings: Ratings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from lsqmf.cli import main
    from lsqmf.evaluate import search as evaluation

    data = _ratings_file(tmp_path, ratings)
    out = tmp_path / "cv"
    real = evaluation.fit_and_score
    calls = {"n": 0}

    def interrupted_at_5(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluation, "fit_and_score", interrupted_at_5)
    assert main(["cv", str(data), *CV_ARGS, "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "interrupted after 4 of 12 cells; they are in" in err and "resume" in err
    assert len(pd.read_csv(out / "cv_results.csv")) == 4

    calls["n"] = -100  # no more interrupts
    assert main(["cv", str(data), *CV_ARGS, "--out", str(out)]) == 0
    assert calls["n"] == -100 + 8  # only the 8 missing cells ran
    res = pd.read_csv(out / "cv_results.csv")
    assert list(res["config"]) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]  # in cell order
    assert "best: rank=" in capsys.readouterr().out


def test_cli_cv_unreachable_scheduler_exits_2_with_one_line(
    ratings: Ratings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("distributed")
    from lsqmf.cli import main

    monkeypatch.setattr("lsqmf.runtime.parallel.CONNECT_TIMEOUT", 1.0)
    data = _ratings_file(tmp_path, ratings)
    code = main(["cv", str(data), *CV_ARGS, "--scheduler", "tcp://127.0.0.1:9"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'" in err
    assert len(err.splitlines()) == 1


def test_cli_bench_unreachable_scheduler_exits_2_before_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("distributed")
    from lsqmf.cli import main

    monkeypatch.setattr("lsqmf.runtime.parallel.CONNECT_TIMEOUT", 1.0)
    out = tmp_path / "bench"
    code = main(["bench", "--preset", "seed", "--out", str(out), "--no-progress",
                 "--no-plots", "--scheduler", "tcp://127.0.0.1:9"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'" in err
    assert not out.exists()
