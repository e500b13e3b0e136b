"""``lsqmf demo``: the main job on built-in data, end to end.

1. MovieLens latest-small (vendored): a seeded 90/10 holdout, fitted with ``lsq`` (trf + lsmr)
   and ``als`` at their MovieLens defaults; test RMSE, MAE and fit time are printed.
2. The seed timing grid (by default the problems with n <= 20, which take well under a minute;
   ``--full`` runs all 336 cells, minutes because of the exact-solver cells at n = 40), its
   CSV, the 2x2 timing figure (PNG and SVG) and the Markdown report, written to ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]

QUICK_WHERE = "n <= 20"


def register(subparsers: Any) -> None:
    """Add the ``demo`` subcommand."""
    p = subparsers.add_parser(
        "demo",
        help="fit the built-in MovieLens data and run the seed timing benchmark with its plot",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="lsqmf-demo", help="output directory (default lsqmf-demo)")
    p.add_argument("--full", action="store_true", help="run the whole seed grid (n up to 40)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--skip-movielens", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..bench import load_grid, run_grid
    from ..bench.plots import plot_timings
    from ..bench.report import write_report

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.skip_movielens:
        from ..datasets import load_builtin
        from ..evaluation import fit_and_score, holdout_split
        from ..solvers import SOLVER_DEFAULTS

        ratings = load_builtin()
        print(f"MovieLens latest-small (built in): {ratings!r}")
        train, test = holdout_split(ratings, test_size=0.1, random_state=0)
        print(f"holdout: {train.nnz} training / {test.nnz} test ratings (seed 0)")
        print(f"{'solver':8} {'rank':>4} {'RMSE':>7} {'MAE':>7} {'fit s':>7} {'cold':>5}")
        for name in ("lsq", "als"):
            params = dict(SOLVER_DEFAULTS[name])
            score = fit_and_score(name, train, test, random_state=0, **params)
            print(
                f"{name:8} {params['rank']:>4} {score['rmse']:>7.4f} {score['mae']:>7.4f} "
                f"{score['fit_s']:>7.2f} {score['n_cold_start']:>5}"
            )
        print()

    where = None if args.full else QUICK_WHERE
    what = "all 336 cells" if args.full else f"the cells with {QUICK_WHERE}"
    print(f"seed timing grid ({what}), repeats 1 -> {out / 'seed'}", flush=True)
    grid = load_grid(preset="seed")
    results = run_grid(
        grid, out / "seed", repeats=1, where=where, progress=not args.no_progress,
        command="lsqmf demo", preset="seed",
    )
    figures = plot_timings(results, out / "seed", style="loss")
    report = write_report(out / "seed" / "results.csv", out / "seed" / "README.md")
    errors = results["error"].fillna("").astype(str) if "error" in results else None
    failed = 0 if errors is None else int((errors != "").sum())
    print(f"{len(results)} cells timed ({failed} recorded an error)")
    for path in [*figures, report]:
        print(f"wrote {path}")
    sys.stdout.flush()
    return 0
