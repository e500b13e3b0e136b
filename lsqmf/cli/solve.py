"""``lsqmf solve FILE``: fit one factorization with ``lsqmf.solve`` and print a summary."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

__all__ = ["read_ratings_file", "register"]


def read_ratings_file(
    path: str, *, missing: float | None = None, dense: bool = False, header: bool | None = None
) -> Any:
    """Load the ratings named on the command line with :func:`lsqmf.data.readers.read_input`.

    ``builtin`` is the vendored MovieLens latest-small set; ``.npy`` is a dense matrix (NaN, or
    ``missing``, marks unobserved entries); ``.npz`` is a ``scipy.sparse.save_npz`` matrix or
    one dense array; a text file is MovieLens-format ratings (``u.data``, ``ratings.dat``,
    ``ratings.csv``, gzipped or not), or a dense matrix with ``dense=True`` (``--dense``).
    """
    from ..data.readers import read_input

    return read_input(path, missing=missing, dense=dense, header=header)


def register(subparsers: Any) -> None:
    """Add the ``solve`` subcommand."""
    from . import add_input_options
    from ._options import add_progress_options, add_solve_options

    p = subparsers.add_parser(
        "solve",
        help="fit a factorization with scipy.optimize.least_squares",
        description="Fit R ~ P @ Q on the observed entries of a ratings file with lsqmf.solve "
        "and print a summary (every default is lsqmf.solve's). FILE: 'builtin', a MovieLens "
        "ratings file, a dense .npy (NaN = missing), a scipy.sparse .npz, or a dense text "
        "matrix with --dense. With --out, the model is saved as by 'lsqmf fit'.",
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument("--rank", type=int, required=True, help="number of factors")
    add_solve_options(p)
    p.add_argument("--missing", type=float, default=None,
                   help="value marking missing entries of a dense input (.npy, --dense)")
    add_input_options(p)
    p.add_argument("--check-jacobian", type=float, default=None, metavar="TOL")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", type=Path, default=None, metavar="MODEL",
                   help="save the model (.npz, as 'lsqmf fit' does)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    add_progress_options(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..evaluate.metrics import rmse
    from . import input_options

    ratings = read_ratings_file(args.file, missing=args.missing, **input_options(args))
    fit, caught = _fit(args, ratings)
    train_rmse = rmse(ratings.values, fit.predict(ratings.rows, ratings.cols))
    _print_fit(args, ratings, fit, train_rmse)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    if args.out is not None:
        from .models import save_fitted

        path = save_fitted(fit, ratings, args.file, args.out, force=args.force)
        print(f"saved lsq model to {path}", file=sys.stderr if args.json else sys.stdout)
    if int(fit.status) == -5:  # Status.INTERRUPTED: Ctrl-C stopped the solve; report, exit 130
        print("lsqmf solve: interrupted; the result above is the last accepted iterate",
              file=sys.stderr)
        return 130
    return 0


def _fit(args: argparse.Namespace, ratings: Any) -> tuple[Any, list[warnings.WarningMessage]]:
    """``lsqmf.solve`` with the command line's options; the fit and the warnings caught."""
    from ..model.result import ConvergenceWarning
    from ..nls.solve import solve
    from ._options import progress_callback, solve_defaults, verbose_level

    options = {
        "method": args.method, "tr_solver": args.tr_solver, "loss": args.loss,
        "f_scale": args.f_scale, "formulation": args.formulation, "alpha": args.alpha,
        "beta": args.beta, "reg": args.reg, "count_scaled": args.count_scaled,
        "biases": args.biases, "jac": args.jac, "ftol": args.ftol, "max_nfev": args.max_nfev,
        "max_time": args.max_time, "init_scale": args.init_scale, "random_state": args.seed,
        "check_jacobian": args.check_jacobian,
        "bounds": None if args.bounds is None else tuple(args.bounds),
    }
    if "verbose" in solve_defaults():
        options["verbose"] = verbose_level(args)
    with (
        warnings.catch_warnings(record=True) as caught,
        progress_callback(args, args.max_nfev, "lsqmf solve") as callback,
    ):
        warnings.simplefilter("always", ConvergenceWarning)
        fit = solve(ratings, args.rank, callback=callback, **options)
    return fit, caught


def _print_fit(args: argparse.Namespace, ratings: Any, fit: Any, train_rmse: float) -> None:
    """The summary on stdout: one JSON object with ``--json``, else readable lines."""
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
