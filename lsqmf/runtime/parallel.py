"""Map a task function over tasks: serially, on local processes, or on a Dask cluster.

Grid search, cross-validation, restarts and benchmark grids are embarrassingly parallel: the
same function runs once per task (a cell, a fold, a start) on shared data (the ratings or the
folds) and its options. :func:`map_tasks` runs ``fn(shared, task)`` for every task on one of
three backends, chosen once from explicit arguments (:func:`plan_backend`):

``'serial'``
    ``n_jobs=1`` and no scheduler: in this process, in task order.
``'processes'``
    ``n_jobs != 1``: local worker processes through :class:`joblib.Parallel` (loky by default;
    an enclosing :func:`joblib.parallel_config` may choose another joblib backend). joblib
    memory-maps the large numpy arrays of ``shared`` instead of copying them into every task,
    and limits the BLAS/OpenMP/numba threads of each worker to ``cpu_count // n_jobs``.
``'dask'``
    ``scheduler='tcp://host:port'``, a :class:`distributed.Client` or a cluster object (e.g.
    a :class:`~distributed.LocalCluster`), or no scheduler inside
    ``joblib.parallel_config(backend='dask')`` (its client is used). The connection is made
    with a short timeout *before any work*; an unreachable scheduler is a
    :class:`SchedulerUnreachableError` (a ``ConnectionError`` and a ``ValueError``) naming the
    address. ``shared`` is sent once, as one task that holds it, and replicated to every
    worker; each task carries only its options. (Not ``client.scatter``: a scattered object
    is lost when the last worker holding it dies, and every task waiting for it is
    cancelled; the scheduler recomputes a lost task.) At most a few tasks per worker thread
    are in flight, so the parent never holds every task's data at once.

Results are yielded **as they finish**, as :class:`Outcome` records carrying the task's
index (its position in ``tasks``), so a caller writes each one at once and restores task order
at the end (sorting by ``index``): the same tasks, seeds and order give the same results on
every backend.

Faults
------
``fn`` should turn its own exceptions into results (a row with the error, as the callers in
lsqmf do); one it lets through propagates from the generator on every backend, as it does
serially. What :func:`map_tasks` handles is a worker *process* that dies (killed, out of
memory, ``os._exit``):

- processes: the tasks that were running when a worker died are run again, one at a time;
  a task that kills its worker alone becomes an ``Outcome`` with ``error`` set, the others
  get their results, and the remaining tasks go on in parallel.
- dask: the scheduler re-runs the tasks of a dead worker elsewhere; a task whose workers died
  more than ``distributed.scheduler.allowed-failures`` times (default 3) ends as
  ``KilledWorker`` and becomes an ``Outcome`` with ``error`` set. Shared data lost with its
  workers is recomputed by the scheduler (from the copy it holds).

Nothing that finished is lost: every finished task has been yielded before an error or a
``KeyboardInterrupt`` leaves the generator (which then cancels the tasks still queued).

Worker start-up
---------------
The compiled numba kernels come from numba's on-disk cache where lsqmf's kernels enable it.
On Dask each worker additionally runs the ``warm_up`` the caller passes to :func:`map_tasks`
(e.g. :func:`lsqmf.solvers.warm_up_solvers`: the kernels of every registered solver) once,
when the map starts or when the worker joins later (a worker plugin), so the kernels are loaded
(or compiled) once per worker and never per task. This module imports no kernel code: which
kernels to load is the caller's knowledge. Local worker processes compile or load each
kernel on first use and keep it for the life of the (reused) process. Start Dask workers with
``NUMBA_NUM_THREADS`` (and ``OMP_NUM_THREADS``) equal to their thread count so that kernels do
not oversubscribe cores (joblib does this itself for local processes).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import re
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .._validation import check_int, describe

__all__ = [
    "Backend",
    "Outcome",
    "SchedulerUnreachableError",
    "in_order",
    "map_tasks",
    "plan_backend",
]

logger = logging.getLogger(__name__)

#: Seconds to wait for a scheduler (and for its first worker) before giving up.
CONNECT_TIMEOUT = 10.0

_CLUSTER_HINT = "install the cluster extra: pip install 'lsqmf[cluster]'"
_ADDRESS = re.compile(r"^([a-z][a-z0-9+.-]*://)?[^\s/:]+(:\d+)?$|^inproc://\S+$")


class SchedulerUnreachableError(ConnectionError, ValueError):
    """The Dask scheduler given as ``scheduler`` cannot be reached (or has no worker)."""


@dataclass(frozen=True)
class Outcome:
    """One finished task.

    Attributes
    ----------
    index : int
        Position of the task in the ``tasks`` given to :func:`map_tasks`.
    task : object
        The task itself (as given, in this process).
    value : object
        What ``fn`` returned (None when ``error`` is set).
    error : str or None
        Why the task has no value, e.g. ``"KilledWorker: ..."`` when its worker died.
    """

    index: int
    task: Any
    value: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the task returned a value."""
        return self.error is None


@dataclass(frozen=True)
class Backend:
    """Where :func:`map_tasks` runs the tasks (from :func:`plan_backend`).

    ``kind`` is ``'serial'``, ``'processes'`` or ``'dask'``; ``n_jobs`` the joblib worker count
    (processes); ``client`` the connected :class:`distributed.Client` (dask), ``owns_client``
    whether :func:`map_tasks` closes it at the end, ``address`` the scheduler's address.
    """

    kind: str
    n_jobs: int = 1
    client: Any = None
    owns_client: bool = False
    address: str | None = None

    def close(self) -> None:
        """Close the client if this plan opened it."""
        if self.owns_client and self.client is not None:
            self.client.close()


def _err_text(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}".replace("\n", " ").strip()[:500]


def _active_dask_client() -> Any:
    """The client of an enclosing ``joblib.parallel_config(backend='dask')``, else None."""
    try:
        from joblib.parallel import get_active_backend
    except ImportError:  # pragma: no cover - joblib is a dependency
        return None
    backend, _ = get_active_backend()
    if type(backend).__name__ == "DaskDistributedBackend":
        return getattr(backend, "client", None)
    return None


def _connect(scheduler: Any, timeout: float) -> tuple[Any, bool, str]:
    try:
        from distributed import Client
    except ImportError as err:
        raise ImportError(
            f"`scheduler` needs dask.distributed, which is not installed; {_CLUSTER_HINT}."
        ) from err
    if isinstance(scheduler, Client):
        return scheduler, False, str(scheduler.scheduler.address)
    address = getattr(scheduler, "scheduler_address", None)  # a Cluster object
    if address is None:
        if not isinstance(scheduler, str):
            raise TypeError(
                f"`scheduler` must be an address such as 'tcp://host:8786', a "
                f"distributed.Client or a cluster; got {describe(scheduler)}."
            )
        address = scheduler.strip()
        if not _ADDRESS.match(address):
            raise ValueError(
                f"`scheduler` must be a scheduler address such as 'tcp://host:8786'; got "
                f"{scheduler!r}."
            )
    client = _client_within(Client, str(address), timeout)
    return client, True, str(address)


def _client_within(client_type: Any, address: str, timeout: float) -> Any:
    """``Client(address)``, or SchedulerUnreachableError after ``timeout`` (+2 s) at most.

    distributed's own timeout covers the TCP connection, not a peer that accepts and then
    never speaks the Dask protocol (an HTTP server, a silent port): the connection is made in
    a helper thread and abandoned (closed when it ends) if it does not finish in time.
    """
    result: dict[str, Any] = {}

    def connect() -> None:
        try:
            result["client"] = client_type(address, timeout=timeout, set_as_default=False)
        except BaseException as err:  # reported below, in the caller's thread
            result["error"] = err
        if result.get("abandoned") and "client" in result:
            result["client"].close()

    thread = threading.Thread(target=connect, daemon=True, name="lsqmf-dask-connect")
    thread.start()
    thread.join(timeout + 2.0)
    if thread.is_alive() or "error" in result:
        result["abandoned"] = True
        err = result.get("error")
        why = (f"{type(err).__name__}: {err}" if err is not None
               else "it accepted the connection but never answered as a Dask scheduler")
        raise SchedulerUnreachableError(
            f"cannot reach the Dask scheduler at {address!r} within {timeout:g} s ({why}); "
            "start one (`dask scheduler`) or check the address."
        ) from None
    return result["client"]


def plan_backend(
    n_jobs: int = 1,
    scheduler: Any = None,
    *,
    connect_timeout: float | None = None,
) -> Backend:
    """Validate ``n_jobs``/``scheduler`` and choose (and connect) the backend.

    Parameters
    ----------
    n_jobs : int, default=1
        Local worker processes (joblib); -1 uses every core; 1 runs serially. Ignored with a
        scheduler.
    scheduler : str, distributed.Client or cluster, optional
        A Dask scheduler address (``'tcp://host:8786'``), a connected client or a cluster
        object. None runs locally, unless inside ``joblib.parallel_config(backend='dask')``.
    connect_timeout : float, optional
        Seconds to wait for the scheduler and for at least one worker (default
        :data:`CONNECT_TIMEOUT`, 10 s).

    Returns
    -------
    Backend
        Close it (:meth:`Backend.close`) when done; :func:`map_tasks` does so for the plans it
        makes.

    Raises
    ------
    SchedulerUnreachableError
        If the scheduler cannot be reached, or no worker joins it, within ``connect_timeout``.
    ValueError, TypeError
        For a bad ``n_jobs`` or ``scheduler``.
    ImportError
        If a scheduler is given and dask.distributed is not installed.
    """
    if connect_timeout is None:
        connect_timeout = CONNECT_TIMEOUT
    n_jobs = check_int("n_jobs", n_jobs, min_value=-1)
    if n_jobs == 0:
        raise ValueError("`n_jobs` must be >= 1 or -1 (all cores); got 0.")
    if scheduler is None:
        client = _active_dask_client()
        if client is None:
            return Backend("serial") if n_jobs == 1 else Backend("processes", n_jobs=n_jobs)
        scheduler = client
    client, owns, address = _connect(scheduler, connect_timeout)
    try:
        client.wait_for_workers(1, timeout=connect_timeout)
    except (OSError, TimeoutError):
        if owns:
            client.close()
        raise SchedulerUnreachableError(
            f"the Dask scheduler at {address!r} has no worker after {connect_timeout:g} s; "
            "start workers (`dask worker ADDRESS`)."
        ) from None
    return Backend("dask", client=client, owns_client=owns, address=address)


# ---------------------------------------------------------------------------- warm-up
def _warm_up_plugin(function: Callable[[], Any]) -> Any:
    from distributed.diagnostics.plugin import WorkerPlugin

    class LsqmfWarmUp(WorkerPlugin):  # type: ignore[misc]
        """Run the warm-up once on every worker (also on workers that join later)."""

        name = "lsqmf-warm-up"

        def __init__(self, fn: Callable[[], Any]) -> None:
            self.fn = fn

        async def setup(self, worker: Any) -> None:
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(None, self.fn)
            except Exception as err:  # a failed warm-up only costs start-up time
                logger.warning("lsqmf warm-up failed on %s: %s", worker.address, err)

    return LsqmfWarmUp(function)


# ---------------------------------------------------------------------------- the map
def _call(fn: Callable[[Any, Any], Any], shared: Any, index: int, task: Any) -> tuple[int, Any]:
    _exit_with_parent()
    return index, fn(shared, task)


_WATCHING: list[int] = []


def _exit_with_parent() -> None:
    """In a local worker process: start (once) a thread that ends the process when its parent
    dies (``kill -9`` of the caller), instead of living on idle for minutes."""
    if _WATCHING or multiprocessing.parent_process() is None:
        return
    parent = os.getppid()
    _WATCHING.append(parent)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_PARENT_POLL)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="lsqmf-parent-watch").start()


#: Seconds between a worker's checks that its parent is alive.
_PARENT_POLL = 0.5


class _Box:
    """Holds the shared object so that ``client.scatter`` sends it whole (not per element)."""

    def __init__(self, value: Any) -> None:
        self.value = value


def _call_boxed(fn: Callable[[Any, Any], Any], box: _Box, task: Any) -> Any:
    return fn(box.value, task)


def _identity(box: _Box) -> _Box:
    return box


def map_tasks(
    fn: Callable[[Any, Any], Any],
    tasks: Iterable[Any],
    *,
    shared: Any = None,
    n_jobs: int = 1,
    scheduler: Any = None,
    backend: Backend | None = None,
    warm_up: Callable[[], Any] | None = None,
    connect_timeout: float | None = None,
    label: str = "lsqmf",
) -> Iterator[Outcome]:
    """Run ``fn(shared, task)`` for every task; yield an :class:`Outcome` as each finishes.

    Parameters
    ----------
    fn : callable
        ``fn(shared, task) -> value``; a module-level function (it is pickled to workers).
    tasks : iterable
        Consumed lazily (a bounded number in flight).
    shared : object, optional
        Data every task reads (e.g. the folds): sent to each worker once.
    n_jobs, scheduler, connect_timeout
        As in :func:`plan_backend`; ignored when ``backend`` is given.
    backend : Backend, optional
        A plan from :func:`plan_backend` (then the caller closes it).
    warm_up : callable or None, default=None
        Run once per Dask worker before its first task (None: no warm-up; the fits still
        load their kernels before their clocks start).
    label : str
        Prefix of the Dask task keys (shown in the dashboard).

    Yields
    ------
    Outcome
        In completion order; ``index`` gives the task order. Serially, completion order is
        task order.

    Raises
    ------
    SchedulerUnreachableError
        Before any task runs, if the scheduler cannot be reached.
    """
    plan = backend if backend is not None else plan_backend(
        n_jobs, scheduler, connect_timeout=connect_timeout
    )
    try:
        if plan.kind == "serial":
            for i, task in enumerate(tasks):
                yield Outcome(i, task, fn(shared, task))
        elif plan.kind == "processes":
            yield from _processes(fn, tasks, shared, plan.n_jobs)
        else:
            yield from _dask(fn, tasks, shared, plan.client, warm_up, label)
    finally:
        if backend is None:
            plan.close()


def _is_worker_death(err: BaseException) -> bool:
    return type(err).__name__ in ("TerminatedWorkerError", "BrokenProcessPool")


def _n_workers(n_jobs: int, tasks: Iterable[Any]) -> int:
    """Worker processes to start: ``n_jobs`` (-1: every core), at most the cores and, when
    the tasks are counted (a list), at most the tasks."""
    cores = os.cpu_count() or 1
    n = cores if n_jobs < 0 else min(n_jobs, cores)
    if hasattr(tasks, "__len__"):
        n = min(n, max(len(tasks), 1))  # type: ignore[arg-type]
    return max(n, 1)


def _processes(fn: Callable[[Any, Any], Any], tasks: Iterable[Any], shared: Any,
               n_jobs: int) -> Iterator[Outcome]:
    from joblib import Parallel, delayed

    n_jobs = _n_workers(n_jobs, tasks)

    source = iter(enumerate(tasks))
    started: dict[int, Any] = {}

    def feed() -> Iterator[Any]:
        for i, task in source:
            started[i] = task
            yield delayed(_call)(fn, shared, i, task)

    while True:
        results = Parallel(n_jobs=n_jobs, return_as="generator_unordered", batch_size=1)(
            feed()
        )
        try:
            for i, value in results:
                yield Outcome(i, started.pop(i), value)
            return
        except Exception as err:
            if not _is_worker_death(err):
                raise
            reason = _err_text(err)
        finally:
            with warnings.catch_warnings():  # the caller stopped early: cancel, quietly
                warnings.filterwarnings("ignore", message=".*tasks which were still being")
                results.close()
        # a worker died: the tasks that were running are suspects; run each alone
        suspects = sorted(started.items())
        started.clear()
        logger.warning("a worker process died (%s); re-running %d task(s) one at a time",
                       reason, len(suspects))
        for i, task in suspects:
            try:
                ((_, value),) = Parallel(n_jobs=n_jobs, batch_size=1)(
                    [delayed(_call)(fn, shared, i, task)]
                )
            except Exception as err:
                if not _is_worker_death(err):
                    raise
                yield Outcome(i, task, error=f"worker process died running the task "
                                              f"({_err_text(err)})")
            else:
                yield Outcome(i, task, value)


def _dask(fn: Callable[[Any, Any], Any], tasks: Iterable[Any], shared: Any, client: Any,
          warm: Callable[[], Any] | None, label: str) -> Iterator[Outcome]:
    if warm is not None:
        client.register_plugin(_warm_up_plugin(warm), name="lsqmf-warm-up")
    feed = _DaskFeed(fn, tasks, shared, client, label)
    try:
        feed.top_up()
        for future in feed.queue:
            outcome = feed.collect(future)
            if outcome is None:  # resubmitted
                continue
            yield outcome
            feed.top_up()
    finally:
        feed.close()


def _scatter_shared(client: Any, shared: Any, label: str) -> Any:
    """Send ``shared`` to the cluster once, as a task that holds it; its future."""
    # A task holding the data, not client.scatter: the scheduler keeps its spec and
    # recomputes it if every worker holding it dies (a scattered object is lost then, and
    # every task waiting for it is cancelled). Sent once; workers fetch it from each other.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sending large graph")
        future = client.submit(_identity, _Box(shared), pure=False, priority=1,
                               key=f"{label}-shared-{uuid.uuid4().hex[:8]}")
    try:
        client.replicate([future])  # waits for it, then copies it to every worker
    except Exception as err:  # replication is an optimization only
        logger.debug("replicate failed: %s", err)
    return future


class _DaskFeed:
    """The tasks of one map on a Dask client: a window of them in flight, resubmitted when
    their inputs were lost."""

    def __init__(self, fn: Callable[[Any, Any], Any], tasks: Iterable[Any], shared: Any,
                 client: Any, label: str) -> None:
        from distributed import as_completed

        self.fn, self.shared, self.client, self.label = fn, shared, client, label
        self.box = _scatter_shared(client, shared, label)
        n_threads = sum(w.get("nthreads", 1)
                        for w in client.scheduler_info()["workers"].values())
        self.window = max(4, 2 * n_threads)
        self.run_id = uuid.uuid4().hex[:8]
        self.source = iter(enumerate(tasks))
        self.pending: dict[Any, tuple[int, Any]] = {}
        self.attempts: dict[int, int] = {}
        self.queue: as_completed = as_completed([], loop=client.loop)

    def submit(self, i: int, task: Any) -> None:
        attempt = self.attempts[i] = self.attempts.get(i, -1) + 1
        future = self.client.submit(_call_boxed, self.fn, self.box, task, pure=False,
                                    priority=-i, key=f"{self.label}-{self.run_id}-{i}-{attempt}")
        self.pending[future] = (i, task)
        self.queue.add(future)

    def top_up(self) -> None:
        while len(self.pending) < self.window:
            try:
                i, task = next(self.source)
            except StopIteration:
                return
            self.submit(i, task)

    def collect(self, future: Any) -> Outcome | None:
        """The outcome of a finished future, or None if its task was resubmitted."""
        from concurrent.futures import CancelledError

        i, task = self.pending.pop(future)
        try:
            outcome = Outcome(i, task, future.result())
        except CancelledError as err:
            # the task's inputs were lost: every worker holding the shared data died
            future.release()
            if self.attempts[i] < _RESUBMITS:
                if self.box.status != "finished":
                    logger.warning("the shared data was lost with its workers; sending "
                                   "it again")
                    self.box = _scatter_shared(self.client, self.shared, self.label)
                self.submit(i, task)
                return None
            outcome = Outcome(i, task, error=f"workers died and took the task's inputs "
                              f"with them, {self.attempts[i] + 1} times ({_err_text(err)})")
        except Exception as err:
            if type(err).__name__ != "KilledWorker":
                raise  # fn's own exception: propagates as it does serially
            outcome = Outcome(i, task, error=_err_text(err))
        future.release()
        del self.attempts[i]
        return outcome

    def close(self) -> None:
        """Cancel the tasks still queued and release the shared data."""
        for future in list(self.pending):
            future.cancel()
        self.pending.clear()
        self.box.release()


#: How often a task whose inputs were lost (not one that killed its worker) is resubmitted.
_RESUBMITS = 2


def in_order(outcomes: Iterable[Outcome]) -> list[Outcome]:
    """All outcomes, in task order (for callers that need no streaming)."""
    return sorted(outcomes, key=lambda o: o.index)
