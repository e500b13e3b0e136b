"""Single-start success of VarPro on generated affine structure-from-motion families + giraffe.

Issue #19, phase 1. Every sequence comes from :func:`lsqmf.data.synthetic.make_affine_sfm`
with one of the :data:`~lsqmf.data.synthetic.SFM_FAMILIES` settings and ``random_state`` =
the sequence number (0, 1, ...), or is Buchanan's giraffe (240 x 166, rank 6, read from
``../shared/data/giraffe/giraffe.M.txt`` beside the repository). On each sequence these
calls run, each from its own seeded start (seed = the start number), interleaved start by start:

``obvious``
    ``lsqmf.solve(M, rank, mask=W, formulation='none', random_state=s)``: nothing else.
``recipe``
    The README recipe: ``method='lm-normal'``, ``x_scale=1.0``, ``init_scale=1.0`` (N(0, 1)
    starts), ``ftol=xtol=gtol=1e-10``, ``max_nfev=300``, eliminating the factor with more
    unknowns (``'Q'`` when ``n_cols > n_rows``, else ``'P'``), so the optimized factor is
    the smaller.
``other``
    The recipe eliminating the other factor (on the first ``--other-seqs`` sequences and
    ``--other-starts`` starts only: it is the slow choice).
``scaled``
    The recipe from N(0, sigma^2) factors with ``sigma = sqrt(rms(M) / sqrt(rank))``, so that
    ``P0 @ Q0`` has the data's RMS (given as ``P0``/``Q0``).
``ridge``
    Two stages from the recipe's N(0, 1) start: ``formulation='l2'`` with ``reg = 1e-7 *
    mean(M**2)`` (a small ridge, which keeps every inner problem well posed and the
    reduced cost smooth), then the recipe from its end point. Run as a supplementary pass
    (``--ridge-only --append``) after the others.
``svd-mean`` / ``svd-zero``
    The recipe from the truncated SVD of the matrix with its missing entries filled by the
    row's mean / by zero (``P0 = U S^1/2``, ``Q0 = S^1/2 V^T``): deterministic, one start per
    sequence.

A run is a *success* when its RMS over the visible entries is within ``SUCCESS_RTOL`` (1e-6,
relative) of the best RMS any run reached on that sequence (the generated truth is not the
optimum once there is noise). CPU time is ``time.process_time`` of the call, on one core
with one BLAS thread. Every run records ``success``/``status``/``message``/``optimality``
as the library returned them, so failed runs that claim success are counted.

Run (about 25 minutes of CPU)::

    taskset -c 1 python benchmarks/bench_sfm_family.py
    python benchmarks/bench_sfm_family.py --report-only   # summary + figure from runs.csv
    taskset -c 1 python benchmarks/bench_sfm_family.py --diagnose 8   # failures.csv

Outputs in ``reports/sfm/``: ``runs.csv`` (one row per run), ``sequences.csv`` (shape,
density and best RMS of each sequence), ``summary.csv`` (per family and call),
``elimination.csv`` (recipe vs other per sequence), ``success_vs_time.png`` and, with
``--diagnose``, ``failures.csv`` (how failed recipe starts end).
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
from threadpoolctl import threadpool_limits  # noqa: E402

import lsqmf  # noqa: E402
from lsqmf.data.synthetic import SFM_FAMILIES, make_affine_sfm  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "reports" / "sfm"
# the shared data sit beside the repository (not vendored)
GIRAFFE = ROOT.parent / "shared" / "data" / "giraffe" / "giraffe.M.txt"
SUCCESS_RTOL = 1e-6
RIDGE = 1e-7  # the ridge call's stage-1 reg, times the mean square of the data
RECIPE = dict(formulation="none", method="lm-normal", x_scale=1.0, init_scale=1.0,
              ftol=1e-10, xtol=1e-10, gtol=1e-10, max_nfev=300)
FIELDS = ["family", "sequence", "call", "eliminate", "seed", "cpu_s", "wall_s", "nfev", "rms",
          "cost", "optimality", "success_flag", "status", "message", "code"]
SEQ_FIELDS = ["family", "sequence", "n_rows", "n_cols", "rank", "density", "min_col_visible",
              "median_col_visible", "min_row_visible", "median_row_visible", "data_rms",
              "truth_rms"]


def rule_eliminate(shape: tuple[int, int]) -> str:
    """The README's rule: eliminate the factor with more unknowns (rows of P vs columns of Q)."""
    return "Q" if shape[1] > shape[0] else "P"


def other(elim: str) -> str:
    return "P" if elim == "Q" else "Q"


def svd_start(M: np.ndarray, W: np.ndarray, rank: int, fill: str) -> tuple[np.ndarray, ...]:
    """Truncated SVD of the filled matrix: ``P0 = U S^1/2``, ``Q0 = S^1/2 V^T``."""
    X = np.where(W, M, 0.0)
    if fill == "mean":
        means = X.sum(axis=1) / np.maximum(W.sum(axis=1), 1)
        X = np.where(W, M, means[:, None])
    U, s, Vt = np.linalg.svd(X, full_matrices=False)
    r = np.sqrt(s[:rank])
    return U[:, :rank] * r, r[:, None] * Vt[:rank]


def scaled_start(M: np.ndarray, W: np.ndarray, rank: int,
                 seed: int) -> tuple[np.ndarray, np.ndarray]:
    """N(0, sigma^2) factors with ``P0 @ Q0`` at the data's RMS."""
    sigma = np.sqrt(np.sqrt(np.mean(M[W] ** 2)) / np.sqrt(rank))
    rng = np.random.default_rng(seed)
    return (sigma * rng.standard_normal((M.shape[0], rank)),
            sigma * rng.standard_normal((rank, M.shape[1])))


def run_one(M: np.ndarray, W: np.ndarray, rank: int, call: str, elim: str, seed: int,
            cap: float) -> dict[str, Any]:
    kwargs: dict[str, Any]
    if call == "obvious":
        kwargs = dict(formulation="none", random_state=seed)
    else:
        kwargs = dict(RECIPE, eliminate=elim, random_state=seed, max_time=cap)
        if call == "scaled":
            kwargs["P0"], kwargs["Q0"] = scaled_start(M, W, rank, seed)
        elif call.startswith("svd-"):
            kwargs["P0"], kwargs["Q0"] = svd_start(M, W, rank, call.removeprefix("svd-"))
    t0, w0 = time.process_time(), time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            nfev0 = 0
            if call == "ridge":  # stage 1: a small ridge smooths the reduced cost
                reg = RIDGE * float(np.mean(M[W] ** 2))
                stage = lsqmf.solve(M, rank, mask=W, **dict(kwargs, formulation="l2", reg=reg))
                kwargs["P0"], kwargs["Q0"], nfev0 = stage.P, stage.Q, stage.nfev
                kwargs.pop("random_state")
            fit = lsqmf.solve(M, rank, mask=W, **kwargs)
        except Exception as err:  # record, never stop the benchmark
            return dict(cpu_s=time.process_time() - t0, wall_s=time.perf_counter() - w0,
                        nfev=-1, rms=np.inf, cost=np.inf, optimality=np.nan,
                        success_flag=False, status=-99, message=f"{type(err).__name__}: {err}")
    return dict(cpu_s=time.process_time() - t0, wall_s=time.perf_counter() - w0,
                nfev=fit.nfev + nfev0, rms=fit.rms, cost=fit.cost,
                optimality=np.nan if fit.optimality is None else fit.optimality,
                success_flag=bool(fit.success), status=fit.status, message=fit.message)


def sequences(args: argparse.Namespace) -> list[tuple[str, int, np.ndarray, np.ndarray, int,
                                                       float]]:
    out = []
    for family in args.families:
        settings = SFM_FAMILIES[family]
        for i in range(args.first_sequence, args.sequences):
            seq = make_affine_sfm(**settings, random_state=i)  # type: ignore[arg-type]
            truth = float(np.sqrt(np.mean((seq.M - seq.clean)[seq.mask & ~seq.outliers] ** 2)))
            out.append((family, i, seq.M, seq.mask, seq.rank, truth))
    if args.giraffe and GIRAFFE.exists():
        M = np.loadtxt(GIRAFFE)[:, 1:]
        out.append(("giraffe", 0, M, np.isfinite(M), 6, float("nan")))
    return out


def plan_calls(family: str, i: int, shape: tuple[int, int],
               args: argparse.Namespace) -> list[tuple[str, str, int]]:
    """(call, eliminate, seed) of every run on one sequence, interleaved by seed."""
    if args.ridge_only:
        n = args.giraffe_ridge_starts if family == "giraffe" else args.ridge_starts
        return [("ridge", rule_eliminate(shape), s) for s in range(n)]
    giraffe = family == "giraffe"
    n_starts = args.giraffe_starts if giraffe else args.starts
    n_scaled = args.giraffe_scaled_starts if giraffe else args.scaled_starts
    elim = rule_eliminate(shape)
    calls = []
    for s in range(n_starts):
        calls.append(("obvious", "-", s))
        calls.append(("recipe", elim, s))
        if s < n_scaled:
            calls.append(("scaled", elim, s))
        if (giraffe or i < args.other_seqs) and s < (args.giraffe_starts if giraffe
                                                      else args.other_starts):
            calls.append(("other", other(elim), s))
    calls += [("svd-mean", elim, 0), ("svd-zero", elim, 0)]
    return calls


def code_state() -> str:
    """The library state a run measures: HEAD, ``+wt`` when ``lsqmf/`` has uncommitted edits
    (other engineers work in the same tree, so a long run can straddle their commits)."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "lsqmf"],
                               cwd=ROOT).returncode != 0
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+wt" if dirty else "")


def run(args: argparse.Namespace) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    code = code_state()
    seqs = sequences(args)
    mode = "a" if args.append else "w"
    seq_path = OUT / ("sequences.csv" if not args.append else "sequences_appended.csv")
    with open(seq_path, "w", newline="") as fh:
        w = csv.DictWriter(fh, SEQ_FIELDS)
        w.writeheader()
        for family, i, M, W, rank, truth in seqs:
            cv, rv = W.sum(axis=0), W.sum(axis=1)
            w.writerow(dict(family=family, sequence=i, n_rows=M.shape[0], n_cols=M.shape[1],
                            rank=rank, density=round(float(W.mean()), 4),
                            min_col_visible=int(cv.min()), median_col_visible=float(np.median(cv)),
                            min_row_visible=int(rv.min()), median_row_visible=float(np.median(rv)),
                            data_rms=round(float(np.sqrt(np.mean(M[W] ** 2))), 3),
                            truth_rms=round(truth, 6)))
    # warm-up (kernels compiled or loaded before any timing)
    family, i, M, W, rank, _ = seqs[0]
    for elim in ("P", "Q"):
        run_one(M, W, rank, "recipe", elim, 0, 10.0)
    run_one(M, W, rank, "obvious", "-", 0, 10.0)
    path = OUT / "runs.csv"
    with open(path, mode, newline="") as fh:
        writer = csv.DictWriter(fh, FIELDS)
        if not args.append:
            writer.writeheader()
        t_all = time.process_time()
        for family, i, M, W, rank, _ in seqs:
            cap = args.giraffe_cap if family == "giraffe" else args.cap
            t_seq = time.process_time()
            for call, elim, seed in plan_calls(family, i, M.shape, args):
                row = run_one(M, W, rank, call, elim, seed, cap)
                writer.writerow(dict(family=family, sequence=i, call=call, eliminate=elim,
                                     seed=seed, code=code, **row))
            fh.flush()
            print(f"{family} {i}: {time.process_time() - t_seq:.1f} s CPU "
                  f"(total {time.process_time() - t_all:.0f} s)", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------- report
def load_runs() -> list[dict[str, Any]]:
    rows = []
    with open(OUT / "runs.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            for k in ("cpu_s", "wall_s", "rms", "cost", "optimality"):
                r[k] = float(r[k]) if r[k] not in ("", "None") else float("nan")
            for k in ("sequence", "seed", "nfev", "status"):
                r[k] = int(r[k])
            r["success_flag"] = r["success_flag"] == "True"
            r["code"] = r.get("code") or "A"
            rows.append(r)
    best: dict[tuple[str, int], float] = {}
    for r in rows:
        key = (r["family"], r["sequence"])
        best[key] = min(best.get(key, np.inf), r["rms"])
    for r in rows:
        b = best[(r["family"], r["sequence"])]
        r["best_rms"] = b
        r["hit"] = r["rms"] <= b * (1.0 + SUCCESS_RTOL)
    return rows


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    truth = {}
    with open(OUT / "sequences.csv", newline="") as fh:
        for t in csv.DictReader(fh):
            truth[(t["family"], int(t["sequence"]))] = float(t["truth_rms"])
    out = []
    keys = sorted({(r["family"], r["call"], r["code"]) for r in rows})
    for family, call, code in keys:
        sel = [r for r in rows
               if r["family"] == family and r["call"] == call and r["code"] == code]
        cpu = np.array([r["cpu_s"] for r in sel])
        hits = np.array([r["hit"] for r in sel])
        nfev = np.array([r["nfev"] for r in sel])
        false = sum(1 for r in sel if r["success_flag"] and not r["hit"])
        per_seq: dict[int, list[bool]] = {}
        for r in sel:
            per_seq.setdefault(r["sequence"], []).append(bool(r["hit"]))
        rates = np.array([np.mean(v) for v in per_seq.values()])
        p = hits.mean()
        out.append(dict(
            family=family, call=call, code=code,
            eliminate="/".join(sorted({r["eliminate"] for r in sel})),
            sequences=len(per_seq), runs=len(sel), success_pct=round(100 * p, 1),
            success_1e4_pct=round(100 * np.mean([r["rms"] <= r["best_rms"] * (1 + 1e-4)
                                                 for r in sel]), 1),
            below_truth_pct=round(100 * np.mean([r["rms"] <= truth[(family, r["sequence"])]
                                                 for r in sel]), 1),
            worst_sequence_pct=round(100 * rates.min(), 1),
            success_at_3_pct=round(100 * np.mean(1 - (1 - rates) ** 3), 1),
            median_cpu_s=round(float(np.median(cpu)), 4),
            q10_cpu_s=round(float(np.quantile(cpu, 0.1)), 4),
            q90_cpu_s=round(float(np.quantile(cpu, 0.9)), 4),
            median_nfev=float(np.median(nfev)),
            false_success=false,
            failed_flagged=int(sum(1 for r in sel if not r["hit"] and not r["success_flag"])),
            time_to_see_twice_s=round(2 * float(np.mean(cpu)) / p, 3) if p > 0 else np.inf,
        ))
    return out


def elimination_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Recipe (rule) vs other elimination on the same starts, per sequence."""
    seqinfo = {}
    with open(OUT / "sequences.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            seqinfo[(r["family"], int(r["sequence"]))] = r
    out = []
    for key in sorted({(r["family"], r["sequence"]) for r in rows if r["call"] == "other"}):
        oth = [r for r in rows if (r["family"], r["sequence"]) == key and r["call"] == "other"]
        seeds = {r["seed"] for r in oth}
        rec = [r for r in rows if (r["family"], r["sequence"]) == key and r["call"] == "recipe"
               and r["seed"] in seeds]
        info = seqinfo[key]
        out.append(dict(
            family=key[0], sequence=key[1], n_rows=info["n_rows"], n_cols=info["n_cols"],
            density=info["density"], rule=rec[0]["eliminate"], other=oth[0]["eliminate"],
            starts=len(seeds), rule_hits=sum(r["hit"] for r in rec),
            other_hits=sum(r["hit"] for r in oth),
            rule_median_cpu_s=round(float(np.median([r["cpu_s"] for r in rec])), 3),
            other_median_cpu_s=round(float(np.median([r["cpu_s"] for r in oth])), 3),
        ))
    return out


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def plot(summary: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = sorted({s["family"] for s in summary})
    calls = ["obvious", "recipe", "other", "scaled", "svd-mean", "svd-zero", "ridge"]
    markers = dict(zip(calls, ["x", "o", "s", "^", "D", "v", "*"], strict=True))
    colors = dict(zip(families, plt.get_cmap("tab10").colors, strict=False))
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for s in summary:
        hollow = s["code"] != "A"  # runs of the later library state (README)
        style: dict[str, Any] = ({"color": colors[s["family"]]} if s["call"] == "obvious"
                                 else {"facecolors": "none" if hollow else colors[s["family"]],
                                       "edgecolors": colors[s["family"]]})
        ax.scatter(max(s["median_cpu_s"], 1e-3), s["success_pct"], marker=markers[s["call"]],
                   s=55, alpha=0.85, **style)
    for f in families:
        ax.scatter([], [], color=colors[f], marker="o", label=f)
    for c in calls:
        ax.scatter([], [], color="gray", marker=markers[c], label=c)
    ax.set_xscale("log")
    ax.set_xlabel("median CPU seconds per start (one core, one BLAS thread)")
    ax.set_ylabel(f"single-start success % (RMS within {SUCCESS_RTOL:g} of the best)")
    ax.set_ylim(-3, 103)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=2, loc="center right")
    ax.set_title("Affine SfM families + giraffe: success vs time per start")
    fig.tight_layout()
    fig.savefig(OUT / "success_vs_time.png", dpi=120)


def report() -> None:
    rows = load_runs()
    summary = summarize(rows)
    write_csv(OUT / "summary.csv", summary)
    elim = elimination_table(rows)
    if elim:
        write_csv(OUT / "elimination.csv", elim)
    plot(summary)
    for s in summary:
        print(s)


# ------------------------------------------------------------------------------- diagnosis
def inner_condition(fit: Any, W: np.ndarray, elim: str) -> float:
    """Largest condition number of the eliminated factor's inner least-squares problems at
    the end point, with the optimized factor orthonormalized first (the reduced cost only
    sees its span), e.g. for ``'Q'``: ``cond(U[visible rows of column j])``, ``P = U R``."""
    if elim == "Q":
        U, _ = np.linalg.qr(fit.P)
        blocks = (U[W[:, j]] for j in range(W.shape[1]))
    else:
        U, _ = np.linalg.qr(fit.Q.T)
        blocks = (U[W[i]] for i in range(W.shape[0]))
    return float(max(np.linalg.cond(b) for b in blocks))


def diagnose(args: argparse.Namespace) -> None:
    """Re-run failed ``recipe`` starts (deterministic) and classify how they end: the end
    point's inner conditioning, and where the recipe goes when restarted from the end point
    (unchanged: did the stop come too early?) and from the end point perturbed by 1e-3 of
    its norm (a saddle or a flat region escapes; a strict local minimum returns)."""
    rows = load_runs()
    seqs = {(f, i): (M, W, rank) for f, i, M, W, rank, _ in sequences(args)}
    out = []
    wanted = set(args.families) | ({"giraffe"} if args.giraffe else set())
    for family in sorted({r["family"] for r in rows} & wanted):
        failed = [r for r in rows if r["family"] == family and r["call"] == "recipe"
                  and not r["hit"]][: args.diagnose]
        for r in failed:
            M, W, rank = seqs[(family, r["sequence"])]
            elim = r["eliminate"]
            kw = dict(RECIPE, eliminate=elim, mask=W)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = lsqmf.solve(M, rank, random_state=r["seed"], **kw)
                again = lsqmf.solve(M, rank, P0=fit.P, Q0=fit.Q, **kw)
                rng = np.random.default_rng(r["seed"])
                P1 = fit.P + 1e-3 * np.linalg.norm(fit.P) / np.sqrt(fit.P.size) * \
                    rng.standard_normal(fit.P.shape)
                Q1 = fit.Q + 1e-3 * np.linalg.norm(fit.Q) / np.sqrt(fit.Q.size) * \
                    rng.standard_normal(fit.Q.shape)
                kicked = lsqmf.solve(M, rank, P0=P1, Q0=Q1, **kw)
                opt = lsqmf.solve(M, rank, random_state=0, **kw)  # reference for the cond
            best = r["best_rms"]
            out.append(dict(
                family=family, sequence=r["sequence"], seed=r["seed"], eliminate=elim,
                rms=round(fit.rms, 6), best_rms=round(best, 6),
                rms_gap_pct=round(100 * (fit.rms / best - 1), 3),
                status=fit.status, success_flag=bool(fit.success), nfev=fit.nfev,
                optimality=fit.optimality,
                inner_cond=round(inner_condition(fit, W, elim), 1),
                inner_cond_at_best=round(inner_condition(opt, W, elim), 1)
                if opt.rms <= best * (1 + SUCCESS_RTOL) else float("nan"),
                restart_rms=round(again.rms, 6), restart_nfev=again.nfev,
                restart_hit=again.rms <= best * (1 + SUCCESS_RTOL),
                kick_rms=round(kicked.rms, 6), kick_nfev=kicked.nfev,
                kick_hit=kicked.rms <= best * (1 + SUCCESS_RTOL),
            ))
            print(out[-1], file=sys.stderr, flush=True)
    name = "failures.csv" if not args.append else "failures_appended.csv"
    if out:
        write_csv(OUT / name, out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--families", nargs="+", default=list(SFM_FAMILIES),
                    choices=list(SFM_FAMILIES))
    ap.add_argument("--sequences", type=int, default=20)
    ap.add_argument("--first-sequence", type=int, default=0,
                    help="start at this sequence number (a run split across processes)")
    ap.add_argument("--starts", type=int, default=20)
    ap.add_argument("--scaled-starts", type=int, default=10)
    ap.add_argument("--other-seqs", type=int, default=5)
    ap.add_argument("--other-starts", type=int, default=3)
    ap.add_argument("--giraffe-starts", type=int, default=20)
    ap.add_argument("--giraffe-scaled-starts", type=int, default=10)
    ap.add_argument("--no-giraffe", dest="giraffe", action="store_false")
    ap.add_argument("--cap", type=float, default=20.0,
                    help="max_time (wall seconds) per generated run")
    ap.add_argument("--giraffe-cap", type=float, default=40.0)
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--ridge-only", action="store_true",
                    help="run only the ridge call (a supplementary pass, with --append)")
    ap.add_argument("--ridge-starts", type=int, default=5)
    ap.add_argument("--giraffe-ridge-starts", type=int, default=5)
    ap.add_argument("--append", action="store_true",
                    help="append to runs.csv and sequences.csv (a run split by family)")
    ap.add_argument("--diagnose", type=int, default=0, metavar="N",
                    help="only re-run and classify the first N failed recipe starts per family")
    ap.add_argument("--out", type=Path, default=None, help="output directory")
    args = ap.parse_args(argv)
    global OUT
    OUT = args.out or OUT
    if args.diagnose:
        with threadpool_limits(1):
            diagnose(args)
        return 0
    if not args.report_only:
        with threadpool_limits(1):
            run(args)
    report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
