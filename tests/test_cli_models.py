"""`lsqmf fit | predict | evaluate | cv | recommend`, in-process and once via `python -m`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lsqmf.cli import main

RATINGS = """userId,movieId,rating,timestamp
1,10,4.0,0
1,20,3.5,0
1,30,5.0,0
2,10,2.0,0
2,40,3.0,0
3,20,4.5,0
3,30,4.0,0
3,40,1.0,0
4,10,3.0,0
4,30,2.5,0
5,20,5.0,0
5,40,2.0,0
"""
MOVIES = """movieId,title,genres
10,Ten (2000),Drama
20,"Twenty, The (2001)",Comedy
30,Thirty (2002),Drama
40,Forty (2003),Action
"""
FAST = ["--max-iter", "5", "--tol", "0.5"]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    ratings = tmp_path / "ratings.csv"
    ratings.write_text(RATINGS)
    movies = tmp_path / "movies.csv"
    movies.write_text(MOVIES)
    test = tmp_path / "test.dat"  # another format; user 9 and item 99 are unknown
    test.write_text("2::20::3::0\n4::40::2::0\n9::10::4::0\n1::99::1::0\n")
    return {"ratings": ratings, "movies": movies, "test": test, "dir": tmp_path}


@pytest.fixture
def model(files: dict[str, Path]) -> Path:
    out = files["dir"] / "model.npz"
    assert main(["fit", str(files["ratings"]), "--solver", "als", "--rank", "2", "--reg", "0.1",
                 "--out", str(out), *FAST]) == 0
    return out


def test_fit_and_predict(model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["predict", str(model), "--user", "1", "--item", "40"]) == 0
    header, row = capsys.readouterr().out.strip().splitlines()
    assert header.split("\t") == ["user", "item", "prediction", "cold_start"]
    line = row.split("\t")
    assert line[:2] == ["1", "40"] and 1.0 <= float(line[2]) <= 5.0 and line[3] == "no"


def test_predict_pairs_file_and_cold_start(model: Path, files: dict[str, Path],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    pairs = files["dir"] / "pairs.txt"
    pairs.write_text("1 40\n9,10\n")
    capsys.readouterr()
    assert main(["predict", str(model), "--pairs", str(pairs), "--cold-start", "nan"]) == 0
    captured = capsys.readouterr()
    out = captured.out.strip().splitlines()
    assert len(out) == 3 and out[2].endswith("nan\tyes") and out[1].endswith("\tno")
    assert "1 of 2 pair(s) cold-start (--cold-start nan)" in captured.err
    assert main(["predict", str(model), "--user", "9", "--item", "10",
                 "--cold-start", "raise"]) == 2


@pytest.mark.parametrize("solver", ["lsq", "als", "gd", "als_gd", "als_sgd", "sgd"])
def test_evaluate_json_every_solver(files: dict[str, Path], solver: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    code = main(["evaluate", str(files["ratings"]), str(files["test"]), "--solver", solver,
                 "--rank", "2", "--reg", "0.1", "--json", "--max-iter", "3"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert {"rmse", "mae", "fit_s", "n_cold_start"} <= set(out)
    assert out["n_cold_start"] == 2 and out["n_test"] == 4 and out["solver"] == solver


def test_evaluate_text(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    # the default solver (bmf) refuses --tol (it runs its sweeps): --max-iter only
    assert main(["evaluate", str(files["ratings"]), str(files["test"]), "--rank", "2",
                 "--max-iter", "5"]) == 0
    assert "RMSE" in capsys.readouterr().out


def test_cv_writes_csv_and_heatmap(files: dict[str, Path],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = files["dir"] / "cv"
    code = main(["cv", str(files["ratings"]), "--solver", "als", "--rank", "1", "2",
                 "--reg", "0.01", "0.1", "--folds", "2", "--out", str(out), "--no-progress",
                 *FAST])
    assert code == 0
    text = capsys.readouterr().out
    assert "best: rank=" in text
    assert (out / "cv_results.csv").exists() and (out / "cv_summary.csv").exists()
    assert (out / "cv_heatmap.png").stat().st_size > 1000
    assert len((out / "cv_results.csv").read_text().splitlines()) == 1 + 4 * 2


def test_recommend_excludes_rated_and_shows_titles(
    model: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["recommend", str(model), "--user", "1", "-n", "5",
                 "--ratings", str(files["ratings"]), "--movies", str(files["movies"])]) == 0
    out = capsys.readouterr().out
    assert "3 rated items excluded" in out
    lines = [ln for ln in out.splitlines() if ln.strip()[:2].rstrip(".").isdigit()]
    assert len(lines) == 1 and "Forty (2003)" in lines[0]


def test_recommend_never_opens_the_path_a_model_records(
    model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the model records its ratings file, but a path inside a model file is never opened
    capsys.readouterr()
    assert main(["recommend", str(model), "--user", "1"]) == 2
    err = capsys.readouterr().err
    assert "pass --ratings FILE" in err and "ratings.csv" not in err


def test_recommend_errors(model: Path, files: dict[str, Path]) -> None:
    assert main(["recommend", str(model), "--user", "77", "--ratings",
                 str(files["ratings"])]) == 2
    assert main(["recommend", str(files["dir"] / "nope.npz"), "--user", "1"]) == 2


def test_bad_inputs_exit_2(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    bad = files["dir"] / "bad.csv"
    bad.write_text("userId,movieId,rating,timestamp\n1,2,x,0\n")
    assert main(["fit", str(bad), "--out", str(files["dir"] / "m.npz")]) == 2
    assert "line 2" in capsys.readouterr().err
    assert main(["fit", str(files["ratings"]), "--rank", "0", "--out", "x.npz"]) == 2
    assert "`rank` must be an int >= 1; got 0" in capsys.readouterr().err
    assert main(["fit", str(files["ratings"]), "--solver", "als", "--learning-rate", "0.1",
                 "--out", "x.npz"]) == 2
    with pytest.raises(SystemExit):
        main(["fit", str(files["ratings"]), "--solver", "svd", "--out", "x.npz"])


def test_python_m_lsqmf_subprocess(files: dict[str, Path]) -> None:
    out = files["dir"] / "m2.npz"
    proc = subprocess.run(
        [sys.executable, "-m", "lsqmf", "fit", str(files["ratings"]), "--solver", "als",
         "--rank", "2", "--out", str(out), *FAST],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.exists() and "saved als model" in proc.stdout


def test_predict_needs_pairs(model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", str(model)]) == 2
    assert "give --user ID and --item ID" in capsys.readouterr().err
