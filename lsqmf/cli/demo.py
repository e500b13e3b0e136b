"""``lsqmf demo``: the main job on built-in data, end to end.

1. MovieLens latest-small (vendored): a seeded 90/10 holdout, fitted with ``lsq`` (trf + lsmr)
   and ``als`` at their MovieLens defaults; test RMSE, MAE and fit time are printed.
2. The seed timing grid (by default the problems with n <= 20, which take well under a minute;
   ``--full`` runs all 336 cells, minutes because of the exact-solver cells at n = 40), its
   CSV, the 2x2 timing figure (PNG and SVG; :func:`lsqmf.bench.plots.plot_timings` with its
   defaults, the figure the README shows) and the Markdown report, written to ``--out``.

``lsqmf demo --help`` prints ``_DESCRIPTION`` (plain text), not this docstring.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]

QUICK_WHERE = "n <= 20"

#: What the demo says on stderr before each MovieLens fit.
_FIT_NOTE = {
    "lsq": "least squares, trf + lsmr over ~220k unknowns: the slower one, 10-60 s",
    "als": "alternating least squares; seconds",
}

_DESCRIPTION = """\
Run lsqmf end to end on built-in data, writing everything to OUT:

1. MovieLens latest-small (bundled with lsqmf): a seeded 90/10 holdout split,
   fitted with lsq (least squares: trf + lsmr) and als at their MovieLens
   defaults; prints test RMSE, MAE, fit time and the count of cold-start pairs.
2. The seed timing grid (the benchmark of the original code lsqmf started
   from): every least_squares method x tr_solver x loss on small random
   problems. Writes OUT/seed/results.csv, the timing figure OUT/seed/timings.png
   (and .svg; the same figure as the README's) and the report OUT/seed/README.md,
   and prints the report's verdict on LSMR vs the exact solver.

By default only the problems with n <= 20 run (252 cells, about 30 s);
--full runs all 336 cells, up to n = 40 (several minutes: the dense exact
solves at n = 40 dominate). Every BLAS/OpenMP/numba thread pool runs on one
thread for comparable timings; `lsqmf --blas-threads N demo ...` changes that.
Rerun on the same OUT, the demo reuses the cells an earlier demo timed there
(and says so); delete OUT/seed to time them again.
"""

_EPILOG = """\
examples:
  lsqmf demo --out demo
  lsqmf demo --out demo --full --no-progress
"""


def register(subparsers: Any) -> None:
    """Add the ``demo`` subcommand."""
    p = subparsers.add_parser(
        "demo",
        help="fit the built-in MovieLens data and run the seed timing benchmark with its plot",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="lsqmf-demo", help="output directory (default lsqmf-demo)")
    p.add_argument("--full", action="store_true",
                   help="run the whole seed grid (336 cells, n up to 40; minutes)")
    from ..runtime.progress import PROGRESS_HELP

    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help=PROGRESS_HELP)
    p.add_argument("--skip-movielens", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.skip_movielens:
        _movielens(progress=args.progress is not False)
    _seed_grid(args, out)
    return 0


def _movielens(*, progress: bool) -> None:
    """Part 1: the built-in MovieLens holdout fitted with lsq and als; one line per solver."""
    from ..data.readers import load_builtin
    from ..evaluate.scoring import fit_and_score
    from ..evaluate.splits import holdout_split
    from ..solvers import SOLVER_DEFAULTS

    ratings = load_builtin()
    print(f"MovieLens latest-small (built in): {ratings!r}")
    train, test = holdout_split(ratings, test_size=0.1, random_state=0)
    print(f"holdout: {train.nnz} training / {test.nnz} test ratings (seed 0)")
    print(f"{'solver':8} {'rank':>4} {'RMSE':>7} {'MAE':>7} {'fit s':>7} {'cold':>5}")
    for name in ("lsq", "als"):
        params = dict(SOLVER_DEFAULTS[name])
        if progress:  # a fit takes seconds to a minute: say what is running
            print(f"fitting {name} ({_FIT_NOTE[name]}) ...", file=sys.stderr, flush=True)
        score = fit_and_score(name, train, test, random_state=0, **params)
        print(
            f"{name:8} {params['rank']:>4} {score['rmse']:>7.4f} {score['mae']:>7.4f} "
            f"{score['fit_s']:>7.2f} {score['n_cold_start']:>5}"
        )
    print()


def _seed_grid(args: argparse.Namespace, out: Path) -> None:
    """Part 2: the seed timing grid, its figure and report under ``out / 'seed'``."""
    from ..bench import load_grid, run_grid
    from ..bench.harness import out_state, read_raw
    from ..bench.plots import plot_timings
    from ..bench.report import lsmr_verdict, write_report

    where = None if args.full else QUICK_WHERE
    what = "all 336 cells" if args.full else f"the cells with {QUICK_WHERE}"
    print(f"seed timing grid ({what}), repeats 1 -> {out / 'seed'}", flush=True)
    grid = load_grid(preset="seed")
    threads = getattr(args, "blas_threads", None) or 1
    state = out_state(grid, out / "seed", repeats=1, where=where, threads=threads)
    if state.has_run and not state.differences and state.n_todo == 0:
        results = read_raw(out / "seed" / "results.csv")
        results = results[results.eval(where)] if where else results
        timed = 0
        print(f"every cell is already in {out / 'seed'} from an earlier demo run; reusing them "
              "(delete that folder to time them again)", file=sys.stderr, flush=True)
    else:
        before = state.n_done
        results = run_grid(
            grid, out / "seed", repeats=1, where=where, progress=args.progress,
            command="lsqmf demo", preset="seed", threads=threads, resume=state.has_run,
            notify=lambda line: print(line, file=sys.stderr, flush=True),
        )
        timed = len(results) - before
    figures = plot_timings(results, out / "seed")
    note = None if args.full else (
        f"This demo timed the problems with {QUICK_WHERE} once each. The full grid "
        "(`lsqmf demo --full`, or `lsqmf bench --preset seed --repeats 3` as in the committed "
        "`reports/seed/`) goes up to n = 40, where LSMR's lead is much larger."
    )
    report = write_report(out / "seed" / "results.csv", out / "seed" / "README.md", note=note)
    errors = results["error"].fillna("").astype(str) if "error" in results else None
    failed = 0 if errors is None else int((errors != "").sum())
    print(f"{timed} cells timed, {len(results) - timed} reused from an earlier run "
          f"({failed} recorded an error)")
    print(f"LSMR vs exact (the seed's claim: LSMR strongly preferred): {lsmr_verdict(results)}")
    for path in [*figures, report]:
        print(f"wrote {path}")
    sys.stdout.flush()
