"""Grids, cross-validation and benchmark grids on a real Dask cluster, compared with serial runs.

One ``LocalCluster`` (2 worker processes, 1 thread each, loopback only, no dashboard) is
started for the module. Every comparison is exact: same seeds per cell and fold give the same
numbers in the same row order on every backend. One test kills worker processes mid-run.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

distributed = pytest.importorskip("distributed")

from lsqmf import Ratings  # noqa: E402
from lsqmf.bench import harness  # noqa: E402
from lsqmf.bench.grid import parse_grid  # noqa: E402
from lsqmf.bench.harness import RAW_CSV, read_raw, run_grid  # noqa: E402
from lsqmf.data.synthetic import make_low_rank  # noqa: E402
from lsqmf.evaluate import cross_validate, grid_search, kfold  # noqa: E402
from lsqmf.runtime.parallel import (  # noqa: E402
    SchedulerUnreachableError,
    in_order,
    map_tasks,
    plan_backend,
)
from lsqmf.solvers import get_solver  # noqa: E402

pytestmark = pytest.mark.cluster

FAST = {"biases": True, "count_scaled": False, "max_iter": 5}
GRID = {"rank": [1, 2], "reg": [0.1, 1.0]}
#: Columns that measure time (differ between any two runs).
TIMES = ["fit_s", "dur"]


@pytest.fixture(scope="module")
def cluster() -> Any:
    import dask

    # worker-saturation 1.0: a worker holds only the task it runs, so a worker's death is
    # blamed on that task alone (with the default 1.1 a queued task is blamed as well)
    with dask.config.set({"distributed.scheduler.worker-saturation": 1.0}):
        c = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None, env={"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
            # no dashboard; the scheduler's HTTP endpoint on a free loopback port, not 8787
            # (which another cluster on the machine may hold)
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        )
    with c:
        yield c


@pytest.fixture(scope="module")
def client(cluster: Any) -> Any:
    with distributed.Client(cluster, set_as_default=False) as c:
        yield c


@pytest.fixture
def ratings() -> Ratings:
    r, _ = make_low_rank(40, 30, 2, density=0.5, noise=0.05, random_state=0)
    return r


def _untimed(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame without its timings; a missing value is NaN whether it is None in memory or
    came back from a checkpoint CSV (``out=``) as NaN."""
    frame = frame.drop(columns=[c for c in TIMES if c in frame.columns])
    return frame.astype(object).where(frame.notna(), np.nan)


def test_grid_search_on_the_cluster_equals_serial(ratings: Ratings, cluster: Any) -> None:
    serial = grid_search(ratings, "als", GRID, n_splits=3, progress=False, **FAST)
    dask = grid_search(ratings, "als", GRID, n_splits=3, progress=False,
                       scheduler=cluster.scheduler_address, **FAST)
    pd.testing.assert_frame_equal(_untimed(dask.results), _untimed(serial.results))
    assert dask.best_params == serial.best_params
    assert dask.best_model is not None and serial.best_model is not None
    np.testing.assert_array_equal(dask.best_model.P, serial.best_model.P)


def test_cross_validate_on_the_cluster_equals_serial(ratings: Ratings, client: Any,
                                                     tmp_path: Path) -> None:
    serial = cross_validate(ratings, solver="als", n_splits=4, rank=2, reg=0.1, **FAST)
    out = tmp_path / "cv.csv"
    dask = cross_validate(ratings, solver="als", n_splits=4, rank=2, reg=0.1, scheduler=client,
                          out=out, **FAST)
    pd.testing.assert_frame_equal(_untimed(dask), _untimed(serial), check_dtype=False)
    assert len(pd.read_csv(out)) == 4
    assert client.status == "running"  # a client the caller gave stays open


def test_enclosing_joblib_dask_backend_is_used(ratings: Ratings, client: Any) -> None:
    from joblib import parallel_config

    with parallel_config(backend="dask", client=client):
        plan = plan_backend()
        assert plan.kind == "dask" and not plan.owns_client
        cv = cross_validate(ratings, solver="als", n_splits=3, rank=1, **FAST)
    serial = cross_validate(ratings, solver="als", n_splits=3, rank=1, **FAST)
    pd.testing.assert_frame_equal(_untimed(cv), _untimed(serial), check_dtype=False)


TINY = """
name = "tiny"
problems = "seed"
[problem]
n = [4, 6]
k_factor = [0.5]
sparsity = [0.25]
[solve]
missing = 0
[[configs]]
method = "trf"
tr_solver = ["exact", "lsmr"]
loss = ["linear", "huber"]
"""


def test_bench_grid_and_its_resume_on_the_cluster_equal_serial(cluster: Any,
                                                                 tmp_path: Path) -> None:
    grid = parse_grid(TINY)
    serial = run_grid(grid, tmp_path / "serial", repeats=2)
    # half the grid serially, then resumed on the cluster
    run_grid(grid, tmp_path / "mixed", repeats=2, where="n == 4")
    mixed = run_grid(grid, tmp_path / "mixed", repeats=2, scheduler=cluster.scheduler_address,
                     resume=True)
    assert list(mixed["cell_id"]) == list(serial["cell_id"])  # grid order
    assert (mixed["repeats"] == 2).all()
    # every (cell, repeat) row is the same but for the timing (best-of picks by time)
    cols = ["cell_id", "repeat", "nnz", "nfev", "njev", "cost", "success", "status", "error"]
    raws = [read_raw(tmp_path / d / RAW_CSV).sort_values(["cell_id", "repeat"])[cols]
            .reset_index(drop=True) for d in ("serial", "mixed")]
    pd.testing.assert_frame_equal(raws[1], raws[0])
    assert len(raws[1]) == 16 and not raws[1].duplicated(["cell_id", "repeat"]).any()


def test_movielens_bench_grid_sends_the_folds_once(cluster: Any, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    r, _ = make_low_rank(30, 20, 2, density=0.5, noise=0.05, random_state=1)
    monkeypatch.setattr(harness, "_load_folds", lambda grid: kfold(r, grid.problem["n_splits"], 0))
    grid = parse_grid("""
name = "cv"
problems = "movielens"
[problem]
n_splits = 3
[solve]
rank = 2
random_state = 0
[[configs]]
solver = "als"
max_iter = [3, 4]
""")
    serial = run_grid(grid, tmp_path / "serial", repeats=1)
    dask = run_grid(grid, tmp_path / "dask", repeats=1, scheduler=cluster.scheduler_address)
    cols = ["cell_id", "rmse", "mae", "cost", "nfev", "error"]
    pd.testing.assert_frame_equal(dask[cols], serial[cols])
    assert (dask["error"] == "").all()


def test_multistart_on_the_cluster_equals_serial(client: Any) -> None:
    from lsqmf.nls.multistart import multistart

    rng = np.random.default_rng(1)
    M = rng.standard_normal((12, 3)) @ rng.standard_normal((3, 10))
    M += 0.3 * rng.standard_normal(M.shape)
    M[rng.random(M.shape) < 0.35] = np.nan
    opts = dict(eliminate="Q", formulation="none", init_scale=1.0, ftol=1e-10, xtol=1e-10,
                gtol=1e-10, max_nfev=100)
    serial = multistart(M, 2, random_state=5, **opts)
    dask = multistart(M, 2, random_state=5, scheduler=client, **opts)
    np.testing.assert_array_equal(dask.seeds, serial.seeds)
    np.testing.assert_array_equal(dask.costs, serial.costs)
    np.testing.assert_array_equal(dask.best.P, serial.best.P)


def killer(train: Ratings, rank: int, *, marker: str, **params: Any) -> Any:
    """ALS, except: cell (reg=1.0, seed 0) kills its worker once; (reg=10.0, seed 1) always."""
    if params["reg"] == 1.0 and params["random_state"] == 0:
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            pass  # the retry
        else:
            os._exit(1)
    if params["reg"] == 10.0 and params["random_state"] == 1:
        os._exit(1)
    return get_solver("als")(train, rank, **params)


killer.__name__ = "als"


def test_killed_workers_cost_only_their_cells(ratings: Ratings, cluster: Any,
                                              tmp_path: Path) -> None:
    grid = {"rank": [1], "reg": [0.1, 1.0, 10.0]}
    marker = str(tmp_path / "killed-once")
    cluster.scheduler.allowed_failures, before = 1, cluster.scheduler.allowed_failures
    try:
        with pytest.warns(RuntimeWarning, match=r"1 of 9 grid search cells failed .*: fold 1 "
                          r"\(rank=1, reg=10\.0\): KilledWorker: .* on 2 different workers"):
            dask = grid_search(ratings, killer, grid, n_splits=3, progress=False, refit=False,
                               scheduler=cluster, out=tmp_path / "grid.csv", marker=marker,
                               **FAST)
    finally:
        cluster.scheduler.allowed_failures = before
    assert os.path.exists(marker)  # the first attempt of that cell did kill its worker
    res = dask.results
    assert len(res) == 9 and list(res["config"]) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    failed = res["error"] != ""
    assert list(res.loc[failed, ["reg", "fold"]].itertuples(index=False)) == [(10.0, 1)]
    assert res.loc[failed, "rmse"].isna().all()
    serial = grid_search(ratings, "als", grid, n_splits=3, progress=False, refit=False,
                         **FAST).results
    np.testing.assert_array_equal(res.loc[~failed, "rmse"], serial.loc[~failed, "rmse"])
    assert len(pd.read_csv(tmp_path / "grid.csv")) == 9  # every finished cell is on disk


def test_unreachable_scheduler_is_a_clear_error_before_any_work(
    ratings: Ratings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("lsqmf.runtime.parallel.CONNECT_TIMEOUT", 2.0)
    out = tmp_path / "cv.csv"
    t0 = time.perf_counter()
    with pytest.raises(SchedulerUnreachableError,
                       match=r"cannot reach the Dask scheduler at 'tcp://127\.0\.0\.1:9' "
                             r"within 2 s") as info:
        grid_search(ratings, "als", GRID, n_splits=3, progress=False, out=out,
                    scheduler="tcp://127.0.0.1:9", **FAST)
    assert isinstance(info.value, ConnectionError) and isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)
    assert time.perf_counter() - t0 < 60  # bounded by the connect timeout, not a hang
    assert not out.exists()  # nothing was started


@pytest.mark.parametrize(
    ("scheduler", "error", "match"),
    [
        pytest.param("not an address", ValueError, "must be a scheduler address",
                     id="bad-string"),
        pytest.param(42, TypeError, "must be an address such as", id="bad-type"),
    ],
)
def test_bad_scheduler_argument(scheduler: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        plan_backend(scheduler=scheduler)


def _add(shared: dict[str, int], task: int) -> int:
    return shared["x"] + task


def test_map_tasks_orders_by_index_on_every_backend(client: Any) -> None:
    want = [10 + t for t in range(7)]
    for kwargs in ({}, {"scheduler": client}):
        got = in_order(map_tasks(_add, range(7), shared={"x": 10}, **kwargs))
        assert [o.index for o in got] == list(range(7))
        assert [o.value for o in got] == want and all(o.ok for o in got)


def _die(shared: str, task: int) -> int:
    """Task 3 kills its worker process on its first attempt, task 5 on every attempt."""
    if task == 3:
        try:
            os.close(os.open(shared, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return task
        os._exit(1)
    if task == 5:
        os._exit(1)
    return task


@pytest.mark.slow
def test_killed_local_worker_processes_cost_only_their_tasks(tmp_path: Path) -> None:
    marker = str(tmp_path / "died-once")
    got = in_order(map_tasks(_die, range(8), shared=marker, n_jobs=2))
    assert [o.index for o in got] == list(range(8))
    assert [o.value for o in got if o.ok] == [0, 1, 2, 3, 4, 6, 7]  # 3: run again alone
    (dead,) = [o for o in got if not o.ok]
    assert dead.index == 5 and dead.error is not None
    assert dead.error.startswith("worker process died running the task")


def _raise_on_two(shared: Any, task: int) -> int:
    if task == 2:
        raise ZeroDivisionError("task 2")
    return task


@pytest.mark.parametrize("where", ["serial", "dask"])
def test_an_exception_of_fn_propagates_on_every_backend(client: Any, where: str) -> None:
    kwargs = {"scheduler": client} if where == "dask" else {}
    with pytest.raises(ZeroDivisionError, match="task 2"):
        list(map_tasks(_raise_on_two, range(4), **kwargs))


def _loaded_kernels() -> list[str]:
    from lsqmf.kernels import jit

    return sorted(jit._compiled)


def test_every_worker_is_warmed_up_once(ratings: Ratings, client: Any) -> None:
    """The warm-up plugin loads the kernels on each worker when a map starts (not per task)."""
    pytest.importorskip("numba")
    from lsqmf.solvers import SOLVER_KERNELS

    cross_validate(ratings, solver="als", n_splits=2, rank=1, scheduler=client, **FAST)
    assert "lsqmf-warm-up" in client.run_on_scheduler(
        lambda dask_scheduler: list(dask_scheduler.worker_plugins)
    )
    loaded = client.run(_loaded_kernels)
    assert len(loaded) == 2
    for names in loaded.values():
        assert set(SOLVER_KERNELS) <= set(names)  # bmf's included, no test-only kernel
        assert "tutorial_mf" not in names
