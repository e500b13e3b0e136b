"""Threads: BLAS counts around lsqmf's parallel compiled kernels and by problem size, and the
OpenMP wait policy of those kernels.

The one rule for a solve is :func:`blas_threads_for`; :func:`blas_limit` scopes a count with
threadpoolctl and restores the caller's setting on exit. :func:`passive_openmp_wait` sets
``OMP_WAIT_POLICY=passive`` (unless already set) before numba's OpenMP threading layer starts.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from typing import Any

__all__ = [
    "DENSE_SINGLE_THREAD_ENTRIES",
    "OPENMP_WAIT_POLICY",
    "blas_limit",
    "blas_single_thread",
    "blas_threads_for",
    "numba_available",
    "passive_openmp_wait",
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
