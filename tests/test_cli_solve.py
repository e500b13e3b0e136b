"""``lsqmf solve``: the command line around lsqmf.solve."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from lsqmf.cli import main

from .conftest import make_seed_problem, random_observed


@pytest.fixture
def dense_file(tmp_path):
    path = tmp_path / "R.npy"
    np.save(path, random_observed(12, 9, 0.6, seed=1, rank=2))
    return path


def test_solve_prints_a_summary(dense_file, capsys) -> None:
    code = main(["solve", str(dense_file), "--rank", "2", "--method", "trf",
                 "--tr-solver", "lsmr"])
    out = capsys.readouterr().out
    assert code == 0
    assert "solver: lsq  shape: 12 x 9  rank: 2" in out
    assert "success: True" in out and "train RMSE" in out


@pytest.mark.parametrize(("method", "tr_solver"), [("trf", "exact"), ("dogbox", "lsmr"),
                                                    ("lm", "none")])
def test_solve_json(dense_file, capsys, method, tr_solver) -> None:
    code = main(["solve", str(dense_file), "--rank", "2", "--method", method,
                 "--tr-solver", tr_solver, "--json", "--reg", "0.01", "--ftol", "1e-8",
                 "--seed", "0"])  # seeded: 'lm' from some random starts ends in a local minimum
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["success"] and out["rank"] == 2 and out["nnz"] > 0
    assert out["options"]["method"] == method
    assert out["train_rmse"] < 0.1


def test_solve_seed_problem_with_missing_zero(tmp_path, capsys) -> None:
    R, _, _ = make_seed_problem()
    path = tmp_path / "seed.npy"
    np.save(path, R)
    code = main(["solve", str(path), "--rank", "2", "--missing", "0", "--json",
                 "--reg", "0.001", "--ftol", "1e-10"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["nnz"] == 13 and out["train_rmse"] < 0.05


def test_solve_sparse_npz(tmp_path, capsys) -> None:
    R = random_observed(10, 8, 0.5, seed=2, rank=2)
    obs = np.argwhere(~np.isnan(R))
    S = sp.csr_matrix((R[obs[:, 0], obs[:, 1]], (obs[:, 0], obs[:, 1])), shape=R.shape)
    path = tmp_path / "R.npz"
    sp.save_npz(path, S)
    assert main(["solve", str(path), "--rank", "2", "--json", "--biases"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["nnz"] == len(obs) and out["options"]["biases"] is True


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--rank", "0"], "`rank` must be an int >= 1"),
        (["--rank", "2", "--method", "lm", "--loss", "huber"], "method='lm' supports only"),
        (["--rank", "2", "--tr-solver", "exact", "--jac", "operator"], "needs a dense Jacobian"),
        (["--rank", "2", "--ftol", "-1"], "`ftol` must be >= 0"),
    ],
)
def test_solve_bad_arguments_exit_2(dense_file, capsys, argv, match) -> None:
    assert main(["solve", str(dense_file), *argv]) == 2
    assert match in capsys.readouterr().err


def test_solve_missing_file_exit_2(tmp_path, capsys) -> None:
    assert main(["solve", str(tmp_path / "nope.npy"), "--rank", "2"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_solve_bad_npz_exit_2(tmp_path, capsys) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, a=np.ones(3))
    assert main(["solve", str(path), "--rank", "2"]) == 2
    assert "not a scipy.sparse .npz" in capsys.readouterr().err


def test_python_dash_m(dense_file) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lsqmf", "solve", str(dense_file), "--rank", "2", "--json"],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["success"] is True


@pytest.fixture
def tracks_file(tmp_path):
    """A 12 x 10 exactly rank-2 measurement matrix with 20% missing, in pixel-like units."""
    rng = np.random.default_rng(3)
    M = 100.0 * rng.standard_normal((12, 2)) @ rng.standard_normal((2, 10))
    M[rng.random(M.shape) < 0.2] = np.nan
    path = tmp_path / "tracks.npy"
    np.save(path, M)
    return path


def test_solve_variable_projection_from_the_command_line(tracks_file, capsys) -> None:
    code = main(["solve", str(tracks_file), "--rank", "2", "--formulation", "none",
                 "--method", "lm-normal", "--eliminate", "Q", "--init-scale", "1",
                 "--seed", "0", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["options"]["eliminate"] == "Q" and out["options"]["method"] == "lm-normal"
    assert out["train_rmse"] < 1e-6  # exactly rank 2: the optimum fits every entry


def test_solve_multistart_reports_the_optima(tracks_file, capsys) -> None:
    code = main(["solve", str(tracks_file), "--rank", "2", "--formulation", "none",
                 "--method", "lm-normal", "--eliminate", "Q", "--init-scale", "1",
                 "--multistart", "6", "--until-seen", "2", "--seed", "1"])
    captured = capsys.readouterr()
    assert code == 0
    assert "optimum cost" in captured.err and "train RMSE" in captured.out


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--eliminate", "X"], "invalid choice"),
        (["--ftol", "2"], "`ftol` must be < 1.0"),
        (["--tr-solver", "cholesky"], "invalid choice"),
    ],
)
def test_solve_generated_flags_refuse_bad_values(tracks_file, capsys, argv, match) -> None:
    with pytest.raises(SystemExit) as info:  # argparse's own refusal, or lsqmf's exit 2
        raise SystemExit(main(["solve", str(tracks_file), "--rank", "2", *argv]))
    assert info.value.code == 2
    assert match in capsys.readouterr().err
