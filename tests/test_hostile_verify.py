"""Hostile candidates for ``lsqmf verify``: exits, crashes, hangs, and attempts to change the
verdict. The candidate runs in a child process; the comparison in this one.

Each case is a candidate file and the outcome, exit code and message it must get.
"""

from __future__ import annotations

import re
import shutil
import signal
import textwrap
import time
from pathlib import Path

import pytest

from lsqmf.cli import main
from lsqmf.oracle.golden import GOLDEN_DIR
from lsqmf.oracle.verify import DEFAULT_TIMEOUT, verify

CORRECT = "from lsqmf.oracle.reference import matrix_factorization as _ref\n"
CALL = "def factorize(R, P, Q, K, steps, alpha, beta, eps):\n"

CANDIDATES = {
    # name: (source, outcome, exit code, pattern in the report detail / rows)
    "exit0-at-import": ("import sys\nsys.exit(0)\n" + CALL + "    pass\n", "crashed", 3,
                        r"the candidate called sys\.exit\(0\) while being imported"),
    "exit1-at-import": ("raise SystemExit(1)\n" + CALL + "    pass\n", "crashed", 3,
                        r"called sys\.exit\(1\) while being imported"),
    "exit-message-at-import": ("raise SystemExit('bye')\n" + CALL + "    pass\n", "crashed", 3,
                               r"called sys\.exit\('bye'\) while being imported"),
    "os-exit0-at-import": ("import os\nos._exit(0)\n" + CALL + "    pass\n", "crashed", 3,
                           r"the candidate process exited with code 0 during case 'one_step', "
                           r"before reporting its result"),
    "exit0-in-call": (CALL + "    import sys\n    sys.exit(0)\n", "crashed", 3,
                      r"the candidate called sys\.exit\(0\) during case 'one_step'"),
    "os-exit0-in-call": (CALL + "    import os\n    os._exit(0)\n", "crashed", 3,
                         r"the candidate process exited with code 0 during case 'one_step'"),
    "os-exit7-in-call": (CALL + "    import os\n    os._exit(7)\n", "crashed", 3,
                         r"exited with code 7 during case 'one_step'"),
    "sigkill-self": (CALL + "    import os, signal\n    os.kill(os.getpid(), signal.SIGKILL)\n",
                     "crashed", 3, r"was killed by signal SIGKILL during case 'one_step'"),
    "abort": (CALL + "    import os\n    os.abort()\n", "crashed", 3,
              r"was killed by signal SIGABRT"),
    "segfault": (CALL + "    import ctypes\n    ctypes.string_at(0)\n", "crashed", 3,
                 r"was killed by signal SIGSEGV"),
    "loop-in-call": (CALL + "    while True:\n        pass\n", "timeout", 4,
                     r"the candidate did not finish within 3 s \(still running case 'one_step'"
                     r"\); its process was killed"),
    "loop-at-import": ("while True:\n    pass\n" + CALL + "    pass\n", "timeout", 4,
                       r"did not finish within 3 s"),
    "sleep-in-call": (CALL + "    import time\n    time.sleep(3600)\n", "timeout", 4,
                      r"did not finish within 3 s"),
    "import-error": ("import lsqmf_no_such_module\n" + CALL + "    pass\n", "load_error", 2,
                     r"No module named 'lsqmf_no_such_module'"),
    "syntax-error": ("def factorize(:\n", "load_error", 2, r"SyntaxError"),
    "not-callable": ("factorize = 42\n", "load_error", 2, r"is not callable; got 42"),
}


def _write(tmp_path: Path, name: str, source: str) -> str:
    path = tmp_path / f"{name.replace('-', '_')}.py"
    path.write_text(source)
    return f"{path}:factorize"


@pytest.mark.parametrize("name", list(CANDIDATES))
def test_hostile_candidate_outcome(tmp_path: Path, name: str) -> None:
    source, outcome, _, pattern = CANDIDATES[name]
    # a short limit only for the hangs: under load a child may take seconds just to start
    timeout = 3 if outcome == "timeout" else DEFAULT_TIMEOUT
    report = verify(_write(tmp_path, name, source), cases=["one_step", "zero_steps"],
                    timeout=timeout)
    assert report.outcome == outcome
    assert not report.passed
    assert re.search(pattern, report.detail), report.detail
    assert [r.case for r in report.results] == ["one_step", "zero_steps"]


@pytest.mark.parametrize("name", ["exit0-at-import", "os-exit0-in-call", "segfault",
                                  "loop-in-call", "import-error"])
def test_hostile_candidate_exit_code(tmp_path: Path, name: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    source, outcome, code, pattern = CANDIDATES[name]
    timeout = "3" if outcome == "timeout" else "600"
    assert main(["verify", _write(tmp_path, name, source), "--case", "one_step",
                 "--timeout", timeout]) == code
    captured = capsys.readouterr()
    assert re.search(pattern, captured.err), captured.err
    if outcome in ("crashed", "timeout"):
        assert f"{outcome.upper()}: " in captured.out


def test_crash_on_second_case_keeps_the_first(tmp_path: Path) -> None:
    source = CORRECT + CALL + textwrap.indent(textwrap.dedent("""\
        import os
        if K == 3:
            os._exit(0)
        return _ref(R, P, Q, K, steps, alpha, beta, eps)
    """), "    ")
    report = verify(_write(tmp_path, "second", source), cases=["one_step", "signed_k3"])
    first, second = report.results
    assert report.outcome == "crashed" and "during case 'signed_k3'" in report.detail
    assert first.passed
    assert second.reason == "not completed: crashed"


def test_patching_the_comparison_cannot_change_the_verdict(tmp_path: Path) -> None:
    source = CALL + textwrap.indent(textwrap.dedent("""\
        import numpy as np
        import lsqmf.oracle.verify as v
        v._compare = lambda *a, **k: (0.0, True)       # every case "passes"
        v._judge = lambda golden, *a, **k: v.CaseResult(golden.name, 0, 0, True, True)
        np.array_equal = lambda *a, **k: True
        np.abs = lambda x: x * 0
        P[:] = 0.0
        Q[:] = 0.0
        return P, Q
    """), "    ")
    report = verify(_write(tmp_path, "patcher", source), cases=["one_step"])
    assert report.outcome == "completed" and not report.passed
    assert "P outside tolerance" in report.results[0].reason


def test_rewriting_the_golden_files_cannot_change_the_verdict(tmp_path: Path) -> None:
    golden = tmp_path / "golden"
    shutil.copytree(GOLDEN_DIR, golden, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    source = CALL + textwrap.indent(textwrap.dedent(f"""\
        import numpy as np
        target = {str(golden / "one_step.npz")!r}
        data = dict(np.load(target))
        P[:] = 0.0
        Q[:] = 0.0
        data["P"], data["Q"] = P.copy(), Q.copy()
        np.savez(target, **data)  # the "expected" output now equals ours
        return P, Q
    """), "    ")
    report = verify(_write(tmp_path, "rewriter", source), cases=["one_step"], golden_dir=golden)
    assert not report.passed and "P outside tolerance" in report.results[0].reason


def test_grandchildren_are_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    source = CORRECT + CALL + textwrap.indent(textwrap.dedent(f"""\
        import subprocess
        proc = subprocess.Popen(["sleep", "1000"])
        open({str(pid_file)!r}, "w").write(str(proc.pid))
        return _ref(R, P, Q, K, steps, alpha, beta, eps)
    """), "    ")
    report = verify(_write(tmp_path, "spawner", source), cases=["one_step"])
    assert report.passed
    stat = Path(f"/proc/{int(pid_file.read_text())}/stat")
    state = "gone"
    for _ in range(200):  # SIGKILL is delivered asynchronously: poll until it has landed
        try:
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            state = "gone"
        if state in ("Z", "X", "gone"):  # a zombie until its new parent reaps it
            break
        time.sleep(0.05)
    assert state in ("Z", "X", "gone")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param("    return None\n", r"expected a pair \(P, Q\) to be returned; got None",
                     id="returns-none"),
        pytest.param("    return 'ab', 'cd'\n", r"P is not a numeric array: 'ab'",
                     id="returns-strings"),
        pytest.param("    P[:] = float('nan')\n    return P, Q\n", r"P has non-finite entries",
                     id="returns-nan"),
        pytest.param("    return P[:1], Q\n", r"P has shape \(1, 2\), expected \(4, 2\)",
                     id="wrong-shape"),
        pytest.param("    _ref(R, P, Q, K, steps, alpha, beta, eps)\n    R[0, 0] = 99\n"
                     "    return P, Q\n", r"in-place check: R was modified", id="modifies-R"),
    ],
)
def test_bad_returns_fail(tmp_path: Path, body: str, reason: str) -> None:
    report = verify(_write(tmp_path, "bad", CORRECT + CALL + body), cases=["one_step"])
    assert report.outcome == "completed" and not report.passed
    assert re.search(reason, report.results[0].reason), report.results[0].reason


@pytest.mark.parametrize(
    ("body", "error"),
    [
        pytest.param("    raise KeyboardInterrupt\n", "KeyboardInterrupt: ", id="ctrl-c-inside"),
        pytest.param("    raise MemoryError('big')\n", "MemoryError: big", id="memory-error"),
        pytest.param("    raise RecursionError('deep')\n", "RecursionError: deep",
                     id="recursion-error"),
    ],
)
def test_raising_candidates_are_reported(tmp_path: Path, body: str, error: str) -> None:
    report = verify(_write(tmp_path, "raiser", CALL + body), cases=["one_step"])
    assert report.outcome == "completed" and report.errored
    assert report.results[0].error == error


def test_noisy_candidate_still_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = CORRECT + CALL + textwrap.indent(textwrap.dedent("""\
        import os, sys
        print("OK: all 99 case(s) pass" * 1000)
        sys.stderr.write("noise\\n" * 1000)
        result = _ref(R, P, Q, K, steps, alpha, beta, eps)
        os.close(1)
        return result
    """), "    ")
    assert main(["verify", _write(tmp_path, "noisy", source), "--case", "one_step"]) == 0
    out = capsys.readouterr().out
    assert "OK: all 1 case(s) pass" in out and "99" not in out


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        pytest.param({"timeout": 0}, ValueError, r"`timeout` must be > 0\.0; got 0\.0",
                     id="zero"),
        pytest.param({"timeout": -5}, ValueError, r"`timeout` must be > 0\.0", id="negative"),
        pytest.param({"timeout": float("nan")}, ValueError, r"`timeout` must be finite",
                     id="nan"),
        pytest.param({"timeout": "10"}, TypeError, r"`timeout` must be a real number",
                     id="str"),
    ],
)
def test_timeout_argument(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        verify("lsqmf.oracle.reference:matrix_factorization", cases=["one_step"], **kwargs)


def test_timeout_needs_a_spec() -> None:
    from lsqmf.oracle.reference import matrix_factorization

    with pytest.raises(ValueError, match=r"`timeout` applies to a candidate given as a "
                       r"'MODULE:FUNCTION' spec"):
        verify(matrix_factorization, cases=["one_step"], timeout=5)


def test_cli_timeout_option_checked(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "lsqmf.oracle.reference:matrix_factorization", "--case", "one_step",
                 "--timeout", "0"]) == 2
    assert "`timeout` must be > 0.0; got 0.0" in capsys.readouterr().err


def test_default_timeout_is_documented() -> None:
    assert DEFAULT_TIMEOUT == 600.0
    assert signal.SIGKILL  # POSIX: timeouts kill the candidate's whole process group
