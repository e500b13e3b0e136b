"""Does OpenMP's wait policy matter for lsqmf's parallel kernels?

numba runs its parallel kernels (``als_rows``, the Jacobian products; ``parallel=True``) on its
OpenMP threading layer when it is available (``numba.threading_layer()`` is ``'omp'`` here).
GNU OpenMP's idle threads spin for a while after each parallel region before they sleep;
``OMP_WAIT_POLICY=passive`` makes them sleep at once, and lsqmf sets it when the environment
does not (:func:`lsqmf.runtime.threads.passive_openmp_wait`). Spinning threads compete with the main
thread's serial numpy work between kernel calls, which matters on a busy machine, while
sleeping threads take longer to wake for the next kernel call.

Run from the repository root::

    python benchmarks/bench_omp_wait.py
    python benchmarks/bench_omp_wait.py --repeats 7

For each case (``lsqmf evaluate`` on the built-in data, split as in ``bench_startup.py``:
``als`` at its defaults, which alternates ``als_rows`` with numpy work; ``lsq`` with
``--jac operator --max-iter 5``, many short Jacobian-product launches inside LSMR) and
each policy (GNU OpenMP's default: the variable unset, with lsqmf's setting switched off in
the child; ``passive``: lsqmf's setting), one fresh process, rounds interleaved in a
shuffled order with a filled kernel cache. Reported: ``fit_s`` (what the command reports) and
the process's CPU time (user + system), medians and ranges, and the passive/default ratio
within each round. Results: ``reports/startup/omp_wait.csv``; the README of
``reports/startup`` discusses them.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_startup import OUT, ROOT, write_data

CASES = {
    "als": ["--solver", "als"],
    "lsq_operator": ["--solver", "lsq", "--jac", "operator", "--max-iter", "5"],
}
#: ``default``: GNU OpenMP's own default (the variable unset, and lsqmf's setting switched off
#: in the child); ``passive``: what lsqmf sets when the environment does not say.
POLICIES = ("default", "passive")

_CHILD = """
import sys
from lsqmf.kernels import registry
if {disable}:
    registry.passive_openmp_wait = lambda: None  # leave OMP_WAIT_POLICY unset
from lsqmf.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


def run(case: str, policy: str, data: tuple[Path, Path], cache: Path) -> dict[str, float]:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), PYTHONPATH=str(ROOT))
    env.pop("OMP_WAIT_POLICY", None)
    args = [sys.executable, "-c", _CHILD.format(disable=policy == "default"), "evaluate",
            str(data[0]), str(data[1]), *CASES[case], "--seed", "0", "--json", "--no-progress"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"fit_s": result["fit_s"], "cpu_s": cpu, "rmse": result["rmse"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    load_start = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="lsqmf_omp_") as tmp:
        work = Path(tmp)
        data = write_data(work)
        cache = work / "cache"
        for case in CASES:  # fill the kernel cache
            run(case, "default", data, cache)
        rng = random.Random(args.seed)
        for r in range(args.repeats):
            order = [(c, p) for c in CASES for p in POLICIES]
            rng.shuffle(order)
            for case, policy in order:
                out = run(case, policy, data, cache)
                rows.append({"round": r, "case": case, "policy": policy, **out})
                print(f"round {r} {case:13s} {policy:8s} fit {out['fit_s']:.3f} s "
                      f"cpu {out['cpu_s']:.3f} s", flush=True)
    load_end = os.getloadavg()
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "omp_wait.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["round", "case", "policy", "fit_s", "cpu_s",
                                                "rmse"])
        writer.writeheader()
        writer.writerows(rows)
    print(f"load average {load_start} -> {load_end}")
    for case in CASES:
        for measure in ("fit_s", "cpu_s"):
            cell = {p: {r["round"]: r[measure] for r in rows
                        if r["case"] == case and r["policy"] == p} for p in POLICIES}
            ratios = [cell["passive"][k] / cell["default"][k] for k in cell["default"]]
            text = "  ".join(
                f"{p} {statistics.median(v.values()):.3f} ({min(v.values()):.3f}-"
                f"{max(v.values()):.3f})" for p, v in cell.items())
            print(f"{case:13s} {measure}: {text}  passive/default {statistics.median(ratios):.3f}"
                  f" ({min(ratios):.3f}-{max(ratios):.3f})")


if __name__ == "__main__":
    main()
