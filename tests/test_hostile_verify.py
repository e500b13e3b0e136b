"""Hostile candidates for ``lsqmf verify``: exits, crashes, hangs, and attempts to change the
verdict. The candidate runs in a child process; the comparison in this one.

Each case is a candidate file and the outcome, exit code and message it must get.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
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
    before = (golden / "one_step.npz").read_bytes()
    report = verify(_write(tmp_path, "rewriter", source), cases=["one_step"], golden_dir=golden)
    assert (report.passed, report.outcome) == (False, "tampered")
    assert re.search(r"the candidate changed files verify depends on \(now restored\): "
                     r".*golden/one_step\.npz \(changed or deleted\)", report.detail)
    assert (golden / "one_step.npz").read_bytes() == before  # the next run sees the original


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


# ------------------------------------------------------------ escapes (issue #23 item 7)
def _dead(pid: int) -> bool:
    """Whether ``pid`` has died (polls a bounded while: SIGKILL lands asynchronously)."""
    stat = Path(f"/proc/{pid}/stat")
    for _ in range(400):
        try:
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def _correct(tmp_path: Path, name: str, at_import: str = "", in_call: str = "") -> str:
    source = (CORRECT + textwrap.dedent(at_import) + CALL
              + textwrap.indent(textwrap.dedent(in_call), "    ")
              + "    return _ref(R, P, Q, K, steps, alpha, beta, eps)\n")
    return _write(tmp_path, name, source)


ESCAPES_THAT_STILL_PASS = {
    "reads-stdin": ("", "import sys\nassert sys.stdin.read() == ''\n"),
    "chdir-and-environ": ("import os\nos.chdir('/')\nos.environ.clear()\n",
                          "import os\nos.chdir('/tmp')\nos.environ['HOME'] = '/nowhere'\n"),
    "prints-megabytes": ("print('x' * 2_000_000)\n",
                         "import sys\nsys.stdout.write('y' * 8_000_000)\n"
                         "sys.stderr.write('z' * 1_000_000)\n"),
    "thread-left-running": ("", "import threading, time\n"
                                "threading.Thread(target=time.sleep, args=(3600,)).start()\n"),
}


@pytest.mark.parametrize("name", list(ESCAPES_THAT_STILL_PASS))
def test_escape_attempt_does_not_change_a_correct_verdict(tmp_path: Path, name: str) -> None:
    at_import, in_call = ESCAPES_THAT_STILL_PASS[name]
    report = verify(_correct(tmp_path, name, at_import, in_call), cases=["one_step"],
                    timeout=60)
    assert (report.outcome, report.passed) == ("completed", True), report.detail


def test_huge_output_is_capped_in_the_detail(tmp_path: Path) -> None:
    source = (CALL + "    import os, sys\n"
              "    sys.stdout.write('w' * 5_000_000 + '\\nlast words')\n"
              "    sys.stdout.flush()\n    os._exit(9)\n")
    report = verify(_write(tmp_path, "noisy_crash", source), cases=["one_step"])
    assert report.outcome == "crashed"
    assert re.search(r"its last output: 'last words \(of 5000011 bytes of output, the last "
                     r"4096 kept\)'", report.detail), report.detail


def test_patching_numpy_at_import_cannot_pass_a_wrong_answer(tmp_path: Path) -> None:
    source = textwrap.dedent("""\
        import numpy as np
        np.allclose = lambda *a, **k: True
        np.array_equal = lambda *a, **k: True
        np.abs = lambda x: np.zeros_like(x)
        np.all = lambda *a, **k: True
    """) + CALL + "    return P * 0 + 1, Q * 0 + 1\n"
    report = verify(_write(tmp_path, "patcher", source), cases=["one_step"])
    assert (report.outcome, report.passed) == ("completed", False)
    assert "P outside tolerance" in report.results[0].reason


def test_forged_result_files_are_refused(tmp_path: Path) -> None:
    # at import: read the stored outputs, write the result files the child would, then leave
    source = textwrap.dedent(f"""\
        import os, sys
        import numpy as np
        from pathlib import Path
        work = Path(sys.argv[1])
        gold = np.load({str(GOLDEN_DIR / "one_step.npz")!r})
        inp = np.load(work / "input0.npz")
        np.savez(work / "case0.npz", status=np.asarray("returned"), P_out=gold["P"],
                 Q_out=gold["Q"], P_after=gold["P"], Q_after=gold["Q"], R_after=inp["R"])
        np.savez(work / "done.npz", n_cases=np.asarray(1))
        os._exit(0)
    """) + CALL + "    pass\n"
    report = verify(_write(tmp_path, "forger", source), cases=["one_step"])
    assert (report.outcome, report.passed) == ("tampered", False)
    assert "case0.npz does not carry this run's token" in report.detail


def test_adding_a_file_to_the_oracle_package_is_undone(tmp_path: Path) -> None:
    planted = Path(GOLDEN_DIR).parent / "_planted_by_candidate.py"
    source = CORRECT + f"open({str(planted)!r}, 'w').write('x = 1')\n" + CALL \
        + "    return _ref(R, P, Q, K, steps, alpha, beta, eps)\n"
    try:
        report = verify(_write(tmp_path, "planter", source), cases=["one_step"])
        assert report.outcome == "tampered" and "_planted_by_candidate.py (added)" in report.detail
        assert not planted.exists()
    finally:
        planted.unlink(missing_ok=True)


def test_daemonized_grandchild_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    in_call = f"""\
        import os, time
        if os.fork() == 0:  # double fork + setsid: leaves the child's session
            os.setsid()
            if os.fork() == 0:
                open({str(pid_file)!r}, "w").write(str(os.getpid()))
                time.sleep(3600)
            os._exit(0)
        while not os.path.exists({str(pid_file)!r}):
            time.sleep(0.01)
    """
    report = verify(_correct(tmp_path, "daemon", in_call=in_call), cases=["one_step"],
                    timeout=60)
    assert report.passed, report.detail
    assert _dead(int(pid_file.read_text()))


_SPIN = """\
    import os, time
    open({pids!r} + ".child", "w").write(str(os.getpid()))
    if os.fork() == 0:
        open({pids!r} + ".grandchild", "w").write(str(os.getpid()))
        while True:
            time.sleep(0.01)
    while True:
        pass
"""


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "SIGTERM"])
def test_killing_lsqmf_verify_kills_the_candidate(tmp_path: Path, signum: int) -> None:
    pids = str(tmp_path / "pid")
    spec = _write(tmp_path, "spinner", CALL + textwrap.indent(_SPIN.format(pids=pids), "    "))
    proc = subprocess.Popen([sys.executable, "-m", "lsqmf", "verify", spec, "--case",
                             "one_step", "--timeout", "600"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(2400):  # bounded wait until both are running
            if Path(pids + ".grandchild").exists() and Path(pids + ".child").exists():
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    if signum == signal.SIGTERM:
        assert proc.returncode == 130 and err.strip().splitlines()[-1] == (
            "lsqmf verify: interrupted: received SIGTERM"), err
    assert _dead(int(Path(pids + ".child").read_text()))
    assert _dead(int(Path(pids + ".grandchild").read_text()))
