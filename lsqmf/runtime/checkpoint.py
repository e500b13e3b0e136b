"""Append-only CSV checkpoints: one flushed line per finished task, validated on resume.

Grid search, cross-validation and the benchmark harness write every finished cell as one CSV
line at once (flushed), so an interrupt or a killed process loses at most the cells that were
running. On resume, :func:`read_checkpoint` keeps the rows that are whole and belong to the
run and drops the others, saying how many and why (a line cut by a hard kill, a field that
does not parse, a cell id the run does not know).
"""

from __future__ import annotations

import csv
import logging
import math
import os
import warnings
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "FileLock",
    "RowWriter",
    "format_value",
    "parse_bool",
    "parse_float",
    "parse_int",
    "read_checkpoint",
    "sort_rows",
]

logger = logging.getLogger(__name__)


def format_value(value: Any) -> str:
    """A CSV field: '' for None and NaN, ``repr`` for floats (exact round trip)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalars
        return format_value(value.item())
    if isinstance(value, int) and not isinstance(value, bool):
        return str(int(value))  # IntEnum members as their number
    return str(value)


def parse_float(text: str) -> float:
    """A float field ('' is NaN); raises ValueError otherwise."""
    return math.nan if text == "" else float(text)


def parse_int(text: str) -> int | None:
    """An int field ('' is None); raises ValueError otherwise."""
    return None if text == "" else int(text)


def parse_bool(text: str) -> bool:
    """'True' or 'False'; raises ValueError otherwise."""
    if text not in ("True", "False"):
        raise ValueError(f"not a boolean: {text!r}")
    return text == "True"


class RowWriter:
    """Appends rows to a CSV, one flushed line per row (the header first when new)."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path = path
        self.columns = columns
        new = not path.exists() or path.stat().st_size == 0
        self.fh = path.open("a", newline="", encoding="utf-8")
        self.writer = csv.writer(self.fh)
        if new:
            self.writer.writerow(columns)
            self.fh.flush()

    def write(self, row: Mapping[str, Any]) -> None:
        self.writer.writerow([format_value(row.get(c)) for c in self.columns])
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


def read_checkpoint(
    path: Path,
    columns: list[str],
    *,
    known: Collection[str],
    parsers: Mapping[str, Callable[[str], Any]] | None = None,
    id_column: str = "cell_id",
    keep: Callable[[dict[str, str]], bool] | None = None,
    what: str = "run",
) -> list[dict[str, str]]:
    """The valid rows of a checkpoint CSV; the file is rewritten without the others.

    A row is kept when it has one field per column, its ``id_column`` is in ``known``, every
    field named in ``parsers`` parses, and ``keep(row)`` (if given) is true. Dropped rows are
    counted in a :class:`RuntimeWarning` and the log (except those ``keep`` rejects, which
    are expected: e.g. failed cells that run again).

    Raises
    ------
    ValueError
        If the header is not ``columns``, or no whole row has a known id (the file belongs to
        another run: nothing is dropped then).
    """
    with path.open(newline="", encoding="utf-8") as fh:
        text = fh.read()
    if not text.strip():
        return []
    rows = list(csv.reader(text.splitlines()))
    header, body = rows[0], rows[1:]
    _check_same_run(path, header, body, columns, known, id_column, what)
    good, reasons, n_rejected = _classify_rows(body, columns, known, parsers or {}, id_column, keep)
    n_broken = sum(reasons.values())
    if n_broken:
        detail = ", ".join(f"{n} {r}" for r, n in reasons.items())
        msg = (f"{path}: dropped {n_broken} broken row(s) of {len(body)} ({detail}); their "
               "cells run again")
        logger.warning(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
    if n_broken or n_rejected or not text.endswith("\n"):
        _rewrite(path, header, good)
    return good


def _check_same_run(path: Path, header: list[str], body: list[list[str]], columns: list[str],
                    known: Collection[str], id_column: str, what: str) -> None:
    """Raise ValueError unless the header is ``columns`` and a whole row has a known id."""
    if header != columns:
        raise ValueError(
            f"{path} has columns {header}, not those of this {what} ({columns}); use another "
            "output path."
        )
    whole = [f for f in body if len(f) == len(columns)]
    ids = columns.index(id_column)
    if whole and not any(f[ids] in known for f in whole):
        raise ValueError(
            f"{path} holds the results of another {what} (none of its {len(whole)} rows "
            "belongs to this one: other data, folds, solver or parameters); use another "
            "output path."
        )


def _classify_rows(body: list[list[str]], columns: list[str], known: Collection[str],
               parsers: Mapping[str, Callable[[str], Any]], id_column: str,
               keep: Callable[[dict[str, str]], bool] | None,
               ) -> tuple[list[dict[str, str]], dict[str, int], int]:
    """The good rows, the broken ones counted by reason, the number ``keep`` rejected."""
    good: list[dict[str, str]] = []
    reasons: dict[str, int] = {}
    n_rejected = 0
    for fields in body:
        reason = _check(fields, columns, known, parsers, id_column)
        if reason is not None:
            reasons[reason] = reasons.get(reason, 0) + 1
            continue
        row = dict(zip(columns, fields, strict=True))
        if keep is not None and not keep(row):
            n_rejected += 1
            continue
        good.append(row)
    return good, reasons, n_rejected


def _check(fields: list[str], columns: list[str], known: Collection[str],
           parsers: Mapping[str, Callable[[str], Any]], id_column: str) -> str | None:
    if len(fields) != len(columns):
        return "with a wrong number of fields"
    row = dict(zip(columns, fields, strict=True))
    if row.get(id_column) not in known:
        return f"with an unknown {id_column}"
    for name, parse in parsers.items():
        if name in row:
            try:
                parse(row[name])
            except (ValueError, TypeError):
                return "with a field that does not parse"
    return None


def sort_rows(path: Path, key: Callable[[dict[str, str]], Any]) -> None:
    """Rewrite a (valid) checkpoint with its rows sorted by ``key`` (atomically)."""
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return
    header = rows[0]
    body = [dict(zip(header, r, strict=True)) for r in rows[1:]]
    _rewrite(path, header, sorted(body, key=key))


def _rewrite(path: Path, header: list[str], rows: list[dict[str, str]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows([[r[c] for c in header] for r in rows])
    os.replace(tmp, path)


class FileLock:
    """An exclusive lock file holding the owner's pid, created with ``O_EXCL``.

    A lock whose pid is no longer running on this host (a killed run) is stale and taken
    over, with a log message; a live one is refused with a ``ValueError`` naming its pid.
    """

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self.what = what
        self.held = False

    def acquire(self) -> None:
        import socket

        me = f"{os.getpid()} {socket.gethostname()}\n"
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is not None:
                    raise ValueError(
                        f"{self.what} is in use by another run (pid {owner}, lock file "
                        f"{self.path}); wait for it to finish or use another directory "
                        "(delete the lock file only if that run is gone)."
                    ) from None
                logger.warning("%s: removing a stale lock", self.path)
                try:
                    self.path.unlink()
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(me)
            self.held = True
            return
        raise ValueError(f"could not take the lock file {self.path}; retry.")

    def _owner(self) -> int | None:
        """The pid holding the lock if it is alive (None when the lock is stale)."""
        import socket
        import time

        try:
            text = self.path.read_text(encoding="utf-8")
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return None
        parts = text.split()
        if len(parts) < 1 or not parts[0].isdigit():
            # being written right now, or garbage: stale once it is a few seconds old
            return -1 if age < 5 else None
        pid = int(parts[0])
        if len(parts) > 1 and parts[1] != socket.gethostname():
            return pid  # another host: cannot check, assume alive
        if pid == os.getpid():
            return pid
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def release(self) -> None:
        if self.held:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            self.held = False

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
