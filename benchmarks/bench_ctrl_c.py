"""Ctrl-C latency of ``lsqmf bench`` inside a long dense cell, and the cost of timing cells in
a child process (issue #22).

``latency``: starts ``lsqmf bench`` on a one-cell grid whose cell is a long ``trf``/``exact``
solve (n = 40, rank 0.8 n: a minute of CPU), waits until the process that times the cell has
spent ``--cpu`` seconds of CPU (so the signal lands inside the solve, whatever the machine's
load), sends SIGINT, and reports how long the process took to exit, its exit code and what it
said on stderr; ``--repeats`` times, with the median and the range. ``--mode child`` is the
default harness (the cell in a child process that the harness kills); ``--mode in-process``
runs the same command with the cells in the bench process itself (``run_grid(...,
isolate=False)``, the path before the child process: a helper thread, which scipy.linalg's SVD
blocks by holding the interpreter lock).

``timings``: times a small grid with both paths, in fresh processes, interleaved (child,
in-process, in-process, child, ...), ``--rounds`` runs each, and reports per cell the median
``dur`` of each path and their ratio (child / in-process), and the geometric mean of the ratios.

    python benchmarks/bench_ctrl_c.py latency [--mode child|in-process|both] [--repeats 5]
    python benchmarks/bench_ctrl_c.py timings [--rounds 4]

Measured: see ``reports/ctrl_c/README.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

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

#: The small grid of ``timings``: cells of 10 ms to a few seconds, dense and LSMR.
SMALL_GRID = """
name = "ctrl-c-timings"
problems = "seed"
repeats = 3
[problem]
n = [10, 20, 30]
k_factor = [0.5]
sparsity = [0.25]
[solve]
missing = 0
[[configs]]
method = "trf"
tr_solver = ["exact", "lsmr"]
[[configs]]
method = "lm"
tr_solver = "none"
"""

#: ``lsqmf bench ...`` with the cells in this process (``isolate=False``) when argv[1] says so.
DRIVER = """
import sys
from lsqmf.bench import harness
from lsqmf.cli import main
if sys.argv[1] == "in-process":
    harness.run_grid.__kwdefaults__["isolate"] = False
sys.argv = ["lsqmf", *sys.argv[2:]]
sys.exit(main())
"""


def _bench(mode: str, args: list[str], **popen: object) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", DRIVER, mode, "bench", *args], text=True,
                            **popen)  # type: ignore[call-overload]


def _timing_cpu(proc: psutil.Process, mode: str) -> float:
    """CPU seconds of the process that times the cell (the child in ``child`` mode)."""
    try:
        target = proc if mode == "in-process" else next(iter(proc.children()), None)
        if target is None:
            return 0.0
        t = target.cpu_times()
        return float(t.user + t.system)
    except psutil.Error:
        return 0.0


def one_latency(mode: str, n: int, cpu: float) -> dict[str, object]:
    """One run: SIGINT once the timing process has spent ``cpu`` s of CPU; the latency."""
    with tempfile.TemporaryDirectory() as tmp:
        grid = Path(tmp) / "grid.toml"
        grid.write_text(GRID.format(n=n), encoding="utf-8")
        proc = _bench(mode, ["--grid", str(grid), "--out", str(Path(tmp) / "out"),
                             "--repeats", "1", "--no-plots", "--no-progress"],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        watched = psutil.Process(proc.pid)
        started = time.perf_counter()
        while _timing_cpu(watched, mode) < cpu and proc.poll() is None:
            time.sleep(0.05)
        if proc.poll() is not None:
            raise SystemExit(f"the run ended before the interrupt (exit {proc.returncode}); "
                             "use a larger --n or a smaller --cpu")
        at = time.perf_counter() - started
        t0 = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate()
        latency = time.perf_counter() - t0
    return {"mode": mode, "signal_after_s": round(at, 2), "latency_s": round(latency, 3),
            "exit": proc.returncode, "stderr": stderr.strip()}


def latency(args: argparse.Namespace) -> None:
    modes = ["child", "in-process"] if args.mode == "both" else [args.mode]
    found: dict[str, list[float]] = {m: [] for m in modes}
    for i in range(args.repeats):
        for mode in modes if i % 2 == 0 else modes[::-1]:  # interleaved
            run = one_latency(mode, args.n, args.cpu)
            found[mode].append(float(run["latency_s"]))  # type: ignore[arg-type]
            print(json.dumps({k: v for k, v in run.items() if k != "stderr"}), flush=True)
            if i == 0:
                print("  stderr: " + str(run["stderr"]).replace("\n", "\n          "))
    for mode, values in found.items():
        print(f"{mode}: SIGINT -> exit, median {statistics.median(values):.2f} s, "
              f"range {min(values):.2f}-{max(values):.2f} s over {len(values)} runs")


def _run_small(mode: str, out: Path, grid: Path) -> dict[str, float]:
    done = _bench(mode, ["--grid", str(grid), "--out", str(out), "--no-plots",
                         "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, err = done.communicate()
    if done.returncode != 0:
        raise SystemExit(f"{mode} run failed: {err}")
    import pandas as pd

    res = pd.read_csv(out / "results.csv")
    label = (res["method"] + "-" + res["tr_solver"] + " n=" + res["n"].astype(str))
    return dict(zip(label, res["dur"], strict=True))


def timings(args: argparse.Namespace) -> None:
    per: dict[str, dict[str, list[float]]] = {"child": {}, "in-process": {}}
    with tempfile.TemporaryDirectory() as tmp:
        grid = Path(tmp) / "grid.toml"
        grid.write_text(SMALL_GRID, encoding="utf-8")
        for r in range(args.rounds):
            order = ["child", "in-process"] if r % 2 == 0 else ["in-process", "child"]
            for mode in order:
                for cell, dur in _run_small(mode, Path(tmp) / f"{mode}-{r}", grid).items():
                    per[mode].setdefault(cell, []).append(dur)
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    print(f"{'cell':22} {'child s':>9} {'in-process s':>13} {'ratio':>7}")
    logs = []
    for cell in per["child"]:
        a = statistics.median(per["child"][cell])
        b = statistics.median(per["in-process"][cell])
        logs.append(math.log(a / b))
        print(f"{cell:22} {a:9.4f} {b:13.4f} {a / b:7.3f}")
    spread = [min(v) for v in per["child"].values()]
    ratio = math.exp(statistics.mean(logs))
    print(f"geometric mean of the ratios (child / in-process): {ratio:.3f} over {len(logs)} "
          f"cells x {args.rounds} runs each (best of 3 repeats per run; "
          f"cells {min(spread):.3f}-{max(spread):.3f} s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    lat = sub.add_parser("latency", help="SIGINT inside a long dense cell")
    lat.add_argument("--mode", choices=["child", "in-process", "both"], default="child")
    lat.add_argument("--repeats", type=int, default=5)
    lat.add_argument("--cpu", type=float, default=6.0,
                     help="CPU seconds of the timing process before SIGINT (inside the cell)")
    lat.add_argument("--n", type=int, default=40, help="rows of the one problem")
    tim = sub.add_parser("timings", help="per-cell times: child process vs in-process")
    tim.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    latency(args) if args.what == "latency" else timings(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
