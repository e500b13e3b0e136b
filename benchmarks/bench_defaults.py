"""Regularization defaults beyond MovieLens: the reg rule measured per family of rating sets.

Issue 21, item 2. The registry's default ``reg`` is *scaled by the data*: ``reg=None`` means
``reg_per_std * std(training ratings)`` (count-scaled, with biases; ``reg_per_std`` declared
per solver in its :class:`~lsqmf.solvers.SolverSpec`). This benchmark measures, on rating sets
we generate and on inner splits of the built-in MovieLens latest-small (never on a held-out
set we do not have), the held-out RMSE of every multiplier ``k`` in ``--ks``
(``reg = k * std``) for ``als`` (which stands for the exact ``'l2'`` solvers: ``als``,
``als_cg``, ``lsq``, ``gd``, ``als_gd``, ``als_sgd``) and ``bsgd`` (early-stopped biased SGD,
its own multiplier), and reports per family the best ``k``, the regret of the declared
default and the regret of the old fixed MovieLens value (``reg=0.15``; ``bsgd``: 0.05).

Families (``make_low_rank``, true rank 5, 1200 x 800, each with 2 seeds):

- ``ml-like``: 0.5--5 stars (``scale``), noise 0.5, density 3%, power-law activity 0.8;
- ``unit-low-noise`` / ``unit-noisy``: unit-variance truth, noise 0.25 / 1.0, density 3%;
- ``scale-100``: like ``ml-like`` on a 0--100 scale (a fixed reg is far too small here);
- ``sparse``: 0.5--5, noise 0.5, density 1%, activity 0.8;
- ``dense``: 0.5--5, noise 0.5, density 10%;
- ``ml-latest-small``: 3 seeded 10% holdouts of the built-in set.

Every fit: rank 20, count-scaled, biases (``reg_bias = k``, the rule's scale-free bias weight;
the old fixed value with ``reg_bias = reg``), the solver's other registry defaults, seed 0;
scored by :func:`lsqmf.evaluate.scoring.fit_and_score` (predictions clipped to the training
range). One BLAS thread. Rows go to ``reports/defaults/reg_sweep.csv``, the summary to
``reports/defaults/summary.csv`` (and printed as markdown).

Run::

    python benchmarks/bench_defaults.py            # about 10 CPU minutes
    python benchmarks/bench_defaults.py --quick    # 1 seed, 1 split, fewer ks
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "2")

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

FAMILIES: dict[str, dict] = {
    "ml-like": dict(density=0.03, noise=0.5, scale=(0.5, 5.0), activity=0.8),
    "unit-low-noise": dict(density=0.03, noise=0.25),
    "unit-noisy": dict(density=0.03, noise=1.0),
    "scale-100": dict(density=0.03, noise=0.5, scale=(0.0, 100.0), activity=0.8),
    "sparse": dict(density=0.01, noise=0.5, scale=(0.5, 5.0), activity=0.8),
    "dense": dict(density=0.10, noise=0.5, scale=(0.5, 5.0)),
}
OLD_FIXED = {"als": 0.15, "bsgd": 0.05}


def rating_sets(quick: bool):
    """(family, replicate, train, test) for every generated family and MovieLens split."""
    from lsqmf.data.readers import load_builtin
    from lsqmf.data.synthetic import make_low_rank
    from lsqmf.evaluate.splits import holdout_split

    seeds = [0] if quick else [0, 1]
    for family, kw in FAMILIES.items():
        for seed in seeds:
            ratings, _ = make_low_rank(1200, 800, 5, random_state=seed, **kw)
            train, test = holdout_split(ratings, test_size=0.1, random_state=seed)
            yield family, seed, train, test
    ml = load_builtin()
    for seed in ([0] if quick else [0, 1, 2]):
        train, test = holdout_split(ml, test_size=0.1, random_state=100 + seed)
        yield "ml-latest-small", seed, train, test


def sweep(ks: list[float], solvers: list[str], quick: bool, out: Path) -> pd.DataFrame:
    from lsqmf.evaluate.scoring import fit_and_score
    from lsqmf.solvers import warm_up_solvers

    warm_up_solvers()
    rows = []
    for family, rep, train, test in rating_sets(quick):
        std = float(np.std(train.values))
        for solver in solvers:
            regs = [("k", k, k * std) for k in ks] + [("fixed", np.nan, OLD_FIXED[solver])]
            for kind, k, reg in regs:
                t0 = time.perf_counter()
                # the rule of reg=None: reg = k * std and reg_bias = k (scale-free for biases);
                # the old fixed value had reg_bias = reg
                reg_bias = k if kind == "k" else reg
                res = fit_and_score(solver, train, test, rank=20, reg=reg, reg_bias=reg_bias,
                                    count_scaled=True, biases=True, random_state=0)
                rows.append({"family": family, "rep": rep, "solver": solver, "kind": kind,
                             "k": k, "reg": reg, "std": std, "nnz": train.nnz,
                             "rmse": res["rmse"], "fit_s": res["fit_s"],
                             "wall_s": time.perf_counter() - t0})
                print(f"{family:16s} {rep} {solver:5s} {kind:5s} k={k:<6.3g} reg={reg:<8.4g} "
                      f"rmse={res['rmse']:.4f}", flush=True)
    frame = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "reg_sweep.csv", index=False)
    return frame


def summarize(frame: pd.DataFrame, defaults: dict[str, float]) -> pd.DataFrame:
    """Per family and solver: best k, RMSE at the best k, the default's and the old fixed
    value's RMSE and regret (mean over replicates)."""
    out = []
    for (family, solver), g in frame.groupby(["family", "solver"], sort=False):
        ks = g[g.kind == "k"].groupby("k")["rmse"].mean()
        fixed = g[g.kind == "fixed"]["rmse"].mean()
        best_k = float(ks.idxmin())
        default_k = defaults[solver]
        at_default = float(ks.loc[default_k]) if default_k in ks.index else np.nan
        out.append({"family": family, "solver": solver, "std": g["std"].mean(),
                    "best_k": best_k, "rmse_best": float(ks.min()),
                    "default_k": default_k, "rmse_default": at_default,
                    "regret_default": at_default - float(ks.min()),
                    "rmse_old_fixed": fixed, "regret_old_fixed": fixed - float(ks.min())})
    return pd.DataFrame(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ks", type=float, nargs="+",
                   default=[0.02, 0.05, 0.1, 0.15, 0.25, 0.4])
    p.add_argument("--solvers", nargs="+", default=["als", "bsgd"])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", type=Path, default=Path("reports/defaults"))
    p.add_argument("--summarize-only", action="store_true",
                   help="re-summarize reg_sweep.csv without fitting")
    args = p.parse_args()
    from lsqmf.solvers import SOLVER_SPECS

    defaults = {s: SOLVER_SPECS[s].reg_per_std for s in args.solvers} if hasattr(
        SOLVER_SPECS["als"], "reg_per_std") else {"als": 0.15, "bsgd": 0.05}
    if args.summarize_only:
        frame = pd.read_csv(args.out / "reg_sweep.csv")
    else:
        frame = sweep(args.ks, args.solvers, args.quick, args.out)
    summary = summarize(frame, defaults)
    summary.to_csv(args.out / "summary.csv", index=False)
    print(_markdown(summary))


def _markdown(frame: pd.DataFrame) -> str:
    """A markdown table (no tabulate dependency)."""
    def cell(v: object) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(frame.columns) + " |",
             "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |"
              for row in frame.itertuples(index=False)]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
