"""Distributed ALS (lsqmf.solvers.als_dask): memory and traffic per worker, a cost model, and the
single-machine limit of ``als``.

Commands (results under reports/dask/):

    python benchmarks/bench_dask_als.py single --sizes 1e6 5e6        # single_machine.csv
    python benchmarks/bench_dask_als.py cluster --workers 2 4 8       # cluster.csv
    python benchmarks/bench_dask_als.py model --nnz 1e9               # cost_model.csv

``single`` fits ``als`` (rank 10, 3 sweeps, the default objective) on synthetic ratings of each
size in a child process and records the generation and fit times and the child's peak RSS.
``cluster`` starts a LocalCluster of N worker processes (1 thread each) on 127.0.0.1, fits
``als_dask`` with one block per worker on one synthetic problem and records, per worker, the
bytes of rating blocks it holds, its RSS, and the bytes it received per sweep (dask's
transfer log), next to the planned message bytes (``plan_traffic``) and the broadcast
alternative. The machine has 2 cores: times on N > 2 workers measure contention, not speed-up.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "reports" / "dask"

SINGLE_CHILD = """
import json, resource, sys, time, warnings
import numpy as np
from lsqmf.data.synthetic import make_low_rank
from lsqmf.solvers import als
nnz, rank, sweeps = int(float(sys.argv[1])), int(sys.argv[2]), int(sys.argv[3])
n_rows, n_cols = max(1000, nnz // 20), max(200, nnz // 200)
t0 = time.perf_counter()
r, _ = make_low_rank(n_rows, n_cols, rank, density=nnz / (n_rows * n_cols), noise=0.1,
                     random_state=0, scale=(0.5, 5.0))
gen = time.perf_counter() - t0
rss_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    fit = als(r, rank, max_iter=sweeps, tol=0.0, random_state=0)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"nnz": r.nnz, "n_rows": n_rows, "n_cols": n_cols, "rank": rank,
                  "sweeps": fit.nfev, "gen_s": gen, "fit_s": fit.wall_time,
                  "s_per_sweep": fit.wall_time / max(fit.nfev, 1),
                  "peak_rss_after_data_gb": rss_data / 1e9, "peak_rss_gb": peak / 1e9,
                  "rmse_train": fit.rms}))
"""


def run_single(sizes: list[float], rank: int, sweeps: int, timeout: float) -> None:
    """One child process per size; a row per size in single_machine.csv (also failures)."""
    path = OUT / "single_machine.csv"
    cols = ["nnz", "n_rows", "n_cols", "rank", "sweeps", "gen_s", "fit_s", "s_per_sweep",
            "peak_rss_after_data_gb", "peak_rss_gb", "rmse_train", "error"]
    new = not path.exists()
    with path.open("a", newline="") as fh:
        w = csv.DictWriter(fh, cols)
        if new:
            w.writeheader()
        for size in sizes:
            env = {**os.environ, "OMP_NUM_THREADS": "2", "NUMBA_NUM_THREADS": "2"}
            try:
                out = subprocess.run([sys.executable, "-c", SINGLE_CHILD, str(size), str(rank),
                                      str(sweeps)], capture_output=True, text=True,
                                     timeout=timeout, env=env, check=False)
                row = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 \
                    else {"nnz": int(size), "error": out.stderr.strip()[-300:]}
            except subprocess.TimeoutExpired:
                row = {"nnz": int(size), "error": f"did not finish in {timeout:g} s"}
            w.writerow(row)
            fh.flush()
            print(row, flush=True)


def _received(dask_worker: Any) -> float:
    return float(sum(d.get("total", 0) for d in dask_worker.transfer_incoming_log))


def run_cluster(workers: list[int], nnz: int, rank: int, sweeps: int) -> None:
    """Per worker count: memory per worker and bytes received per sweep (cluster.csv)."""
    import distributed

    from lsqmf.data.synthetic import make_low_rank
    from lsqmf.solvers import _als_blocks as blk
    from lsqmf.solvers.als_dask import als_dask, plan_traffic

    n_rows, n_cols = max(1000, nnz // 20), max(200, nnz // 200)
    r, _ = make_low_rank(n_rows, n_cols, rank, density=nnz / (n_rows * n_cols), noise=0.1,
                         random_state=0, scale=(0.5, 5.0))
    rows = []
    for n_workers in workers:
        with distributed.LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None, memory_limit=0,
            env={"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
        ) as cluster, distributed.Client(cluster) as client:
            client.wait_for_workers(n_workers)
            rows.append(_one_cluster_run(client, r, rank, sweeps, n_workers, blk, als_dask,
                                         plan_traffic))
        print(rows[-1], flush=True)
    with (OUT / "cluster.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _one_cluster_run(client: Any, r: Any, rank: int, sweeps: int, n_workers: int, blk: Any,
                     als_dask: Any, plan_traffic: Any) -> dict[str, Any]:
    idle = client.run(blk.memory_report)
    held: dict[str, Any] = {}

    def fit(max_iter: int, measure: bool = False) -> Any:
        def callback(info: Any) -> None:  # the blocks are held while the fit runs
            if measure and info.step == max_iter:
                held.update(client.run(blk.memory_report))

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return als_dask(r, rank, scheduler=client, n_blocks=n_workers, max_iter=max_iter,
                            tol=0.0, random_state=0, callback=callback)

    fit(1)  # warm-up: kernels loaded on every worker
    r0 = sum(client.run(_received).values())
    t0 = time.perf_counter()
    fit(1)
    t_one = time.perf_counter() - t0
    r1 = sum(client.run(_received).values())
    t0 = time.perf_counter()
    result = fit(1 + sweeps, measure=True)
    t_all = time.perf_counter() - t0
    r2 = sum(client.run(_received).values())
    per_sweep = ((r2 - r1) - (r1 - r0)) / sweeps  # the same setup and first sweep removed
    # the plan of the same blocks, built here
    from lsqmf.solvers._common import split_options
    from lsqmf.solvers.als_dask import SPEC, _from_ratings, _Here

    opts, _ = split_options(SPEC, rank, {"random_state": 0})
    data = _from_ratings(_Here(), r, opts, "numpy", n_workers)
    plan = plan_traffic(data.user_links, data.item_links, r.shape[0], r.shape[1], rank + 1)
    grown = [(held[w]["rss"] - idle[w]["rss"]) / 1e6 for w in held if w in idle]
    return {
        "workers": n_workers, "nnz": r.nnz, "n_rows": r.shape[0], "n_cols": r.shape[1],
        "rank": rank, "ratings_mb": r.nnz * 28 / 1e6,
        "block_mb_per_worker_max": max(m["block_bytes"] for m in held.values()) / 1e6,
        "block_mb_per_worker_min": min(m["block_bytes"] for m in held.values()) / 1e6,
        "rss_growth_mb_per_worker_max": max(grown) if grown else float("nan"),
        "idle_rss_mb_per_worker": float(np.median([m["rss"] for m in idle.values()])) / 1e6,
        "received_mb_per_sweep": per_sweep / 1e6,
        "planned_mb_per_sweep": plan["blocked"] / 1e6,
        "planned_off_worker_mb_per_sweep": plan["blocked"] * (n_workers - 1) / n_workers / 1e6,
        "broadcast_mb_per_sweep": plan["broadcast"] / 1e6,
        "whole_links": int(sum(sum(L["whole"]) for L in data.user_links + data.item_links)),
        "links": int(sum(len(L["whole"]) for L in data.user_links + data.item_links)),
        "s_per_sweep": (t_all - t_one) / sweeps, "cost": result.cost,
    }


def sweep_cost(nnz: float, n_rows: float, n_cols: float, rank: int, workers: int
               ) -> dict[str, float]:
    """The cost model of one als_dask sweep with one block per worker (see the README).

    Flops: every rating adds a rank-1 update of a (k+1)^2 Gram matrix and its right-hand side
    on both sides, plus its residual; every row one Cholesky solve. Bytes: the factor rows
    that block b needs of block j, ``(m / B)(1 - exp(-nnz / (B m)))`` in expectation for
    uniformly spread ratings, times B^2 pairs, per side; minus the blocks' own worker.
    """
    k1 = rank + 1
    B = workers
    flops = nnz * (4 * k1 * k1 + 8 * k1) + (n_rows + n_cols) * (k1**3 / 3 + 2 * k1 * k1)
    rows = float(sum(B * n * -np.expm1(-nnz / (B * n)) for n in (n_rows, n_cols)))
    sent = rows * k1 * 8 * (B - 1) / B
    held = nnz * 2 * _BYTES_PER_RATING_SIDE + (n_rows + n_cols) * k1 * 8 * 2
    return {"flops_per_worker": flops / B, "bytes_per_sweep": sent,
            "bytes_in_per_worker": sent / B, "memory_per_worker": held / B}


#: Bytes a rating costs on one side of als_dask (block arrays and the SideSolver's copies;
#: measured: block_bytes of cluster.csv / nnz is the block part, about 24 to 26).
_BYTES_PER_RATING_SIDE = 80.0


def run_model(nnz: float, n_rows: float, n_cols: float, rank: int, workers: list[int],
              gflops: list[float], gbytes: float) -> None:
    """Predicted seconds per sweep at ``nnz`` ratings (cost_model.csv)."""
    rows = []
    for W in workers:
        c = sweep_cost(nnz, n_rows, n_cols, rank, W)
        for rate in gflops:
            compute = c["flops_per_worker"] / (rate * 1e9)
            network = c["bytes_in_per_worker"] / (gbytes * 1e9)
            rows.append({"nnz": nnz, "n_rows": n_rows, "n_cols": n_cols, "rank": rank,
                         "workers": W, "gflops_per_worker": rate, "gbytes_per_s": gbytes,
                         "gflop_per_worker": c["flops_per_worker"] / 1e9,
                         "gb_moved_per_sweep": c["bytes_per_sweep"] / 1e9,
                         "gb_in_per_worker": c["bytes_in_per_worker"] / 1e9,
                         "gb_memory_per_worker": c["memory_per_worker"] / 1e9,
                         "compute_s": compute, "network_s": network,
                         "s_per_sweep": compute + network})
    with (OUT / "cost_model.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    for row in rows:
        print({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("single", help="the single-machine limit of als")
    s.add_argument("--sizes", type=float, nargs="+", default=[1e6, 5e6])
    s.add_argument("--rank", type=int, default=10)
    s.add_argument("--sweeps", type=int, default=3)
    s.add_argument("--timeout", type=float, default=1500.0)
    c = sub.add_parser("cluster", help="memory and traffic per worker on a LocalCluster")
    c.add_argument("--workers", type=int, nargs="+", default=[2, 4, 8])
    c.add_argument("--nnz", type=int, default=400_000)
    c.add_argument("--rank", type=int, default=10)
    c.add_argument("--sweeps", type=int, default=2)
    m = sub.add_parser("model", help="predicted time per sweep at scale (cost_model.csv)")
    m.add_argument("--nnz", type=float, default=1e9)
    m.add_argument("--n-rows", type=float, default=5e7)
    m.add_argument("--n-cols", type=float, default=5e6)
    m.add_argument("--rank", type=int, default=10)
    m.add_argument("--workers", type=int, nargs="+", default=[8, 16, 32, 64, 128])
    m.add_argument("--gflops", type=float, nargs="+", default=[0.5, 2.0],
                   help="effective GFLOP/s of the als_rows kernel per worker core")
    m.add_argument("--gbytes", type=float, default=1.0, help="GB/s into each worker")
    args = p.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    if args.command == "single":
        run_single(args.sizes, args.rank, args.sweeps, args.timeout)
    elif args.command == "model":
        run_model(args.nnz, args.n_rows, args.n_cols, args.rank, args.workers, args.gflops,
                  args.gbytes)
    else:
        run_cluster(args.workers, args.nnz, args.rank, args.sweeps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
