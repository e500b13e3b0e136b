"""SIGTERM and SIGHUP handled like Ctrl-C, and a deferred stop for commands that save a fit.

Batch schedulers, ``timeout`` and a closed terminal stop a process with SIGTERM or SIGHUP,
whose default action kills it at once: nothing finished would be saved. Run as the program,
:func:`lsqmf.cli.main` calls :func:`install` so that both raise :class:`Terminated`, a
:class:`KeyboardInterrupt`: every command then does what it does on Ctrl-C (saves the
finished cells, folds, benchmark rows; kills ``verify``'s candidate) and exits 130, the code
of an interrupted command whichever of the three signals arrived (documented in
``lsqmf --help``).

A fit interrupted by an exception loses its iterate (the comparison solvers do not catch
``KeyboardInterrupt``). :func:`deferred_stop` therefore turns the first SIGINT, SIGTERM or
SIGHUP into a request that the solver's ``callback`` answers by stopping (returning True at its
next iteration or evaluation), so the solver returns its result, which the command saves
and marks interrupted; a second signal raises :class:`Terminated` at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

__all__ = ["HANDLED", "StopRequest", "Terminated", "deferred_stop", "install"]

#: Signals handled like Ctrl-C.
HANDLED = (signal.SIGTERM, signal.SIGHUP)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived (handled like Ctrl-C); ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"received {signal.Signals(signum).name}")
        self.signum = signum


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signum)


def install() -> None:
    """Make SIGTERM and SIGHUP raise :class:`Terminated` in the main thread (the program)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in HANDLED:
        signal.signal(signum, _raise)


class StopRequest:
    """Whether a stop was requested (the first signal); wraps a solver ``callback``."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def wrap(self, callback: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
        """A callback that calls ``callback`` and returns True (stop) once a stop is requested."""

        def stop_when_asked(info: Any) -> Any:
            result = None if callback is None else callback(info)
            return True if self.requested else result

        return stop_when_asked

    def mark(self, model: Any) -> Any:
        """``model`` with status ``INTERRUPTED`` if the stop request ended it (callback stop)."""
        from ..model.result import STATUS_MESSAGES, Status

        if not self.requested or int(model.status) != int(Status.CALLBACK):
            return model
        return dataclasses.replace(model, status=int(Status.INTERRUPTED), success=False,
                                   message=STATUS_MESSAGES[Status.INTERRUPTED])

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:  # a second signal: stop now
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise Terminated(signum)
        self.signum = signum


@contextlib.contextmanager
def deferred_stop() -> Iterator[StopRequest]:
    """Within the block, the first SIGINT/SIGTERM/SIGHUP requests a stop (see the module
    docstring); the previous handlers are restored on exit. Outside the main thread the
    signals are left alone (the request is then never made)."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, *HANDLED)}
    try:
        for signum in previous:
            signal.signal(signum, request._handle)
        yield request
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
