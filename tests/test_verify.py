"""``lsqmf.oracle.verify``, ``lsqmf verify`` and the golden files (``lsqmf golden``)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from lsqmf.cli import main
from lsqmf.oracle.golden import (
    CASES,
    GOLDEN_DIR,
    case_names,
    generate_golden,
    load_case,
    make_inputs,
)
from lsqmf.oracle.verify import CaseResult, VerifyReport, load_candidate, verify

# Candidates are written to files, as a user's would be. The loop is an independent
# transcription of the reference's rules on Python lists, written back into the caller's
# arrays at the end. The variants differ in one rule each.
CANDIDATE_TEMPLATE = '''
import numpy as np


def factorize(R, P, Q, K, max_steps, alpha, beta, epsilon):
    r, p, q = R.tolist(), P.tolist(), Q.tolist()  # q[j][k]: Q is (M, K)
    n, m = len(r), len(r[0])
    for _ in range(max_steps):
        for i in range(n):
            for j in range(m):
                if r[i][j] <= 0:
                    continue
                e = 2 * (r[i][j] - sum_dot(p[i], q[j], K))
                for k in range(K):
{k_loop}
        err = 0.0
        for i in range(n):
            for j in range(m):
                if r[i][j] > 0:
                    err += (r[i][j] - sum_dot(p[i], q[j], K)) ** 2
                    for k in range(K):
                        err += beta / 2 * (p[i][k] ** 2 + q[j][k] ** 2)
        if err < epsilon:
            break
{finish}


def sum_dot(a, b, K):
    s = 0.0
    for k in range(K):
        s += a[k] * b[k]
    return s
'''

K_LOOPS = {
    "correct": """
                    p[i][k] += alpha * (e * q[j][k] - beta * p[i][k])
                    q[j][k] += alpha * (e * p[i][k] - beta * q[j][k])
""",
    "q_before_p": """
                    q[j][k] += alpha * (e * p[i][k] - beta * q[j][k])
                    p[i][k] += alpha * (e * q[j][k] - beta * p[i][k])
""",
    "e_per_k": """
                    e = 2 * (r[i][j] - sum_dot(p[i], q[j], K))
                    p[i][k] += alpha * (e * q[j][k] - beta * p[i][k])
                    q[j][k] += alpha * (e * p[i][k] - beta * q[j][k])
""",
}

FINISHES = {
    "in_place": """
    P[:] = p
    Q[:] = q
    return P, Q
""",
    "copies": """
    return np.array(p), np.array(q)
""",
    "transposed_q": """
    P[:] = p
    Q[:] = q
    return P, Q.T
""",
}

BROKEN = {
    "raises.py": "def factorize(*args):\n    raise RuntimeError('boom')\n",
    "syntax_error.py": "def factorize(:\n",
    "import_error.py": "import lsqmf_no_such_module\n\ndef factorize(*args):\n    pass\n",
    "not_callable.py": "factorize = 42\n",
}

# Cases that keep the pure-Python candidates quick; together they cover K = 1, 2, 3,
# zero and negative entries, the single step and the epsilon stop.
QUICK = ["rank1_tiny", "one_step", "zero_steps", "signed_k3", "epsilon_stop"]


def indent(block, spaces):
    return textwrap.indent(textwrap.dedent(block).strip("\n"), " " * spaces)


def candidate_source(k_loop="correct", finish="in_place"):
    return CANDIDATE_TEMPLATE.format(
        k_loop=indent(K_LOOPS[k_loop], 20), finish=indent(FINISHES[finish], 4)
    )


@pytest.fixture(scope="module")
def candidates(tmp_path_factory):
    """Directory of candidate files, named ``<k_loop>__<finish>.py`` and as in BROKEN."""
    root = tmp_path_factory.mktemp("candidates")
    for k_loop in K_LOOPS:
        for finish in FINISHES:
            (root / f"{k_loop}__{finish}.py").write_text(candidate_source(k_loop, finish))
    for name, source in BROKEN.items():
        (root / name).write_text(source)
    return root


def spec(candidates, stem):
    return f"{candidates / stem}.py:factorize"


@pytest.fixture
def keep_sys_path(monkeypatch):
    """`lsqmf verify` makes the current directory importable; undo that after the test."""
    monkeypatch.setattr(sys, "path", list(sys.path))


# --------------------------------------------------------------------------------------------
# golden files


def test_manifest_lists_the_stored_cases_with_provenance():
    manifest = json.loads((GOLDEN_DIR / "manifest.json").read_text())
    names = list(manifest["cases"])
    assert names == list(case_names()) == list(CASES)
    assert len(names) >= 7
    assert "standard" in names
    assert any(entry["stopped_on_epsilon"] for entry in manifest["cases"].values())
    for name, entry in manifest["cases"].items():
        golden = load_case(name)
        assert entry["n_steps"] == golden.n_steps
        assert {k: entry[k] for k in golden.params()} == golden.params()
        assert entry["shape"] == list(golden.R.shape)
        assert entry["stopped_on_epsilon"] == (golden.n_steps < golden.max_steps)
        assert {"python", "numpy", "scipy", "platform"} <= set(entry["environment"])
        assert entry["command"].startswith("lsqmf golden")


def test_golden_cases_cover_shapes_ranks_and_step_counts():
    goldens = [load_case(n) for n in case_names()]
    assert len({g.R.shape for g in goldens}) >= 6
    assert {g.K for g in goldens} >= {1, 2, 3, 4, 5}
    assert {0, 1, 5000} <= {g.max_steps for g in goldens}
    assert any(np.any(g.R < 0) for g in goldens)


def test_stored_inputs_match_their_recipes():
    for name in CASES:
        golden = load_case(name)
        R, P0, Q0 = make_inputs(name)
        assert_array_equal(golden.R, R)
        assert_array_equal(golden.P0, P0)
        assert_array_equal(golden.Q0, Q0)


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    """A full regeneration through the CLI, and what it printed."""
    out = tmp_path_factory.mktemp("golden")
    code = main(["golden", "--out", str(out)])
    return out, code


def test_regenerated_golden_set_equals_the_stored_one(regenerated):
    out, code = regenerated
    assert code == 0
    assert case_names(out) == case_names()
    for name in case_names():
        fresh, stored = load_case(name, out), load_case(name)
        assert_array_equal(fresh.R, stored.R)
        assert_array_equal(fresh.P0, stored.P0)
        assert_array_equal(fresh.Q0, stored.Q0)
        assert fresh.params() == stored.params()
        assert fresh.n_steps == stored.n_steps
        assert_allclose(fresh.P, stored.P, rtol=0, atol=1e-12)
        assert_allclose(fresh.Q, stored.Q, rtol=0, atol=1e-12)


def test_golden_command_refuses_to_overwrite_without_force(regenerated, capsys):
    out, _ = regenerated
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert main(["golden", "--out", str(out)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_generate_golden_force_overwrites_and_keeps_other_manifest_entries(tmp_path):
    written = generate_golden(tmp_path, cases=["zero_steps", "one_step"])
    assert [p.name for p in written] == ["zero_steps.npz", "one_step.npz", "manifest.json"]
    with pytest.raises(FileExistsError, match="refusing to overwrite 2 existing golden file"):
        generate_golden(tmp_path, cases=["zero_steps"])
    (tmp_path / "zero_steps.npz").write_bytes(b"corrupted")
    generate_golden(tmp_path, cases=["zero_steps"], force=True)
    assert case_names(tmp_path) == ("one_step", "zero_steps")
    assert_array_equal(load_case("zero_steps", tmp_path).P, load_case("zero_steps").P)
    assert not list(tmp_path.glob(".*tmp"))  # no temporary files left behind


def test_generate_golden_rejects_unknown_case(tmp_path):
    with pytest.raises(ValueError, match=r"`cases` must name golden cases.*got 'nope'"):
        generate_golden(tmp_path, cases=["nope"])
    assert not list(tmp_path.iterdir())


def test_load_case_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no golden file for case 'nope'"):
        load_case("nope")
    with pytest.raises(FileNotFoundError, match="lsqmf golden"):
        case_names(tmp_path)


# --------------------------------------------------------------------------------------------
# verify(): the Python API


def test_reference_itself_passes_with_zero_difference():
    from lsqmf.oracle.reference import matrix_factorization

    report = verify(matrix_factorization, atol=0.0)
    assert isinstance(report, VerifyReport)
    assert report.passed and not report.errored
    assert [r.case for r in report.results] == list(case_names())
    assert all(r.max_abs_diff_P == 0.0 == r.max_abs_diff_Q for r in report.results)
    assert all(r.mutation_ok is True for r in report.results)


def test_correct_candidate_passes(candidates):
    candidate = load_candidate(spec(candidates, "correct__in_place"))
    report = verify(candidate, atol=1e-10, cases=[*QUICK, "standard"])
    assert report.passed, report.to_records()
    assert report.n_failed == 0


@pytest.mark.parametrize("variant", ["q_before_p", "e_per_k"])
def test_subtly_wrong_candidates_fail(candidates, variant):
    candidate = load_candidate(spec(candidates, f"{variant}__in_place"))
    report = verify(candidate, cases=QUICK)
    assert not report.passed and not report.errored
    by_case = {r.case: r for r in report.results}
    # with K = 1 there is one k per entry, so recomputing e per k changes nothing;
    # zero steps change nothing at all
    should_pass = {"zero_steps"} | ({"rank1_tiny"} if variant == "e_per_k" else set())
    assert {c for c, r in by_case.items() if r.passed} == should_pass
    for name in set(QUICK) - should_pass:
        row = by_case[name]
        assert max(row.max_abs_diff_P, row.max_abs_diff_Q) > 1e-8
        assert "outside tolerance" in row.reason


def test_tolerances_decide(candidates):
    candidate = load_candidate(spec(candidates, "e_per_k__in_place"))
    row = verify(candidate, cases=["one_step"]).results[0]
    diff = max(row.max_abs_diff_P, row.max_abs_diff_Q)
    assert verify(candidate, atol=2 * diff, cases=["one_step"]).passed
    assert verify(candidate, rtol=1.0, cases=["one_step"]).passed
    assert not verify(candidate, atol=diff / 2, cases=["one_step"]).passed


def test_right_answers_without_in_place_update_fail_the_mutation_check(candidates):
    candidate = load_candidate(spec(candidates, "correct__copies"))
    report = verify(candidate, cases=["one_step", "signed_k3"])
    assert not report.passed
    for row in report.results:
        assert row.max_abs_diff_P < 1e-12 and row.max_abs_diff_Q < 1e-12
        assert row.mutation_ok is False
        assert "in-place check" in row.reason
    relaxed = verify(candidate, cases=["one_step", "signed_k3"], check_mutation=False)
    assert relaxed.passed
    assert all(row.mutation_ok is None for row in relaxed.results)


def test_candidate_that_modifies_r_fails_the_mutation_check():
    from lsqmf.oracle.reference import matrix_factorization

    def scribbles_on_r(R, P, Q, *args):
        out = matrix_factorization(R, P, Q, *args)
        R[0, 0] = -1.0
        return out

    row = verify(scribbles_on_r, cases=["one_step"]).results[0]
    assert row.mutation_ok is False and "R was modified" in row.reason
    assert verify(scribbles_on_r, cases=["one_step"], check_mutation=False).passed


def test_wrong_output_shape_fails_without_error(candidates):
    candidate = load_candidate(spec(candidates, "correct__transposed_q"))
    row = verify(candidate, cases=["one_step"]).results[0]
    assert not row.passed and row.error is None and row.mutation_ok is True
    assert np.isnan(row.max_abs_diff_Q)
    assert "Q has shape (2, 3), expected (3, 2)" in row.reason


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        (None, "expected a pair (P, Q)"),
        ((np.zeros((4, 2)), "text"), "Q is not a numeric array"),
        ((np.full((4, 2), np.nan), np.zeros((3, 2))), "P has non-finite entries"),
    ],
    ids=["none", "text", "nan"],
)
def test_malformed_outputs_fail(output, reason):
    row = verify(lambda *args: output, cases=["one_step"]).results[0]
    assert not row.passed and row.error is None
    assert reason in row.reason


def test_candidate_that_raises_is_reported_not_raised():
    def boom(*args):
        raise ZeroDivisionError("no luck")

    report = verify(boom, cases=["one_step", "zero_steps"])
    assert report.errored and not report.passed
    assert all(r.error == "ZeroDivisionError: no luck" for r in report.results)
    assert all(np.isnan(r.max_abs_diff_P) and r.mutation_ok is None for r in report.results)


def test_candidate_gets_copies_of_the_golden_inputs():
    seen = []

    def spy(R, P, Q, K, max_steps, alpha, beta, epsilon):
        seen.append((R, P, Q))
        P[:] = 0.0
        return P, Q

    verify(spy, cases=["one_step"])
    golden = load_case("one_step")
    R, P, _ = seen[0]
    assert not np.shares_memory(P, golden.P0)
    assert not np.shares_memory(R, golden.R)
    assert P.flags.c_contiguous and P.flags.writeable and P.dtype == np.float64
    assert np.all(golden.P0 != 0.0)  # the stored input was not touched
    assert verify(spy, cases=["one_step"]).results[0].passed is False


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"atol": -1.0}, ValueError, "`atol` must be >= 0.0; got -1.0"),
        ({"rtol": float("inf")}, ValueError, "`rtol` must be finite"),
        ({"check_mutation": "yes"}, TypeError, "`check_mutation` must be True or False"),
        ({"cases": ["standard", "nope"]}, ValueError, "got unknown 'nope'"),
        ({"cases": []}, ValueError, "at least one golden case"),
    ],
    ids=["atol", "rtol", "check_mutation", "unknown-case", "no-case"],
)
def test_verify_argument_checks(kwargs, error, match):
    with pytest.raises(error, match=match):
        verify(lambda *a: a, **kwargs)


def test_verify_rejects_non_callable():
    with pytest.raises(TypeError, match="`candidate` must be callable or a 'MODULE:FUNCTION' "
                       "spec; got 42"):
        verify(42)


def test_verify_spec_runs_in_a_child_process():
    # a str is a spec (it used to be refused): imported and run in a child process
    report = verify("lsqmf.oracle.reference:matrix_factorization", cases=["one_step", "rank1_tiny"])
    assert report.passed and report.outcome == "completed"
    assert report.candidate == "lsqmf.oracle.reference:matrix_factorization"


def test_case_result_is_frozen():
    row = CaseResult("x", 0.0, 0.0, True, True)
    with pytest.raises(AttributeError):
        row.passed = False  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# load_candidate()


def test_load_candidate_from_module_and_dotted_attribute(tmp_path, monkeypatch):
    from lsqmf.oracle.reference import matrix_factorization

    assert load_candidate("lsqmf.oracle.reference:matrix_factorization") is matrix_factorization
    (tmp_path / "user_mod_for_lsqmf_test.py").write_text(
        "class Impl:\n    @staticmethod\n    def run(*a):\n        return a\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    run = load_candidate("user_mod_for_lsqmf_test:Impl.run")
    assert run(1, 2) == (1, 2)


@pytest.mark.parametrize(
    ("spec_text", "error", "match"),
    [
        ("no_colon", ValueError, "`spec` must be 'MODULE:FUNCTION'"),
        ("mod:", ValueError, "`spec` must be 'MODULE:FUNCTION'"),
        ("lsqmf_no_such_module:f", ImportError, "No module named 'lsqmf_no_such_module'"),
        ("lsqmf.oracle.reference:nope", ImportError, "has no attribute 'nope'"),
        ("lsqmf.oracle.reference:__doc__", TypeError, "is not callable"),
        ("missing_dir/missing.py:f", ImportError, "no such file"),
    ],
    ids=["no-colon", "no-function", "no-module", "no-attribute", "not-callable", "no-file"],
)
def test_load_candidate_errors(spec_text, error, match):
    with pytest.raises(error, match=match):
        load_candidate(spec_text)


@pytest.mark.parametrize(
    ("stem", "error", "match"),
    [
        ("syntax_error", ImportError, "could not import .*SyntaxError"),
        ("import_error", ImportError, "lsqmf_no_such_module"),
        ("not_callable", TypeError, "is not callable; got 42"),
    ],
)
def test_load_candidate_errors_from_files(candidates, stem, error, match):
    with pytest.raises(error, match=match):
        load_candidate(spec(candidates, stem))


def test_load_candidate_type_check():
    with pytest.raises(TypeError, match="`spec` must be a str"):
        load_candidate(42)


# --------------------------------------------------------------------------------------------
# lsqmf verify, in process


@pytest.mark.usefixtures("keep_sys_path")
def test_cli_correct_candidate_exits_0(candidates, capsys):
    code = main(["verify", spec(candidates, "correct__in_place"), "--atol", "1e-10",
                 "--case", *QUICK])
    out = capsys.readouterr().out
    assert code == 0
    assert f"OK: all {len(QUICK)} case(s) pass" in out
    for name in QUICK:
        assert any(line.startswith(name) and line.endswith("pass") for line in out.splitlines())


@pytest.mark.usefixtures("keep_sys_path")
@pytest.mark.parametrize("variant", ["q_before_p", "e_per_k"])
def test_cli_wrong_candidate_exits_1(candidates, capsys, variant):
    code = main(["verify", spec(candidates, f"{variant}__in_place"), "--case", "one_step",
                 "--case", "zero_steps"])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAILED: 1 of 2 case(s)" in out
    assert "one_step: P outside tolerance" in out


@pytest.mark.usefixtures("keep_sys_path")
def test_cli_mutation_check_and_its_switch(candidates, capsys):
    target = spec(candidates, "correct__copies")
    assert main(["verify", target, "--case", "one_step"]) == 1
    out = capsys.readouterr().out
    assert "WRONG" in out and "in-place check" in out
    assert main(["verify", target, "--case", "one_step", "--no-check-mutation"]) == 0
    out = capsys.readouterr().out
    assert "in-place check off" in out and "OK: all 1 case(s) pass" in out


@pytest.mark.usefixtures("keep_sys_path")
@pytest.mark.parametrize(
    ("stem", "message"),
    [
        ("raises", "RuntimeError: boom"),
        ("syntax_error", "cannot load candidate"),
        ("import_error", "lsqmf_no_such_module"),
        ("not_callable", "is not callable"),
        ("does_not_exist", "no such file"),
    ],
)
def test_cli_broken_candidate_exits_2(candidates, capsys, stem, message):
    code = main(["verify", spec(candidates, stem), "--case", "one_step"])
    captured = capsys.readouterr()
    assert code == 2
    assert message in captured.out + captured.err


@pytest.mark.usefixtures("keep_sys_path")
def test_cli_bad_options_exit_2(capsys):
    assert main(["verify", "lsqmf.oracle.reference:matrix_factorization", "--case", "nope"]) == 2
    assert "got unknown 'nope'" in capsys.readouterr().err
    assert main(["verify", "lsqmf.oracle.reference:matrix_factorization", "--atol", "-1"]) == 2
    assert "`atol` must be >= 0.0" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# lsqmf verify, as a user runs it


def run_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "lsqmf", *args], capture_output=True, text=True, cwd=cwd
    )


def test_subprocess_exit_codes(candidates):
    ok = run_cli("verify", spec(candidates, "correct__in_place"), "--case", "one_step",
                 "epsilon_stop")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "OK: all 2 case(s) pass" in ok.stdout
    wrong = run_cli("verify", spec(candidates, "q_before_p__in_place"), "--case", "one_step")
    assert wrong.returncode == 1, wrong.stdout + wrong.stderr
    broken = run_cli("verify", spec(candidates, "raises"), "--case", "one_step")
    assert broken.returncode == 2
    assert "RuntimeError: boom" in broken.stdout


def test_subprocess_module_in_current_directory(candidates):
    # MODULE:FUNCTION resolves modules in the current directory, as `python -m` does
    result = run_cli("verify", "correct__in_place:factorize", "--case", "one_step",
                     cwd=candidates)
    assert result.returncode == 0, result.stdout + result.stderr


def test_console_script_when_installed(candidates):
    script = Path(sys.executable).with_name("lsqmf")
    if not script.exists():
        pytest.skip("the lsqmf console script is not installed next to this interpreter")
    result = subprocess.run(
        [str(script), "verify", "correct__in_place:factorize", "--case", "zero_steps"],
        capture_output=True, text=True, cwd=candidates,
    )
    assert result.returncode == 0, result.stdout + result.stderr
