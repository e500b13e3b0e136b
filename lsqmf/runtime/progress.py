"""Progress of long-running work: one policy for every command and entry point that adopts it.

Policy
------
``progress`` is a tri-state, the same for a library argument (``progress=``) and the command
line (``--progress`` / ``--no-progress``; neither: ``None``):

``None`` (the default, "auto")
    stderr is a terminal: a bar redrawn in place (at most 5 times a second). stderr is not a
    terminal (a log, a pipe, CI): one status line every :data:`STATUS_INTERVAL` seconds, so a
    run shorter than that prints nothing, a long one never goes silent.
``True`` (``--progress``)
    The same, and off a terminal also a last status line when the work ends.
``False`` (``--no-progress``)
    Nothing.

A status line reads ``bench seed: 120/252 cells (61% of the expected work), 0:41 elapsed,
~1:10 left; now n=40 trf-exact-huber``. The time left is estimated from the expected cost of
the items still to run, not their count (benchmark cells differ 1000x in cost): each item
carries a ``key`` (its kind, e.g. ``trf-exact``) and a ``weight`` (its expected cost in
arbitrary units, e.g. from the problem size), and the seconds per unit of weight measured on
the finished items of the same key (else of all keys) price the remaining weight.

A solver's iterations (``lsqmf fit``, ``evaluate``, ``solve``) are items too, set from its
callback with :meth:`Progress.update`: ``lsqmf fit als: 12/100 iterations, 0:41 elapsed; now
cost 3.214``. A solver stops when it converges, usually long before its iteration limit, so
these lines give no time left (``estimate=False``): an estimate from the limit would lie.

Tests shorten the interval by setting :data:`STATUS_INTERVAL` (read when a :class:`Progress`
is made without ``interval``), e.g. ``monkeypatch.setattr(progress, "STATUS_INTERVAL", 0)``.

Ctrl-C
------
:func:`call_interruptibly` runs one long call (a solve that sits in LAPACK for a minute) in a
helper thread while the calling thread waits in short steps, so a Ctrl-C raises
:class:`KeyboardInterrupt` in the caller within a fraction of a second instead of when the
call returns -- provided the call releases the interpreter lock now and then: scipy.linalg's
LAPACK wrappers (the SVD of ``exact``) hold it for the whole call, and the waiting thread
then runs only when that call returns. The benchmark therefore times its cells in a child
process that it kills (:class:`lsqmf.bench.cells.CellWorker`), and uses this function to wait
for the child's reply. The abandoned call keeps its thread until it returns or the process
exits; :attr:`Progress.current` says what it was, for the message "finishing ... / saved ...".
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any, TypeVar

__all__ = [
    "PROGRESS_HELP",
    "STATUS_INTERVAL",
    "Progress",
    "call_interruptibly",
    "format_seconds",
    "is_terminal",
]

T = TypeVar("T")

#: Seconds between two status lines off a terminal.
STATUS_INTERVAL = 30.0

#: The help of ``--progress/--no-progress`` of every command that follows the policy.
PROGRESS_HELP = (
    "progress on stderr: by default a bar when stderr is a terminal, else a status line "
    "every 30 s (with the estimated time left); --progress also prints a last line, "
    "--no-progress nothing"
)

#: Seconds between two redraws of the bar on a terminal.
_REDRAW = 0.2


def is_terminal(stream: IO[str] | None = None) -> bool:
    """Whether ``stream`` (default ``sys.stderr``) is a terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def format_seconds(seconds: float) -> str:
    """``h:mm:ss`` or ``m:ss``; ``?`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = round(seconds)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Progress of ``total`` items on stderr, by the policy of the module docstring.

    Parameters
    ----------
    desc : str
        What runs, e.g. ``"bench seed"``.
    total : int or None
        Items to run (not counting those reused from an earlier run); None: unknown (no bar
        is filled, no time left is estimated).
    progress : bool or None, default=None
        The policy's tri-state.
    unit : str, default='item'
        Plural noun of the items, e.g. ``"cells"``.
    expected : list of (key, weight), optional
        The expected cost of every item to run (see the module docstring); without it every
        item weighs 1.
    stream : file, optional
        Default ``sys.stderr`` (read when the object is made).
    interval : float, optional
        Seconds between status lines off a terminal (default :data:`STATUS_INTERVAL`, read
        when the object is made).
    estimate : bool, default=True
        Show the estimated time left (False for a solver's iterations, see the module
        docstring).
    clock : callable, default=time.monotonic
    """

    def __init__(self, desc: str, total: int | None, *, progress: bool | None = None,
                 unit: str = "items", expected: list[tuple[Any, float]] | None = None,
                 stream: IO[str] | None = None, interval: float | None = None,
                 estimate: bool = True, clock: Callable[[], float] = time.monotonic) -> None:
        self.desc, self.unit = desc, unit
        self.total: int | None = None if total is None else int(total)
        self.estimate = estimate and self.total is not None
        self.stream = sys.stderr if stream is None else stream
        self.terminal = is_terminal(self.stream)
        self.enabled = progress is not False
        self.final_line = progress is True
        self.interval = float(STATUS_INTERVAL if interval is None else interval)
        self.clock = clock
        self.start = clock()
        self.done = 0
        self.current: str | None = None
        self.current_since: float | None = None
        self._remaining: dict[Any, float] = {}
        self._done_weight: dict[Any, float] = {}
        self._done_seconds: dict[Any, float] = {}
        for key, weight in expected or []:
            self._remaining[key] = self._remaining.get(key, 0.0) + float(weight)
        self._total_weight = sum(self._remaining.values())
        self._last_draw = -math.inf
        self._last_line = self.start
        self._printed = False
        self._closed = False
        self._width = 0

    # -- state
    def begin(self, what: str) -> None:
        """The item now running (shown, and named by an interrupt message)."""
        self.current, self.current_since = what, self.clock()
        self._show()

    def advance(self, key: Any = None, weight: float = 1.0, seconds: float | None = None) -> None:
        """One item finished: its ``key`` and ``weight`` (as in ``expected``) and how long it
        took (default: since :meth:`begin`)."""
        now = self.clock()
        if seconds is None or not math.isfinite(seconds):
            seconds = now - self.current_since if self.current_since is not None else 0.0
        self.done += 1
        self._remaining[key] = max(0.0, self._remaining.get(key, 0.0) - weight)
        self._done_weight[key] = self._done_weight.get(key, 0.0) + weight
        self._done_seconds[key] = self._done_seconds.get(key, 0.0) + seconds
        self.current = self.current_since = None
        self._show()

    def update(self, done: int, what: str | None = None) -> None:
        """Set the count of finished items (a solver's iteration) and what is shown after
        "now" (e.g. its cost), without timing an item."""
        self.done = int(done)
        self.current = what
        self._show()

    def fraction(self) -> float:
        """The fraction of the expected work done (by weight; by count without weights)."""
        if self._total_weight > 0:
            return min(1.0, sum(self._done_weight.values()) / self._total_weight)
        if self.total is None:
            return 0.0
        return min(1.0, self.done / self.total) if self.total else 1.0

    def seconds_left(self) -> float:
        """Expected seconds left (NaN before the first item finishes or when unknown)."""
        if self.total is None:
            return math.nan
        if self.done >= self.total:
            return 0.0
        spent = sum(self._done_seconds.values())
        weight = sum(self._done_weight.values())
        if not self.done or weight <= 0 or spent <= 0:
            return math.nan
        overall = spent / weight
        left = 0.0
        for key, rem in self._remaining.items():
            w = self._done_weight.get(key, 0.0)
            rate = self._done_seconds[key] / w if w > 0 else overall
            left += rem * rate
        if self._total_weight <= 0:  # no weights given: by count
            left = (self.total - self.done) * spent / self.done
        # wall per item-second: < 1 when items run in parallel, > 1 with overhead between them
        wall = max(self.clock() - self.start, 1e-9)
        return left * (wall / spent)

    def status(self) -> str:
        """The one-line status."""
        elapsed = self.clock() - self.start
        left = self.seconds_left()
        of = "" if self.total is None else f"/{self.total}"
        line = f"{self.desc}: {self.done}{of} {self.unit}"
        if self._total_weight > 0:
            line += f" ({self.fraction():.0%} of the expected work)"
        line += f", {format_seconds(elapsed)} elapsed"
        if self.estimate and self.total is not None and self.done < self.total:
            line += f", ~{format_seconds(left)} left" if math.isfinite(left) else \
                ", time left: estimating"
        if self.current is not None:
            line += f"; now {self.current}"
        return line

    # -- output
    def message(self, text: str) -> None:
        """A line on the stream that does not break the bar (printed even when disabled)."""
        self._clear()
        print(text, file=self.stream, flush=True)
        self._last_draw = -math.inf

    def _clear(self) -> None:
        if self.terminal and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0

    def _show(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = self.clock()
        if self.terminal:
            if force or now - self._last_draw >= _REDRAW:
                self._draw(now)
        elif force or now - self._last_line >= self.interval:
            print(self.status(), file=self.stream, flush=True)
            self._last_line = now
            self._printed = True

    def _draw(self, now: float) -> None:
        text = self.status()
        if self.total is not None:
            filled = round(20 * self.fraction())
            text = f"[{'#' * filled}{'.' * (20 - filled)}] {text}"
        text = text[:159]
        pad = max(0, self._width - len(text))
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()
        self._width = len(text)
        self._last_draw = now

    def tick(self) -> None:
        """Redraw or print a due status line (call it while waiting)."""
        self._show()

    def close(self) -> None:
        """End the bar (a terminal) or print the last status line (when one is due); once."""
        if not self.enabled or self._closed:
            return
        self._closed = True
        if self.terminal:
            self._draw(self.clock())
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0
        elif self.final_line or self._printed:
            print(self.status(), file=self.stream, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def call_interruptibly(fn: Callable[[], T], *, tick: Callable[[], None] | None = None,
                       step: float = 0.1) -> T:
    """``fn()``, run in a helper thread so that Ctrl-C reaches the caller at once.

    In the main thread the call runs in a daemon thread while this one waits in ``step``
    seconds (calling ``tick`` between them, e.g. :meth:`Progress.tick`); a
    :class:`KeyboardInterrupt` then raises here within about ``step`` seconds and the call is
    abandoned (it ends with its thread or the process). ``fn``'s result is returned and its
    exceptions re-raised. In any other thread ``fn`` is simply called.
    """
    if threading.current_thread() is not threading.main_thread():
        return fn()
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as err:  # handed to the caller
            box["error"] = err

    worker = threading.Thread(target=target, name="lsqmf-timed-call", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(step)
        if tick is not None and worker.is_alive():
            tick()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]
