"""``lsqmf.evaluate.tuning.tune`` and ``lsqmf tune``: configurations chosen on training data
only."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("numba")

from lsqmf.cli import main
from lsqmf.data.synthetic import make_low_rank
from lsqmf.evaluate.tuning import tune

SPACE = {"als_cg": {"rank": [1, 3], "reg": [0.01, 1.0]}}


@pytest.fixture(scope="module")
def ratings():
    R, _ = make_low_rank(50, 40, 3, density=0.4, noise=0.05, random_state=0, scale=(1.0, 5.0))
    return R


def test_tune_picks_the_true_rank_and_small_reg(ratings):
    res = tune(ratings, space=SPACE, random_state=0, rule="best")
    assert (res.solver, res.params) == ("als_cg", {"rank": 3, "reg": 0.01})
    assert res.n_configs == res.n_completed == 4 and res.n_splits == 1
    chosen = [r["rmse"] for r in res.rows if r["rank"] == 3 and r["reg"] == 0.01]
    assert res.rmse == pytest.approx(chosen[0])
    assert res.rmse == min(r["rmse"] for r in res.rows)


def test_tune_is_deterministic_and_kfold_scores_every_split(ratings):
    # rule='best': the cheapest rule reads fit times, which vary from run to run
    a = tune(ratings, space=SPACE, n_splits=3, random_state=1, rule="best")
    b = tune(ratings, space=SPACE, n_splits=3, random_state=1, rule="best")
    assert a.to_dict() | {"elapsed_s": 0} == b.to_dict() | {"elapsed_s": 0}
    assert len(a.rows) == 12 and {r["split"] for r in a.rows} == {0, 1, 2}


def test_time_budget_runs_the_first_configuration_only(ratings):
    res = tune(ratings, space=SPACE, max_time=0.0)
    assert res.n_completed == 1 and res.n_configs == 4


def test_a_failing_configuration_is_recorded_not_raised(ratings):
    res = tune(ratings, space={"als_cg": {"rank": [2], "cg_steps": [0, 2]}})
    errors = [r["error"] for r in res.rows if r["error"]]
    assert len(errors) == 1 and "cg_steps" in errors[0]
    assert res.params == {"rank": 2, "cg_steps": 2}


@pytest.mark.parametrize(
    ("space", "error", "match"),
    [({"nope": {"rank": [2]}}, ValueError, "`solver` must be one of"),
     ({}, ValueError, "at least one configuration"),
     ({"als_cg": [2]}, TypeError, "mapping of parameter")],
    ids=["unknown-solver", "empty", "not-a-mapping"],
)
def test_invalid_spaces(ratings, space, error, match):
    with pytest.raises(error, match=match):
        tune(ratings, space=space)


def test_cli_tune_prints_and_saves_the_configuration(ratings, tmp_path, capsys):
    path = tmp_path / "train.csv"
    rows = ["userId,movieId,rating"] + [
        f"{u},{i},{v:.3f}" for u, i, v in zip(ratings.rows, ratings.cols, ratings.values,
                                               strict=True)
    ]
    path.write_text("\n".join(rows) + "\n")
    out = tmp_path / "config.json"
    code = main(["tune", str(path), "--solver", "als_cg", "--out", str(out), "--json",
                 "--no-progress"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads(out.read_text())
    assert printed["solver"] == saved["solver"] == "als_cg"
    assert np.isfinite(saved["rmse"]) and saved["n_completed"] == saved["n_configs"]
