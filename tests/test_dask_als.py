"""Distributed ALS (lsqmf.solvers.als_dask) against single-machine ``als``.

Tolerance: from the same start, factors, biases, the cost history and the test RMSE agree with
``als`` to ``rtol = 1e-8`` (:data:`RTOL`) after :data:`SWEEPS` sweeps: the per-row solves are
the same normal equations, only the order in which a row's ratings are summed differs. The
in-process tests (no cluster) check the blocking itself for several block counts; those marked
``cluster`` run on a LocalCluster of 2 worker processes on 127.0.0.1 (and one on the
``dask scheduler`` / ``dask worker`` commands), including a worker killed mid-fit and a client
that stops and resumes from its checkpoint.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lsqmf import Ratings
from lsqmf.data.synthetic import make_low_rank
from lsqmf.model.result import FitResult
from lsqmf.solvers.als import als
from lsqmf.solvers.als_dask import als_dask

#: Relative tolerance of distributed vs single-machine results (summation order only).
RTOL = 1e-8
SWEEPS = 6
OBJECTIVES = {
    "plain": {"biases": False, "count_scaled": False, "reg": 0.1},
    "biases-count-scaled": {"biases": True, "count_scaled": True, "reg": 0.2},
    "defaults": {},
}


def _data(seed: int = 0) -> tuple[Ratings, Ratings]:
    r, _ = make_low_rank(70, 45, 3, density=0.35, noise=0.1, random_state=seed)
    rng = np.random.default_rng(seed)
    test = rng.random(r.nnz) < 0.2
    return r.subset(~test), r.subset(test)


def _quiet(fn: Any, *args: Any, **kwargs: Any) -> FitResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_iter reached: tol=0 on purpose
        return fn(*args, **kwargs)  # type: ignore[no-any-return]


def _rmse(fit: FitResult, test: Ratings) -> float:
    pred = fit.predict(test.rows, test.cols, clip=None) if _takes_clip(fit) else \
        fit.predict(test.rows, test.cols)
    return float(np.sqrt(np.mean((pred - test.values) ** 2)))


def _takes_clip(fit: FitResult) -> bool:
    import inspect

    return "clip" in inspect.signature(fit.predict).parameters


def assert_same_fit(got: FitResult, want: FitResult, test: Ratings | None = None) -> None:
    np.testing.assert_allclose(got.P, want.P, rtol=RTOL, atol=RTOL * np.abs(want.P).max())
    np.testing.assert_allclose(got.Q, want.Q, rtol=RTOL, atol=RTOL * np.abs(want.Q).max())
    if want.row_bias is not None:
        assert got.row_bias is not None and got.col_bias is not None
        np.testing.assert_allclose(got.row_bias, want.row_bias, rtol=RTOL, atol=1e-10)
        np.testing.assert_allclose(got.col_bias, want.col_bias, rtol=RTOL, atol=1e-10)
    np.testing.assert_allclose(got.history.cost, want.history.cost, rtol=RTOL)
    assert list(got.history.step) == list(want.history.step)
    assert got.cost == pytest.approx(want.cost, rel=RTOL)
    assert got.rms == pytest.approx(want.rms, rel=RTOL)
    assert got.mu == pytest.approx(want.mu, rel=1e-12)
    assert got.options["reg"] == pytest.approx(want.options["reg"], rel=1e-12)
    if test is not None:
        assert _rmse(got, test) == pytest.approx(_rmse(want, test), rel=RTOL)


# ------------------------------------------------------------------------------ in process
@pytest.mark.parametrize("backend", ["numpy", "compiled"])
@pytest.mark.parametrize("objective", list(OBJECTIVES))
@pytest.mark.parametrize("n_blocks", [1, 2, 3])
def test_blocked_equals_als_in_process(n_blocks: int, objective: str, backend: str) -> None:
    if backend == "compiled":
        pytest.importorskip("numba")
    train, test = _data()
    kw = {**OBJECTIVES[objective], "max_iter": SWEEPS, "tol": 0.0, "random_state": 3,
          "backend": backend}
    want = _quiet(als, train, 3, **kw)
    got = _quiet(als_dask, train, 3, n_blocks=n_blocks, **kw)
    assert got.solver == "als_dask" and got.options["n_blocks_used"] == n_blocks
    assert_same_fit(got, want, test)


@pytest.mark.parametrize("n_blocks", [3, 5])
def test_sparse_blocks_receive_subsets_and_give_the_same_fit(n_blocks: int) -> None:
    from lsqmf.solvers._common import split_options
    from lsqmf.solvers.als_dask import SPEC, _from_ratings, _Here

    r, _ = make_low_rank(300, 200, 2, density=0.01, noise=0.05, random_state=0)
    data = _from_ratings(_Here(), r, split_options(SPEC, 2, {})[0], "numpy", n_blocks)
    whole = [w for links in data.user_links + data.item_links for w in links["whole"]]
    assert 0 < sum(whole) < len(whole)  # both kinds of message: subsets and whole blocks
    kw = {"max_iter": SWEEPS, "tol": 0.0, "random_state": 0}
    assert_same_fit(_quiet(als_dask, r, 2, n_blocks=n_blocks, **kw), _quiet(als, r, 2, **kw))


def test_weighted_ratings_give_the_same_fit() -> None:
    train, _ = _data(1)
    w = np.random.default_rng(0).uniform(0.5, 2.0, train.nnz)
    kw = {"weights": w, "max_iter": 4, "tol": 0.0, "random_state": 0}
    assert_same_fit(_quiet(als_dask, train, 2, n_blocks=4, **kw), _quiet(als, train, 2, **kw))


def test_stops_like_als_and_records_the_options() -> None:
    train, _ = _data(2)
    want = als(train, 2, max_iter=200, tol=1e-6, random_state=5)
    got = als_dask(train, 2, n_blocks=2, max_iter=200, tol=1e-6, random_state=5)
    assert got.status == want.status and got.nfev == want.nfev
    assert got.options["scheduler"] is None and got.options["random_state"] == 5


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        pytest.param({"validation": 0.1}, ValueError, "`validation` is not supported",
                     id="validation"),
        pytest.param({"n_blocks": 0}, ValueError, "`n_blocks`", id="n-blocks"),
        pytest.param({"columns": ("u", "i")}, TypeError, "`columns`", id="columns"),
        pytest.param({"checkpoint": 3}, TypeError, "`checkpoint`", id="checkpoint"),
        pytest.param({"scheduler": 42}, TypeError, "`scheduler`", id="scheduler"),
    ],
)
def test_invalid_options(options: dict[str, Any], error: type, match: str) -> None:
    train, _ = _data()
    with pytest.raises(error, match=match):
        als_dask(train, 2, **options)


def test_weights_with_shards_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="`weights` cannot be given with shard files"):
        als_dask(str(tmp_path), 2, weights=[1.0])


def test_checkpoint_resumes_in_process(tmp_path: Path) -> None:
    train, _ = _data(4)
    kw = {"max_iter": 5, "tol": 0.0, "random_state": 1, "n_blocks": 2}
    whole = _quiet(als_dask, train, 2, **kw)
    first = _quiet(als_dask, train, 2, checkpoint=tmp_path, **{**kw, "max_iter": 2})
    assert first.nfev == 2
    seen: list[int] = []
    resumed = _quiet(als_dask, train, 2, checkpoint=tmp_path,
                     callback=lambda info: seen.append(info.step), **kw)
    assert seen == [3, 4, 5]  # sweeps 1 and 2 came from the checkpoint
    np.testing.assert_array_equal(resumed.P, whole.P)
    np.testing.assert_array_equal(resumed.history.cost, whole.history.cost)
    with pytest.raises(ValueError, match="holds the results of another factorization"):
        als_dask(train, 2, checkpoint=tmp_path, **{**kw, "random_state": 2})


# ------------------------------------------------------------------------------ on a cluster
@pytest.fixture(scope="module")
def cluster() -> Any:
    distributed = pytest.importorskip("distributed")
    c = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None, env={"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
    )
    with c:
        yield c


@pytest.fixture(scope="module")
def client(cluster: Any) -> Any:
    import distributed

    with distributed.Client(cluster, set_as_default=False) as c:
        yield c


@pytest.mark.cluster
@pytest.mark.parametrize("objective", ["plain", "biases-count-scaled"])
def test_cluster_fit_equals_als(client: Any, objective: str) -> None:
    train, test = _data()
    kw = {**OBJECTIVES[objective], "max_iter": SWEEPS, "tol": 0.0, "random_state": 3}
    want = _quiet(als, train, 3, **kw)
    got = _quiet(als_dask, train, 3, scheduler=client, n_blocks=3, **kw)
    assert got.options["scheduler"] == client.scheduler.address
    assert_same_fit(got, want, test)
    assert client.status == "running"  # a client the caller gave stays open


def _write_shards(r: Ratings, folder: Path, n_shards: int) -> None:
    import pandas as pd

    folder.mkdir()
    order = np.random.default_rng(0).permutation(r.nnz)  # shards in no particular order
    for s, part in enumerate(np.array_split(order, n_shards)):
        pd.DataFrame({"user": r.rows[part], "item": r.cols[part],
                      "rating": r.values[part]}).to_csv(folder / f"part-{s}.csv", index=False)


@pytest.mark.cluster
def test_shards_are_read_by_the_workers(cluster: Any, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import pandas as pd

    train, test = _data()
    plain = Ratings.from_triplets(train.rows, train.cols, train.values, shape=train.shape)
    _write_shards(plain, tmp_path / "shards", 3)

    def no_reading_here(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the client read a shard")

    monkeypatch.setattr(pd, "read_csv", no_reading_here)  # this process only, not the workers
    kw = {"max_iter": SWEEPS, "tol": 0.0, "random_state": 3}
    got = _quiet(als_dask, str(tmp_path / "shards"), 3, scheduler=cluster.scheduler_address,
                 n_blocks=2, **kw)
    monkeypatch.undo()
    assert_same_fit(got, _quiet(als, plain, 3, **kw), test)


try:
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:  # pragma: no cover - the cluster tests are skipped then
    WorkerPlugin = object


class KillOnce(WorkerPlugin):  # type: ignore[misc, valid-type]
    """Worker plugin: the first worker to start executing ``key_part`` dies (os._exit)."""

    name = "als-dask-test-kill"

    def __init__(self, key_part: str, marker: str) -> None:
        self.key_part, self.marker = key_part, marker

    def setup(self, worker: Any) -> None:
        pass

    def teardown(self, worker: Any) -> None:
        pass

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        if finish == "executing" and self.key_part in str(key):
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                return
            os._exit(1)


@pytest.mark.cluster
def test_a_worker_killed_mid_fit_costs_at_most_one_sweep(client: Any, tmp_path: Path) -> None:
    from distributed import get_task_stream

    train, test = _data(5)
    kw = {"max_iter": 5, "tol": 0.0, "random_state": 2, "n_blocks": 2}
    want = _quiet(als, train, 2, **{k: v for k, v in kw.items() if k != "n_blocks"})
    marker = str(tmp_path / "killed")
    client.register_plugin(KillOnce("solve-i3.0-", marker), name=KillOnce.name)
    try:
        with get_task_stream(client) as stream:
            got = _quiet(als_dask, train, 2, scheduler=client, checkpoint=tmp_path / "ck", **kw)
    finally:
        client.unregister_worker_plugin(KillOnce.name)
    assert os.path.exists(marker)  # a worker did die inside sweep 3's item solves
    assert_same_fit(got, want, test)
    solves: dict[str, int] = {}
    for record in stream.data:
        key = str(record["key"])
        if "-solve-" in key:
            sweep = key.split("-solve-")[1][1:].split(".")[0]
            solves[sweep] = solves.get(sweep, 0) + 1
    assert all(solves[s] == 4 for s in ("1", "2", "4", "5")), solves  # 2 user + 2 item blocks
    assert 4 <= solves["3"] <= 8  # the sweep that lost its worker: redone at most once


@pytest.mark.cluster
def test_a_restarted_client_resumes_from_the_checkpoint(cluster: Any, tmp_path: Path) -> None:
    train, _ = _data(6)
    kw = {"max_iter": 6, "tol": 0.0, "random_state": 4, "n_blocks": 2}
    addr = cluster.scheduler_address
    whole = _quiet(als_dask, train, 2, scheduler=addr, **kw)
    stopped = _quiet(als_dask, train, 2, scheduler=addr, checkpoint=tmp_path,
                     callback=lambda info: info.step == 3, **kw)
    assert stopped.nfev == 3
    seen: list[int] = []
    resumed = _quiet(als_dask, train, 2, scheduler=addr, checkpoint=tmp_path,
                     callback=lambda info: seen.append(info.step), **kw)
    assert seen == [4, 5, 6]
    np.testing.assert_array_equal(resumed.P, whole.P)
    np.testing.assert_array_equal(resumed.history.cost, whole.history.cost)


def _wait_for(path: Path, procs: list[subprocess.Popen[bytes]], what: str) -> None:
    for _ in range(600):  # bounded: 60 s
        if path.exists() and path.stat().st_size > 0:
            return
        if any(p.poll() is not None for p in procs):
            raise AssertionError(f"{what} exited early")
        time.sleep(0.1)
    raise AssertionError(f"{what} did not start")


@pytest.mark.cluster
def test_the_commands_a_user_runs(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    import json

    dask = Path(sys.executable).with_name("dask")  # the console script, as a user runs it
    if not dask.exists():
        pytest.skip("no `dask` command beside this Python")
    dask_cmd, worker_cmd = [str(dask), "scheduler"], [str(dask), "worker"]
    sched_file = tmp_path / "scheduler.json"
    env = {**os.environ, "NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(subprocess.Popen(
            [*dask_cmd, "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(sched_file)], env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL))
        _wait_for(sched_file, procs, "dask scheduler")
        address = json.loads(sched_file.read_text())["address"]
        for _ in range(2):
            procs.append(subprocess.Popen(
                [*worker_cmd, address, "--nthreads", "1", "--no-dashboard",
                 "--host", "127.0.0.1"], env=env, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL))
        with distributed.Client(address, set_as_default=False, timeout=120) as c:
            c.wait_for_workers(2, timeout=300)  # bounded; the machine may be busy
        train, test = _data(7)
        kw = {"max_iter": 4, "tol": 0.0, "random_state": 1}
        got = _quiet(als_dask, train, 2, scheduler=address, n_blocks=2, **kw)
        assert_same_fit(got, _quiet(als, train, 2, **kw), test)
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
