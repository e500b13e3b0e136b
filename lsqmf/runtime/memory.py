"""Memory budget: refuse a job that cannot fit before allocating any of it.

A rank of 10^6, an index of 10^11 or a grid of 10^8 cells used to reach numpy's
``Unable to allocate 4.37 TiB`` (or a numba ``SystemError``, or the kernel's OOM killer) after
minutes of work. The entry points estimate what they will hold at once and compare it with
the memory this process may still use (:func:`available_bytes`): the smaller of the
system's available memory (``MemAvailable``), the cgroup's limit (containers, batch jobs)
and ``RLIMIT_AS``. Too much is a :class:`MemoryBudgetError` (a ``MemoryError`` and a
``ValueError``) naming the argument and the size it would need.

The estimates are lower bounds of the working set (a fit holds more than its factors), so a
refusal is never a false alarm; a job that passes can still run out of memory later.

Estimate of a comparison solver's fit (:func:`fit_bytes`), float64 throughout:

- factors and biases: ``(n_rows + n_cols) x (rank + 1)`` numbers, held about 6 times at once
  (start, current and best iterate, the unpacked P and Q, a step or gradient);
- per observed rating: row, column, value, weight, residual, about 5 numbers;
- the ``rank x rank`` systems of the alternating and Bayesian solvers: a few of them.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

__all__ = ["MemoryBudgetError", "available_bytes", "check_budget", "fit_bytes",
           "format_bytes", "grid_bytes"]

#: Copies of the factors a fit holds at once (see the module docstring).
FACTOR_COPIES = 6
#: Numbers held per observed rating.
PER_RATING = 5
#: ``rank x rank`` matrices held at once (normal equations, covariances, per thread).
GRAM_COPIES = 4
#: Bytes of one row of a grid search's results (the cell, its parameters, its scores).
GRID_ROW_BYTES = 2_000


class MemoryBudgetError(MemoryError, ValueError):
    """A job would need more memory than this process can use; refused before allocating."""


def format_bytes(n: float) -> str:
    """``1.5 GiB``-style size."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_available() -> int | None:
    base = Path("/sys/fs/cgroup")
    try:
        limit = (base / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(int(limit) - int((base / "memory.current").read_text()), 0)
    except (OSError, ValueError):
        return None


def _rlimit_available() -> int | None:
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        fields = Path("/proc/self/statm").read_text().split()
        used = int(fields[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        used = 0
    return max(soft - used, 0)


def available_bytes() -> int | None:
    """Memory this process may still allocate (None if unknown): the smallest of the
    system's available memory, the cgroup's remaining limit and ``RLIMIT_AS``."""
    known = [v for v in (_meminfo_available(), _cgroup_available(), _rlimit_available())
             if v is not None]
    return min(known) if known else None


def fit_bytes(n_rows: int, n_cols: int, nnz: int, rank: int) -> int:
    """Lower bound of the memory a fit of ``rank`` on this shape holds at once (bytes)."""
    factors = FACTOR_COPIES * (int(n_rows) + int(n_cols)) * (int(rank) + 1)
    return 8 * (factors + PER_RATING * int(nnz) + GRAM_COPIES * int(rank) ** 2)


def grid_bytes(n_cells: int) -> int:
    """Lower bound of the memory a grid search of ``n_cells`` cells holds (its rows)."""
    return GRID_ROW_BYTES * int(n_cells)


def check_budget(need: int, what: str, hint: str = "") -> None:
    """Refuse ``what`` (e.g. "a fit of rank=1000000 on 4 x 4 ratings") if it needs more
    than :func:`available_bytes`.

    Raises
    ------
    MemoryBudgetError
        ``"<what> would need at least <size> of memory; <available> is available. <hint>"``.
    """
    have = available_bytes()
    if have is None or need <= have:
        return
    raise MemoryBudgetError(
        f"{what} would need at least {format_bytes(need)} of memory; {format_bytes(have)} "
        f"is available{'. ' + hint if hint else '.'}"
    )
