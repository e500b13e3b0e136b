"""The same solver, options and seed give identical factors through the API, the command line
(in process and in a subprocess) and a benchmark grid: one registry, one resolution rule, one
random start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lsqmf
from lsqmf.bench import harness
from lsqmf.bench.grid import parse_grid
from lsqmf.cli import main
from lsqmf.model.files import load_model
from lsqmf.solvers import resolve_solver

#: Options given everywhere; everything else comes from the registry (by-name defaults).
OPTIONS = {"rank": 3, "reg": 0.2, "max_iter": 8, "tol": 1e-12, "random_state": 5}
CLI = ["--rank", "3", "--reg", "0.2", "--max-iter", "8", "--tol", "1e-12", "--seed", "5"]

GRID = """
name = "agreement"
repeats = 1
problems = "synthetic"

[problem]
n = [30]
m_factor = 0.8
rank = 3
density = [0.5]
noise = 0.1
random_state = 1

[solve]
reg = 0.2
max_iter = 8
tol = 1e-12
random_state = 5

[[configs]]
solver = ["als", "gd", "lsq"]
"""


@pytest.fixture(scope="module")
def problem() -> lsqmf.Ratings:
    grid = parse_grid(GRID)
    (_, _, data), = list(grid.iter_problems(1))
    data = data.build() if hasattr(data, "build") else data
    ratings, k = data.args
    assert k == OPTIONS["rank"]
    assert np.all(ratings.row_counts() > 0) and np.all(ratings.col_counts() > 0)
    return ratings


def _write(ratings: lsqmf.Ratings, path: Path) -> Path:
    """Ratings as a MovieLens CSV whose ids are the indices, in the triplets' order."""
    lines = ["userId,movieId,rating,timestamp"]
    lines += [f"{u},{i},{v!r},0" for u, i, v in
              zip(ratings.rows.tolist(), ratings.cols.tolist(), ratings.values.tolist(),
                  strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _api(name: str, ratings: lsqmf.Ratings) -> lsqmf.FitResult:
    _, fn, params = resolve_solver(name, OPTIONS)
    with pytest.warns(lsqmf.ConvergenceWarning):
        return fn(ratings, params.pop("rank"), **params)


def _bench(name: str, ratings: lsqmf.Ratings) -> lsqmf.FitResult:
    """What a cell of GRID calls: harness.resolve_solver(name)(*problem args, **params)."""
    grid = parse_grid(GRID)
    config = next(i for i, c in enumerate(grid.configs) if c["solver"] == name)
    with pytest.warns(lsqmf.ConvergenceWarning):
        return harness.resolve_solver(name)(ratings, OPTIONS["rank"], **grid.params(config))


def _assert_same(a: lsqmf.FitResult, b: lsqmf.FitResult) -> None:
    np.testing.assert_array_equal(a.P, b.P)
    np.testing.assert_array_equal(a.Q, b.Q)
    np.testing.assert_array_equal(a.row_bias, b.row_bias)
    np.testing.assert_array_equal(a.col_bias, b.col_bias)
    assert a.options["random_state"] == b.options["random_state"]


@pytest.mark.parametrize("name", ["als", "gd", "lsq"])
def test_api_cli_and_bench_grid_give_identical_factors(
    name: str, problem: lsqmf.Ratings, tmp_path: Path
) -> None:
    path = _write(problem, tmp_path / "ratings.csv")
    from_file = lsqmf.data.readers.load_ratings(str(path))
    np.testing.assert_array_equal(from_file.values, problem.values)
    api = _api(name, from_file)
    _assert_same(api, _bench(name, problem))
    out = tmp_path / "model.npz"
    with pytest.warns(lsqmf.ConvergenceWarning):
        code = main(["fit", str(path), "--solver", name, *CLI, "--out", str(out),
                     "--no-progress"])
    assert code == 0
    cli, _ = load_model(out)
    _assert_same(api, cli)
    assert api.options["biases"] is True  # the registry's by-name (MovieLens) objective


def test_cli_subprocess_gives_the_api_factors(problem: lsqmf.Ratings, tmp_path: Path) -> None:
    path = _write(problem, tmp_path / "ratings.csv")
    out = tmp_path / "model.npz"
    proc = subprocess.run(
        [sys.executable, "-m", "lsqmf", "fit", str(path), "--solver", "als", *CLI,
         "--out", str(out)],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    cli, _ = load_model(out)
    _assert_same(_api("als", lsqmf.data.readers.load_ratings(str(path))), cli)


def test_solve_out_saves_the_model_of_the_lsq_call(problem: lsqmf.Ratings,
                                                   tmp_path: Path) -> None:
    """``lsqmf solve --out`` saves what ``lsqmf.solve`` returns for the same options."""
    path = _write(problem, tmp_path / "ratings.csv")
    out = tmp_path / "solve.npz"
    code = main(["solve", str(path), "--rank", "3", "--formulation", "l2", "--reg", "0.2",
                 "--seed", "5", "--ftol", "1e-6", "--out", str(out), "--no-progress"])
    assert code == 0
    saved, meta = load_model(out)
    api = lsqmf.solve(lsqmf.data.readers.load_ratings(str(path)), 3, formulation="l2", reg=0.2,
                      random_state=5, ftol=1e-6)
    np.testing.assert_array_equal(saved.P, api.P)
    np.testing.assert_array_equal(saved.Q, api.Q)
    assert meta["rating_scale"] == [float(problem.values.min()), float(problem.values.max())]


def test_a_bench_run_records_the_api_cost(problem: lsqmf.Ratings, tmp_path: Path) -> None:
    """The harness end to end (run_grid, CSV): each cell's cost is the API's, to the bit."""
    result = harness.run_grid(parse_grid(GRID), tmp_path / "bench", command="test")
    assert (result["error"] == "").all(), result["error"].tolist()
    for name in ("als", "gd", "lsq"):
        cost = float(result.loc[result["solver"] == name, "cost"].iloc[0])
        assert cost == _api(name, problem).cost, name
