"""Ctrl-C latency of ``lsqmf bench`` inside a long dense cell (issue #22).

Starts ``python -m lsqmf bench`` on a one-cell grid whose cell is a long ``trf``/``exact``
solve (n = 40, rank 0.8 n: tens of seconds), sends SIGINT after ``--wait`` seconds (inside the
cell), and reports how long the process took to exit, its exit code and what it said on
stderr.

Measured (shared 2-core machine, load from other work): SIGINT 8 s into the n = 40 cell, exit
130 after 13.1 s, with the message naming the abandoned cell. The cells run in a helper thread
so that the main thread can act on Ctrl-C, but scipy.linalg's LAPACK wrappers (the SVD of
``trf``/``exact``) hold the interpreter lock for the whole call (a 3000 x 2300
``scipy.linalg.svd`` in a thread: the waiting thread did not run for 98 s), so the interrupt
waits for the running SVD (one per iteration), not for the whole solve. Acting within a
second in such a cell needs the cell in a child process (not done yet).

    python benchmarks/bench_ctrl_c.py [--wait 8] [--n 40]
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GRID = """
name = "ctrl-c"
problems = "seed"
[problem]
n = [{n}]
k_factor = [0.8]
sparsity = [0.25]
[solve]
missing = 0
[[configs]]
method = "trf"
tr_solver = "exact"
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wait", type=float, default=8.0,
                        help="seconds before SIGINT (after start-up, inside the cell)")
    parser.add_argument("--n", type=int, default=40, help="rows of the one problem")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        grid = Path(tmp) / "grid.toml"
        grid.write_text(GRID.format(n=args.n), encoding="utf-8")
        out = Path(tmp) / "out"
        proc = subprocess.Popen(
            [sys.executable, "-m", "lsqmf", "bench", "--grid", str(grid), "--out", str(out),
             "--repeats", "1", "--no-plots", "--progress"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(args.wait)
        if proc.poll() is not None:
            print(f"the run ended before the interrupt (exit {proc.returncode}); use a larger "
                  "--n or a smaller --wait")
            return 1
        t0 = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate()
        latency = time.perf_counter() - t0
    print(f"SIGINT after {args.wait:g} s; exit {proc.returncode} after {latency:.2f} s")
    print("stderr:")
    print(stderr.rstrip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
