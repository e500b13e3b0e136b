"""Benchmark: the seed-style Kronecker Jacobian vs lsqmf's direct construction, inside ``solve``.

Run from the repository root::

    python benchmarks/bench_jacobian.py            # writes reports/jacobian/
    python benchmarks/bench_jacobian.py --quick    # smaller sizes, for a smoke run

Three measurements, each case in a fresh subprocess (so that peak RSS belongs to that case):

1. ``solve`` with ``jac='kron'`` (the literal ``[I_n ⊗ Q^T, P ⊗ I_m]`` construction, restricted
   to the observed rows) vs ``jac='sparse'`` (built from the observed indices in O(nnz*rank)),
   same problem, same start, method ``trf`` with ``lsmr``: wall time (best of ``--repeats``),
   tracemalloc peak of numpy allocations and peak RSS; the two answers are compared.
   Sizes n in {100, 400, 1600}, m = 0.8 n, rank 10, 5% observed, seed formulation
   (priors = hidden factors rounded to 0.1).
2. One Jacobian build at the same point, kron vs fast (the part that differs).
3. A 1,000,000-rating solve (n = 20,000, m = 15,000, rank 10) with the matrix-free operator:
   peak RSS and tracemalloc peak. ``max_nfev=5`` and ``tr_options={'maxiter': 50}`` (truncated
   Gauss-Newton) keep the run short: with scipy's default, LSMR may take up to min(m, n)
   iterations per step, thousands of O(nnz*rank) products at this size. Memory, the point of
   this case, does not depend on either cap.

Results: ``reports/jacobian/results.csv``, ``run.json`` (versions, BLAS threads, machine) and a
generated ``README.md``. BLAS runs on one thread (``--blas-threads``) so that the two
constructions are compared on equal terms.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make_problem(n: int, m: int, rank: int, density: float, seed: int):
    """Hidden low-rank factors, observed entries sampled without an n x m array, priors."""
    from lsqmf import Ratings

    rng = np.random.default_rng(seed)
    P_h = rng.random((n, rank))
    Q_h = rng.random((rank, m))
    nnz = round(density * n * m)
    flat = np.unique(rng.integers(0, n * m, size=int(nnz * 1.05) + 10))
    flat = rng.permutation(flat)[:nnz]
    rows, cols = np.divmod(flat, m)
    values = np.round(np.einsum("tk,kt->t", P_h[rows], Q_h[:, cols]), 2)
    ratings = Ratings(rows, cols, values, (n, m))
    return ratings, np.round(P_h, 1), np.round(Q_h, 1)


def run_case(spec: dict) -> dict:
    """Run one measurement in this process; returns a flat dict."""
    from threadpoolctl import threadpool_limits

    import lsqmf
    from lsqmf.problem import build_problem, kron_jacobian

    out: dict = dict(spec)
    with threadpool_limits(limits=spec["blas_threads"], user_api="blas"):
        ratings, P0, Q0 = make_problem(spec["n"], spec["m"], spec["rank"], spec["density"], 0)
        out["nnz"] = ratings.nnz
        if spec["kind"] == "jacobian":
            problem = build_problem(ratings, spec["rank"], P_prior=P0, Q_prior=Q0)
            x = problem.pack(P0, Q0)
            build = (
                (lambda: kron_jacobian(problem, x))
                if spec["jac"] == "kron"
                else (lambda: problem.jacobian(x))
            )
            times = []
            for _ in range(spec["repeats"]):
                t = time.perf_counter()
                J = build()
                times.append(time.perf_counter() - t)
            out["seconds"] = min(times)
            out["jac_nnz"] = int(J.nnz)
            tracemalloc.start()
            build()
            out["tracemalloc_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
        else:
            kwargs = dict(
                P0=P0, Q0=Q0, method="trf", tr_solver="lsmr", jac=spec["jac"],
                max_nfev=spec.get("max_nfev"),
            )
            if spec["kind"] == "large":
                kwargs.update(formulation="l2", reg=0.1, P0=None, Q0=None, random_state=0,
                              rank=spec["rank"], tr_options={"maxiter": spec["lsmr_maxiter"]})
            times = []
            fit = None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", lsqmf.ConvergenceWarning)
                for _ in range(spec["repeats"]):
                    t = time.perf_counter()
                    fit = lsqmf.solve(ratings, **kwargs)
                    times.append(time.perf_counter() - t)
                assert fit is not None
                out.update(seconds=min(times), nfev=fit.nfev, njev=fit.njev, cost=fit.cost,
                           success=bool(fit.success))
                np.save(spec["answer_path"], np.concatenate([fit.P.ravel(), fit.Q.ravel()]))
                if spec.get("tracemalloc", True):
                    tracemalloc.start()
                    lsqmf.solve(ratings, **kwargs)
                    out["tracemalloc_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
                    tracemalloc.stop()
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def spawn(spec: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--case", json.dumps(spec)],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        return {**spec, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "?"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def baseline_rss() -> float:
    """Peak RSS of a process that only imports lsqmf and its dependencies."""
    code = (
        "import resource, lsqmf, scipy.optimize, scipy.sparse;"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    return float(proc.stdout.strip())


def header(args: argparse.Namespace) -> dict:
    import scipy
    from threadpoolctl import threadpool_info

    import lsqmf

    return {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "lsqmf": lsqmf.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "blas_threads_used": args.blas_threads,
        "blas": [
            {k: i.get(k) for k in ("internal_api", "version", "num_threads")}
            for i in threadpool_info()
        ],
    }


def write_report(rows: list[dict], head: dict, out: Path) -> str:
    import pandas as pd

    df = pd.DataFrame(rows)
    df.to_csv(out / "results.csv", index=False)
    lines = [
        "# Jacobian construction: seed-style Kronecker vs direct (generated)",
        "",
        f"Generated by `python benchmarks/{head['command']}` on {head['started']} "
        f"(numpy {head['numpy']}, scipy {head['scipy']}, {head['cpu_count']} CPUs, BLAS "
        f"threads {head['blas_threads_used']}). Raw data: `results.csv`, `run.json`.",
        f"Baseline peak RSS of a process that only imports lsqmf: "
        f"{head['baseline_rss_mb']:.0f} MB.",
        "",
        "## `solve` (trf + lsmr, seed formulation), kron vs fast, same problem and start",
        "",
        "| n | m | nnz | kron s | fast s | time ratio | kron peak MB (numpy) | fast peak MB "
        "(numpy) | memory ratio | kron RSS MB | fast RSS MB | same answer (max abs diff) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    solves = df[df.kind == "solve"]
    for n, g in solves.groupby("n"):
        k = g[g.jac == "kron"].iloc[0]
        f = g[g.jac == "sparse"].iloc[0]
        lines.append(
            f"| {n} | {f.m} | {f.nnz} | {k.seconds:.3f} | {f.seconds:.3f} | "
            f"**{k.seconds / f.seconds:.1f}x** | {k.tracemalloc_peak_mb:.1f} | "
            f"{f.tracemalloc_peak_mb:.1f} | {k.tracemalloc_peak_mb / f.tracemalloc_peak_mb:.1f}x"
            f" | {k.peak_rss_mb:.0f} | {f.peak_rss_mb:.0f} | {f.answer_diff:.1e} |"
        )
    lines += [
        "",
        "## One Jacobian build at the prior point",
        "",
        "| n | nnz | Jacobian nnz | kron s | fast s | ratio | kron MB | fast MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    jacs = df[df.kind == "jacobian"]
    for n, g in jacs.groupby("n"):
        k = g[g.jac == "kron"].iloc[0]
        f = g[g.jac == "sparse"].iloc[0]
        lines.append(
            f"| {n} | {f.nnz} | {f.jac_nnz} | {k.seconds:.4f} | {f.seconds:.4f} | "
            f"**{k.seconds / f.seconds:.0f}x** | {k.tracemalloc_peak_mb:.1f} | "
            f"{f.tracemalloc_peak_mb:.1f} |"
        )
    large = df[df.kind == "large"]
    if len(large):
        r = large.iloc[0]
        lines += [
            "",
            "## Matrix-free solve at scale",
            "",
            f"n = {r.n}, m = {r.m}, rank {r['rank']}, {int(r.nnz):,} observed ratings, "
            f"`jac='operator'`, formulation l2, truncated Gauss-Newton (lsmr maxiter "
            f"{int(r.lsmr_maxiter)} per step), max_nfev = {int(r.max_nfev)}: "
            f"{r.seconds:.1f} s for {int(r.nfev)} evaluations; **peak RSS {r.peak_rss_mb:.0f} "
            f"MB** (target < 3 GB; an n x m float64 array alone would be "
            f"{r.n * r.m * 8 / 2**30:.1f} GiB); numpy tracemalloc peak "
            f"{r.get('tracemalloc_peak_mb', float('nan')):.0f} MB.",
        ]
    big = solves[solves.n == solves.n.max()]
    ratio = big[big.jac == "kron"].seconds.iloc[0] / big[big.jac == "sparse"].seconds.iloc[0]
    verdict = "met" if ratio >= 20 else "NOT met"
    lines += [
        "",
        f"Target: >= 20x faster inside `solve` at n = {int(big.n.iloc[0])}: {ratio:.1f}x, "
        f"{verdict}.",
        "",
    ]
    text = "\n".join(lines)
    (out / "README.md").write_text(text)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--blas-threads", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "reports" / "jacobian"))
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return 0

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sizes = (50, 100) if args.quick else (100, 400, 1600)
    rows: list[dict] = []
    for n in sizes:
        m = int(0.8 * n)
        answers = {}
        for jac in ("kron", "sparse"):
            answer = out / f".answer_{n}_{jac}.npy"
            base = dict(n=n, m=m, rank=10, density=0.05, blas_threads=args.blas_threads,
                        jac=jac)
            repeats = 1 if (jac == "kron" and n >= 1600) else args.repeats
            row = spawn({**base, "kind": "solve", "repeats": repeats,
                         "answer_path": str(answer)})
            answers[jac] = np.load(answer)
            answer.unlink()
            rows.append(row)
            rows.append(spawn({**base, "kind": "jacobian", "repeats": args.repeats}))
            print(rows[-2], file=sys.stderr)
        diff = float(np.max(np.abs(answers["kron"] - answers["sparse"])))
        for r in rows[-4:]:
            if r["kind"] == "solve":
                r["answer_diff"] = diff
    if args.quick:
        large = dict(n=2000, m=1500, rank=10, density=0.02, max_nfev=5, lsmr_maxiter=50)
    else:
        large = dict(n=20_000, m=15_000, rank=10, density=1_000_000 / (20_000 * 15_000),
                     max_nfev=5, lsmr_maxiter=50)
    answer = out / ".answer_large.npy"
    rows.append(spawn({**large, "kind": "large", "jac": "operator", "repeats": 1,
                       "blas_threads": args.blas_threads, "answer_path": str(answer),
                       "tracemalloc": False}))
    answer.unlink(missing_ok=True)
    rows.append(spawn({**large, "kind": "large", "jac": "operator", "repeats": 1,
                       "blas_threads": args.blas_threads, "answer_path": str(answer),
                       "tracemalloc": True}) | {"kind": "large_tracemalloc"})
    answer.unlink(missing_ok=True)
    # fold the tracemalloc figure of the second large run into the first row
    rows[-2]["tracemalloc_peak_mb"] = rows[-1].get("tracemalloc_peak_mb")
    rows.pop()
    head = header(args)
    head["baseline_rss_mb"] = baseline_rss()
    (out / "run.json").write_text(json.dumps(head, indent=2))
    print(write_report(rows, head, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
