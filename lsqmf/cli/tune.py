"""``lsqmf tune TRAIN``: choose solver, rank and regularization on the training data only.

Examples::

    lsqmf tune train.csv --out config.json
    lsqmf tune builtin --folds 3 --jobs 2 --max-time 120
    lsqmf tune train.csv --solver als_cg bmf --json
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
    from ..evaluate.tuning import DEFAULT_SPACE

    space = "; ".join(
        f"{s}: " + ", ".join(f"{k} {list(v)}" for k, v in grid.items())
        for s, grid in DEFAULT_SPACE.items()
    )
    p = subparsers.add_parser(
        "tune", help="choose solver, rank and regularization on TRAIN only",
        description="Score every configuration of the search space on a seeded inner holdout "
        "(or k-fold) of TRAIN and print and save the one with the lowest held-out RMSE. The "
        f"test data is never read. Search space: {space}; every other option is the "
        "solver's default.",
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
    p.add_argument("--out", type=Path, default=None, metavar="FILE",
                   help="save the chosen configuration as JSON")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar on stderr")
    from . import add_input_options

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
    res = tune(train, space=space, n_splits=args.folds, test_size=args.test_size,
               random_state=args.seed, n_jobs=args.jobs, max_time=args.max_time,
               progress=args.progress and sys.stderr.isatty())
    if args.out is not None:
        res.save(args.out)
    if args.json:
        print(json.dumps(res.to_dict()))
    else:
        params = " ".join(f"{k}={v}" for k, v in res.params.items())
        print(f"best: solver={res.solver} {params}  held-out RMSE {res.rmse:.4f} "
              f"({res.n_completed} of {res.n_configs} configurations, {res.n_splits} "
              f"split(s), {res.elapsed:.1f} s)")
        if args.out is not None:
            print(f"saved {args.out}")
    return 0
