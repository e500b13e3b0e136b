"""``lsqmf solve FILE``: fit one factorization with ``lsqmf.solve`` and print a summary."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from typing import Any

__all__ = ["read_ratings_file", "register"]


def read_ratings_file(
    path: str, *, missing: float | None = None, dense: bool = False, header: bool | None = None
) -> Any:
    """Load the ratings named on the command line with :func:`lsqmf.datasets.read_input`.

    ``builtin`` is the vendored MovieLens latest-small set; ``.npy`` is a dense matrix (NaN, or
    ``missing``, marks unobserved entries); ``.npz`` is a ``scipy.sparse.save_npz`` matrix or
    one dense array; a text file is MovieLens-format ratings (``u.data``, ``ratings.dat``,
    ``ratings.csv``, gzipped or not), or a dense matrix with ``dense=True`` (``--dense``).
    """
    from ..datasets import read_input

    return read_input(path, missing=missing, dense=dense, header=header)


def _tr_solver(value: str) -> str | None:
    return None if value.lower() == "none" else value


def register(subparsers: Any) -> None:
    """Add the ``solve`` subcommand."""
    from ..solve import JAC_KINDS, LOSSES, METHODS
    from . import add_input_options

    p = subparsers.add_parser(
        "solve",
        help="fit a factorization with scipy.optimize.least_squares",
        description="Fit R ~ P @ Q on the observed entries of a ratings file with lsqmf.solve "
        "and print a summary. FILE: 'builtin', a MovieLens ratings file, a dense .npy (NaN = "
        "missing), a scipy.sparse .npz, or a dense text matrix with --dense.",
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument("--rank", type=int, required=True, help="number of factors")
    p.add_argument("--method", choices=METHODS, default="trf")
    p.add_argument(
        "--tr-solver", type=_tr_solver, default=None, choices=[None, "exact", "lsmr"],
        help="trust-region solver: none, exact or lsmr (default: none, scipy's choice)",
    )
    p.add_argument("--loss", choices=list(LOSSES), default="linear")
    p.add_argument("--f-scale", type=float, default=1.0)
    p.add_argument(
        "--formulation", choices=["prior", "l2", "none"], default="l2",
        help="objective (default l2: ratings files have no prior factors)",
    )
    p.add_argument("--alpha", type=float, default=0.9, help="data weight of 'prior'")
    p.add_argument("--beta", type=float, default=0.1, help="prior weight of 'prior'")
    p.add_argument("--reg", type=float, default=0.1, help="L2 weight of 'l2'")
    p.add_argument("--count-scaled", action="store_true", help="scale reg by rating counts")
    p.add_argument("--biases", action="store_true", help="fit global mean + user/item biases")
    p.add_argument("--jac", choices=JAC_KINDS, default="auto")
    p.add_argument("--ftol", type=float, default=1e-3)
    p.add_argument("--max-nfev", type=int, default=None)
    p.add_argument("--max-time", type=float, default=None, help="time budget in seconds")
    p.add_argument("--missing", type=float, default=None,
                   help="value marking missing entries of a dense input (.npy, --dense)")
    add_input_options(p)
    p.add_argument("--seed", type=int, default=0, help="random_state of the initial factors")
    p.add_argument("--check-jacobian", type=float, default=None, metavar="TOL")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from .. import ConvergenceWarning, solve
    from ..evaluation import rmse
    from . import input_options

    ratings = read_ratings_file(args.file, missing=args.missing, **input_options(args))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        fit = solve(
            ratings, args.rank, method=args.method, tr_solver=args.tr_solver, loss=args.loss,
            f_scale=args.f_scale, formulation=args.formulation, alpha=args.alpha,
            beta=args.beta, reg=args.reg, count_scaled=args.count_scaled, biases=args.biases,
            jac=args.jac, ftol=args.ftol, max_nfev=args.max_nfev, max_time=args.max_time,
            random_state=args.seed, check_jacobian=args.check_jacobian,
        )
    train_rmse = rmse(ratings.values, fit.predict(ratings.rows, ratings.cols))
    if args.json:
        out = {
            "file": args.file, "n_rows": fit.shape[0], "n_cols": fit.shape[1],
            "nnz": ratings.nnz, "rank": fit.rank, "success": fit.success,
            "status": fit.status, "message": fit.message, "cost": fit.cost,
            "nfev": fit.nfev, "njev": fit.njev, "optimality": fit.optimality,
            "wall_time": fit.wall_time, "train_rmse": train_rmse,
            "options": {k: v for k, v in fit.options.items() if k != "tr_options"},
        }
        print(json.dumps(out))
    else:
        print(f"ratings: {ratings!r}")
        print(fit.summary())
        print(f"train RMSE: {train_rmse:.4f}")
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    if int(fit.status) == -5:  # Status.INTERRUPTED: Ctrl-C stopped the solve; report, exit 130
        print("lsqmf solve: interrupted; the result above is the last accepted iterate",
              file=sys.stderr)
        return 130
    return 0
