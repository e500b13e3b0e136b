"""``lsqmf verify`` (check a candidate against the golden outputs) and ``lsqmf golden``.

``lsqmf verify MODULE:FUNCTION [--atol 1e-8] [--rtol 0] [--no-check-mutation] [--case NAME ...]
[--timeout SECONDS]`` runs the candidate in a child process (the comparison runs in this one,
see :mod:`lsqmf.oracle.verify`), prints one row per golden case and exits with

== ===========================================================================================
0  every case passes
1  a case fails (wrong values, shapes, non-finite output, in-place behaviour)
2  the candidate cannot be imported, is not callable, or raises; or a bad option
3  the candidate's process ended before reporting every case (``sys.exit``, ``os._exit``,
   crash, signal)
4  the candidate ran out of time (``--timeout``, default 600 s for the whole run); it was killed
1  also: the candidate changed the golden files or lsqmf's oracle sources (they are restored)
   or wrote a result file itself (outcome ``tampered``, see :mod:`lsqmf.oracle._isolation`)
== ===========================================================================================

``lsqmf golden [--out DIR] [--force]`` regenerates the golden outputs by running the reference
loop (default: into the directory shipped with lsqmf); it refuses to overwrite existing files
without ``--force`` (exit 2).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``verify`` and ``golden`` subcommands to ``subparsers``."""
    _register_verify(subparsers)
    _register_golden(subparsers)


# duplicates: argparse subcommands are declared in one shape, one function each
def _register_verify(subparsers: Any) -> None:
    """The ``verify`` subcommand: the candidate and its options."""
    p = subparsers.add_parser(
        "verify",
        help="check a rewrite of the reference loop against the golden outputs",
        description=(
            "Run a candidate with the reference's signature, "
            "candidate(R, P, Q, K, max_steps, alpha, beta, epsilon) -> (P, Q), on every "
            "golden case and compare with the stored outputs of "
            "lsqmf.oracle.reference.matrix_factorization. The candidate runs in a child process "
            "with a time limit; the comparison runs in this one."
        ),
        epilog=(
            "exit status: 0 all cases pass; 1 a case fails; 2 the candidate cannot be imported "
            "or raises, or a bad option; 3 the candidate's process exited or crashed before "
            "reporting (sys.exit, os._exit, a signal); 4 it ran out of time (--timeout); 1 also "
            "when it changed the golden files or lsqmf's oracle sources (restored) or forged a "
            "result; 130 interrupted (Ctrl-C, SIGTERM, SIGHUP: the candidate and everything it "
            "started are killed)."
        ),
    )
    p.add_argument(
        "candidate",
        metavar="MODULE:FUNCTION",
        help="e.g. mypkg.fast:factorize or path/to/file.py:factorize (the current directory "
        "is importable)",
    )
    _add_comparison_options(p)
    _add_run_options(p)
    p.set_defaults(func=run_verify)


def _add_comparison_options(p: argparse.ArgumentParser) -> None:
    """How the candidate's outputs are compared: tolerances, the in-place check."""
    p.add_argument("--atol", type=float, default=1e-8, help="absolute tolerance (default 1e-8)")
    p.add_argument("--rtol", type=float, default=0.0, help="relative tolerance (default 0)")
    p.add_argument(
        "--no-check-mutation",
        dest="check_mutation",
        action="store_false",
        help="do not require the reference's in-place update of the caller's P and Q",
    )


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """What the candidate runs on and for how long: the cases, the time limit."""
    p.add_argument(
        "--case",
        dest="cases",
        metavar="NAME",
        nargs="+",
        action="extend",
        default=None,
        help="run only these golden cases (repeatable; default all)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="time limit of the candidate's process for all cases together (default 600)",
    )


# duplicates: argparse subcommands are declared in one shape, one function each
def _register_golden(subparsers: Any) -> None:
    """The ``golden`` subcommand: where to write, whether to overwrite."""
    g = subparsers.add_parser(
        "golden",
        help="regenerate the golden outputs of the reference loop",
        description=(
            "Run lsqmf.oracle.reference.matrix_factorization on every golden case and write one "
            ".npz "
            "per case plus manifest.json (inputs, parameters, outputs, versions). Refuses to "
            "overwrite existing files unless --force is given."
        ),
    )
    g.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="output directory (default: the golden directory inside the lsqmf package)",
    )
    g.add_argument("--force", action="store_true", help="overwrite existing golden files")
    g.set_defaults(func=run_golden)


#: Exit codes of ``lsqmf verify`` by how the run ended (a completed run: 0 pass, 1 fail, 2 raised).
EXIT_CODES = {"load_error": 2, "crashed": 3, "timeout": 4, "tampered": 1}


def run_verify(args: argparse.Namespace) -> int:
    """Body of ``lsqmf verify``; returns the exit code."""
    from ..oracle.verify import verify

    report = verify(
        args.candidate,
        atol=args.atol,
        rtol=args.rtol,
        check_mutation=args.check_mutation,
        cases=args.cases,
        timeout=args.timeout,
    )
    if report.outcome == "load_error":
        print(f"lsqmf verify: cannot load candidate {args.candidate!r}: {report.detail}",
              file=sys.stderr)
        return EXIT_CODES["load_error"]
    print(_format_report(report))
    if report.outcome != "completed":
        print(f"lsqmf verify: {report.outcome}: {report.detail}", file=sys.stderr)
        return EXIT_CODES[report.outcome]
    if report.errored:
        return 2
    return 0 if report.passed else 1


def _format_report(report: Any) -> str:
    header = ("case", "max|dP|", "max|dQ|", "in place", "result")
    rows = []
    for r in report.results:
        if not report.check_mutation:
            mutation = "off"
        elif r.mutation_ok is None:
            mutation = "n/a"
        else:
            mutation = "ok" if r.mutation_ok else "WRONG"
        result = "pass" if r.passed else ("ERROR" if r.error else "FAIL")
        if r.reason.startswith("not completed"):
            result = "not run"
        rows.append((r.case, _num(r.max_abs_diff_P), _num(r.max_abs_diff_Q), mutation, result))
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    lines = [
        f"candidate: {report.candidate}",
        f"tolerance: |actual - expected| <= {report.atol:g} + {report.rtol:g} * |expected|"
        + ("" if report.check_mutation else "  (in-place check off)"),
        "",
        "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
        "  ".join("-" * w for w in widths),
    ]
    lines += ["  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip()
              for row in rows]
    problems = [r for r in report.results if not r.passed]
    if problems:
        lines.append("")
        for r in problems:
            detail = r.error if r.error else r.reason
            lines.append(f"{r.case}: {detail}")
    n = len(report.results)
    lines.append("")
    if report.outcome == "crashed":
        lines.append(f"CRASHED: {report.detail}")
    elif report.outcome == "timeout":
        lines.append(f"TIMEOUT: {report.detail}")
    elif report.outcome == "tampered":
        lines.append(f"TAMPERED: {report.detail}")
    elif report.errored:
        n_err = sum(r.error is not None for r in report.results)
        lines.append(f"ERROR: the candidate raised on {n_err} of {n} case(s)")
    elif report.passed:
        lines.append(f"OK: all {n} case(s) pass")
    else:
        lines.append(f"FAILED: {report.n_failed} of {n} case(s)")
    return "\n".join(lines)


def _num(x: float) -> str:
    if math.isnan(x):
        return "-"
    return f"{x:.3e}"


def run_golden(args: argparse.Namespace) -> int:
    """Body of ``lsqmf golden``; returns the exit code."""
    from ..oracle.golden import GOLDEN_DIR, generate_golden

    out = GOLDEN_DIR if args.out is None else args.out
    command = "lsqmf golden" + ("" if args.out is None else f" --out {args.out}") + (
        " --force" if args.force else ""
    )

    def report(data: Any, path: Path) -> None:
        stop = " (stopped on epsilon)" if data.n_steps < data.max_steps else ""
        print(f"wrote {path}  steps: {data.n_steps}/{data.max_steps}{stop}")

    try:
        written = generate_golden(out, force=args.force, command=command, callback=report)
    except FileExistsError as err:
        print(f"lsqmf golden: {err}", file=sys.stderr)
        return 2
    print(f"wrote {written[-1]}")
    return 0
