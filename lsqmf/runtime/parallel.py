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

On Dask, also:

- a scheduler that dies (or becomes unreachable) mid-run: once the client gives up
  reconnecting (after ``distributed.comm.timeouts.connect``, 10 s by default), a
  :class:`SchedulerLostError` naming the address and how many tasks finished (all of them
  already yielded) -- never a hang or distributed's own ``ClosedClientError``;
- workers with another lsqmf: before any task (in :func:`plan_backend` and again when a map
  starts), every worker reports its ``lsqmf.__version__`` (the installed package's version
  as that worker imports it); any difference from this process is a
  :class:`WorkerEnvironmentError` naming the worker and both versions, as is a worker that
  cannot import lsqmf at all;
- functions and classes the workers cannot import (a solver defined in a notebook, a script
  or a module only on this machine's ``sys.path``): the modules that ``fn``, ``shared`` and
  the tasks refer to are looked up on every worker first; pure-Python modules the workers
  lack are sent by value (cloudpickle) with ``shared``; a module that cannot be sent that way
  (compiled, no source) is a :class:`WorkerEnvironmentError` naming it and the object using
  it, before any task;
- an exception ``fn`` raises that cannot be pickled (it holds a lock, a socket, a generator,
  or its ``__init__`` takes other arguments than it stores) is a :class:`TaskFailedError`
  naming the task, the original type and message; one that can be pickled propagates as
  itself (serially too).

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
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .._validation import check_int, describe
from .interrupts import propagate_interrupts

__all__ = [
    "Backend",
    "Outcome",
    "SchedulerLostError",
    "SchedulerUnreachableError",
    "TaskFailedError",
    "WorkerEnvironmentError",
    "check_workers",
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


class SchedulerLostError(ConnectionError):
    """The Dask scheduler went away during a map (the finished tasks were yielded)."""


class WorkerEnvironmentError(ValueError):
    """A Dask worker cannot run lsqmf's tasks as this process would: another lsqmf version,
    no lsqmf, or a module the tasks need that cannot be sent to it."""


class TaskFailedError(RuntimeError):
    """A task raised an exception that could not be sent back from its worker as itself."""


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
    try:
        check_workers(client, address)
    except BaseException:
        if owns:
            client.close()
        raise
    return Backend("dask", client=client, owns_client=owns, address=address)


# ---------------------------------------------------------------------------- workers
def lsqmf_identity() -> str:
    """``lsqmf.__version__`` as this process imports it (on a worker: the installed lsqmf's
    version, from its ``lsqmf/_version.py``)."""
    from .._version import __version__  # read at each call (a preload script may set it)

    return str(__version__)


def check_workers(client: Any, address: str | None = None) -> None:
    """Refuse (before any task) workers whose lsqmf differs from this process's.

    Every worker runs :func:`lsqmf_identity` (``client.run``): the ``lsqmf.__version__`` it
    imports. Two checkouts with the same version number (editable installs of different
    commits) are not told apart.

    Raises
    ------
    WorkerEnvironmentError
        Naming each worker that differs (or cannot import lsqmf) and both identities.
    """
    mine = lsqmf_identity()
    try:
        theirs = client.run(lsqmf_identity, on_error="return")
    except Exception as err:  # e.g. lsqmf itself cannot be unpickled there
        raise WorkerEnvironmentError(
            f"the Dask workers at {address!r} cannot run lsqmf ({_err_text(err)}); install "
            f"lsqmf {mine} on them."
        ) from None
    bad = {w: v for w, v in theirs.items() if v != mine and not isinstance(v, Exception)}
    broken = {w: _err_text(v) for w, v in theirs.items() if isinstance(v, Exception)}
    if not bad and not broken:
        return
    shown = [f"{w}: lsqmf {v}" for w, v in sorted(bad.items())]
    shown += [f"{w}: cannot import lsqmf ({why})" for w, why in sorted(broken.items())]
    raise WorkerEnvironmentError(
        f"{len(shown)} of {len(theirs)} Dask workers at {address!r} run another lsqmf than "
        f"this process (lsqmf {mine}): {'; '.join(shown[:5])}; their results could "
        "differ, so none was used. Install the same lsqmf on every worker."
    )


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
    return index, _sendable(fn, shared, index, task)


def _sendable(fn: Callable[[Any, Any], Any], shared: Any, index: int, task: Any) -> Any:
    """``fn(shared, task)`` in a worker; an exception that cannot be pickled back to the
    caller becomes a :class:`TaskFailedError` naming the task (the others are re-raised)."""
    import cloudpickle

    try:
        with propagate_interrupts():  # an interrupted fit is not a finished task
            return fn(shared, task)
    except Exception as err:
        try:
            cloudpickle.loads(cloudpickle.dumps(err))
        except Exception as why:
            message = (f"task {index} ({repr(task)[:200]}) raised {_err_text(err)} (an "
                       f"exception that cannot be sent back from the worker: {_err_text(why)})")
        else:
            raise
    # raised outside the handler: no unpicklable __context__ travels with it
    raise TaskFailedError(message)


_WATCHING: list[int] = []


def _exit_with_parent(parent: int | None = None) -> None:
    """In a local worker process: start (once) a thread that ends the process when its parent
    (``parent``, by default the current parent process) dies (``kill -9`` of the caller),
    instead of living on idle for minutes. A parent already gone ends it at once."""
    if _WATCHING or multiprocessing.parent_process() is None:
        return
    parent = os.getppid() if parent is None else parent
    _WATCHING.append(parent)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_PARENT_POLL)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="lsqmf-parent-watch").start()


#: Seconds between a worker's checks that its parent is alive.
_PARENT_POLL = 0.5


def _watched_backend() -> Any:
    """joblib's loky backend whose workers watch their parent from the moment they start
    (an idle worker, waiting for its first task, ends with its parent too); None (the
    enclosing ``joblib.parallel_config``'s backend) when another backend is configured."""
    from joblib._parallel_backends import LokyBackend
    from joblib.parallel import get_active_backend

    active, _ = get_active_backend()
    if type(active) is not LokyBackend:
        return None
    return LokyBackend(initializer=_exit_with_parent, initargs=(os.getpid(),))


class _Box:
    """Holds ``(fn, shared)``, sent to the cluster once as one object.

    With ``payload`` (cloudpickle bytes, for modules the workers lack) only the bytes travel;
    each worker unpickles them once, at its first task.
    """

    def __init__(self, value: Any, payload: bytes | None = None) -> None:
        self._value = None if payload is not None else value
        self.payload = payload

    def __getstate__(self) -> dict[str, Any]:
        if self.payload is not None:
            return {"_value": None, "payload": self.payload}
        return self.__dict__

    @property
    def value(self) -> Any:
        if self._value is None and self.payload is not None:
            import pickle

            try:
                self._value = pickle.loads(self.payload)
            except Exception as err:
                raise WorkerEnvironmentError(
                    f"a worker could not load the task function and shared data sent to it "
                    f"by value ({_err_text(err)}); install the modules they use on the workers."
                ) from None
        return self._value


def _call_boxed(box: _Box, index: int, task: Any) -> Any:
    fn, shared = box.value
    return _sendable(fn, shared, index, task)


def _identity(box: _Box) -> _Box:
    return box


# ---------------------------------------------------------------------------- shipping
class _Discard:
    def write(self, data: Any) -> int:
        return len(data)


def _referenced_modules(obj: Any) -> set[str]:
    """The modules whose functions and classes pickling ``obj`` refers to by name (without
    copying its arrays)."""
    import types

    import cloudpickle

    found: set[str] = set()

    class Scanner(cloudpickle.Pickler):  # type: ignore[misc]
        def reducer_override(self, o: Any) -> Any:
            if isinstance(o, types.FunctionType | type | types.BuiltinFunctionType):
                module = getattr(o, "__module__", None)
                if isinstance(module, str):
                    found.add(module)
            return super().reducer_override(o)

    Scanner(_Discard(), protocol=5, buffer_callback=lambda _: False).dump(obj)
    return found - {"__main__", "builtins"}


def _import_errors(names: list[str]) -> dict[str, str]:
    """On a worker: the modules of ``names`` it cannot import, with the reason."""
    import importlib

    errors = {}
    for name in names:
        try:
            importlib.import_module(name)
        except BaseException as err:  # any failure is the answer
            errors[name] = _err_text(err)
    return errors


def _missing_on_workers(client: Any, names: set[str]) -> dict[str, str]:
    if not names:
        return {}
    answers = client.run(_import_errors, sorted(names))
    return {name: why for errors in answers.values() for name, why in errors.items()}


def _refuse_missing(client: Any, obj: Any, known: frozenset[str], what: str) -> frozenset[str]:
    """Check that the workers import every module ``obj`` needs; ``known`` grown."""
    names = _referenced_modules(obj) - known
    missing = _missing_on_workers(client, names)
    if missing:
        name, why = next(iter(sorted(missing.items())))
        raise WorkerEnvironmentError(
            f"{what} refers to module {name!r}, which the Dask workers cannot import ({why}); "
            "install it on the workers, or pass the object through `shared`/the function."
        )
    return known | names


def ship(client: Any, fn: Callable[[Any, Any], Any], shared: Any) -> tuple[_Box, frozenset[str]]:
    """``(fn, shared)`` boxed for the workers, with the modules they need checked there.

    Pure-Python modules the workers cannot import (a solver defined in a module on this
    machine only) are sent by value (cloudpickle); any other is a
    :class:`WorkerEnvironmentError` naming it, before any task.
    """
    import cloudpickle

    value = (fn, shared)
    by_value: dict[str, str] = {}
    for _ in range(8):  # modules used by the modules sent by value, and so on
        names = _referenced_modules(value) - set(by_value)
        missing = _missing_on_workers(client, names)
        if not missing:
            break
        for name, why in missing.items():
            _register_by_value(name, why, fn)
            by_value[name] = why
    known = frozenset(_referenced_modules(value))
    if not by_value:
        return _Box(value), known
    try:
        payload = cloudpickle.dumps(value, protocol=5)
    except Exception as err:
        raise WorkerEnvironmentError(
            f"cannot send {describe(fn)} and its data by value to the Dask workers "
            f"({_err_text(err)}); install {sorted(by_value)} on the workers."
        ) from None
    finally:
        for name in by_value:
            cloudpickle.unregister_pickle_by_value(sys.modules[name])
    logger.info("sending module(s) %s by value to the Dask workers (they cannot import "
                "them)", sorted(by_value))
    return _Box(value, payload), known - set(by_value)


def _register_by_value(name: str, why: str, fn: Any) -> None:
    import cloudpickle

    module = sys.modules.get(name)
    source = getattr(getattr(module, "__spec__", None), "origin", None) or ""
    if module is None or name.split(".")[0] == "lsqmf" or not source.endswith(".py"):
        what = ("lsqmf itself" if name.split(".")[0] == "lsqmf" else
                "not a pure-Python module" if module is not None else "not imported here")
        raise WorkerEnvironmentError(
            f"the Dask workers cannot import module {name!r} ({why}), needed by "
            f"{describe(fn)} or its data, and it cannot be sent to them by value ({what}); "
            "install it on the workers."
        )
    cloudpickle.register_pickle_by_value(module)


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
                with propagate_interrupts():  # an interrupted fit is not a finished task
                    value = fn(shared, task)
                yield Outcome(i, task, value)
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
        results = Parallel(n_jobs=n_jobs, return_as="generator_unordered", batch_size=1,
                           backend=_watched_backend())(feed())
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
                ((_, value),) = Parallel(n_jobs=n_jobs, batch_size=1,
                                         backend=_watched_backend())(
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
    check_workers(client, _address(client))  # workers may have joined since the plan
    feed = _DaskFeed(fn, tasks, shared, client, label)
    done = 0
    try:
        feed.top_up()
        for future in feed.queue:
            try:
                outcome = feed.collect(future)
            except Exception as err:
                _raise_if_lost(client, done, err)
                raise
            if outcome is None:  # resubmitted
                continue
            done += 1
            yield outcome
            try:
                feed.top_up()
            except Exception as err:
                _raise_if_lost(client, done, err)
                raise
    finally:
        feed.close()


def _address(client: Any) -> str | None:
    try:
        return str(client.scheduler.address)
    except Exception:  # pragma: no cover - a client without a scheduler comm
        return None


def _scheduler_lost(client: Any, err: BaseException) -> bool:
    return (client.status != "running" or "scheduler-connection-lost" in str(err)
            or type(err).__name__ in ("ClosedClientError", "CommClosedError"))


def _raise_if_lost(client: Any, done: int, err: BaseException) -> None:
    """Raise :class:`SchedulerLostError` if ``err`` comes from a client that lost its
    scheduler (distributed closes it after failing to reconnect)."""
    if not _scheduler_lost(client, err):
        return
    raise SchedulerLostError(
        f"lost the Dask scheduler at {_address(client)!r} during the run, after {done} "
        f"finished task(s) (kept: already returned to the caller) ({_err_text(err)}); "
        "restart the scheduler and rerun (a run with a checkpoint resumes)."
    ) from None


def _scatter_shared(client: Any, shared: Any, label: str) -> Any:
    """Send ``shared`` (a :class:`_Box`) to the cluster once, as a task that holds it; its
    future."""
    # A task holding the data, not client.scatter: the scheduler keeps its spec and
    # recomputes it if every worker holding it dies (a scattered object is lost then, and
    # every task waiting for it is cancelled). Sent once; workers fetch it from each other.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sending large graph")
        future = client.submit(_identity, shared, pure=False, priority=1,
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

        self.client, self.label = client, label
        self.shared, self.known = ship(client, fn, shared)
        self.box = _scatter_shared(client, self.shared, label)
        n_threads = sum(w.get("nthreads", 1)
                        for w in client.scheduler_info()["workers"].values())
        self.window = max(4, 2 * n_threads)
        self.run_id = uuid.uuid4().hex[:8]
        self.source = iter(enumerate(tasks))
        self.pending: dict[Any, tuple[int, Any]] = {}
        self.attempts: dict[int, int] = {}
        self.queue: as_completed = as_completed([], loop=client.loop)

    def submit(self, i: int, task: Any) -> None:
        if i not in self.attempts:
            self.known = _refuse_missing(self.client, task, self.known, f"task {i}")
        attempt = self.attempts[i] = self.attempts.get(i, -1) + 1
        future = self.client.submit(_call_boxed, self.box, i, task, pure=False,
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
            if _scheduler_lost(self.client, err):
                raise  # the scheduler is gone (see _raise_if_lost)
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
        if self.client.status == "running":
            for future in list(self.pending):
                future.cancel()
            self.box.release()
        self.pending.clear()


#: How often a task whose inputs were lost (not one that killed its worker) is resubmitted.
_RESUBMITS = 2


def in_order(outcomes: Iterable[Outcome]) -> list[Outcome]:
    """All outcomes, in task order (for callers that need no streaming)."""
    return sorted(outcomes, key=lambda o: o.index)
