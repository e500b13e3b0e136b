"""Variable projection vs joint optimization and ALS from the same random starts.

For each dataset and seed, every method starts from :func:`lsqmf.model.start.random_start` with
``init_scale=1`` (N(0, 1) entries) and that seed; methods are interleaved start by start so
that the load of the shared machine hits all of them alike. A run is a *success* when its RMS
error over the observed entries is within ``1e-6`` (relative) of the best RMS found by any
method on that dataset. The expected time to see the optimum twice (RUSSO's cost, Hong &
Fitzgibbon, ICCV 2015) is ``2 * median time per run / success rate``.

Run::

    python benchmarks/bench_varpro.py                 # runs, then writes the report
    python benchmarks/bench_varpro.py --report-only   # rebuilds summary and plot from the CSV

Outputs in ``reports/varpro/``: ``runs.csv`` (one row per run), ``multistart.csv``,
``summary.csv`` and ``success_vs_time.png``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

# one BLAS thread in every library, set before numpy and scipy load theirs (a limit set later
# misses scipy's own OpenBLAS: on this shared machine a 939 x 240 SVD then took 7 s, not 0.1 s)
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import lsqmf  # noqa: E402
from lsqmf.data.synthetic import make_tracks  # noqa: E402
from lsqmf.nls.solve import solve_varpro  # noqa: E402
from lsqmf.solvers import als  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "reports" / "varpro"
GIRAFFE = ROOT.parent / "shared" / "data" / "giraffe" / "giraffe.M.txt"
TOL = dict(ftol=1e-10, xtol=1e-10, gtol=1e-10)
SUCCESS_RTOL = 1e-6


def joint(tr_solver: str) -> Callable[..., Any]:
    def run(M: np.ndarray, rank: int, seed: int, cap: float) -> Any:
        return lsqmf.solve(
            M, rank, formulation="none", init_scale=1.0, tr_solver=tr_solver, max_nfev=300,
            random_state=seed, max_time=cap, **TOL,
        )

    return run


def run_als(M: np.ndarray, rank: int, seed: int, cap: float) -> Any:
    # reg tiny: the 'none' objective up to 1e-9 * (|P|^2 + |Q|^2), keeping every solve defined
    return als(M, rank, reg=1e-9, init_scale=1.0, max_iter=5000, tol=1e-12,
               random_state=seed, max_time=cap)


def varpro(jacobian: str, tr_solver: str) -> Callable[..., Any]:
    def run(M: np.ndarray, rank: int, seed: int, cap: float) -> Any:
        return solve_varpro(
            M, rank, jacobian=jacobian, tr_solver=tr_solver, init_scale=1.0, max_nfev=300,
            x_scale="jac" if tr_solver == "lsmr" else 1.0, random_state=seed, max_time=cap,
            **TOL,
        )

    return run


def lm_normal(eliminate: str) -> Callable[..., Any]:
    def run(M: np.ndarray, rank: int, seed: int, cap: float) -> Any:
        return solve_varpro(
            M, rank, method="lm-normal", eliminate=eliminate, init_scale=1.0, max_nfev=300,
            random_state=seed, max_time=cap, **TOL,
        )

    return run


METHODS: dict[str, Callable[..., Any]] = {
    "joint trf-lsmr": joint("lsmr"),
    "joint trf-exact": joint("exact"),
    "als": run_als,
    "varpro kaufman lsmr": varpro("kaufman", "lsmr"),
    "varpro full lsmr": varpro("full", "lsmr"),
    "varpro kaufman exact": varpro("kaufman", "exact"),
    "varpro full exact": varpro("full", "exact"),
    "varpro lm-normal Q": lm_normal("Q"),
    "varpro lm-normal P": lm_normal("P"),
}


def datasets(quick: bool, starts: int | None = None) -> list[dict[str, Any]]:
    n = starts if starts is not None else (5 if quick else 50)
    out = []
    if GIRAFFE.exists():
        out.append(dict(
            name="giraffe", M=np.loadtxt(GIRAFFE)[:, 1:], rank=6, starts=n, cap=15.0,
            # dense Jacobians of 27.8k rows: one SVD of the reduced 27.8k x 1440 one takes
            # ~12 s here, the joint 27.8k x 2436 more, and trf does one per iteration: not run
            # on giraffe ('lm-normal' is the dense direct VarPro solver there)
            methods=["joint trf-lsmr", "als", "varpro kaufman lsmr", "varpro full lsmr",
                     "varpro lm-normal Q", "varpro lm-normal P"],
        ))
    M, _, _ = make_tracks(60, 40, 4, track_fraction=0.35, noise=0.01, random_state=0)
    out.append(dict(name="tracks-60x40-r4", M=M, rank=4, starts=n, cap=5.0,
                    methods=list(METHODS)))
    return out


def cap_for(ds: dict[str, Any], method: str) -> float:
    """The wall budget of one run: the dataset's, four times that for lm-normal (its runs
    converge well inside it on a quiet machine; the budget is there for loaded ones)."""
    return ds["cap"] * (4.0 if "lm-normal" in method else 1.0)


def run_all(
    quick: bool, resume: bool, starts: int | None = None, only: list[str] | None = None,
    multistart: bool = True, first_seed: int = 0,
) -> None:
    import pandas as pd

    rows: list[dict[str, Any]] = []
    if resume and (OUT / "runs.csv").exists():
        rows = pd.read_csv(OUT / "runs.csv").to_dict("records")
    done = {(r["dataset"], r["method"], r["seed"]) for r in rows}
    for ds in datasets(quick, starts):
        M = ds["M"]
        methods = [m for m in ds["methods"] if only is None or m in only]
        seeds = range(first_seed, first_seed + ds["starts"])
        todo = [(s, n) for s in seeds for n in methods
                if (ds["name"], n, s) not in done]
        if not todo:
            continue
        for name in methods:  # warm-up (numba compile, caches), not recorded
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    METHODS[name](M, ds["rank"], 12345, 2.0)
                except np.linalg.LinAlgError:
                    pass
        for seed, name in todo:
            t0, c0 = time.perf_counter(), time.process_time()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    fit = METHODS[name](M, ds["rank"], seed, cap_for(ds, name))
                    rms, cost, nfev, status = fit.rms, fit.cost, fit.nfev, fit.status
                except (np.linalg.LinAlgError, FloatingPointError) as err:
                    # a failed run (e.g. LAPACK's SVD not converging) counts as a failure
                    print(f"{ds['name']} {name} seed {seed}: {type(err).__name__}", flush=True)
                    rms, cost, nfev, status = np.nan, np.nan, 0, -99
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            rows.append(dict(dataset=ds["name"], method=name, seed=seed, rms=rms, cost=cost,
                             nfev=nfev, status=status, wall=wall, cpu=cpu))
            print(f"{ds['name']} {name:22s} seed {seed:2d} rms {rms:.7f} "
                  f"nfev {nfev:4d} status {status:2d} {wall:6.2f}s", flush=True)
            OUT.mkdir(parents=True, exist_ok=True)
            pd.DataFrame(rows).to_csv(OUT / "runs.csv", index=False)
    if multistart:
        run_multistart(quick)


def run_multistart(quick: bool) -> None:
    """``multistart`` on the generated instance: 20 seeded calls."""
    import pandas as pd

    ms = []
    ds = datasets(quick)[-1]
    for call in range(5 if quick else 20):
        t0, c0 = time.perf_counter(), time.process_time()
        res = lsqmf.multistart(
            ds["M"], ds["rank"], random_state=1000 + call, max_starts=20, eliminate="Q",
            formulation="none", init_scale=1.0, max_nfev=300, **TOL,
        )
        ms.append(dict(dataset=ds["name"], call=call, best_rms=res.best.rms,
                       n_starts=res.n_starts, converged=res.converged, n_optima=res.n_optima,
                       wall=time.perf_counter() - t0, cpu=time.process_time() - c0))
        print(f"multistart call {call}: rms {res.best.rms:.7f} starts {res.n_starts}", flush=True)
        pd.DataFrame(ms).to_csv(OUT / "multistart.csv", index=False)


#: The figure's names of the methods (the keys of METHODS are the CSVs' names).
LABELS = {
    "joint trf-lsmr": "joint problem, trf + LSMR",
    "joint trf-exact": "joint problem, trf + exact SVD",
    "als": "ALS",
    "varpro kaufman lsmr": "VarPro, Kaufman Jacobian, LSMR",
    "varpro full lsmr": "VarPro, full Jacobian, LSMR",
    "varpro kaufman exact": "VarPro, Kaufman Jacobian, exact SVD",
    "varpro full exact": "VarPro, full Jacobian, exact SVD",
    "varpro lm-normal Q": "VarPro lm-normal, eliminate Q",
    "varpro lm-normal P": "VarPro lm-normal, eliminate P",
}


def _success_figure(plt: Any, summary: Any, best: Any) -> Any:
    """Success rate against median time per run, one panel per dataset, one legend. Hollow
    markers of decreasing size, so methods at the same point stay visible (nested)."""
    from matplotlib.lines import Line2D

    n = summary["dataset"].nunique()
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n + 3.2, 4.2), squeeze=False,
                             layout="constrained")
    markers = "os^vDP*Xh"
    style = {m: (markers[j % len(markers)], f"C{j % 10}", 170 - 14 * j)
             for j, m in enumerate(METHODS)}
    for ax, (name, part) in zip(axes[0], summary.groupby("dataset", sort=False), strict=True):
        for _, row in part.iterrows():
            marker, color, size = style.get(row["method"], ("o", "k", 60))
            ax.scatter(row["median_wall"], row["success_rate"], s=size, marker=marker,
                       facecolors="none", edgecolors=color, linewidths=1.6)
        ax.set_xscale("log")
        ax.set_xlim(0.01, 300)
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
        ax.set_xlabel("median wall time per run [s]")
        ax.set_ylabel("success rate (reached the best RMS)")
        ax.set_title(f"{name} (best RMS {best[name]:.4g})")
    used = [m for m in METHODS if m in set(summary["method"])]
    handles = [Line2D([], [], ls="", marker=style[m][0], mfc="none", mec=style[m][1], mew=1.6,
                      ms=9) for m in used]
    fig.legend(handles, [LABELS.get(m, m) for m in used], loc="outside right center",
               fontsize=9, frameon=False)
    return fig


def report() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    runs = pd.read_csv(OUT / "runs.csv")
    best = runs.groupby("dataset")["rms"].min()
    runs["success"] = runs["rms"] <= runs["dataset"].map(best) * (1 + SUCCESS_RTOL)
    g = runs.groupby(["dataset", "method"], sort=False)
    summary = g.agg(
        runs=("rms", "size"), success_rate=("success", "mean"), median_wall=("wall", "median"),
        iqr_wall=("wall", lambda s: s.quantile(0.75) - s.quantile(0.25)),
        median_cpu=("cpu", "median"), median_nfev=("nfev", "median"),
        best_rms=("rms", "min"), median_rms=("rms", "median"),
    ).reset_index()
    summary["time_to_see_twice"] = np.where(
        summary["success_rate"] > 0, 2 * summary["median_wall"] / summary["success_rate"],
        np.inf,
    )
    summary.to_csv(OUT / "summary.csv", index=False, float_format="%.6g")
    fig = _success_figure(plt, summary, best)
    fig.savefig(OUT / "success_vs_time.png", dpi=120)
    print(summary.to_string(index=False))
    if (OUT / "multistart.csv").exists():
        ms = pd.read_csv(OUT / "multistart.csv")
        target = best[ms["dataset"].iloc[0]]
        ms["success"] = ms["best_rms"] <= target * (1 + SUCCESS_RTOL)
        print(f"multistart: {int(ms['success'].sum())}/{len(ms)} calls reached the best RMS; "
              f"median {ms['n_starts'].median():.0f} starts, {ms['wall'].median():.2f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--quick", action="store_true", help="fewer starts")
    parser.add_argument("--resume", action="store_true", help="keep the runs in runs.csv")
    parser.add_argument("--starts", type=int, default=None, help="starts per method (50)")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=None,
                        help="run only these methods")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seed of the first start (0): e.g. 50 with --starts 100 for "
                        "seeds 50-149")
    parser.add_argument("--no-multistart", action="store_true")
    parser.add_argument("--out", type=Path, default=None,
                        help="output directory (default reports/varpro)")
    args = parser.parse_args(argv)
    if args.out is not None:
        global OUT
        OUT = args.out
    if not args.report_only:
        with threadpool_limits(limits=1, user_api="blas"):
            run_all(args.quick, args.resume, args.starts, args.methods,
                    not args.no_multistart, args.first_seed)
    report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
