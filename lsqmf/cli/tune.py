"""``lsqmf tune TRAIN``: choose solver, rank and regularization on the training data only.

Examples::

    lsqmf tune train.csv --out config.json       # finished fits kept in config.rows.csv
    lsqmf fit train.csv --config config.json --out model.npz
    lsqmf evaluate train.csv test.csv --config config.json
    lsqmf tune builtin --folds 3 --jobs 2 --max-time 120 --rule best
    lsqmf tune train.csv --solver als_cg bmf --scheduler tcp://host:8786 --json

Interrupted (Ctrl-C, SIGTERM, SIGHUP), the finished fits stay in the checkpoint (``--checkpoint``,
by default next to ``--out``); the same command resumes from them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``tune`` subcommand."""
    from ..evaluate.tuning import DEFAULT_SPACE, RULES

    space = "; ".join(
        f"{s}: " + ", ".join(f"{k} {list(v)}" for k, v in grid.items())
        for s, grid in DEFAULT_SPACE.items()
    )
    p = subparsers.add_parser(
        "tune", help="choose solver, rank and regularization on TRAIN only",
        description="Score every configuration of the search space on a seeded inner holdout "
        "(or k-fold) of TRAIN and print and save the chosen one. The test data is never read. "
        "Choice rule (--rule): 'cheapest' (default) takes the configuration with the lowest "
        "mean fit time among those whose held-out RMSE is within the noise of the best (the "
        "standard error of the best one's mean over the folds; with one holdout, RMSE / "
        "sqrt(2 n)); 'best' the lowest RMSE whatever its cost. --max-time is a time budget. "
        f"Search space: {space}; every other option is the solver's default (the registry's, "
        "as for fit and evaluate). --out writes a configuration that 'lsqmf fit --config' "
        "and 'lsqmf evaluate --config' read; finished fits are appended to the checkpoint as "
        "they finish, so an interrupted search resumes when the same command is run again.",
    )
    p.add_argument("train", metavar="TRAIN", help="ratings file or 'builtin'")
    p.add_argument("--solver", nargs="+", default=None, metavar="NAME",
                   help=f"solvers to try (default: {' '.join(DEFAULT_SPACE)})")
    p.add_argument("--folds", type=int, default=1, metavar="K",
                   help="1: one holdout of --test-size (default); K >= 2: K-fold")
    p.add_argument("--test-size", type=float, default=0.1, metavar="F",
                   help="holdout fraction (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seeds the splits and fits (default 0)")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="local worker processes (default 1)")
    p.add_argument("--max-time", type=float, default=None, metavar="S",
                   help="time budget in seconds: no configuration starts after it")
    p.add_argument("--rule", choices=list(RULES), default="cheapest",
                   help="cheapest: the fastest within noise of the best RMSE (default); best: "
                   "the lowest RMSE")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run the fits on a Dask cluster, e.g. tcp://host:8786 (needs "
                   "lsqmf[cluster]); --jobs is then ignored")
    p.add_argument("--out", type=Path, default=None, metavar="FILE",
                   help="save the chosen configuration as JSON (read by fit/evaluate --config)")
    p.add_argument("--checkpoint", type=Path, default=None, metavar="CSV",
                   help="finished fits, appended as they finish and reused by a rerun "
                   "(default: OUT with the suffix .rows.csv when --out is given)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    from . import add_input_options
    from ._options import add_progress_options

    add_progress_options(p)

    add_input_options(p)
    p.set_defaults(func=run_tune)


def run_tune(args: argparse.Namespace) -> int:
    from ..data.readers import load_ratings
    from ..evaluate.tuning import DEFAULT_SPACE, tune
    from . import input_options

    if args.solver is None:
        space = DEFAULT_SPACE
    else:
        unknown = [s for s in args.solver if s not in DEFAULT_SPACE]
        if unknown:
            raise ValueError(f"--solver must be among {', '.join(DEFAULT_SPACE)}; got "
                             f"{unknown[0]!r}.")
        space = {s: DEFAULT_SPACE[s] for s in args.solver}
    train = load_ratings(args.train, **input_options(args))
    checkpoint = args.checkpoint
    if checkpoint is None and args.out is not None:
        checkpoint = args.out.with_suffix(".rows.csv")
    try:
        res = tune(train, space=space, n_splits=args.folds, test_size=args.test_size,
                   random_state=args.seed, n_jobs=args.jobs, scheduler=args.scheduler,
                   max_time=args.max_time, rule=args.rule, checkpoint=checkpoint,
                   progress=args.progress)
    except KeyboardInterrupt:
        kept = (f"finished fits are in {checkpoint}; run the same command to resume"
                if checkpoint is not None else "use --out or --checkpoint to keep finished fits")
        print(f"lsqmf tune: {kept}", file=sys.stderr)
        raise
    if args.out is not None:
        res.save(args.out)
    if args.json:
        print(json.dumps(res.to_dict()))
        return 0
    params = " ".join(f"{k}={v}" for k, v in res.params.items())
    print(f"chosen ({res.rule}): solver={res.solver} {params}  held-out RMSE {res.rmse:.4f}  "
          f"fit {res.best['chosen_fit_s']:.2f} s ({res.n_completed} of {res.n_configs} "
          f"configurations, {res.n_splits} split(s), seed {res.random_state}, "
          f"{res.elapsed:.1f} s)")
    b = res.best
    if (b["solver"], b["params"]) != (res.solver, res.params):
        best = " ".join(f"{k}={v}" for k, v in b["params"].items())
        print(f"lowest RMSE: solver={b['solver']} {best}  held-out RMSE {b['rmse']:.4f}  fit "
              f"{b['fit_s']:.2f} s (within the noise {b['noise']:.4f}; --rule best takes it)")
    if args.out is not None:
        print(f"saved {args.out} (lsqmf fit/evaluate --config {args.out})")
    return 0
