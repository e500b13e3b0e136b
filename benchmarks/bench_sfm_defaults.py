"""The obvious call with solve's new defaults vs the README recipe, per affine SfM family.

Issue #19, phase 2. Sequences as in ``benchmarks/bench_sfm_family.py`` (phase 1):
``make_affine_sfm(**SFM_FAMILIES[family], random_state=i)`` for ``i < --sequences``, plus
giraffe (240 x 166, rank 6). Calls, interleaved start by start (seed = the start number):

``obvious``
    ``lsqmf.solve(M, rank, mask=W, formulation='none', random_state=s)``: the defaults
    (method='auto' -> lm-normal, eliminate='auto' -> the larger factor, x_scale='jac').
``obvious-levenberg``
    The same with ``x_scale=1.0`` (Levenberg's damping ``mu I`` on the orthonormalized
    factor, instead of Marquardt's ``mu diag(A)``): the damping lever.
``recipe``
    The README recipe of phase 1 (``method='lm-normal'``, ``x_scale=1.0``, ``init_scale=1``,
    tolerances ``1e-10``, ``max_nfev=300``, the larger factor eliminated), with this code.
``other``
    The obvious call eliminating the other factor (``--other-starts`` starts on the first
    ``--other-seqs`` sequences): the elimination rule's evidence.

Success: RMS within 1e-6 (relative) of the best RMS of any run on that sequence. CPU time is
``time.process_time`` on one BLAS thread.

Run::

    python benchmarks/bench_sfm_defaults.py --sequences 6 --starts 5
    python benchmarks/bench_sfm_defaults.py --report-only

Outputs in ``reports/sfm/``: ``defaults_runs.csv``, ``defaults_summary.csv``,
``defaults_success_vs_time.png``.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
from bench_sfm_family import (  # noqa: E402  (the family benchmark's setup, run beside it)
    GIRAFFE,
    OUT,
    RECIPE,
    SUCCESS_RTOL,
    write_csv,
)
from threadpoolctl import threadpool_limits  # noqa: E402

import lsqmf  # noqa: E402
from lsqmf.data.synthetic import SFM_FAMILIES, make_affine_sfm  # noqa: E402

FIELDS = ["family", "sequence", "shape", "call", "eliminate", "seed", "cpu_s", "nfev", "rms",
          "success_flag", "status"]


def larger(shape: tuple[int, int]) -> str:
    return "Q" if shape[1] >= shape[0] else "P"


def call_kwargs(call: str, shape: tuple[int, int], seed: int) -> dict[str, Any]:
    base: dict[str, Any] = dict(formulation="none", random_state=seed)
    if call == "obvious-levenberg":
        base["x_scale"] = 1.0
    elif call == "recipe":
        base.update(RECIPE, eliminate=larger(shape))
    elif call == "other":
        base["eliminate"] = "P" if larger(shape) == "Q" else "Q"
    return base


def run_one(M: np.ndarray, W: np.ndarray, rank: int, call: str, seed: int) -> dict[str, Any]:
    kw = call_kwargs(call, M.shape, seed)
    t0 = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lsqmf.solve(M, rank, mask=W, max_time=120.0, **kw)
    return dict(cpu_s=time.process_time() - t0, nfev=fit.nfev, rms=fit.rms,
                success_flag=bool(fit.success), status=fit.status,
                eliminate=fit.options["eliminate"])


def sequences(args: argparse.Namespace) -> list[tuple[str, int, np.ndarray, np.ndarray, int]]:
    out = []
    for family in args.families:
        for i in range(args.sequences):
            seq = make_affine_sfm(**SFM_FAMILIES[family], random_state=i)  # type: ignore[arg-type]
            out.append((family, i, seq.M, seq.mask, seq.rank))
    if args.giraffe and GIRAFFE.exists():
        M = np.loadtxt(GIRAFFE)[:, 1:]
        out.append(("giraffe", 0, M, np.isfinite(M), 6))
    return out


def run(args: argparse.Namespace) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    seqs = sequences(args)
    run_one(*seqs[0][2:], "obvious", 0)  # warm-up
    with open(OUT / "defaults_runs.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, FIELDS)
        writer.writeheader()
        for family, i, M, W, rank in seqs:
            giraffe = family == "giraffe"
            starts = args.giraffe_starts if giraffe else args.starts
            for s in range(starts):
                calls = ["obvious", "obvious-levenberg", "recipe"]
                if (giraffe or i < args.other_seqs) and s < args.other_starts:
                    calls.append("other")
                for call in calls:
                    row = run_one(M, W, rank, call, s)
                    writer.writerow(dict(family=family, sequence=i, shape="x".join(
                        map(str, M.shape)), call=call, seed=s, **row))
            fh.flush()
            print(f"{family} {i} done", file=sys.stderr, flush=True)


def load() -> list[dict[str, Any]]:
    with open(OUT / "defaults_runs.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    best: dict[tuple[str, str], float] = {}
    for r in rows:
        r["rms"], r["cpu_s"] = float(r["rms"]), float(r["cpu_s"])
        key = (r["family"], r["sequence"])
        best[key] = min(best.get(key, np.inf), r["rms"])
    for r in rows:
        r["hit"] = r["rms"] <= best[(r["family"], r["sequence"])] * (1 + SUCCESS_RTOL)
        r["claimed"] = r["success_flag"] == "True"
    return rows


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for family, call in sorted({(r["family"], r["call"]) for r in rows}):
        sel = [r for r in rows if r["family"] == family and r["call"] == call]
        hits = np.array([r["hit"] for r in sel])
        cpu = np.array([r["cpu_s"] for r in sel])
        out.append(dict(
            family=family, call=call, eliminate="/".join(sorted({r["eliminate"] for r in sel})),
            sequences=len({r["sequence"] for r in sel}), runs=len(sel),
            success_pct=round(100 * float(hits.mean()), 1),
            median_cpu_s=round(float(np.median(cpu)), 3),
            q90_cpu_s=round(float(np.quantile(cpu, 0.9)), 3),
            false_success=int(sum(r["claimed"] and not r["hit"] for r in sel)),
            flagged_failures=int(sum(not r["claimed"] and not r["hit"] for r in sel)),
            missed_successes=int(sum(not r["claimed"] and r["hit"] for r in sel)),
        ))
    return out


def plot(summary: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    calls = ["obvious", "obvious-levenberg", "recipe", "other"]
    markers = dict(zip(calls, ["o", "^", "s", "x"], strict=True))
    families = sorted({s["family"] for s in summary})
    colors = dict(zip(families, plt.get_cmap("tab10").colors, strict=False))
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for s in summary:
        ax.scatter(max(s["median_cpu_s"], 1e-3), s["success_pct"], marker=markers[s["call"]],
                   color=colors[s["family"]], s=60, alpha=0.85)
    for f in families:
        ax.scatter([], [], color=colors[f], marker="o", label=f)
    for c in calls:
        ax.scatter([], [], color="gray", marker=markers[c], label=c)
    ax.set_xscale("log")
    ax.set_xlabel("median CPU seconds per start (one BLAS thread)")
    ax.set_ylabel("single-start success % (RMS within 1e-6 of the best)")
    ax.set_ylim(-3, 103)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=2, loc="lower left")
    ax.set_title("lsqmf.solve defaults vs the recipe: success vs time per start")
    fig.tight_layout()
    fig.savefig(OUT / "defaults_success_vs_time.png", dpi=110)


def report() -> None:
    summary = summarize(load())
    write_csv(OUT / "defaults_summary.csv", summary)
    plot(summary)
    for s in summary:
        print(s)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--families", nargs="+", default=list(SFM_FAMILIES),
                    choices=list(SFM_FAMILIES))
    ap.add_argument("--sequences", type=int, default=6)
    ap.add_argument("--starts", type=int, default=5)
    ap.add_argument("--other-seqs", type=int, default=3)
    ap.add_argument("--other-starts", type=int, default=2)
    ap.add_argument("--giraffe-starts", type=int, default=5)
    ap.add_argument("--no-giraffe", dest="giraffe", action="store_false")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    global OUT
    OUT = args.out or OUT
    if not args.report_only:
        with threadpool_limits(1):
            run(args)
    report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
