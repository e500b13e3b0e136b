"""Process control of an isolated ``verify`` run (the parent's side).

Threat model
------------
The candidate is code the user chose to run; it runs in a child process with the user's
privileges, so it can do anything the user can. ``verify`` does not sandbox it (run untrusted
code in a container or as another user). What ``verify`` guarantees:

- **The verdict is the parent's.** The golden outputs are read by the parent before the child
  starts and every comparison runs in the parent, which never imports the candidate; the child
  gets copies of the inputs only, in a private temporary directory.
- **Results are authenticated.** Each result the child writes carries a per-run random token
  that the child receives from the parent (over a socket) only after the candidate has been
  imported, so code running at import time (the usual place for a trick: write the result
  files, then ``os._exit(0)``) cannot forge them. Code running *inside* the candidate's call
  shares the child's memory and could read the token: against that no in-process protocol
  helps, and no claim is made.
- **Protected files are checked.** The golden files and lsqmf's oracle sources are hashed
  before the run and after it; a file the candidate changed, added or deleted is restored and
  the run's outcome is ``'tampered'`` (it fails), so no later run is affected.
- **Nothing outlives the run.** The child is in its own session; at the end (and at a timeout,
  Ctrl-C, SIGTERM) its process group and session are killed, and, on Linux, the parent is a
  *child subreaper* during the run, so descendants that left the session (``setsid``, double
  fork) are reparented to it and killed too. The child dies with its parent
  (``PR_SET_PDEATHSIG``), as do the processes it forks, so a ``kill -9`` of ``lsqmf verify``
  leaves no candidate running.
- **Output is capped**: the candidate's stdout/stderr are drained from a pipe and only the last
  :data:`OUTPUT_TAIL` bytes kept; stdin is ``/dev/null``.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["OUTPUT_TAIL", "CappedOutput", "Snapshot", "kill_descendants", "subreaper"]

logger = logging.getLogger(__name__)

#: Bytes of the candidate's output kept (the tail); the rest is read and discarded.
OUTPUT_TAIL = 4096

_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37


def _prctl(option: int, value: int) -> int | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if option == _PR_GET_CHILD_SUBREAPER:
            out = ctypes.c_int(0)
            libc.prctl(option, ctypes.byref(out), 0, 0, 0)
            return int(out.value)
        return int(libc.prctl(option, value, 0, 0, 0))
    except (OSError, AttributeError):  # pragma: no cover - no libc prctl
        return None


@contextlib.contextmanager
def subreaper() -> Iterator[None]:
    """Within the block, this process adopts orphaned descendants (Linux; else a no-op)."""
    previous = _prctl(_PR_GET_CHILD_SUBREAPER, 0)
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    try:
        yield
    finally:
        if previous is not None:
            _prctl(_PR_SET_CHILD_SUBREAPER, previous)


def children_of(pid: int) -> set[int]:
    """Processes whose parent is ``pid``, zombies included (Linux ``/proc``; else empty)."""
    return {p for p, (ppid, _, _, _) in _processes().items() if ppid == pid}


def _processes() -> dict[int, tuple[int, int, int, bool]]:
    """pid -> (ppid, process group, session, alive), from ``/proc``."""
    out: dict[int, tuple[int, int, int, bool]] = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as fh:
                    fields = fh.read().rsplit(b")", 1)[1].split()
                out[int(entry.name)] = (int(fields[1]), int(fields[2]), int(fields[3]),
                                        fields[0] not in (b"Z", b"X"))
            except (OSError, IndexError, ValueError):
                continue
    return out


def kill_descendants(leader: int, spared: set[int]) -> None:
    """SIGKILL the process group and session of ``leader`` (the child, a session leader) and
    every process adopted by this one during the run (not in ``spared``, the children this
    process had before); reap what this process adopted."""
    me = os.getpid()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(leader, signal.SIGKILL)
    for _ in range(100):  # each round kills what the previous round orphaned
        victims = [pid for pid, (ppid, pgrp, sid, alive) in _processes().items()
                   if alive and pid != me and (pgrp == leader or sid == leader or (
                       ppid == me and pid not in spared and pid != leader))]
        if not victims:
            break
        for pid in victims:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        _reap(spared | {leader})
        time.sleep(0.02)
    _reap(spared | {leader})


def _reap(spared: set[int]) -> None:
    """Collect the adopted descendants that have died (never ``spared`` ones)."""
    for pid in children_of(os.getpid()) - spared:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


class CappedOutput:
    """Drain a pipe in a thread, keeping only its last :data:`OUTPUT_TAIL` bytes."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.tail = b""
        self.total = 0
        self.thread = threading.Thread(target=self._drain, daemon=True,
                                       name="lsqmf-verify-output")
        self.thread.start()

    def _drain(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            for chunk in iter(lambda: os.read(self.stream.fileno(), 65536), b""):
                self.total += len(chunk)
                self.tail = (self.tail + chunk)[-OUTPUT_TAIL:]

    def last_line(self, timeout: float = 5.0) -> str:
        """The last non-empty line of the output (after the pipe closed, or ``timeout``)."""
        self.thread.join(timeout)
        text = self.tail[-300:].decode("utf-8", "replace").strip()
        lines = [line for line in text.splitlines() if line.strip()]
        return lines[-1] if lines else ""


class Snapshot:
    """Hashes of every file under some directories, to detect and undo changes."""

    def __init__(self, directories: list[Path]) -> None:
        self.directories = [d for d in directories if d.is_dir()]
        self.files = self._read()

    def _read(self) -> dict[Path, bytes]:
        files: dict[Path, bytes] = {}
        for directory in self.directories:
            for path in sorted(directory.rglob("*")):
                if "__pycache__" in path.parts or not path.is_file():
                    continue
                with contextlib.suppress(OSError):
                    files[path] = path.read_bytes()
        return files

    def changes(self) -> list[str]:
        """What changed since the snapshot, restoring it (``[]``: nothing changed)."""
        now = self._read()
        changed = [p for p, data in self.files.items() if now.get(p) != data]
        added = [p for p in now if p not in self.files]
        for path in changed:
            with contextlib.suppress(OSError):
                tmp = path.with_name(f".{path.name}.lsqmf-restore")
                tmp.write_bytes(self.files[path])
                os.replace(tmp, path)
        for path in added:
            with contextlib.suppress(OSError):
                path.unlink()
        return [f"{p} ({'changed or deleted' if p in changed else 'added'})"
                for p in (*changed, *added)]

    def digest(self) -> str:
        return hashlib.sha256(b"".join(self.files.values())).hexdigest()
