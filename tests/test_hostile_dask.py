"""Dask faults: an address that is not a Dask scheduler (issue #23 item 8).

Real loopback servers that are not Dask schedulers: ``plan_backend`` must give a named
:class:`SchedulerUnreachableError` within its connect timeout (bounded waits only).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("distributed")

from lsqmf.runtime.parallel import SchedulerUnreachableError, plan_backend

pytestmark = pytest.mark.cluster


class _Quiet(BaseHTTPRequestHandler):
    timeout = 1.0  # a peer that sends no request line does not block the server
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *args: object) -> None:
        pass


def _http() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _silent() -> Iterator[str]:
    """Accepts connections and never sends a byte."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        sock.close()


@pytest.mark.parametrize("server", [_http, _silent], ids=["http-server", "silent-port"])
def test_not_a_scheduler_is_a_named_error(server) -> None:  # type: ignore[no-untyped-def]
    for address in server():
        with pytest.raises(SchedulerUnreachableError,
                           match=rf"cannot reach the Dask scheduler at '{address}' within 2 s"):
            plan_backend(scheduler=address, connect_timeout=2.0)


# ------------------------------------------------------------------- faults during a run
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import distributed  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from lsqmf.data.synthetic import make_low_rank  # noqa: E402
from lsqmf.evaluate import grid_search  # noqa: E402
from lsqmf.runtime.parallel import (  # noqa: E402
    SchedulerLostError,
    TaskFailedError,
    WorkerEnvironmentError,
    in_order,
    lsqmf_identity,
    map_tasks,
)

FAST = {"biases": True, "count_scaled": False, "max_iter": 3}
#: Upper bound of every wait on a started process (the machine is shared and loaded).
PATIENCE = 120.0


def _local_cluster(**kwargs: Any) -> distributed.LocalCluster:
    return distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        env={"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}, **kwargs)


@pytest.fixture(scope="module")
def cluster() -> Any:
    with _local_cluster() as c:
        yield c


@pytest.fixture
def ratings() -> Any:
    return make_low_rank(30, 20, 2, density=0.5, noise=0.05, random_state=0)[0]


_OTHER_VERSION = """
import lsqmf._version
lsqmf._version.__version__ = "0.0.0+other"
"""


def test_worker_with_another_lsqmf_is_refused_before_any_task(tmp_path: Path,
                                                              ratings: Any) -> None:
    """A worker whose ``lsqmf._version.__version__`` differs (here set by a preload script, as
    an older install on the worker's machine would report it) is refused; nothing is
    written."""
    script = tmp_path / "other_version.py"
    script.write_text(_OTHER_VERSION)
    out = tmp_path / "grid.csv"
    with _local_cluster(preload=[str(script)]) as other:
        with pytest.raises(WorkerEnvironmentError,
                           match=r"1 of 1 Dask workers at 'tcp://127\.0\.0\.1:\d+' run another "
                                 rf"lsqmf than this process \(lsqmf {lsqmf_identity()}\): "
                                 r"tcp://127\.0\.0\.1:\d+: lsqmf 0\.0\.0\+other"):
            grid_search(ratings, "als", {"rank": [1]}, n_splits=2, progress=False,
                        scheduler=other, out=out, **FAST)
    assert not out.exists()


def test_same_lsqmf_on_the_workers_is_accepted(cluster: Any) -> None:
    got = in_order(map_tasks(_add_one, range(3), scheduler=cluster))
    assert [o.value for o in got] == [1, 2, 3]


def _add_one(shared: Any, task: int) -> int:
    return task + 1


_SOLVER_MODULE = """
from lsqmf.solvers import get_solver

def {name}(train, rank, **params):
    return get_solver("als")(train, rank, **params)
"""


def test_callable_solver_from_a_module_the_workers_lack_is_shipped(
    cluster: Any, ratings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The module exists only on this process's sys.path (added after the workers started):
    it is sent by value, and the scores equal the serial run's."""
    name = f"only_here_{os.getpid()}"
    (tmp_path / f"{name}.py").write_text(_SOLVER_MODULE.format(name="mysolver"))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = __import__(name)
    try:
        serial = grid_search(ratings, module.mysolver, {"rank": [1, 2]}, n_splits=2,
                             progress=False, refit=False, **FAST).results
        dask = grid_search(ratings, module.mysolver, {"rank": [1, 2]}, n_splits=2,
                           progress=False, refit=False, scheduler=cluster, **FAST).results
    finally:
        sys.modules.pop(name, None)
    assert (dask["error"] == "").all()
    np.testing.assert_array_equal(dask["rmse"], serial["rmse"])


def test_callable_from_a_module_that_cannot_be_sent_is_refused(cluster: Any,
                                                              ratings: Any) -> None:
    """A module without source (compiled, or built at run time) that the workers lack."""
    name = f"no_source_{os.getpid()}"
    module = types.ModuleType(name)
    exec("def solver(train, rank, **params):\n    return None\n", module.__dict__)
    sys.modules[name] = module
    try:
        with pytest.raises(WorkerEnvironmentError,
                           match=rf"cannot import module '{name}' .*cannot be sent to them by "
                                 r"value \(not a pure-Python module\); install it on the "
                                 "workers"):
            grid_search(ratings, module.solver, {"rank": [1]}, n_splits=2, progress=False,
                        scheduler=cluster, **FAST)
    finally:
        del sys.modules[name]


class _HoldsLock(Exception):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        import threading

        self.lock = threading.Lock()


class _TwoArgs(Exception):
    """Its __init__ takes two arguments but stores one: unpickling it fails."""

    def __init__(self, text: str, code: int) -> None:
        super().__init__(text)
        self.code = code


class _HoldsGenerator(Exception):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.gen = (i for i in range(3))


_UNPICKLABLE = {"lock": lambda: _HoldsLock("boom"), "two-args": lambda: _TwoArgs("boom", 7),
                "generator": lambda: _HoldsGenerator("boom")}


def _raise_unpicklable(kind: str, task: int) -> int:
    if task == 2:
        raise _UNPICKLABLE[kind]()
    return task


@pytest.mark.parametrize("kind", sorted(_UNPICKLABLE))
@pytest.mark.parametrize("where", ["dask", "processes"])
def test_unpicklable_exception_is_a_named_error(cluster: Any, where: str, kind: str) -> None:
    kwargs: dict[str, Any] = {"scheduler": cluster} if where == "dask" else {"n_jobs": 2}
    error = type(_UNPICKLABLE[kind]()).__name__
    with pytest.raises(TaskFailedError,
                       match=rf"^task 2 \(2\) raised {error}: boom \(an exception that cannot "
                             r"be sent back from the worker: "):
        list(map_tasks(_raise_unpicklable, range(4), shared=kind, **kwargs))


def test_unpicklable_exception_propagates_as_itself_serially() -> None:
    with pytest.raises(_HoldsLock, match="boom"):
        list(map_tasks(_raise_unpicklable, range(4), shared="lock"))


def _slow(shared: Any, task: int) -> int:
    time.sleep(0.5)
    return task


def test_scheduler_that_dies_mid_run_is_a_named_error_and_keeps_finished_tasks(
    tmp_path: Path,
) -> None:
    sched = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
         "--port", "0", "--dashboard-address", "127.0.0.1:0", "--scheduler-file",
         str(tmp_path / "sched.json")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = None
    try:
        deadline = time.monotonic() + PATIENCE
        while not (tmp_path / "sched.json").exists():
            assert sched.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(0.2)
        address = pd.read_json(tmp_path / "sched.json", typ="series")["address"]
        worker = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
             "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        got: list[int] = []
        with pytest.raises(SchedulerLostError,
                           match=rf"lost the Dask scheduler at '{address}' during the run, "
                                 r"after 3 finished task\(s\) \(kept"):
            for outcome in map_tasks(_slow, range(40), scheduler=address,
                                     connect_timeout=PATIENCE):
                got.append(outcome.index)
                if len(got) == 3:
                    sched.kill()
        assert sorted(got) == got[:3] and len(got) == 3
    finally:
        for proc in (sched, worker):
            if proc is not None:
                proc.kill()
                proc.wait(PATIENCE)
