"""``lsqmf tune``: the cheapest-within-noise rule, checkpoints and resume, and the saved
configuration read back by ``fit``/``evaluate --config`` (issue 21, items 2 and 3)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lsqmf.cli import main
from lsqmf.data.synthetic import make_low_rank
from lsqmf.evaluate import tuning
from lsqmf.evaluate.tuning import full_params, tune
from lsqmf.solvers import SOLVER_DEFAULTS

SPACE = {"als": {"rank": [1, 3], "reg": [0.01, 1.0]}}


@pytest.fixture(scope="module")
def ratings():
    R, _ = make_low_rank(50, 40, 3, density=0.4, noise=0.05, random_state=0, scale=(1.0, 5.0))
    return R


def test_cheapest_rule_takes_the_fastest_within_noise(ratings: Any, monkeypatch: Any) -> None:
    rows = [{"config": c, "split": s, "rmse": r, "fit_s": t, "n_val": 100}
            for c, (r, t) in enumerate([(0.500, 5.0), (0.510, 1.0), (0.600, 0.1)])
            for s in range(3)]
    rows[1]["rmse"], rows[2]["rmse"] = 0.48, 0.52  # config 0 spreads: std 0.02
    complete = {0: 0.5, 1: 0.51, 2: 0.6}
    configs = [("als", {"rank": k}) for k in (3, 2, 1)]
    chosen, record = tuning._choose(rows, complete, configs, 3, "cheapest")
    assert chosen == 1  # 0.51 <= 0.5 + 0.02 / sqrt(3); 5x cheaper
    assert record["params"] == {"rank": 3} and record["noise"] == pytest.approx(
        0.02 / np.sqrt(3))
    assert tuning._choose(rows, complete, configs, 3, "best")[0] == 0


def test_a_checkpoint_is_resumed_and_only_missing_fits_run(ratings: Any, tmp_path: Path,
                                                           monkeypatch: Any) -> None:
    path = tmp_path / "rows.csv"
    first = tune(ratings, space=SPACE, n_splits=2, random_state=0, rule="best",
                 checkpoint=path)
    assert len(path.read_text().splitlines()) == 1 + 8
    calls: list[Any] = []
    original = tuning._score
    monkeypatch.setattr(tuning, "_score", lambda shared, task: calls.append(task)
                        or original(shared, task))
    again = tune(ratings, space=SPACE, n_splits=2, random_state=0, rule="best",
                 checkpoint=path)
    assert calls == []  # every fit read back
    assert (again.solver, again.params, again.rmse) == (first.solver, first.params, first.rmse)
    # an interrupted search: drop the last 3 rows, the rerun fits exactly those
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-3]) + "\n")
    resumed = tune(ratings, space=SPACE, n_splits=2, random_state=0, rule="best",
                   checkpoint=path)
    assert len(calls) == 3
    assert resumed.rmse == pytest.approx(first.rmse, rel=1e-12)
    # another search (another seed) does not read those rows
    with pytest.raises(ValueError):
        tune(ratings, space=SPACE, n_splits=2, random_state=5, checkpoint=path)


def test_config_is_read_by_fit_and_evaluate(ratings: Any, tmp_path: Path, capsys: Any) -> None:
    data = tmp_path / "r.csv"
    data.write_text("".join(f"{r},{c},{v}\n" for r, c, v in
                            zip(ratings.rows, ratings.cols, ratings.values, strict=True)))
    out = tmp_path / "config.json"
    assert main(["tune", str(data), "--solver", "als_cg", "--out", str(out), "--rule", "best",
                 "--no-progress"]) == 0
    assert (tmp_path / "config.rows.csv").exists()
    saved = json.loads(out.read_text())
    assert saved["params"] == full_params(saved["solver"], saved["searched"])
    assert set(SOLVER_DEFAULTS["als_cg"]) <= set(saved["params"])
    capsys.readouterr()
    assert main(["evaluate", str(data), str(data), "--config", str(out), "--seed", "0",
                 "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["solver"] == saved["solver"] and got["rank"] == saved["params"]["rank"]
    # a flag given on the command line wins over the file
    assert main(["evaluate", str(data), str(data), "--config", str(out), "--rank", "1",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rank"] == 1
    assert main(["fit", str(data), "--config", str(out), "--out", str(tmp_path / "m.npz")]) == 0
    assert main(["fit", str(data), "--config", str(out), "--solver", "bmf", "--out",
                 str(tmp_path / "m2.npz")]) == 2
    assert "differs from the solver of --config" in capsys.readouterr().err


def test_tune_offers_scheduler_and_rule() -> None:
    from lsqmf.cli import build_parser

    args = build_parser("tune").parse_args(["tune", "x", "--scheduler", "tcp://h:1",
                                            "--rule", "best"])
    assert args.scheduler == "tcp://h:1" and args.rule == "best"
