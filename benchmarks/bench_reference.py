"""Time the reference loop against its compiled equivalent on the standard tutorial example.

Usage::

    python benchmarks/bench_reference.py [--repeat 5] [--out-dir reports]

Both functions run on fresh copies of the standard golden case (5 x 4, K = 2, 5000 steps), in
one process. The compiled kernel is built first and its compile time is reported separately;
then one warm-up call, then the timed calls. Each timed call includes copying ``P`` and ``Q``
(about a microsecond), for both functions. Reports the best and the median over ``--repeat``
rounds, and the ratio of the best times. Writes ``reference_speed.csv`` and
``reference_speed.md`` into ``--out-dir``.

This is a benchmark, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np

from lsqmf.kernels.registry import get_kernel
from lsqmf.oracle.golden import load_case
from lsqmf.oracle.reference import matrix_factorization, matrix_factorization_fast

REPO = Path(__file__).resolve().parents[1]


def time_calls(function: Callable[..., object], golden, number: int, repeat: int) -> list[float]:
    """Seconds per call, one value per round of ``number`` calls."""
    params = golden.params()
    per_call = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            P, Q = golden.P0.copy(), golden.Q0.copy()
            function(golden.R, P, Q, **params)
        per_call.append((time.perf_counter() - start) / number)
    return per_call


def calls_per_round(function: Callable[..., object], golden, target: float = 0.2) -> int:
    """Enough calls that one round takes about ``target`` seconds."""
    one = time_calls(function, golden, 1, 1)[0]
    return max(1, int(target / max(one, 1e-9)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds per function")
    parser.add_argument("--out-dir", type=Path, default=REPO / "reports")
    args = parser.parse_args(argv)

    golden = load_case("standard")

    start = time.perf_counter()
    get_kernel("tutorial_mf")
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    P_fast, Q_fast = golden.P0.copy(), golden.Q0.copy()
    matrix_factorization_fast(golden.R, P_fast, Q_fast, **golden.params())  # warm-up
    first_call_s = time.perf_counter() - start

    P_ref, Q_ref = golden.P0.copy(), golden.Q0.copy()
    matrix_factorization(golden.R, P_ref, Q_ref, **golden.params())
    max_diff = float(max(np.abs(P_fast - P_ref).max(), np.abs(Q_fast - Q_ref).max()))

    rows = []
    for name, function in [
        ("reference", matrix_factorization),
        ("fast", matrix_factorization_fast),
    ]:
        number = 1 if name == "reference" else calls_per_round(function, golden)
        per_call = time_calls(function, golden, number, args.repeat)
        rows.append(
            {
                "implementation": name,
                "function": f"lsqmf.oracle.reference.{function.__name__}",
                "case": "standard",
                "calls_per_round": number,
                "rounds": args.repeat,
                "best_s": min(per_call),
                "median_s": statistics.median(per_call),
                "compile_s": compile_s if name == "fast" else 0.0,
                "first_call_s": first_call_s if name == "fast" else float("nan"),
            }
        )
    ratio = rows[0]["best_s"] / rows[1]["best_s"]
    # smallest n with compile + n * fast < n * reference
    break_even = math.floor(compile_s / (rows[0]["best_s"] - rows[1]["best_s"])) + 1
    median_ratio = rows[0]["median_s"] / rows[1]["median_s"]
    for row in rows:
        row["speedup_vs_reference"] = rows[0]["best_s"] / row["best_s"]
        row["max_abs_diff_vs_reference"] = 0.0 if row["implementation"] == "reference" else max_diff

    args.out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = args.out_dir / "reference_speed.csv"
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    command = "python benchmarks/bench_reference.py" + "".join(
        f" {a}" for a in (argv if argv is not None else sys.argv[1:])
    )
    md = f"""# Reference loop vs compiled equivalent

Command: `{command}`

Case: the standard tutorial example (R 5 x 4 with 13 observed entries, K = 2, 5000 steps,
alpha = 2e-4, beta = 0.02, epsilon = 1e-3; runs all 5000 steps). Same process, fresh copies of
P and Q per call (the copy is included in both timings). The compiled kernel is built and
warmed up before timing; its build time is reported separately.

| implementation | best per call (s) | median per call (s) | calls x rounds |
|---|---:|---:|---:|
| reference (`matrix_factorization`, Python loop) | {rows[0]["best_s"]:.4g} | \
{rows[0]["median_s"]:.4g} | {rows[0]["calls_per_round"]} x {rows[0]["rounds"]} |
| fast (`matrix_factorization_fast`, numba) | {rows[1]["best_s"]:.4g} | \
{rows[1]["median_s"]:.4g} | {rows[1]["calls_per_round"]} x {rows[1]["rounds"]} |

- **Speed-up (best / best): {ratio:,.0f}x** (median / median: {median_ratio:,.0f}x; target >= 100x).
- Compile (numba `njit` with an explicit signature, once per process): {compile_s:.3g} s;
  first call after compiling: {first_call_s * 1e3:.3g} ms.
- Largest |fast - reference| over P and Q: {max_diff:.3g} (the kernel runs the same
  floating-point operations in the same order, without fast-math).
- The compile time equals about {compile_s / rows[0]["best_s"]:.1f} reference calls: counting
  the compile, the fast path is ahead from call {break_even} on in a fresh process.

Environment: Python {platform.python_version()}, numpy {np.__version__}, numba \
{version("numba")}, {platform.platform()},
{os.cpu_count()} CPU(s) visible. The kernel is single-threaded; timings are wall-clock on a
machine that may be shared with other work, so expect some noise between runs.
"""
    md_path = args.out_dir / "reference_speed.md"
    md_path.write_text(md)
    print(md)
    print(f"wrote {csv_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
