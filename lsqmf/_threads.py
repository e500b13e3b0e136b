"""Thread-pool settings around lsqmf's parallel compiled kernels."""

from __future__ import annotations

import contextlib
import importlib.util
from typing import Any

__all__ = ["blas_single_thread", "numba_available"]


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
