"""Threads: BLAS counts around lsqmf's parallel compiled kernels and by problem size, the
OpenMP wait policy of those kernels, and the thread pinning of timed work.

The one rule for a solve is :func:`blas_threads_for`; :func:`blas_limit` scopes a count with
threadpoolctl and restores the caller's setting on exit. :func:`passive_openmp_wait` sets
``OMP_WAIT_POLICY=passive`` (unless already set) before numba's OpenMP threading layer starts.

Pinning timed work (the benchmark)
----------------------------------
threadpoolctl limits only the libraries loaded when the limit is applied, and on numpy 2.4 /
scipy 1.17 numpy and scipy each ship their own OpenBLAS: a limit set after ``import numpy`` but
before ``scipy.linalg`` leaves scipy's BLAS, the one the dense solvers use, on its default
thread count. numba's threading layer keeps its own count, per calling thread
(:func:`numba.set_num_threads`). So :func:`pinned_threads` first loads every thread pool a
solve can use (:func:`load_thread_pools`: scipy.linalg, scipy.sparse.linalg and numba's
threading layer), then limits every library threadpoolctl sees (BLAS and OpenMP) and numba's
count in the calling thread, and :func:`measure_threads`, called inside, reports what each
library will actually run; :func:`thread_warnings` names every library above the request.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = [
    "DENSE_SINGLE_THREAD_ENTRIES",
    "OPENMP_WAIT_POLICY",
    "blas_limit",
    "blas_single_thread",
    "blas_threads_for",
    "library_name",
    "load_thread_pools",
    "measure_threads",
    "numba_available",
    "passive_openmp_wait",
    "pinned_thread",
    "pinned_threads",
    "thread_warnings",
]

#: The OpenMP wait policy lsqmf asks for (``OMP_WAIT_POLICY``), unless the environment sets one.
OPENMP_WAIT_POLICY = "passive"

#: A dense Jacobian with at most this many entries (2**22, 32 MiB of float64) runs its linear
#: algebra on one BLAS thread; see :func:`blas_threads_for`.
DENSE_SINGLE_THREAD_ENTRIES = 2**22


def numba_available() -> bool:
    """Whether numba can be imported (without importing it)."""
    return importlib.util.find_spec("numba") is not None


def blas_single_thread(active: bool = True) -> contextlib.AbstractContextManager[Any]:
    """A context that runs BLAS on one thread (when ``active``) around parallel kernels.

    numba's parallel kernels (OpenMP threads) and OpenBLAS's threads both spin while waiting
    for work, so on a small machine, alternating the two makes both slow: a matrix-free solve
    with the Jacobian kernels took 4.0 s with two BLAS threads and 0.35 s with one on 2 cores
    (the n = 1600 problem of ``benchmarks/bench_jacobian.py``), and 20 ALS sweeps at rank 20 on
    MovieLens latest-small 1.0 s vs 0.7 s. The numpy work between kernel calls (vector operations,
    small products) gains little from BLAS threads, so callers that alternate with parallel
    kernels limit BLAS for the duration; the caller's setting is restored on exit.
    """
    if not active:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def blas_threads_for(dense_entries: int | None, compiled_kernels: bool) -> int | None:
    """The BLAS thread limit of a solve: 1, or None for the caller's setting.

    - A run that alternates with lsqmf's parallel compiled kernels (the matrix-free operator)
      gets 1 (see :func:`blas_single_thread`).
    - A dense Jacobian (``tr_solver='exact'`` or ``method='lm'``) with at most
      :data:`DENSE_SINGLE_THREAD_ENTRIES` entries gets 1: its SVD/QR per iteration is too
      small for threads to pay for their start-up and spinning (a 30 x 20 ``exact`` solve took
      6.6 s with the default threads and 0.37 s with one on a busy 2-core machine), and one
      thread makes the result independent of the machine's thread count (LAPACK's blocked
      reductions sum in a thread-dependent order, so ``exact`` iterates differ in the last
      bits between thread counts and can drift apart over many iterations).
    - Otherwise (sparse or larger dense problems) None: BLAS keeps the caller's setting.

    The rule reads only sizes, so it gives the same answer on every machine.

    Parameters
    ----------
    dense_entries : int or None
        ``n_residuals * n_params`` when the Jacobian is dense, else None.
    compiled_kernels : bool
        The run calls the parallel compiled kernels.
    """
    if compiled_kernels:
        return 1
    if dense_entries is not None and dense_entries <= DENSE_SINGLE_THREAD_ENTRIES:
        return 1
    return None


def blas_limit(threads: int | None) -> contextlib.AbstractContextManager[Any]:
    """A context that limits BLAS to ``threads`` threads (None: leave the setting alone);
    the caller's setting is restored on exit."""
    if threads is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads, user_api="blas")


def passive_openmp_wait() -> None:
    """Set ``OMP_WAIT_POLICY=passive`` in the environment unless it is already set.

    numba runs lsqmf's parallel kernels on its OpenMP threading layer (GNU OpenMP), whose idle
    threads by default spin for a while after each parallel region. Between kernel calls the
    solvers run serial numpy work, which the spinning threads slow down (on a busy machine
    they take the cores it needs); with ``passive`` they sleep at once.
    ``benchmarks/bench_omp_wait.py`` (``lsqmf evaluate`` on the built-in data, load average
    6-7 on 2 cores): fit time 0.40x for ``lsq --jac operator`` (4.8 s -> 2.0 s, with 0.69x the
    CPU time) and 0.93x for ``als`` (``reports/startup/README.md``).

    OpenMP reads the variable once, when its library loads, which numba does with the first
    parallel kernel; lsqmf calls this before it loads any kernel (:mod:`lsqmf.kernels.backend`). A
    value set by the user (``OMP_WAIT_POLICY=active``) is kept, and so is an OpenMP runtime
    that another library loaded earlier in the process. Child processes inherit the setting.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", OPENMP_WAIT_POLICY)


# ---------------------------------------------------------------------------- timed work
def load_thread_pools(numba: bool | None = None) -> None:
    """Load every thread pool a solve may use, so that a limit applied afterwards holds.

    Imports :mod:`scipy.linalg` and :mod:`scipy.sparse.linalg` (scipy's own OpenBLAS next to
    numpy's) and, when numba is installed (``numba=None``) or ``numba=True``, starts numba's
    threading layer (its OpenMP library), after :func:`passive_openmp_wait`.
    """
    import scipy.linalg
    import scipy.sparse.linalg  # noqa: F401

    if numba is None:
        numba = numba_available()
    if numba:
        passive_openmp_wait()
        import numba as nb

        nb.get_num_threads()  # launches the threading layer (loads its OpenMP library)


def library_name(info: dict[str, Any]) -> str:
    """A reader's name for a thread pool of :func:`measure_threads`, e.g. "scipy's OpenBLAS".

    The owner is the wheel the library file ships in (``numpy.libs``, ``scipy.libs``), else
    the file name.
    """
    api = str(info.get("internal_api") or info.get("user_api") or "library")
    if info.get("user_api") == "numba":
        return f"numba's threading layer ({api})"
    kind = {"openblas": "OpenBLAS", "mkl": "MKL", "blis": "BLIS",
            "openmp": "OpenMP"}.get(api, api)
    path = str(info.get("filepath") or "")
    for owner in ("numpy", "scipy", "sklearn", "torch", "numba"):
        if f"{os.sep}{owner}.libs{os.sep}" in path or f"{os.sep}{owner}{os.sep}" in path:
            return f"{owner}'s {kind}"
    return f"{kind} ({os.path.basename(path)})" if path else kind


@contextlib.contextmanager
def _numba_threads(threads: int) -> Iterator[None]:
    """numba's thread count in the calling thread (numba keeps one per thread)."""
    nb = sys.modules.get("numba")
    if nb is None:
        yield
        return
    previous = nb.get_num_threads()
    nb.set_num_threads(min(threads, nb.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        nb.set_num_threads(previous)


@contextlib.contextmanager
def pinned_threads(threads: int) -> Iterator[None]:
    """Limit every thread pool of the process to ``threads`` for the enclosed (timed) work.

    Loads the pools first (:func:`load_thread_pools`), then limits every library that
    threadpoolctl sees (each BLAS copy: process-wide; OpenMP: the calling thread) and numba's
    count in the calling thread. Restored on exit. A helper thread that runs the work enters
    :func:`pinned_thread` too (OpenMP and numba keep their counts per thread).
    """
    from threadpoolctl import threadpool_limits

    load_thread_pools()
    with threadpool_limits(limits=threads), _numba_threads(threads):
        yield


@contextlib.contextmanager
def pinned_thread(threads: int) -> Iterator[None]:
    """The per-thread part of :func:`pinned_threads` (OpenMP and numba), for a helper thread
    of a process whose BLAS is already limited."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads, user_api="openmp"), _numba_threads(threads):
        yield


def measure_threads() -> list[dict[str, Any]]:
    """The thread count each pool of the process runs now, from the calling thread.

    One dict per library threadpoolctl sees (``user_api``, ``internal_api``, ``version``,
    ``num_threads``, ``filepath``) and, when numba is loaded, one for its threading layer
    (``user_api='numba'``); each with its :func:`library_name` as ``name``.
    """
    from threadpoolctl import threadpool_info

    infos = [
        {k: info.get(k) for k in ("user_api", "internal_api", "version", "num_threads",
                                  "filepath")}
        for info in threadpool_info()
    ]
    nb = sys.modules.get("numba")
    if nb is not None:
        try:
            layer = nb.threading_layer()
        except ValueError:  # not launched
            layer = "not launched"
        infos.append({"user_api": "numba", "internal_api": layer, "version": nb.__version__,
                      "num_threads": nb.get_num_threads(), "filepath": None})
    for info in infos:
        info["name"] = library_name(info)
    return infos


def thread_warnings(measured: Sequence[dict[str, Any]], requested: int) -> list[str]:
    """One message per library that ran more than ``requested`` threads, naming it.

    ``measured`` are :func:`measure_threads` entries (``num_threads`` the most seen).
    """
    out = []
    for info in measured:
        count = info.get("num_threads")
        if count is not None and count > requested:
            where = f" ({info['filepath']})" if info.get("filepath") else ""
            out.append(
                f"{info.get('name') or library_name(info)}{where} ran {count} threads in the "
                f"timed cells although {requested} was requested, so its timings are not "
                f"comparable; set OPENBLAS_NUM_THREADS={requested} OMP_NUM_THREADS={requested} "
                f"NUMBA_NUM_THREADS={requested} in the environment before starting."
            )
    return out
