"""Benchmark: the seed-style Kronecker Jacobian vs lsqmf's constructions, inside ``solve``.

Run from the repository root::

    python benchmarks/bench_jacobian.py            # writes reports/jacobian/
    python benchmarks/bench_jacobian.py --quick    # smaller sizes, for a smoke run
    python benchmarks/bench_jacobian.py --report-only   # README.md from the saved results

Each case runs in a fresh subprocess (so that peak RSS belongs to that case):

1. ``solve`` on the same problem from the same start, method ``trf`` with ``lsmr``, seed
   formulation, n in {100, 400, 1600}, m = 0.8 n, rank 10, 5% observed (priors = hidden
   factors rounded to 0.1), with three Jacobian constructions:

   - ``kron``: the literal ``[I_n ⊗ Q^T, P ⊗ I_m]`` construction restricted to the observed
     rows (the seed's), a CSR matrix built at every Jacobian evaluation;
   - ``sparse``: the CSR Jacobian built from the observed indices in O(nnz*rank);
   - ``operator``: the matrix-free ``LinearOperator`` (compiled products when numba is
     installed, as with ``pip install 'lsqmf[fast]'``; the run records which).

   Scaling: ``x_scale='jac'`` (the default) is refused by scipy for a ``LinearOperator``, so
   the three constructions are compared with one fixed ``x_scale`` for all: the inverse column
   norms of J at the start, which is what ``'jac'`` uses at the first iteration (and where
   ``solve``'s emulation of ``'jac'`` for the operator starts). Only the construction then
   differs; the answers are compared. ``kron`` vs ``sparse`` is also run with ``x_scale='jac'``.
   Wall time is the best of ``--repeats`` (one run for ``kron`` at n >= 1600), after a warm-up
   that compiles the numba kernels (their compile time is reported separately); tracemalloc
   peak of numpy allocations and peak RSS are recorded.
2. One Jacobian build at the same point, kron vs fast CSR.
3. A 1,000,000-rating solve (n = 20,000, m = 15,000, rank 10) with the matrix-free operator:
   peak RSS and tracemalloc peak. ``max_nfev=5`` and ``tr_options={'maxiter': 50}`` (truncated
   Gauss-Newton) keep the run short: with scipy's default, LSMR may take up to min(m, n)
   iterations per step. Memory, the point of this case, does not depend on either cap.

Results: ``reports/jacobian/results.csv``, ``run.json`` (versions, BLAS and numba threads,
machine) and a generated ``README.md``. BLAS runs on one thread (``--blas-threads``); numba's
kernels use numba's default thread count (recorded).
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
    from lsqmf.model.problem import build_problem, kron_jacobian

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
        elif spec["kind"] == "products":
            out.update(_time_products(ratings, spec, P0, Q0, out))
        else:
            if spec["jac"] == "operator":
                out["compiled"] = _warm_up(out)
            kwargs = dict(
                P0=P0, Q0=Q0, method="trf", tr_solver="lsmr", jac=spec["jac"],
                max_nfev=spec.get("max_nfev"),
            )
            if spec.get("scaling") == "start":
                problem = build_problem(ratings, spec["rank"], P_prior=P0, Q_prior=Q0)
                norms = problem.column_norms(problem.pack(P0, Q0))
                norms[norms == 0] = 1.0
                kwargs["x_scale"] = 1.0 / norms
            if spec["kind"].startswith("large"):
                maxiter = spec.get("lsmr_maxiter")
                kwargs.update(formulation="l2", reg=0.1, P0=None, Q0=None, random_state=0,
                              rank=spec["rank"],
                              tr_options={} if maxiter is None else {"maxiter": maxiter})
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


def _time_products(ratings, spec: dict, P0: np.ndarray, Q0: np.ndarray, out: dict) -> dict:
    """Best-of time of one product J v and one J^T y: CSR Jacobian vs matrix-free operator."""
    from lsqmf.model.problem import build_problem

    out["compiled"] = _warm_up(out)
    problem = build_problem(ratings, spec["rank"], P_prior=P0, Q_prior=Q0)
    x = problem.pack(P0, Q0)
    rng = np.random.default_rng(1)
    v = rng.standard_normal(problem.n_params)
    y = rng.standard_normal(problem.n_residuals)
    J = problem.jacobian(x)
    op = problem.operator(x)

    def best(f) -> float:
        f()
        times = []
        for _ in range(spec["repeats"]):
            t = time.perf_counter()
            f()
            times.append(time.perf_counter() - t)
        return min(times)

    return {
        "csr_matvec_ms": 1e3 * best(lambda: J @ v),
        "csr_rmatvec_ms": 1e3 * best(lambda: J.T @ y),
        "operator_matvec_ms": 1e3 * best(lambda: op.matvec(v)),
        "operator_rmatvec_ms": 1e3 * best(lambda: op.rmatvec(y)),
        "jac_nnz": int(J.nnz),
    }


def _warm_up(out: dict) -> bool:
    """Compile the numba Jacobian kernels (if numba is installed) before anything is timed;
    records the compile time in ``out`` and returns whether the compiled path is used."""
    from lsqmf.kernels.backend import resolve_backend
    from lsqmf.kernels.registry import warm_up

    t = time.perf_counter()
    compiled = resolve_backend("auto") == "compiled"
    warm_up(("jac_matvec", "jac_rmatvec"), "auto")
    out["compile_seconds"] = time.perf_counter() - t if compiled else 0.0
    return compiled


def spawn(spec: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--case", json.dumps(spec)],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        return {**spec, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "?"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def baseline_rss(compiled: bool = False) -> float:
    """Peak RSS of a process that only imports lsqmf and its dependencies (and, with
    ``compiled``, compiles the numba Jacobian kernels)."""
    code = (
        "import resource, lsqmf, lsqmf.model.problem, scipy.optimize, scipy.sparse;"
        + ("import lsqmf.kernels.core; lsqmf.kernels.core.warm_up('compiled');" if compiled else "")
        + "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    return float(proc.stdout.strip())


def _numba_info() -> dict | None:
    try:
        import numba
    except ImportError:
        return None
    return {"version": numba.__version__, "threads": numba.get_num_threads(),
            "threading_layer_env": os.environ.get("NUMBA_THREADING_LAYER")}


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
        "numba": _numba_info(),
        "blas": [
            {k: i.get(k) for k in ("internal_api", "version", "num_threads")}
            for i in threadpool_info()
        ],
    }


def _solve_table(solves, scaling: str, fast: list[str]) -> list[str]:
    """Markdown rows: per n, kron against each construction in ``fast`` under ``scaling``."""
    lines = [
        "| n | nnz | construction | seconds | kron / this (time) | nfev | numpy peak MB | "
        "kron / this (memory) | peak RSS MB | max abs diff to kron's answer |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, g in solves[solves.scaling == scaling].groupby("n"):
        k = g[g.jac == "kron"].iloc[0]
        for jac in ["kron", *fast]:
            r = g[g.jac == jac].iloc[0]
            name = f"{jac} (compiled)" if jac == "operator" and r.get("compiled") else jac
            ratio = "" if jac == "kron" else f"**{k.seconds / r.seconds:.1f}x**"
            mem = ("" if jac == "kron"
                   else f"{k.tracemalloc_peak_mb / r.tracemalloc_peak_mb:.1f}x")
            diff = "" if jac == "kron" else f"{r.answer_diff:.1e}"
            lines.append(
                f"| {n} | {r.nnz} | {name} | {r.seconds:.3f} | {ratio} | {int(r.nfev)} | "
                f"{r.tracemalloc_peak_mb:.1f} | {mem} | {r.peak_rss_mb:.0f} | {diff} |"
            )
    return lines


def write_report(rows: list[dict], head: dict, out: Path) -> str:
    import pandas as pd

    df = pd.DataFrame(rows)
    df.to_csv(out / "results.csv", index=False)
    numba = head.get("numba")
    numba_text = (f"numba {numba['version']} on {numba['threads']} threads" if numba
                  else "numba not installed: numpy operator")
    solves = df[df.kind == "solve"]
    op = solves[solves.jac == "operator"]
    compile_s = float(op.compile_seconds.max()) if len(op) and bool(op.compiled.any()) else 0.0
    lines = [
        "# Jacobian construction: seed-style Kronecker vs lsqmf's (generated)",
        "",
        f"Generated by `python benchmarks/{head['command']}` on {head['started']} "
        f"(numpy {head['numpy']}, scipy {head['scipy']}, {head['cpu_count']} CPUs, BLAS "
        f"threads {head['blas_threads_used']}, {numba_text}). Raw data: `results.csv`, "
        "`run.json`.",
        f"Baseline peak RSS of a process that only imports lsqmf: "
        f"{head['baseline_rss_mb']:.0f} MB"
        + (f"; one that also compiles the numba kernels: {head['baseline_rss_compiled_mb']:.0f}"
           " MB (numba and LLVM)." if head.get("baseline_rss_compiled_mb") else "."),
        "",
        "Every row is `solve` (trf + lsmr, seed formulation, alpha 0.9, beta 0.1, ftol 1e-3) on "
        "the same problem from the same start; only the Jacobian construction differs. Time is "
        "the best of the repeats, measured after the numba kernels were compiled"
        + (f" (compiling them took {compile_s:.1f} s once per process)." if compile_s else "."),
        "",
        "## Same scaling for every construction (the comparison the target is judged on)",
        "",
        "scipy refuses `x_scale='jac'` with a `LinearOperator`, so all three get one fixed "
        "`x_scale`: the inverse column norms of J at the start (what `'jac'` uses at the first "
        "iteration, and where `solve`'s emulation of `'jac'` for `jac='operator'` starts; it "
        "does not restart here, since every construction gets this explicit `x_scale`).",
        "",
        *_solve_table(solves, "start", ["sparse", "operator"]),
        "",
        "## Default scaling (`x_scale='jac'`), CSR constructions only",
        "",
        *_solve_table(solves, "jac", ["sparse"]),
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
            f"| {n} | {f.nnz} | {int(f.jac_nnz)} | {k.seconds:.4f} | {f.seconds:.4f} | "
            f"**{k.seconds / f.seconds:.0f}x** | {k.tracemalloc_peak_mb:.1f} | "
            f"{f.tracemalloc_peak_mb:.1f} |"
        )
    products = df[df.kind == "products"]
    if len(products):
        r = products.iloc[0]
        op_name = "compiled operator" if r.get("compiled") else "numpy operator"
        lines += [
            "",
            f"## One product with J at n = {int(r.n)} ({int(r.jac_nnz):,} nonzeros), best of "
            f"{int(r.repeats)}",
            "",
            f"| product | CSR ms | {op_name} ms | CSR / operator |",
            "|---|---|---|---|",
        ]
        for name, key in (("J v", "matvec"), ("J^T y", "rmatvec")):
            c, o = r[f"csr_{key}_ms"], r[f"operator_{key}_ms"]
            lines.append(f"| {name} | {c:.2f} | {o:.2f} | **{c / o:.1f}x** |")
    large = df[df.kind == "large"]
    if len(large):
        r = large.iloc[0]
        lines += [
            "",
            "## Matrix-free solve at scale",
            "",
            f"n = {r.n}, m = {r.m}, rank {r['rank']}, {int(r.nnz):,} observed ratings, "
            f"`jac='operator'`{' (compiled)' if r.get('compiled') else ''}, formulation l2 "
            "(reg 0.1), random start:",
            "",
            f"- truncated Gauss-Newton (lsmr maxiter {int(r.lsmr_maxiter)} per step), max_nfev = "
            f"{int(r.max_nfev)}: {r.seconds:.1f} s for {int(r.nfev)} evaluations; **peak RSS "
            f"{r.peak_rss_mb:.0f} MB** (target < 3 GB; an n x m float64 array alone would be "
            f"{r.n * r.m * 8 / 2**30:.1f} GiB); numpy tracemalloc peak "
            f"{r.get('tracemalloc_peak_mb', float('nan')):.0f} MB.",
        ]
        full = df[df.kind == "large_full"]
        if len(full):
            f = full.iloc[0]
            status = "converged" if f.success else "stopped without converging"
            lines.append(
                f"- to convergence with scipy's default LSMR settings: {f.seconds:.1f} s, "
                f"{int(f.nfev)} evaluations, final cost {f.cost:.6g} ({status}); peak RSS "
                f"{f.peak_rss_mb:.0f} MB."
            )
    start = solves[solves.scaling == "start"]
    big = start[start.n == start.n.max()]
    kron_s = big[big.jac == "kron"].seconds.iloc[0]
    verdicts = []
    for jac in ("operator", "sparse"):
        ratio = kron_s / big[big.jac == jac].seconds.iloc[0]
        verdicts.append(f"`{jac}` {ratio:.1f}x ({'met' if ratio >= 20 else 'NOT met'})")
    lines += [
        "",
        f"Target: >= 20x faster inside `solve` at n = {int(big.n.iloc[0])}: "
        + ", ".join(verdicts) + ".",
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
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite README.md from the results.csv and run.json in --out")
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return 0
    if args.report_only:
        import pandas as pd

        out = Path(args.out)
        saved = pd.read_csv(out / "results.csv").to_dict("records")
        print(write_report(saved, json.loads((out / "run.json").read_text()), out))
        return 0

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # First, while this process is small: on Linux a child's peak RSS starts at its parent's
    # at fork, so every case is spawned before this process imports lsqmf, pandas or numba.
    baseline = baseline_rss()
    try:
        baseline_compiled: float | None = baseline_rss(compiled=True)
    except subprocess.CalledProcessError:  # numba not installed
        baseline_compiled = None
    sizes = (50, 100) if args.quick else (100, 400, 1600)
    rows: list[dict] = []
    # (construction, scaling): 'start' = one fixed x_scale for all (the comparison the target
    # is judged on); 'jac' = scipy's default, which a LinearOperator cannot use.
    solve_cases = [("kron", "start"), ("sparse", "start"), ("operator", "start"),
                   ("kron", "jac"), ("sparse", "jac")]
    for n in sizes:
        m = int(0.8 * n)
        answers = {}
        base = dict(n=n, m=m, rank=10, density=0.05, blas_threads=args.blas_threads)
        for jac, scaling in solve_cases:
            answer = out / f".answer_{n}_{jac}_{scaling}.npy"
            repeats = 1 if (jac == "kron" and n >= 1600) else args.repeats
            row = spawn({**base, "jac": jac, "scaling": scaling, "kind": "solve",
                         "repeats": repeats, "answer_path": str(answer)})
            if answer.exists():
                answers[jac, scaling] = np.load(answer)
                answer.unlink()
            rows.append(row)
            print(row, file=sys.stderr)
        for jac in ("kron", "sparse"):
            rows.append(spawn({**base, "jac": jac, "kind": "jacobian", "repeats": args.repeats}))
        for r in rows:
            if r["kind"] == "solve" and r["n"] == n and (r["jac"], r["scaling"]) in answers:
                ref = answers.get(("kron", r["scaling"]))
                if ref is not None:
                    diff = answers[r["jac"], r["scaling"]] - ref
                    r["answer_diff"] = float(np.max(np.abs(diff)))
    rows.append(spawn({**base, "jac": "operator", "kind": "products", "repeats": 50}))
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
    # the same problem solved to convergence with scipy's default LSMR settings
    full = {**large, "max_nfev": None, "lsmr_maxiter": None}
    rows.append(spawn({**full, "kind": "large_full", "jac": "operator", "repeats": 1,
                       "blas_threads": args.blas_threads, "answer_path": str(answer),
                       "tracemalloc": False}))
    answer.unlink(missing_ok=True)
    head = header(args)
    head["baseline_rss_mb"] = baseline
    head["baseline_rss_compiled_mb"] = baseline_compiled
    (out / "run.json").write_text(json.dumps(head, indent=2))
    print(write_report(rows, head, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
