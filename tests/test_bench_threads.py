"""The benchmark's thread limit holds for every BLAS library whatever the import order, and
``run.json`` records what the cells measured (issue #22, item 1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from lsqmf.bench import harness
from lsqmf.bench.grid import parse_grid
from lsqmf.bench.harness import RUN_JSON, run_grid
from lsqmf.runtime.threads import library_name, thread_warnings

DENSE = """
name = "dense"
problems = "seed"
[problem]
n = [6]
k_factor = [0.5]
sparsity = [0.25]
[solve]
missing = 0
[[configs]]
method = "trf"
tr_solver = "exact"
[[configs]]
method = "lm"
tr_solver = "none"
"""

#: Loads numpy's and scipy's BLAS in the given order; "numpy-first" also limits BLAS while
#: only numpy's is loaded, as ``lsqmf --blas-threads 1`` did before the fix.
SCRIPT = textwrap.dedent("""
    import json, sys
    order, grid_text, out, isolate = sys.argv[1:5]
    if order == "numpy-first":
        import numpy
        from threadpoolctl import threadpool_limits
        early = threadpool_limits(limits=1, user_api="blas")
        import scipy.linalg
    else:
        import scipy.linalg
        import numpy
    from threadpoolctl import threadpool_info

    def blas():
        return {i["filepath"]: i["num_threads"] for i in threadpool_info()
                if i["user_api"] == "blas"}

    before = blas()
    import lsqmf
    from lsqmf.bench import cells, harness
    from lsqmf.bench.grid import parse_grid

    seen = []

    def spy(R, **kwargs):  # inside the cell, next to the timed solve
        seen.append(blas())
        return lsqmf.solve(R, **kwargs)

    if isolate == "in-process":  # the spy sees the pools next to the solve
        cells.resolve_solver = lambda name: spy
    harness.run_grid(parse_grid(grid_text), out, repeats=1, isolate=isolate == "child")
    header = json.load(open(out + "/run.json"))
    print(json.dumps({"before": before, "seen": seen, "blas": header["blas"],
                      "warnings": header["warnings"]}))
""")


@pytest.mark.parametrize("where", ["in-process", "child"])
@pytest.mark.parametrize("order", ["numpy-first", "scipy-first"])
def test_every_blas_library_runs_on_one_thread_in_a_dense_cell(tmp_path: Path, order: str,
                                                                where: str) -> None:
    """In this process (a spy beside the solve), and in the child process that times the
    cells by default (what the cells measured, recorded in run.json)."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2"}  # a default above the limit
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(key, None)
    done = subprocess.run([sys.executable, "-c", SCRIPT, order, DENSE, str(tmp_path / "out"),
                           where],
                          capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if order == "numpy-first":  # the case of the issue: scipy's BLAS was loaded unlimited
        assert max(report["before"].values()) == 2, report["before"]
    assert len(report["seen"]) == (2 if where == "in-process" else 0)  # both dense cells
    for cell in report["seen"]:
        assert len(cell) >= 2, cell  # numpy's and scipy's OpenBLAS
        assert set(cell.values()) == {1}, cell
    libs = [lib for lib in report["blas"]["libraries"] if lib["user_api"] == "blas"]
    assert len(libs) >= 2 and all(lib["num_threads"] == 1 for lib in libs), libs
    assert report["blas"]["max_threads"] == 1 and report["blas"]["requested"] == 1
    assert report["warnings"] == []  # no warning when the limit holds
    assert "ran" not in done.stderr


def test_a_library_above_the_limit_is_named_in_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import lsqmf.runtime.threads as threads

    stubborn = {"user_api": "blas", "internal_api": "openblas", "version": "0.3",
                "num_threads": 2, "filepath": "/x/site-packages/scipy.libs/libscipy_openblas.so"}
    real = threads.measure_threads

    def measured() -> list[dict[str, Any]]:
        return [*real(), {**stubborn, "name": library_name(stubborn)}]

    monkeypatch.setattr(threads, "measure_threads", measured)
    run_grid(parse_grid(DENSE), tmp_path, repeats=1, isolate=False)
    header = json.loads((tmp_path / RUN_JSON).read_text())
    assert header["blas"]["max_threads"] == 2
    assert len(header["warnings"]) == 1
    assert header["warnings"][0].startswith(
        "scipy's OpenBLAS (/x/site-packages/scipy.libs/libscipy_openblas.so) ran 2 threads in "
        "the timed cells although 1 was requested")
    assert sum("scipy's OpenBLAS" in r.message for r in caplog.records) == 1  # once a run


@pytest.mark.parametrize(
    ("info", "name"),
    [
        ({"user_api": "blas", "internal_api": "openblas",
          "filepath": "/v/site-packages/numpy.libs/libscipy_openblas64_.so"}, "numpy's OpenBLAS"),
        ({"user_api": "openmp", "internal_api": "openmp",
          "filepath": "/usr/lib/libgomp.so.1"}, "OpenMP (libgomp.so.1)"),
        ({"user_api": "numba", "internal_api": "omp", "filepath": None},
         "numba's threading layer (omp)"),
    ],
    ids=["numpy-openblas", "system-openmp", "numba"],
)
def test_library_name(info: dict[str, Any], name: str) -> None:
    assert library_name(info) == name


def test_thread_warnings_only_above_the_request() -> None:
    infos = [{"user_api": "blas", "internal_api": "openblas", "num_threads": 1, "filepath": "a"},
             {"user_api": "numba", "internal_api": "omp", "num_threads": 2, "filepath": None}]
    (msg,) = thread_warnings(infos, 1)
    assert msg.startswith("numba's threading layer (omp) ran 2 threads")
    assert thread_warnings(infos, 2) == []


def test_threads_none_leaves_the_pools_alone(tmp_path: Path) -> None:
    run_grid(parse_grid(DENSE), tmp_path, repeats=1, threads=None)
    header = json.loads((tmp_path / RUN_JSON).read_text())
    assert header["blas"] is None and header["threads_requested"] is None
    assert harness._PINNED.get(os.getpid()) is None
