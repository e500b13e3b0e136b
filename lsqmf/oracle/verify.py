"""Check a candidate rewrite of the reference loop against the stored golden outputs.

A *candidate* is any callable with the reference's signature,
``candidate(R, P, Q, K, max_steps, alpha, beta, epsilon) -> (P, Q)`` (called with positional
arguments, so the parameter names do not matter), where ``P`` is ``(N, K)`` and ``Q`` is
``(M, K)``. For every golden case (see :mod:`lsqmf.oracle.golden`) :func:`verify` calls the
candidate
on fresh copies of the stored inputs and checks

1. the returned ``P`` and ``Q`` against the stored outputs:
   ``|actual - expected| <= atol + rtol * |expected|`` elementwise, all finite, same shapes;
2. with ``check_mutation=True`` (default), the in-place behaviour of the reference: after the
   call the caller's ``P`` and ``Q`` must hold the stored outputs (same tolerance) and ``R``
   must be unchanged.

A candidate that raises gets a row with the exception in ``error``; :func:`verify` itself
raises only for its own bad arguments.

Isolation
---------
Given a spec (``"MODULE:FUNCTION"`` or ``"path/to/file.py:FUNCTION"``, as ``lsqmf verify``
does), the candidate is imported and run in a child process (``subprocess``, a fresh
interpreter) with a time limit (``timeout``, default 600 s for the whole run). The child only
runs the candidate on the stored inputs and writes the arrays it got back (``.npz`` files in a
private temporary directory, read here with ``allow_pickle=False``); the golden outputs are
read and every comparison is made in this process, which never imports the candidate, so a
candidate that patches lsqmf (or numpy) cannot change the verdict. A child that exits
(``sys.exit``, ``os._exit``), crashes or is killed before reporting gives
``outcome='crashed'``; one that runs out of time is killed (with its process group) and gives
``outcome='timeout'``; an import failure gives ``outcome='load_error'``. Each has its own exit
code in ``lsqmf verify``. A callable candidate runs in this process, without these guards.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, cast

import numpy as np

from .._validation import check_bool, check_float, describe
from ._isolation import (
    OUTPUT_TAIL,
    CappedOutput,
    Snapshot,
    children_of,
    kill_descendants,
    subreaper,
)
from ._verify_child import load_candidate
from .golden import GoldenData, case_names, load_case

__all__ = ["DEFAULT_TIMEOUT", "OUTCOMES", "CaseResult", "VerifyReport", "load_candidate", "verify"]

#: Time limit (seconds) of an isolated run, for all its cases together.
DEFAULT_TIMEOUT = 600.0

#: How an isolated run ended: every case ran; the candidate could not be imported; the
#: child process ended (exit, crash, signal) before reporting every case; it ran out of time;
#: it changed the golden files or lsqmf's oracle sources (restored), or a result file was not
#: written by lsqmf's child (see :mod:`lsqmf.oracle._isolation`).
OUTCOMES = ("completed", "load_error", "crashed", "timeout", "tampered")

logger = logging.getLogger(__name__)


# duplicates: numpydoc Attributes header of a frozen result record (boilerplate)
@dataclass(frozen=True)
class CaseResult:
    """The outcome of one golden case.

    Attributes
    ----------
    case : str
        Golden case name.
    max_abs_diff_P, max_abs_diff_Q : float
        Largest ``|returned - expected|`` over the entries of ``P`` and ``Q``; NaN when the
        candidate raised or returned something that cannot be compared (wrong shape), inf when
        it returned a non-finite value.
    mutation_ok : bool or None
        Whether the caller's ``P`` and ``Q`` ended up holding the expected outputs and ``R``
        was left unchanged; None when not checked (``check_mutation=False`` or the candidate
        raised).
    passed : bool
        The case passed every check.
    error : str or None
        ``"ExceptionType: message"`` when the candidate raised, else None.
    reason : str
        Why the case failed (empty when it passed).
    """

    case: str
    max_abs_diff_P: float
    max_abs_diff_Q: float
    mutation_ok: bool | None
    passed: bool
    error: str | None = None
    reason: str = ""


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of :func:`verify`: one :class:`CaseResult` per golden case.

    Attributes
    ----------
    candidate : str
        Name of the candidate checked.
    atol, rtol : float
        Tolerances used.
    check_mutation : bool
        Whether in-place behaviour was checked.
    results : tuple of CaseResult
        Per-case rows, in golden-case order (for an isolated run that did not complete, the
        cases it never reported are rows with ``reason`` saying so).
    outcome : {'completed', 'load_error', 'crashed', 'timeout'}
        How the run ended (:data:`OUTCOMES`); always ``'completed'`` for a callable.
    detail : str
        What went wrong when ``outcome`` is not ``'completed'`` (empty otherwise).
    """

    candidate: str
    atol: float
    rtol: float
    check_mutation: bool
    results: tuple[CaseResult, ...]
    outcome: str = "completed"
    detail: str = ""

    @property
    def passed(self) -> bool:
        """The run completed and every case passed."""
        return self.outcome == "completed" and bool(self.results) and all(
            r.passed for r in self.results
        )

    @property
    def errored(self) -> bool:
        """The candidate raised on at least one case."""
        return any(r.error is not None for r in self.results)

    @property
    def n_failed(self) -> int:
        return sum(not r.passed for r in self.results)

    def to_records(self) -> list[dict[str, Any]]:
        """The per-case rows as a list of dicts (e.g. for ``pandas.DataFrame``)."""
        return [
            {
                "case": r.case,
                "max_abs_diff_P": r.max_abs_diff_P,
                "max_abs_diff_Q": r.max_abs_diff_Q,
                "mutation_ok": r.mutation_ok,
                "passed": r.passed,
                "error": r.error,
                "reason": r.reason,
            }
            for r in self.results
        ]


def verify(
    candidate: Callable[..., Any] | str,
    *,
    atol: float = 1e-8,
    rtol: float = 0.0,
    check_mutation: bool = True,
    cases: Iterable[str] | None = None,
    golden_dir: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
) -> VerifyReport:
    """Run ``candidate`` on every golden case and compare with the stored outputs.

    Parameters
    ----------
    candidate : callable or str
        A spec ``"MODULE:FUNCTION"`` / ``"path/to/file.py:FUNCTION"`` (see
        :func:`load_candidate`): imported and run in a child process, compared here (see
        *Isolation* in the module docstring). Or a callable, run in this process. Either is
        called as ``candidate(R, P, Q, K, max_steps, alpha, beta, epsilon)`` on copies of the
        stored inputs (``R`` (N, M), ``P`` (N, K), ``Q`` (M, K), float64, C-contiguous,
        writable; ``K`` and ``max_steps`` int; the others float); must return ``(P, Q)`` with
        ``P`` (N, K) and ``Q`` (M, K).
    atol : float, default=1e-8
        Absolute tolerance (>= 0).
    rtol : float, default=0.0
        Relative tolerance (>= 0), relative to the stored value.
    check_mutation : bool, default=True
        Also require the reference's in-place behaviour: after the call the caller's ``P`` and
        ``Q`` equal the stored outputs (within the tolerances) and ``R`` is unchanged.
    cases : iterable of str, optional
        Golden case names to run; default all, in stored order.
    golden_dir : path, optional
        Directory of golden files; default the ones shipped with lsqmf.
    timeout : float, optional
        Seconds the child process may run (all cases together), > 0; default
        :data:`DEFAULT_TIMEOUT`. Only for a spec candidate.

    Returns
    -------
    VerifyReport

    Raises
    ------
    TypeError
        If ``candidate`` is neither a str nor callable, or an option has the wrong type.
    ValueError
        If a tolerance is negative or not finite, a case name is unknown, ``timeout`` is not
        > 0, or ``timeout`` is given with a callable.
    FileNotFoundError
        If the golden files are missing.

    Examples
    --------
    >>> from lsqmf.oracle.reference import matrix_factorization
    >>> from lsqmf.oracle.verify import verify
    >>> report = verify(matrix_factorization, cases=["one_step", "rank1_tiny"])
    >>> report.passed
    True
    """
    if not callable(candidate) and not isinstance(candidate, str):
        raise TypeError(
            f"`candidate` must be callable or a 'MODULE:FUNCTION' spec; got {describe(candidate)}."
        )
    if timeout is not None:
        timeout = cast(float, check_float("timeout", timeout, min_value=0.0, min_inclusive=False))
        if not isinstance(candidate, str):
            raise ValueError(
                "`timeout` applies to a candidate given as a 'MODULE:FUNCTION' spec (run in a "
                "child process); a callable runs in this process."
            )
    atol = cast(float, check_float("atol", atol, min_value=0.0))
    rtol = cast(float, check_float("rtol", rtol, min_value=0.0))
    check_mutation = check_bool("check_mutation", check_mutation)
    names = _case_selection(cases, golden_dir)
    if isinstance(candidate, str):
        return _verify_isolated(
            candidate, list(names), atol, rtol, check_mutation, golden_dir,
            DEFAULT_TIMEOUT if timeout is None else timeout,
        )
    results = tuple(
        _run_case(candidate, load_case(name, golden_dir), atol, rtol, check_mutation)
        for name in names
    )
    return VerifyReport(
        candidate=_callable_name(candidate),
        atol=atol,
        rtol=rtol,
        check_mutation=check_mutation,
        results=results,
    )


def _case_selection(
    cases: Iterable[str] | None, golden_dir: str | os.PathLike[str] | None
) -> Sequence[str]:
    """The golden case names to run: ``cases`` (checked against the stored ones), or all."""
    available = case_names(golden_dir)
    if cases is None:
        return available
    names = [cases] if isinstance(cases, str) else list(cases)
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ValueError(
            f"`cases` must name golden cases among {', '.join(available)}; got unknown "
            f"{', '.join(repr(n) for n in unknown)}."
        )
    if not names:
        raise ValueError("`cases` must name at least one golden case; got none.")
    return names


def _run_case(
    candidate: Callable[..., Any],
    golden: GoldenData,
    atol: float,
    rtol: float,
    check_mutation: bool,
) -> CaseResult:
    R = np.array(golden.R, dtype=np.float64, order="C")
    P = np.array(golden.P0, dtype=np.float64, order="C")
    Q = np.array(golden.Q0, dtype=np.float64, order="C")
    nan = float("nan")
    logger.info("verify: running case %s", golden.name)
    try:
        out = candidate(
            R, P, Q, golden.K, golden.max_steps, golden.alpha, golden.beta, golden.epsilon
        )
    except Exception as err:  # the candidate's failure is the result, not ours
        logger.debug("candidate raised on %s:\n%s", golden.name, traceback.format_exc())
        return CaseResult(
            golden.name, nan, nan, None, False,
            error=f"{type(err).__name__}: {err}", reason="the candidate raised",
        )
    try:
        P_out, Q_out = out
    except (TypeError, ValueError):
        return CaseResult(
            golden.name, nan, nan, None, False,
            reason=f"expected a pair (P, Q) to be returned; got {describe(out)}",
        )
    reasons: list[str] = []
    diff_P, ok_P = _compare("P", P_out, golden.P, atol, rtol, reasons)
    diff_Q, ok_Q = _compare("Q", Q_out, golden.Q, atol, rtol, reasons)
    mutation_ok: bool | None = None
    if check_mutation:
        mutation_ok = _in_place_ok(golden, P, Q, R, atol, rtol, reasons)
    passed = ok_P and ok_Q and mutation_ok is not False
    return CaseResult(golden.name, diff_P, diff_Q, mutation_ok, passed, reason="; ".join(reasons))


def _compare(
    name: str, actual: Any, expected: np.ndarray, atol: float, rtol: float, reasons: list[str]
) -> tuple[float, bool]:
    """Max abs difference and whether ``actual`` is within tolerance of ``expected``."""
    try:
        arr = np.asarray(actual, dtype=np.float64)
    except (TypeError, ValueError):
        reasons.append(f"{name} is not a numeric array: {describe(actual)}")
        return float("nan"), False
    if arr.shape != expected.shape:
        reasons.append(f"{name} has shape {arr.shape}, expected {expected.shape}")
        return float("nan"), False
    if arr.size == 0:
        return 0.0, True
    if not np.all(np.isfinite(arr)):
        reasons.append(f"{name} has non-finite entries")
        return float("inf"), False
    diff = np.abs(arr - expected)
    ok = bool(np.all(diff <= atol + rtol * np.abs(expected)))
    if not ok:
        reasons.append(f"{name} outside tolerance")
    return float(diff.max()), ok


def _callable_name(candidate: Callable[..., Any]) -> str:
    module = getattr(candidate, "__module__", None)
    qualname = getattr(candidate, "__qualname__", None) or repr(candidate)
    return f"{module}:{qualname}" if module else qualname


# --------------------------------------------------------------------------------------------
# isolated runs: the candidate in a child process, the comparison here

#: The child runs ``_verify_child.py`` as a script: it imports numpy, not lsqmf (quicker to
#: start, and nothing of lsqmf's is in the child unless the candidate imports it).
_CHILD_CODE = (
    "import runpy, sys\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)
_CHILD_SCRIPT = str(Path(__file__).with_name("_verify_child.py"))
#: Largest result file the parent reads from the child (bytes), beyond the golden arrays.
_RESULT_SLACK = 2**20


def _verify_isolated(
    spec: str,
    names: list[str],
    atol: float,
    rtol: float,
    check_mutation: bool,
    golden_dir: str | os.PathLike[str] | None,
    timeout: float,
) -> VerifyReport:
    goldens = [load_case(name, golden_dir) for name in names]  # read here, not in the child
    protected = Snapshot(_protected_dirs(golden_dir))
    token = secrets.token_hex(32)
    verdict = partial(_incomplete, spec, names, atol, rtol, check_mutation)
    with tempfile.TemporaryDirectory(prefix="lsqmf-verify-") as tmp:
        work = Path(tmp)
        _write_inputs(work, spec, goldens)
        try:
            returncode, timed_out, output = _run_child(work, timeout, token)
        finally:
            tampered = protected.changes()  # restored, also after Ctrl-C
        if tampered:
            return verdict("tampered", "the candidate changed files verify depends on (now "
                           f"restored): {'; '.join(tampered[:5])}", [])
        reads = _Results(work, token)
        load = reads.read("load.npz", 2**20)
        if load is not None:
            outcome = "crashed" if str(load["kind"]) == "exit" else "load_error"
            if str(load["kind"]) == "forged":
                outcome = "tampered"
            return verdict(outcome, str(load["message"]), [])
        results: list[CaseResult] = []
        for index, golden in enumerate(goldens):
            limit = 4 * (golden.R.nbytes + golden.P.nbytes + golden.Q.nbytes) + _RESULT_SLACK
            data = reads.read(f"case{index}.npz", limit)
            if data is None:
                break
            if str(data["status"]) == "forged":
                return verdict("tampered", str(data["message"]), results)
            if str(data["status"]) == "exited":
                return verdict("crashed", f"{data['message']} during case {golden.name!r}",
                               results)
            results.append(_judge(golden, data, atol, rtol, check_mutation))
        done = reads.read("done.npz", 2**20) is not None
    if not (done and len(results) == len(names)):
        running = names[len(results)] if len(results) < len(names) else names[-1]
        return _unfinished(verdict, results, running, timed_out, timeout, returncode, output)
    return VerifyReport(candidate=spec, atol=atol, rtol=rtol, check_mutation=check_mutation,
                        results=tuple(results))


def _write_inputs(work: Path, spec: str, goldens: list[Any]) -> None:
    """The child's inputs: the candidate's spec and each case's inputs (never its outputs)."""
    (work / "config.json").write_text(json.dumps({"spec": spec, "n_cases": len(goldens)}))
    for index, golden in enumerate(goldens):
        np.savez(work / f"input{index}.npz", R=golden.R, P0=golden.P0, Q0=golden.Q0,
                 K=golden.K, max_steps=golden.max_steps, alpha=golden.alpha,
                 beta=golden.beta, epsilon=golden.epsilon)


def _unfinished(verdict: Callable[..., VerifyReport], results: list[CaseResult], running: str,
                timed_out: bool, timeout: float, returncode: int, output: str) -> VerifyReport:
    """The verdict of a child that did not report every case: a timeout or a crash."""
    if timed_out:
        detail = (f"the candidate did not finish within {timeout:g} s (still running case "
                  f"{running!r}); its process was killed")
        return verdict("timeout", detail, results)
    how = (f"was killed by signal {_signal_name(-returncode)}" if returncode < 0
           else f"exited with code {returncode}")
    detail = (f"the candidate process {how} during case {running!r}, before reporting "
              "its result (os._exit, a crash or a kill)")
    if output:
        detail += f"; its last output: {output!r}"
    return verdict("crashed", detail, results)


def _protected_dirs(golden_dir: str | os.PathLike[str] | None) -> list[Path]:
    """The golden files used and lsqmf's oracle sources (which hold the shipped goldens)."""
    dirs = [Path(__file__).resolve().parent]
    if golden_dir is not None and Path(golden_dir).resolve() != dirs[0] / "golden":
        dirs.append(Path(golden_dir).resolve())
    return dirs


class _Results:
    """Reads the child's result files, refusing those without the run's token."""

    def __init__(self, work: Path, token: str) -> None:
        self.work, self.token = work, token

    def read(self, name: str, limit: int) -> dict[str, np.ndarray] | None:
        data = _read_result(self.work / name, limit)
        if data is None or (str(data.get("kind", "")) == "load_error" and "token" not in data):
            return data
        if str(data.get("token", "")) != self.token:
            message = np.asarray(f"the result file {name} does not carry this run's token: "
                                 "it was not written by lsqmf's child process (forged by the "
                                 "candidate?)")
            return {"status": np.asarray("forged"), "kind": np.asarray("forged"),
                    "message": message}
        return data


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _run_child(work: Path, timeout: float, token: str) -> tuple[int, bool, str]:
    """Run the child; (return code, timed out, the last line of its output).

    See :mod:`lsqmf.oracle._isolation`: the child's output is capped, its stdin is
    ``/dev/null``, the token is sent once the candidate is imported, and whatever the child
    started is killed at the end, at a timeout, and on Ctrl-C or SIGTERM here.
    """
    ours, theirs = socket.socketpair()
    config = json.loads((work / "config.json").read_text())
    config.update(parent=os.getpid(), fd=theirs.fileno())
    (work / "config.json").write_text(json.dumps(config))
    spared = children_of(os.getpid())
    deadline = time.monotonic() + timeout
    with ours, subreaper():
        with theirs:
            proc = subprocess.Popen(
                [sys.executable, "-c", _CHILD_CODE, _CHILD_SCRIPT, str(work)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,  # its own session: killed with all of it at the end
            )
        output = CappedOutput(proc.stdout)  # type: ignore[arg-type]
        try:
            _send_token(ours, token, deadline)
            proc.wait(timeout=max(deadline - time.monotonic(), 0.0))
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:  # also on Ctrl-C or SIGTERM: take the child and its descendants down
            kill_descendants(proc.pid, spared)
            proc.wait()
            line = output.last_line()
            if proc.stdout is not None:
                proc.stdout.close()
    if output.total > OUTPUT_TAIL:
        line = f"{line} (of {output.total} bytes of output, the last {OUTPUT_TAIL} kept)"
    return int(proc.returncode), timed_out, line


def _send_token(sock: socket.socket, token: str, deadline: float) -> None:
    """Wait for the child's ``loaded`` (the candidate is imported), then send the token."""
    received = b""
    while not received.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise subprocess.TimeoutExpired("lsqmf verify child", 0)
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(64)
        except TimeoutError:
            raise subprocess.TimeoutExpired("lsqmf verify child", 0) from None
        except OSError:
            return
        if not chunk:  # the child ended before importing the candidate
            return
        received += chunk
    with contextlib.suppress(OSError):
        sock.sendall(token.encode("ascii"))


def _read_result(path: Path, limit: int) -> dict[str, np.ndarray] | None:
    """A result file of the child (None if absent); arrays only, sizes checked first."""
    if not path.is_file():
        return None
    try:
        with zipfile.ZipFile(path) as zf:
            total = sum(i.file_size for i in zf.infolist())
        if total > limit:
            raise ValueError(f"result file claims {total} bytes (limit {limit})")
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as err:
        text = np.asarray(f"unreadable result from the candidate process: {err}")
        return {"status": np.asarray("raised"), "message": text, "kind": np.asarray("load_error")}


def _judge(golden: GoldenData, data: dict[str, np.ndarray], atol: float, rtol: float,
           check_mutation: bool) -> CaseResult:
    """Compare what the child reported for one case with the golden outputs (parent side)."""
    nan = float("nan")
    status = str(data.get("status", ""))
    message = str(data.get("message", ""))
    if status == "raised":
        return CaseResult(golden.name, nan, nan, None, False, error=message,
                          reason="the candidate raised")
    if status != "returned":
        return CaseResult(golden.name, nan, nan, None, False, reason=message or
                          "the candidate process reported nothing usable")
    reasons: list[str] = []
    diffs = []
    for key, label, expected in (("P_out", "P", golden.P), ("Q_out", "Q", golden.Q)):
        if key in data:
            diffs.append(_compare(label, data[key], expected, atol, rtol, reasons))
        else:
            reasons.append(f"{label} is not a numeric array: {data.get(key + '_what', '?')}")
            diffs.append((nan, False))
    (diff_P, ok_P), (diff_Q, ok_Q) = diffs
    mutation_ok: bool | None = None
    if check_mutation:
        mutation_ok = _in_place_ok(golden, data.get("P_after"), data.get("Q_after"),
                                   data.get("R_after"), atol, rtol, reasons)
    passed = ok_P and ok_Q and mutation_ok is not False
    return CaseResult(golden.name, diff_P, diff_Q, mutation_ok, passed, reason="; ".join(reasons))


def _in_place_ok(golden: GoldenData, P_after: Any, Q_after: Any, R_after: Any, atol: float,
                 rtol: float, reasons: list[str]) -> bool:
    """Whether the caller's ``P`` and ``Q`` hold the golden outputs after the call and ``R``
    is unchanged (the reference updates P and Q in place); if not, one line why in ``reasons``.
    """
    mutation_reasons: list[str] = []
    _compare("P (caller's array)", P_after, golden.P, atol, rtol, mutation_reasons)
    _compare("Q (caller's array)", Q_after, golden.Q, atol, rtol, mutation_reasons)
    if R_after is None or not np.array_equal(R_after, golden.R):
        mutation_reasons.append("R was modified")
    if mutation_reasons:
        reasons.append(
            "in-place check: " + "; ".join(mutation_reasons)
            + " (the reference updates the caller's P and Q in place)"
        )
    return not mutation_reasons


def _incomplete(spec: str, names: list[str], atol: float, rtol: float, check_mutation: bool,
                outcome: str, detail: str, done: list[CaseResult]) -> VerifyReport:
    nan = float("nan")
    rows = list(done)
    for name in names[len(done):]:
        rows.append(CaseResult(name, nan, nan, None, False,
                               reason=f"not completed: {outcome.replace('_', ' ')}"))
    logger.info("verify %s: %s: %s", spec, outcome, detail)
    return VerifyReport(candidate=spec, atol=atol, rtol=rtol, check_mutation=check_mutation,
                        results=tuple(rows), outcome=outcome, detail=detail)
