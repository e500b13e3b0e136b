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
    path: str, *, missing: float | None = None, dense: bool = False, header: bool | None = None,
    matrix: str | None = None, mask: str | None = None,
) -> Any:
    """Load the ratings named on the command line with :func:`lsqmf.data.readers.read_input`.

    ``builtin`` is the vendored MovieLens latest-small set; ``.npy`` is a dense matrix (NaN, or
    ``missing``, marks unobserved entries); ``.npz`` is a ``scipy.sparse.save_npz`` matrix or
    one dense array; a text file is MovieLens-format ratings (``u.data``, ``ratings.dat``,
    ``ratings.csv``, gzipped or not), or a dense matrix with ``dense=True`` (``--dense``); a
    MATLAB ``.mat`` file holds a matrix and a mask named by ``matrix`` and ``mask``.
    """
    from ..data.readers import read_input

    names = {k: v for k, v in (("matrix", matrix), ("mask", mask)) if v is not None}
    return read_input(path, missing=missing, dense=dense, header=header, **names)


def register(subparsers: Any) -> None:
    """Add the ``solve`` subcommand."""
    from . import add_input_options
    from ._options import add_progress_options, add_solve_options

    p = subparsers.add_parser(
        "solve",
        help="fit a factorization with scipy.optimize.least_squares",
        description="Fit R ~ P @ Q on the observed entries of a ratings file with lsqmf.solve "
        "and print a summary (every option and default is lsqmf.solve's). FILE: 'builtin', a "
        "MovieLens ratings file, a dense .npy (NaN = missing), a scipy.sparse .npz, a MATLAB "
        ".mat (--matrix, --mask), or a dense text matrix with --dense. --multistart N runs "
        "seeded starts (lsqmf.multistart) until the best cost is seen --until-seen times. With "
        "--out, the model is saved as by 'lsqmf fit'.",
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument("--rank", type=int, required=True, help="number of factors")
    add_solve_options(p)
    p.add_argument("--missing", type=float, default=None,
                   help="value marking missing entries of a dense input (.npy, --dense)")
    p.add_argument("--matrix", default=None, metavar="NAME",
                   help="the variable of a .mat FILE that holds the matrix")
    p.add_argument("--mask", default=None, metavar="NAME",
                   help="the variable of a .mat FILE that holds the 0/1 visibility mask")
    p.add_argument("--multistart", type=int, default=None, metavar="N",
                   help="run up to N seeded starts (lsqmf.multistart) and keep the best")
    p.add_argument("--until-seen", type=int, default=2, metavar="K",
                   help="with --multistart: stop once the best cost is reached K times "
                   "(default: 2)")
    add_input_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", type=Path, default=None, metavar="MODEL",
                   help="save the model (.npz, as 'lsqmf fit' does)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    add_progress_options(p, solver_log=True)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..evaluate.metrics import rmse
    from . import input_options

    ratings = read_ratings_file(args.file, missing=args.missing, matrix=args.matrix,
                                mask=args.mask, **input_options(args))
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
    """``lsqmf.solve`` (or ``lsqmf.multistart``) with the command line's options; the fit and
    the warnings caught."""
    from ..model.result import ConvergenceWarning
    from ._options import progress_callback, solve_flag_params, verbose_level

    options = {param.name: getattr(args, param.name) for param in solve_flag_params()}
    options["bounds"] = None if args.bounds is None else tuple(args.bounds)
    options["verbose"] = verbose_level(args)
    with (
        warnings.catch_warnings(record=True) as caught,
        progress_callback(args, None, "lsqmf solve") as callback,  # max_nfev counts evaluations
    ):
        warnings.simplefilter("always", ConvergenceWarning)
        if args.multistart is None:
            from ..nls.solve import solve

            fit = solve(ratings, args.rank, callback=callback, random_state=args.seed,
                        **options)
        else:
            fit = _multistart(args, ratings, options)
    return fit, caught


def _multistart(args: argparse.Namespace, ratings: Any, options: dict[str, Any]) -> Any:
    """The best fit of ``lsqmf.multistart``; one line per distinct optimum on stderr."""
    from ..nls.multistart import multistart

    run = multistart(ratings, args.rank, until_seen=args.until_seen, max_starts=args.multistart,
                     random_state=args.seed, **options)
    for cost, hits in zip(run.optima, run.hits, strict=True):
        print(f"optimum cost {cost:.8g}: reached by {hits} of {len(run.seeds)} start(s)",
              file=sys.stderr)
    if not run.converged:
        print(f"lsqmf solve: the best cost was reached {int(run.hits[0])} time(s), fewer than "
              f"--until-seen {args.until_seen}, in {len(run.seeds)} start(s): it may not be "
              "the global optimum", file=sys.stderr)
    return run.best


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
