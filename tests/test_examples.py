"""Every script in examples/ runs (in a subprocess, in its quick mode) and prints what it says.

Each script takes ``--quick`` (a smaller problem, fewer iterations or cases) so that the whole
set runs in the default test selection, as the README promises.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

pytestmark = pytest.mark.skipif(not EXAMPLES.is_dir(), reason="examples/ not in this checkout")


def _run(script: str, *args: str) -> str:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True,
        env=env, cwd=EXAMPLES.parent, check=False,
    )
    assert proc.returncode == 0, f"{script} exited {proc.returncode}:\n{proc.stderr}"
    return proc.stdout


def test_every_example_has_a_test() -> None:
    scripts = sorted(p.name for p in EXAMPLES.glob("[0-9][0-9]_*.py"))
    tested = {name for name in globals() if name.startswith("test_0")}
    assert scripts, "no example scripts found"
    for script in scripts:
        assert f"test_{script[:-3]}" in tested, f"{script} has no test here"


def test_01_quickstart() -> None:
    out = _run("01_quickstart.py")
    assert "P (5, 2), Q (2, 4)" in out
    assert "status FTOL, success True" in out
    assert "missing entries: (0, 2) -> " in out
    lines = out.splitlines()
    start = lines.index("fitted matrix (observed entries as given, * = predicted):") + 1
    matrix = lines[start:start + 5]
    assert sum(line.count("*") for line in matrix) == 7  # the seven missing entries


def test_02_movielens_ratings() -> None:
    out = _run("02_movielens_ratings.py", "--quick")
    assert "Ratings(shape=(100, 200)" in out
    rmse = {}
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] in ("als", "lsq"):
            rmse[parts[0]] = float(parts[2])
    assert set(rmse) == {"als", "lsq"}
    assert all(0.5 < v < 1.2 for v in rmse.values()), rmse  # ratings are 0.5-5 stars
    assert abs(rmse["als"] - rmse["lsq"]) < 0.05  # same objective, same start
    assert "top 5 unrated movies for user" in out


def test_03_compare_solvers(tmp_path: Path) -> None:
    figure = tmp_path / "figs" / "solvers.png"
    out = _run("03_compare_solvers.py", str(figure), "--quick")
    for name in ("als", "gd", "sgd", "lsq"):
        assert any(line.split()[:1] == [name] for line in out.splitlines()), name
    assert figure.read_bytes()[:4] == b"\x89PNG"
    assert f"wrote {figure}" in out


def test_04_verify_rewrite() -> None:
    out = _run("04_verify_rewrite.py", "--quick")
    assert "rowwise_rewrite: PASS" in out
    assert "batch_rewrite: FAIL (3 of 4)" in out
    assert "copying_rewrite: FAIL (3 of 4)" in out
    assert "copying_rewrite, check_mutation=False: PASS" in out


def test_05_measurement_matrix() -> None:
    out = _run("05_measurement_matrix.py", "--quick")
    assert "measurement matrix (30, 20), rank 3" in out
    starts = [x for x in out.splitlines() if x.startswith("  start ")]
    assert len(starts) == 5
    varpro = {x.split("VarPro cost ")[1].split()[0] for x in starts}
    assert len(varpro) == 1  # every VarPro start reaches the same optimum on this instance
    line = next(x for x in out.splitlines() if x.startswith("VarPro multistart:"))
    assert "converged True" in line
    rms = float(out.split("hidden entries ")[1].split()[0])
    assert rms < 0.1  # noise 0.01 on entries of RMS ~1.6: the hidden entries are recovered


def test_06_sklearn_gridsearch() -> None:
    pytest.importorskip("sklearn")
    out = _run("06_sklearn_gridsearch.py", "--quick")
    assert "Ratings(shape=(100, 200)" in out
    assert "best: rank " in out
    # GridSearchCV's folds and seeds reproduce lsqmf's cross_validate
    assert "agree to 1e-10: True" in out
    folds = [line.split() for line in out.splitlines() if line[:4].strip().isdigit()]
    assert len(folds) == 3 and all(abs(float(a) - float(b)) <= 1e-10 for _, a, b in folds)


def test_07_sklearn_impute_pipeline() -> None:
    pytest.importorskip("sklearn")
    out = _run("07_sklearn_impute_pipeline.py", "--quick")
    rows = {line[:10].strip(): line[10:].split() for line in out.splitlines()[2:]}
    assert set(rows) == {"mean", "knn", "lsqmf als"}
    accuracy, imputation = float(rows["lsqmf als"][0]), float(rows["lsqmf als"][2])
    assert accuracy > 0.9
    assert imputation < float(rows["mean"][2])  # low rank beats column means
