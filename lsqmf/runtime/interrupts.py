"""Who keeps a Ctrl-C: the solver's loop, or the job around it.

Called directly, an iterative solver catches ``KeyboardInterrupt`` and returns its best
iterate so far, marked ``Status.INTERRUPTED`` (``lsqmf.solve`` and the comparison solvers'
loop do). Inside a larger job -- a cross-validation, a grid, a tuning run, a benchmark -- that
fit is not a finished cell: the interrupt must stop the job, which keeps the cells finished
before it. :func:`lsqmf.runtime.parallel.map_tasks` runs its tasks under
:func:`propagate_interrupts`, and the loops re-raise the interrupt when
:func:`interrupts_propagate` is true.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

__all__ = ["interrupts_propagate", "propagate_interrupts"]

_PROPAGATE: ContextVar[bool] = ContextVar("lsqmf_propagate_interrupts", default=False)


@contextlib.contextmanager
def propagate_interrupts() -> Iterator[None]:
    """Within the block, solver loops let ``KeyboardInterrupt`` through instead of returning
    their iterate."""
    token = _PROPAGATE.set(True)
    try:
        yield
    finally:
        _PROPAGATE.reset(token)


def interrupts_propagate() -> bool:
    """True inside :func:`propagate_interrupts` (a job that must stop on Ctrl-C)."""
    return _PROPAGATE.get()
