"""``lsqmf fit | predict | evaluate | cv | recommend``: fitted models from the command line.

RATINGS arguments accept any MovieLens ratings file (``u.data``, ``ratings.dat``,
``ratings.csv``, optionally gzipped) or the word ``builtin`` for the vendored MovieLens
latest-small set. Solver names and their defaults come from :data:`lsqmf.solvers.SOLVERS` and
:data:`lsqmf.solvers.SOLVER_DEFAULTS`; options given on the command line override them.

Examples::

    lsqmf fit builtin --solver als --rank 20 --reg 0.05 --out model.npz
    lsqmf predict model.npz --user 1 --item 1
    lsqmf evaluate train.csv test.csv --solver als --rank 20 --json
    lsqmf cv builtin --solver als --rank 5 10 20 --reg 0.01 0.1 --folds 5 --out cv/
    lsqmf recommend model.npz --user 1 -n 10
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def _add_solver_options(p: argparse.ArgumentParser, *, multi: bool = False) -> None:
    from ._options import add_solver_options

    add_solver_options(p, multi=multi)


def _solver_params(args: argparse.Namespace, *, grid: bool = False) -> dict[str, Any]:
    from ._options import solver_params

    return solver_params(args, grid=grid)


def prepare_solver(args: argparse.Namespace) -> None:
    """Load the kernels of ``args.solver`` (numba's disk cache, or compile them) now, before
    the data is read: the command's start-up step (``prepare``, see :mod:`lsqmf.cli`). The fit
    would load them before its clock anyway; the results are the same. Skipped when the fits
    run in other processes (``cv --jobs N``, ``--scheduler``)."""
    from ..solvers import warm_up_solver
    from ._options import apply_config

    apply_config(args)  # --config FILE and the default solver, before anything reads them
    if getattr(args, "scheduler", None) is not None or getattr(args, "jobs", 1) != 1:
        return
    warm_up_solver(args.solver, _solver_params(args).get("backend", "auto"))


def _grid_search_default(name: str) -> Any:
    import inspect

    from ..evaluate.search import grid_search

    return inspect.signature(grid_search).parameters[name].default


def save_fitted(model: Any, ratings: Any, source: str, out: Path, *, force: bool) -> Path:
    """Save a fitted model with the metadata every subcommand records (``fit``, ``solve``)."""
    from ..model.files import save_model

    meta = {"ratings": _source(source),
            "rating_scale": [float(ratings.values.min()), float(ratings.values.max())]}
    return save_model(model, out, metadata=meta, force=force)


def _add_ranking_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--top-k", type=int, default=None, metavar="K",
                   help="also report precision/recall/MAP/NDCG at K (lsqmf.evaluate.search."
                   "ranking_metrics; each user's training items excluded)")
    p.add_argument("--relevance", type=float, default=4.0, metavar="T",
                   help="test ratings >= T are relevant for --top-k (default 4.0)")


def _ranking(args: argparse.Namespace) -> dict[str, Any] | None:
    if args.top_k is not None and args.top_k < 1:
        raise ValueError(f"--top-k must be >= 1; got {args.top_k}.")
    return None if args.top_k is None else {"k": args.top_k, "threshold": args.relevance}


def _source(arg: str) -> str:
    """What to record as the ratings source of a model: 'builtin' or an absolute path."""
    from ..data.readers import BUILTIN_NAME

    return arg if arg == BUILTIN_NAME else str(Path(arg).resolve())


def _parse_id(text: str, ids: Any) -> Any:
    """A raw id from the command line, typed like the model's id map.

    Only a canonical integer (the rule of :func:`lsqmf.data.readers.parse_ids`) becomes an int
    for a model with integer ids, so ids round-trip exactly: ``'007'`` stays the string and
    is an unknown id of such a model, never user 7.
    """
    if ids is not None and getattr(ids, "dtype", None) is not None and ids.dtype.kind in "iu":
        from ..data.readers import parse_ids

        parsed = parse_ids([text])
        if parsed.dtype.kind == "i":
            return int(parsed[0])
    return text


def _id_array(ids: list[Any]) -> Any:
    """Parsed ids as an object array: a mix of int and str ids keeps each one's type (a
    plain ``np.array`` would turn every int into a string and none would be found)."""
    import numpy as np

    out = np.empty(len(ids), dtype=object)
    out[:] = ids
    return out


def register(subparsers: Any) -> None:
    """Add the ``fit``, ``predict``, ``evaluate``, ``cv`` and ``recommend`` subcommands."""
    _add_fit(subparsers)
    _add_predict(subparsers)
    _add_evaluate(subparsers)
    _add_cv(subparsers)
    _add_recommend(subparsers)


def _add_fit(subparsers: Any) -> None:
    """Add the ``fit`` subcommand."""
    from . import add_input_options
    from ._options import add_progress_options

    f = subparsers.add_parser(
        "fit", help="fit a model on a ratings file and save it",
        description="Fit a solver on RATINGS (a MovieLens file or 'builtin') and save the model "
        "(factors, biases, id maps, options; no training data) to an .npz file. Interrupted "
        "(Ctrl-C, SIGTERM or SIGHUP), the solver stops at its next iteration, that iterate is "
        "saved (status -5) and the exit status is 130; a second signal stops at once.",
    )
    f.add_argument("ratings", metavar="RATINGS")
    _add_solver_options(f)
    f.add_argument("--out", type=Path, required=True, metavar="MODEL", help="output .npz")
    f.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    add_input_options(f)
    add_progress_options(f, solver_log=True)
    f.set_defaults(func=run_fit, prepare=prepare_solver)


def _add_predict(subparsers: Any) -> None:
    """Add the ``predict`` subcommand."""
    p = subparsers.add_parser(
        "predict", help="predict ratings with a saved model",
        description="Predict the rating of (user, item) pairs, by raw id. Prints a header and "
        "one tab-separated line 'user item prediction cold_start' per pair; cold_start is 'yes' "
        "when the model has no factor for the user or the item (unknown id or no training "
        "rating): such a pair follows --cold-start (bias: the bias model, or the training mean "
        "for a model without biases; nan; raise).",
    )
    p.add_argument("model", type=Path, metavar="MODEL")
    p.add_argument("--user", default=None, metavar="ID")
    p.add_argument("--item", default=None, metavar="ID")
    p.add_argument("--pairs", type=Path, default=None, metavar="FILE",
                   help="file with one 'user item' pair per line (whitespace or comma)")
    p.add_argument("--cold-start", choices=["bias", "nan", "raise"], default="bias")
    p.add_argument("--no-clip", dest="clip", action="store_false",
                   help="do not clip to the training rating scale")
    p.set_defaults(func=run_predict)


def _add_evaluate(subparsers: Any) -> None:
    """Add the ``evaluate`` subcommand."""
    from . import add_input_options
    from ._options import add_progress_options

    e = subparsers.add_parser(
        "evaluate", help="fit on TRAIN, score on TEST",
        description="Fit a solver on TRAIN and report RMSE and MAE on TEST (matched by raw "
        "user/item id; unseen ids are cold-start pairs predicted by the bias model).",
    )
    e.add_argument("train", metavar="TRAIN")
    e.add_argument("test", metavar="TEST")
    _add_solver_options(e)
    e.add_argument("--json", action="store_true", help="print one JSON object")
    _add_ranking_options(e)
    add_input_options(e)
    add_progress_options(e, solver_log=True)
    e.set_defaults(func=run_evaluate, prepare=prepare_solver)


def _add_cv(subparsers: Any) -> None:
    """Add the ``cv`` subcommand."""
    from . import add_input_options
    from ._options import add_progress_options

    c = subparsers.add_parser(
        "cv", help="cross-validate a grid of rank x reg",
        description="K-fold cross-validation of every (rank, reg) combination; prints the "
        "summary and the best configuration, and with --out writes cv_results.csv, "
        "cv_summary.csv and cv_heatmap.png.",
    )
    c.add_argument("ratings", metavar="RATINGS")
    _add_solver_options(c, multi=True)
    c.add_argument("--folds", type=int, default=5, metavar="K")
    c.add_argument("--jobs", type=int, default=1, metavar="N", help="joblib workers")
    c.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run the cells on a Dask cluster, e.g. tcp://host:8786 (needs "
                   "lsqmf[cluster]); --jobs is then ignored")
    c.add_argument("--out", type=Path, default=None, metavar="DIR")
    add_progress_options(c, default=_grid_search_default("progress"))
    _add_ranking_options(c)
    add_input_options(c)
    c.set_defaults(func=run_cv, prepare=prepare_solver)


def _add_recommend(subparsers: Any) -> None:
    """Add the ``recommend`` subcommand."""
    r = subparsers.add_parser(
        "recommend", help="top-N unrated items for a user",
        description="The N items with the highest predicted score for a user, excluding the "
        "items the user rated in the ratings file (--ratings; required unless the model was "
        "fitted on 'builtin': paths inside a model file are never opened). A user the model "
        "does not know is folded in from their ratings in that file (their factor is solved "
        "against the model's items, without refitting). Items are ranked by the predicted rating "
        "shrunk toward the user's baseline by the item's number of training ratings n: "
        "baseline + n / (n + K) x (prediction - baseline), K = --shrinkage (default 10), so an "
        "item with one rating predicted above the scale does not top the list; the score shown "
        "is the model's predicted rating clipped to the data's scale (as lsqmf predict). "
        "Titles are shown when a movies file is at hand (--movies, or the built-in one for "
        "models fitted on 'builtin').",
    )
    r.add_argument("model", type=Path, metavar="MODEL")
    r.add_argument("--user", required=True, metavar="ID")
    r.add_argument("-n", type=int, default=10, metavar="N")
    r.add_argument("--ratings", default=None, metavar="FILE")
    r.add_argument("--movies", type=Path, default=None, metavar="FILE")
    r.add_argument("--min-ratings", type=int, default=1, metavar="N",
                   help="recommend only items with at least N training ratings (default 1)")
    r.add_argument("--shrinkage", type=float, default=10.0, metavar="K",
                   help="rank by baseline + n / (n + K) x (prediction - baseline), n the "
                   "item's training ratings (default 10; 0: by the prediction)")
    r.set_defaults(func=run_recommend)


def run_fit(args: argparse.Namespace) -> int:
    from ..data.readers import load_ratings
    from ..evaluate.scoring import resolve_solver
    from . import input_options
    from ._options import progress_callback, verbose_level
    from ._signals import deferred_stop

    ratings = load_ratings(args.ratings, **input_options(args))
    name, fn, params = resolve_solver(args.solver, _solver_params(args))
    rank = params.pop("rank")
    params["verbose"] = verbose_level(args)
    # a diverging run raises NonFiniteResidualError here: nothing is saved, main() prints
    # one line and exits non-zero. Ctrl-C, SIGTERM, SIGHUP: the solver stops at its next
    # iteration (callback) and its iterate is saved (a second signal stops at once)
    with deferred_stop() as stop:
        with progress_callback(args, params.get("max_iter"), f"lsqmf fit {name}") as callback:
            model = stop.mark(fn(ratings, rank, **params, callback=stop.wrap(callback)))
        path = save_fitted(model, ratings, args.ratings, args.out, force=args.force)
    print(model.summary())
    print(f"saved {name} model to {path}")
    if int(model.status) == -5 or stop.requested:  # Status.INTERRUPTED: saved, exit 130
        print("lsqmf fit: interrupted; the model saved is the last iterate", file=sys.stderr)
        return 130
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from ..model.files import load_model

    model, meta = load_model(args.model)
    if args.pairs is not None:
        if args.user is not None or args.item is not None:
            raise ValueError("give either --pairs or --user and --item, not both.")
        from ..data.readers import _quote, read_text_lines

        pairs = []
        for lineno, line in enumerate(read_text_lines(args.pairs, what="pairs"), start=1):
            if not line.strip():
                continue
            parts = line.replace(",", " ").split()
            if len(parts) != 2:
                raise ValueError(
                    f"{str(args.pairs)!r}, line {lineno}: expected 'user item'; got "
                    f"{_quote(line)}."
                )
            pairs.append(parts)
    elif args.user is not None and args.item is not None:
        pairs = [[args.user, args.item]]
    else:
        raise ValueError("give --user ID and --item ID, or --pairs FILE.")
    users = [_parse_id(u, model.row_ids) for u, _ in pairs]
    items = [_parse_id(i, model.col_ids) for _, i in pairs]
    clip = tuple(meta["rating_scale"]) if args.clip and "rating_scale" in meta else None
    out = model.predict_ids(_id_array(users), _id_array(items), cold_start=args.cold_start,
                            clip=clip, return_cold_start=True)
    print("user\titem\tprediction\tcold_start")
    for u, i, v, cold in zip(users, items, out.values, out.cold_start, strict=True):
        print(f"{u}\t{i}\t{v:.4f}\t{'yes' if cold else 'no'}")
    if out.n_cold_start:
        print(f"{out.n_cold_start} of {len(users)} pair(s) cold-start (--cold-start "
              f"{args.cold_start})", file=sys.stderr)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from ..data.readers import load_ratings
    from ..evaluate.scoring import fit_and_score, resolve_solver
    from . import input_options
    from ._options import progress_callback, verbose_level

    train = load_ratings(args.train, **input_options(args))
    test = load_ratings(args.test, **input_options(args))
    ranking = _ranking(args)
    params = _solver_params(args)
    _, _, resolved = resolve_solver(args.solver, params)
    with progress_callback(args, resolved.get("max_iter"), f"lsqmf evaluate {args.solver}"
                           ) as callback:
        out = fit_and_score(args.solver, train, test, ranking=ranking, callback=callback,
                            verbose=verbose_level(args), **params)
    if args.json:  # random_state and reg as used: the drawn seed, the data-scaled reg
        print(json.dumps({k: (v.item() if hasattr(v, "item") else v) for k, v in out.items()}))
    else:
        reg = out.get("reg")
        print(f"solver {out['solver']}  rank {out['rank']}  "
              f"reg {'n/a' if reg is None else format(reg, '.4g')}  "
              f"seed {out.get('random_state')}")
        print(f"RMSE {out['rmse']:.4f}  MAE {out['mae']:.4f}  fit {out['fit_s']:.2f} s  "
              f"test pairs {out['n_test']} ({out['n_cold_start']} cold start)")
        if ranking is not None:
            k = args.top_k
            print(f"precision@{k} {out[f'precision@{k}']:.4f}  recall@{k} "
                  f"{out[f'recall@{k}']:.4f}  MAP@{k} {out[f'map@{k}']:.4f}  NDCG@{k} "
                  f"{out[f'ndcg@{k}']:.4f}  ({out['n_ranked_users']} users with a rating >= "
                  f"{args.relevance:g} in TEST)")
    return 0


def run_cv(args: argparse.Namespace) -> int:
    from ..data.readers import load_ratings
    from ..evaluate.search import SearchInterrupted, grid_search
    from . import input_options

    ratings = load_ratings(args.ratings, **input_options(args))
    grid, seeds, fixed = _cv_params(args)
    checkpoint = None
    if args.out is not None:  # cv_results.csv gets every cell as it finishes; a rerun resumes
        args.out.mkdir(parents=True, exist_ok=True)
        checkpoint = args.out / "cv_results.csv"
    try:
        gs = grid_search(
            ratings, args.solver, grid, n_splits=args.folds, n_jobs=args.jobs,
            scheduler=args.scheduler, **seeds, out=checkpoint, progress=args.progress,
            refit=False, **fixed,
        )
    except SearchInterrupted as stop:
        kept = (f"they are in {checkpoint}; rerun the same command to resume" if checkpoint
                else "use --out DIR to keep finished cells")
        print(f"interrupted after {len(stop.results)} of {stop.n_cells} cells; {kept}",
              file=sys.stderr)
        raise
    if not gs.best_params:
        where = f" of {checkpoint}" if checkpoint else ""
        print(f"no configuration finished every fold (see the error column{where})",
              file=sys.stderr)
        return 1
    _print_cv(gs, args)
    if args.out is not None:
        from ..bench.plots_cv import plot_cv_heatmap

        gs.summary.to_csv(args.out / "cv_summary.csv", index=False)
        plot_cv_heatmap(gs.results, args.out / "cv_heatmap.png",
                        title=f"{args.solver}: mean validation RMSE ({args.folds}-fold)")
        print(f"wrote {args.out / 'cv_results.csv'}, cv_summary.csv and cv_heatmap.png")
    return 0


def _cv_params(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``(param_grid, seeds, fixed)`` of the grid search of ``lsqmf cv``."""
    from ..solvers import SOLVER_DEFAULTS

    fixed = _solver_params(args, grid=True)  # resolves the default solver first
    regs = args.reg if args.reg is not None else [SOLVER_DEFAULTS[args.solver]["reg"]]
    ranks = args.rank if args.rank is not None else [SOLVER_DEFAULTS[args.solver]["rank"]]
    fixed.pop("random_state")  # --seed seeds the folds; each fold's fit is seeded by its number
    seeds = {} if args.seed is None else {"random_state": args.seed}  # else grid_search's
    ranking = _ranking(args)
    if ranking is not None:
        fixed["ranking"] = ranking  # passed on to fit_and_score
    return {"rank": ranks, "reg": regs}, seeds, fixed


def _print_cv(gs: Any, args: argparse.Namespace) -> None:
    """The summary of ``lsqmf cv`` (and its ranking metrics with --top-k) and the best."""
    cols = ["rank", "reg", "rmse_mean", "rmse_std", "mae_mean", "fit_s_mean", "n_cold_start"]
    print(gs.summary[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if args.top_k is not None:
        k = args.top_k
        names = [f"precision@{k}", f"recall@{k}", f"map@{k}", f"ndcg@{k}"]
        means = gs.results.groupby(["rank", "reg"])[names].mean().reset_index()
        print(f"mean over folds, relevance: test rating >= {args.relevance:g}")
        print(means.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"best: rank={gs.best_params['rank']} reg={gs.best_params['reg']} "
          f"(mean validation RMSE {gs.best_score:.4f} over {args.folds} folds)")


def run_recommend(args: argparse.Namespace) -> int:
    import numpy as np

    from ..data.ratings import lookup_ids
    from ..data.readers import BUILTIN_NAME, load_builtin_movies, load_movies, load_ratings
    from ..evaluate.metrics import top_n
    from ..model.files import load_model

    for flag, value in (("-n", args.n), ("--min-ratings", args.min_ratings)):
        if value < 1:
            raise ValueError(f"{flag} must be >= 1; got {value}.")
    model, meta = load_model(args.model)
    source = args.ratings
    if source is None and meta.get("ratings") == BUILTIN_NAME:
        source = BUILTIN_NAME  # the built-in set, not a path: the only source a model may name
    if source is None:
        raise ValueError(
            "pass --ratings FILE (the ratings whose items the user has rated are excluded); "
            "lsqmf never opens a path recorded inside a model file."
        )
    if model.row_ids is None or model.col_ids is None:
        raise ValueError("the model has no id maps; it was not fitted on a ratings file.")
    ratings = load_ratings(source)
    user, row, model, note = _recommend_user(model, ratings, args.user, source)
    seen = int(ratings.row_index([user])[0])
    exclude = np.empty(0, dtype=np.int64)
    if seen >= 0 and ratings.col_ids is not None:
        rated = ratings.col_ids[ratings.cols[ratings.rows == seen]]
        exclude = lookup_ids(model.col_ids, rated, model.shape[1])
        exclude = exclude[exclude >= 0]
    cols, scores = top_n(model, row, args.n, exclude=exclude, min_count=args.min_ratings,
                         shrinkage=args.shrinkage)
    titles: dict[Any, str] = {}
    movies = None
    if args.movies is not None:
        movies = load_movies(args.movies)
    elif source == BUILTIN_NAME:
        movies = load_builtin_movies()
    if movies is not None:
        titles = dict(zip(movies["item"].tolist(), movies["title"].tolist(), strict=True))
    limit = f"; items with < {args.min_ratings} ratings left out" if args.min_ratings > 1 else ""
    print("ranked by the predicted rating" + (f" shrunk by support (--shrinkage "
          f"{args.shrinkage:g})" if args.shrinkage else "") + "; scores: predicted ratings "
          "on the data's scale")
    print(f"top {len(cols)} for user {user} ({len(exclude)} rated items excluded{limit}"
          f"{note}):")
    for rank, (c, s) in enumerate(zip(cols, scores, strict=True), start=1):
        item = model.col_ids[c].item() if hasattr(model.col_ids[c], "item") else model.col_ids[c]
        title = titles.get(item, "")
        print(f"{rank:3d}. {item}\t{s:.4f}\t{title}".rstrip())
    sys.stdout.flush()
    return 0


def _recommend_user(model: Any, ratings: Any, text: str, source: str) -> tuple[Any, int, Any, str]:
    """``(user id, row, model, note)``: the user's row in ``model``, or in the model folded in
    from the user's ratings in ``ratings`` when ``model`` has no factor for them."""
    import numpy as np

    from ..data.ratings import Ratings, lookup_ids

    user = _parse_id(text, model.row_ids)
    row = int(lookup_ids(model.row_ids, [user], model.shape[0])[0])
    if row >= 0 and (model.row_counts is None or model.row_counts[row] > 0):
        return user, row, model, ""
    user = _parse_id(text, ratings.row_ids)
    seen = int(ratings.row_index([user])[0])
    if seen < 0:
        raise ValueError(
            f"`--user` {text!r} is neither a user of this model nor in {source!r}: there are "
            "no ratings to fold in."
        )
    mine = ratings.rows == seen
    one = Ratings(
        np.zeros(int(mine.sum()), dtype=np.int64), ratings.cols[mine], ratings.values[mine],
        (1, ratings.shape[1]), weights=None if ratings.weights is None else ratings.weights[mine],
        row_ids=np.array([user]), col_ids=ratings.col_ids,
    )
    folded = model.fold_in(one)
    info = folded.options["fold_in"]
    assert folded.row_counts is not None
    if folded.row_counts[0] == 0:
        if not folded.has_biases:
            raise ValueError(
                f"`--user` {text!r} is cold-start: none of their {info['n_ignored']} rated "
                "items is known to the model, and a model without biases cannot rank items "
                "for them."
            )
        note = (f"; cold start: none of their {info['n_ignored']} rated items is known to "
                "the model, ranked by the bias model")
    else:
        note = (f"; folded in from {info['n_ratings']} ratings, {info['n_ignored']} "
                "rating(s) of unknown items ignored")
    return user, 0, folded, note
