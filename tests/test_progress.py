"""The progress policy (lsqmf.runtime.progress) off a terminal, on a terminal (a stream that
says it is one, and a real pseudo-terminal), its cost-weighted estimate, and Ctrl-C."""

from __future__ import annotations

import io
import os
import threading
import time

import pytest

from lsqmf.runtime.progress import Progress, call_interruptibly, format_seconds


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run(progress: bool | None, stream: io.StringIO, clock: Clock, seconds: float) -> None:
    bar = Progress("work", 3, progress=progress, unit="cells", stream=stream, clock=clock,
                   interval=30.0)
    for _ in range(3):
        bar.begin("a cell")
        clock.now += seconds
        bar.advance()
    bar.close()


@pytest.mark.parametrize(("progress", "lines"), [(None, 0), (True, 1), (False, 0)],
                         ids=["auto", "forced", "off"])
def test_off_a_terminal_a_short_run_is_silent_unless_forced(progress: bool | None,
                                                            lines: int) -> None:
    stream = io.StringIO()
    _run(progress, stream, Clock(), 1.0)
    out = stream.getvalue()
    assert len(out.splitlines()) == lines and "\r" not in out
    if lines:
        assert out == "work: 3/3 cells, 0:03 elapsed\n"


def test_off_a_terminal_a_long_run_prints_a_line_every_interval() -> None:
    stream = io.StringIO()
    _run(None, stream, Clock(), 20.0)  # 60 s: lines at 40 s (due after 30 s) and at the end
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("work: 2/3 cells, 0:40 elapsed, ~0:20 left")
    assert lines[-1] == "work: 3/3 cells, 1:00 elapsed"
    assert "\r" not in stream.getvalue()


def test_on_a_terminal_a_bar_redrawn_in_place() -> None:
    stream = Terminal()
    _run(None, stream, Clock(), 1.0)
    out = stream.getvalue()
    assert out.count("\r") >= 3 and out.endswith("\n") and out.count("\n") == 1
    assert "[####################] work: 3/3 cells" in out
    assert "now a cell" in out


def test_on_a_pseudo_terminal() -> None:
    master, slave = os.openpty()
    with os.fdopen(slave, "w") as tty:
        assert tty.isatty()
        bar = Progress("pty", 2, stream=tty)
        bar.begin("first")
        bar.advance()
        bar.close()
    data = os.read(master, 4096).decode()
    os.close(master)
    assert "\r" in data and "pty: 1/2" in data and data.endswith("\r\n")


def test_the_estimate_is_weighted_by_expected_cost() -> None:
    clock = Clock()
    expected = [("dense", 1.0), ("dense", 1000.0), ("sparse", 1.0), ("sparse", 2.0)]
    bar = Progress("w", 4, stream=io.StringIO(), clock=clock, expected=expected)
    bar.begin("small dense")
    clock.now += 0.01
    bar.advance("dense", 1.0)
    bar.begin("small sparse")
    clock.now += 0.01
    bar.advance("sparse", 1.0)
    # by count, 2 of 4 done in 0.02 s would leave 0.02 s; by cost 1000 + 2 units remain
    assert bar.seconds_left() == pytest.approx(1000 * 0.01 + 2 * 0.01)
    assert bar.fraction() == pytest.approx(2 / 1004)
    assert "~0:10 left" in bar.status()


def test_format_seconds() -> None:
    assert [format_seconds(s) for s in (0, 61, 3725, float("nan"))] == \
        ["0:00", "1:01", "1:02:05", "?"]


def test_call_interruptibly_returns_and_raises() -> None:
    assert call_interruptibly(lambda: 42) == 42

    def boom() -> None:
        raise ValueError("inside")

    with pytest.raises(ValueError, match="inside"):
        call_interruptibly(boom)


def test_ctrl_c_reaches_the_caller_while_the_call_runs() -> None:
    """A KeyboardInterrupt raised in the waiting thread ends the wait at once (the call is
    abandoned); no wall-clock limit here: the call itself never returns until released."""
    release = threading.Event()
    started = threading.Event()

    def long_call() -> str:
        started.set()
        release.wait()
        return "done"

    ticks = {"n": 0}

    def tick() -> None:
        ticks["n"] += 1
        if started.is_set() and ticks["n"] >= 2:
            raise KeyboardInterrupt  # what the signal handler does in the main thread

    with pytest.raises(KeyboardInterrupt):
        call_interruptibly(long_call, tick=tick, step=0.01)
    release.set()  # let the abandoned thread end
    time.sleep(0)


def test_iterations_of_an_unknown_count_and_no_estimate() -> None:
    """A solver's iterations: set with update(), no time left; an unknown total has no bar."""
    clock, stream = Clock(), io.StringIO()
    bar = Progress("lsqmf solve", None, progress=True, unit="iterations", stream=stream,
                   clock=clock, interval=30.0, estimate=False)
    for step in range(4):
        clock.now += 20.0
        bar.update(step, f"cost {10 - step}")
    bar.close()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "lsqmf solve: 1 iterations, 0:40 elapsed; now cost 9"
    assert lines[-1] == "lsqmf solve: 3 iterations, 1:20 elapsed; now cost 7"
    term = Terminal()
    bar = Progress("fit", 10, unit="iterations", stream=term, clock=clock, estimate=False)
    bar.update(5, "cost 1")
    bar.close()
    assert "[##########..........] fit: 5/10 iterations, 0:00 elapsed; now cost 1" in \
        term.getvalue() and " left" not in term.getvalue()


def test_status_interval_is_read_when_a_progress_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    from lsqmf.runtime import progress

    monkeypatch.setattr(progress, "STATUS_INTERVAL", 0.0)
    stream = io.StringIO()
    bar = Progress("work", 2, stream=stream, clock=Clock())
    bar.update(1)
    bar.update(2)
    assert stream.getvalue().splitlines() == ["work: 1/2 items, 0:00 elapsed, time left: "
                                              "estimating", "work: 2/2 items, 0:00 elapsed"]
