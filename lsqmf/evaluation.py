"""Splits, predictions on held-out pairs, metrics, cross-validation and grid search.

Splits
------
:func:`holdout_split`, :func:`kfold` and :func:`user_holdout` return ``(train, test)`` pairs of
:class:`~lsqmf.Ratings` that share the full ``shape`` and id maps of the input, so an index
means the same user or item in both. All are seeded (``random_state``) and never touch global
random state; the same seed gives the same permutation, hence the same folds for every solver.

Cold start
----------
A test pair whose user or item has no rating in ``train`` has no fitted factor. The policy
``cold_start`` decides what to predict for it: ``'bias'`` (default) falls back to the bias
model -- the global mean plus whichever bias is known (the global mean alone without
biases); ``'nan'`` predicts NaN and leaves the pair out of the metrics; ``'raise'`` raises
``ValueError``. Every score reports ``n_cold_start``, the number of such pairs.

Clipping
--------
``clip='auto'`` (default) clips predictions to the range of the training values (the rating
scale, e.g. 0.5--5 stars); ``clip=(low, high)`` to a given range; ``clip=None`` not at all.

Model selection
---------------
:func:`fit_and_score` fits one solver on ``train`` and scores ``test``; :func:`cross_validate`
runs it over k folds into a tidy DataFrame (one row per fold); :func:`grid_search`
cross-validates every combination of a parameter grid (in parallel with joblib, with a tqdm
progress bar), picks the lowest mean validation RMSE and refits it on all the data. Solver
names resolve through :data:`lsqmf.solvers.SOLVERS`; parameters not given are taken from
:data:`lsqmf.solvers.SOLVER_DEFAULTS`.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ._validation import check_choice, check_float, check_int, check_random_state, describe
from .ratings import Ratings, as_ratings
from .result import COLD_START_POLICIES, ConvergenceWarning, FitResult

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "GridSearchResult",
    "align_pairs",
    "cross_validate",
    "fit_and_score",
    "grid_search",
    "holdout_split",
    "kfold",
    "mae",
    "predict_pairs",
    "resolve_solver",
    "rmse",
    "top_n",
    "user_holdout",
]


# ------------------------------------------------------------------ metrics


def _pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if t.shape != p.shape:
        raise ValueError(
            f"`y_true` and `y_pred` must have the same length; got {t.size} and {p.size}."
        )
    if t.size == 0:
        raise ValueError("`y_true` is empty: there is nothing to score.")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(p))):
        raise ValueError(
            "`y_true` and `y_pred` must be finite; drop NaN predictions (cold_start='nan') "
            "before scoring."
        )
    return t, p


def rmse(y_true: Any, y_pred: Any) -> float:
    """Root mean squared error."""
    t, p = _pair(y_true, y_pred)
    return float(np.sqrt(np.mean((t - p) ** 2)))


def mae(y_true: Any, y_pred: Any) -> float:
    """Mean absolute error."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(np.abs(t - p)))


# ------------------------------------------------------------------ splits


def _check_ratings(ratings: Any) -> Ratings:
    return ratings if isinstance(ratings, Ratings) else as_ratings(ratings)


def _complement(ratings: Ratings, test_idx: np.ndarray) -> tuple[Ratings, Ratings]:
    mask = np.zeros(ratings.nnz, dtype=bool)
    mask[test_idx] = True
    if mask.all():
        raise ValueError("the split leaves no training entry.")
    if not mask.any():
        raise ValueError("the split leaves no test entry.")
    return ratings.subset(~mask), ratings.subset(mask)


def holdout_split(
    ratings: Any,
    *,
    test_size: float = 0.2,
    random_state: int | np.random.Generator | None = None,
) -> tuple[Ratings, Ratings]:
    """A seeded random holdout: ``test_size`` of the entries go to ``test``.

    Returns
    -------
    train, test : Ratings
        Same shape and id maps as ``ratings``.
    """
    ratings = _check_ratings(ratings)
    test_size = check_float("test_size", test_size, min_value=0.0, max_value=1.0,  # type: ignore[assignment]
                            min_inclusive=False, max_inclusive=False)
    rng = check_random_state(random_state)
    n_test = max(1, round(test_size * ratings.nnz))
    perm = rng.permutation(ratings.nnz)
    return _complement(ratings, perm[:n_test])


def kfold(
    ratings: Any,
    n_splits: int = 5,
    random_state: int | np.random.Generator | None = None,
) -> list[tuple[Ratings, Ratings]]:
    """K-fold split of the observed entries under one seeded permutation.

    The entries are permuted once with ``random_state`` and cut into ``n_splits`` contiguous
    parts of near-equal size; fold ``f`` tests on part ``f`` and trains on the rest. The same
    seed gives the same folds, so different solvers are compared on identical splits.

    Returns
    -------
    list of (train, test)
        ``n_splits`` pairs of Ratings with the shape and id maps of ``ratings``.

    Examples
    --------
    >>> import numpy as np
    >>> from lsqmf.evaluation import kfold
    >>> folds = kfold(np.arange(1.0, 21.0).reshape(4, 5), n_splits=4, random_state=0)
    >>> [(tr.nnz, te.nnz) for tr, te in folds]
    [(15, 5), (15, 5), (15, 5), (15, 5)]
    """
    ratings = _check_ratings(ratings)
    n_splits = check_int("n_splits", n_splits, min_value=2)
    if n_splits > ratings.nnz:
        raise ValueError(
            f"`n_splits` must be at most the number of ratings ({ratings.nnz}); got {n_splits}."
        )
    rng = check_random_state(random_state)
    perm = rng.permutation(ratings.nnz)
    return [_complement(ratings, part) for part in np.array_split(perm, n_splits)]


def user_holdout(
    ratings: Any,
    *,
    test_size: float = 0.2,
    min_train: int = 1,
    random_state: int | np.random.Generator | None = None,
) -> tuple[Ratings, Ratings]:
    """Per-user holdout: each user's ratings are split, ``test_size`` of them to ``test``.

    Each user keeps at least ``min_train`` ratings in ``train`` (users with no more than
    ``min_train`` ratings are entirely in ``train``), so no test user is cold; items can be.
    """
    ratings = _check_ratings(ratings)
    test_size = check_float("test_size", test_size, min_value=0.0, max_value=1.0,  # type: ignore[assignment]
                            min_inclusive=False, max_inclusive=False)
    min_train = check_int("min_train", min_train, min_value=0)
    rng = check_random_state(random_state)
    # random key per entry, rank within user: lowest keys go to test
    key = rng.random(ratings.nnz)
    order = np.lexsort((key, ratings.rows))
    counts = ratings.row_counts()
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank_in_user = np.arange(ratings.nnz) - np.repeat(starts, counts)
    n_test_user = np.minimum(np.round(test_size * counts).astype(np.int64),
                             np.maximum(counts - min_train, 0))
    is_test = rank_in_user < np.repeat(n_test_user, counts)
    return _complement(ratings, order[is_test])


# ------------------------------------------------------------------ prediction


def predict_pairs(
    model: FitResult,
    train: Ratings,
    rows: Any,
    cols: Any,
    *,
    cold_start: str = "bias",
    clip: Any = "auto",
) -> tuple[np.ndarray, int]:
    """Predict held-out pairs by index, with the cold-start policy and clipping.

    A pair is cold when its row or column has no entry in ``train`` (its factors were never
    fitted). Returns ``(predictions, n_cold_start)``.
    """
    check_choice("cold_start", cold_start, COLD_START_POLICIES)
    if model.row_counts is None or model.col_counts is None:
        # a result built without training counts: take them from `train`
        model = dataclasses.replace(
            model, row_counts=train.row_counts(), col_counts=train.col_counts()
        )
    return model._predict(rows, cols, cold_start=cold_start, clip=_resolve_clip(clip, train))


def _resolve_clip(clip: Any, train: Ratings) -> tuple[float, float] | None:
    if clip is None:
        return None
    if isinstance(clip, str):
        check_choice("clip", clip, ["auto"])
        return float(train.values.min()), float(train.values.max())
    if not isinstance(clip, tuple | list) or len(clip) != 2 or not float(clip[0]) <= float(
        clip[1]
    ):
        raise ValueError(f"`clip` must be 'auto', None or (low, high); got {describe(clip)}.")
    return float(clip[0]), float(clip[1])


def align_pairs(train: Ratings, test: Ratings) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices *in train's indexing* of every test entry (-1: unknown id).

    When both have the same shape and id maps (a split), these are ``test.rows`` and
    ``test.cols``. When both have id maps that differ (separately loaded files), the test's
    raw ids are looked up in train's maps. Otherwise the shapes must match.
    """
    same_ids = (
        train.shape == test.shape
        and _same(train.row_ids, test.row_ids)
        and _same(train.col_ids, test.col_ids)
    )
    if same_ids:
        return test.rows, test.cols
    if train.row_ids is not None and test.row_ids is not None and (
        train.col_ids is not None and test.col_ids is not None
    ):
        return (train.row_index(test.row_ids[test.rows]),
                train.col_index(test.col_ids[test.cols]))
    raise ValueError(
        f"`train` and `test` must share a shape and id maps, or both have id maps; got "
        f"shapes {train.shape} and {test.shape}."
    )


def _same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a is b or (len(a) == len(b) and bool(np.all(a == b)))


def top_n(
    model: FitResult,
    row: int,
    n: int = 10,
    *,
    exclude: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` columns (items) with the highest predicted score for row (user) ``row``.

    Parameters
    ----------
    model : FitResult
    row : int
        Row index of the user.
    n : int, default=10
    exclude : array_like of int, optional
        Column indices never recommended (e.g. the items the user has rated).

    Returns
    -------
    cols, scores : ndarray
        Column indices and predicted scores, best first. Costs O(n_cols * rank). Columns that
        had no training rating (their factors were never fitted) are not recommended.
    """
    n = check_int("n", n, min_value=1)
    n_rows, n_cols = model.shape
    row = check_int("row", row, min_value=0, max_value=n_rows - 1)
    scores = model.P[row] @ model.Q + model.mu
    if model.row_bias is not None and model.col_bias is not None:
        scores = scores + model.row_bias[row] + model.col_bias
    allowed = np.ones(n_cols, dtype=bool) if model.col_counts is None else model.col_counts > 0
    if exclude is not None:
        ex = np.asarray(exclude, dtype=np.int64)
        allowed[ex[(ex >= 0) & (ex < n_cols)]] = False
    cand = np.flatnonzero(allowed)
    k = min(n, len(cand))
    if k == 0:
        return np.empty(0, dtype=np.int64), np.empty(0)
    part = cand[np.argpartition(-scores[cand], k - 1)[:k]]
    order = part[np.lexsort((part, -scores[part]))]
    return order, scores[order]


# ------------------------------------------------------------------ fit and score


def resolve_solver(
    solver: str | Callable[..., FitResult], params: Mapping[str, Any]
) -> tuple[str, Callable[..., FitResult], dict[str, Any]]:
    """``(name, function, params)``: a name is looked up in :data:`lsqmf.solvers.SOLVERS` and
    its :data:`~lsqmf.solvers.SOLVER_DEFAULTS` fill in the parameters not given."""
    from .solvers import SOLVER_DEFAULTS, get_solver

    if callable(solver):
        return getattr(solver, "__name__", "custom"), solver, dict(params)
    fn = get_solver(solver)
    return solver, fn, {**SOLVER_DEFAULTS[solver], **params}


def fit_and_score(
    solver: str | Callable[..., FitResult],
    train: Any,
    test: Any,
    *,
    cold_start: str = "bias",
    clip: Any = "auto",
    return_model: bool = False,
    quiet: bool = True,
    **params: Any,
) -> dict[str, Any]:
    """Fit ``solver`` on ``train`` and score its predictions of ``test``.

    Parameters
    ----------
    solver : str or callable
        A name in :data:`lsqmf.solvers.SOLVERS` (missing parameters come from
        :data:`~lsqmf.solvers.SOLVER_DEFAULTS`) or a function ``f(train, rank, **params)``.
    train, test : Ratings
        Sharing shape and id maps (as the splits here produce), or both with id maps (e.g.
        two files), in which case ``test`` is matched to ``train`` by raw id
        (:func:`align_pairs`).
    cold_start : {'bias', 'nan', 'raise'}, default='bias'
    clip : 'auto', (low, high) or None, default='auto'
    return_model : bool, default=False
        Also return the fitted model under ``'model'``.
    quiet : bool, default=True
        Silence :class:`~lsqmf.ConvergenceWarning` (the status is reported in the dict).
    **params
        Solver options (``rank``, ``reg``, ...).

    Returns
    -------
    dict
        ``solver``, ``rmse``, ``mae``, ``fit_s`` (wall seconds of the fit), ``n_test``,
        ``n_scored`` (pairs with a finite prediction), ``n_cold_start``, ``train_rmse``,
        ``cost``, ``n_iter``, ``status``, ``success``, and the parameters used.
    """
    train = _check_ratings(train)
    test = _check_ratings(test)
    test_rows, test_cols = align_pairs(train, test)
    check_choice("cold_start", cold_start, COLD_START_POLICIES)
    name, fn, params = resolve_solver(solver, params)
    params = dict(params)
    if "rank" not in params:
        raise ValueError("`rank` is required (as a parameter or in the solver's defaults).")
    rank = params.pop("rank")
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore", ConvergenceWarning)
        model = fn(train, rank, **params)
    fit_s = time.perf_counter() - t0
    pred, n_cold = predict_pairs(model, train, test_rows, test_cols, cold_start=cold_start,
                                 clip=clip)
    ok = np.isfinite(pred)
    train_pred = model._predict(train.rows, train.cols, clip=_resolve_clip(clip, train))[0]
    out: dict[str, Any] = {
        "solver": name,
        "rmse": rmse(test.values[ok], pred[ok]) if ok.any() else float("nan"),
        "mae": mae(test.values[ok], pred[ok]) if ok.any() else float("nan"),
        "fit_s": fit_s,
        "n_test": test.nnz,
        "n_scored": int(ok.sum()),
        "n_cold_start": n_cold,
        "train_rmse": rmse(train.values, train_pred),
        "cost": model.cost,
        "n_iter": model.nfev,
        "status": model.status,
        "success": bool(model.success),
        "rank": rank,
        **{k: v for k, v in params.items() if _scalar(v)},
    }
    if return_model:
        out["model"] = model
    return out


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, bool | int | float | str | np.number)


def cross_validate(
    ratings: Any,
    *,
    solver: str | Callable[..., FitResult] = "als",
    n_splits: int = 5,
    random_state: int | np.random.Generator | None = 0,
    cold_start: str = "bias",
    clip: Any = "auto",
    **params: Any,
) -> pd.DataFrame:
    """K-fold cross-validation of one solver configuration.

    The folds come from :func:`kfold` with ``random_state``; the solver's own
    ``random_state`` (initial factors, shuffles) is ``params['random_state']`` if given, else
    the fold number.

    Returns
    -------
    pandas.DataFrame
        One row per fold: ``fold``, ``fit_s``, ``rmse``, ``mae``, ``n_cold_start`` and the other
        fields of :func:`fit_and_score`.

    Examples
    --------
    >>> from lsqmf.datasets import make_low_rank
    >>> from lsqmf.evaluation import cross_validate
    >>> ratings, _ = make_low_rank(40, 30, 2, density=0.5, noise=0.1, random_state=0)
    >>> cv = cross_validate(ratings, solver="als", n_splits=3, rank=2, reg=0.1, biases=False,
    ...                     count_scaled=False, random_state=0)
    >>> list(cv["fold"]), bool((cv["rmse"] < 0.5).all())
    ([0, 1, 2], True)
    """
    import pandas as pd

    ratings = _check_ratings(ratings)
    rows = []
    for f, (train, test) in enumerate(kfold(ratings, n_splits, random_state)):
        p = dict(params)
        p.setdefault("random_state", f)
        row = fit_and_score(solver, train, test, cold_start=cold_start, clip=clip, **p)
        rows.append({"fold": f, **row})
    frame = pd.DataFrame(rows)
    first = ["fold", "solver", "fit_s", "rmse", "mae", "n_cold_start"]
    return frame[first + [c for c in frame.columns if c not in first]]


@dataclass(frozen=True)
class GridSearchResult:
    """What :func:`grid_search` returns.

    Attributes
    ----------
    results : pandas.DataFrame
        One row per (configuration, fold): the grid parameters, ``config`` (index of the
        configuration), ``fold`` and the :func:`fit_and_score` fields.
    summary : pandas.DataFrame
        One row per configuration: the grid parameters, mean and std of validation RMSE and
        MAE, mean fit time, total cold-start pairs; sorted by mean RMSE.
    best_params : dict
        The configuration with the lowest mean validation RMSE.
    best_score : float
        Its mean validation RMSE.
    best_model : FitResult or None
        That configuration refitted on all the ratings (None with ``refit=False``).
    """

    results: pd.DataFrame
    summary: pd.DataFrame
    best_params: dict[str, Any]
    best_score: float
    best_model: FitResult | None


def _expand_grid(param_grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    if not isinstance(param_grid, Mapping) or not param_grid:
        raise TypeError(
            f"`param_grid` must be a non-empty dict of parameter -> list of values; got "
            f"{describe(param_grid)}."
        )
    keys = list(param_grid)
    values = []
    for k in keys:
        v = param_grid[k]
        if isinstance(v, str) or not isinstance(v, Sequence) or len(v) == 0:
            raise ValueError(
                f"`param_grid[{k!r}]` must be a non-empty list of values; got {describe(v)}."
            )
        values.append(list(v))
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]


def _run_cell(
    solver: Any, train: Ratings, test: Ratings, params: dict[str, Any], cold_start: str,
    clip: Any,
) -> dict[str, Any]:
    return fit_and_score(solver, train, test, cold_start=cold_start, clip=clip, **params)


def grid_search(
    ratings: Any,
    solver: str | Callable[..., FitResult] = "als",
    param_grid: Mapping[str, Sequence[Any]] | None = None,
    *,
    n_splits: int = 5,
    random_state: int | np.random.Generator | None = 0,
    n_jobs: int = 1,
    progress: bool = True,
    refit: bool = True,
    cold_start: str = "bias",
    clip: Any = "auto",
    **fixed: Any,
) -> GridSearchResult:
    """Cross-validate every combination of ``param_grid`` and refit the best on all data.

    Parameters
    ----------
    ratings : Ratings or anything :func:`lsqmf.as_ratings` accepts
    solver : str or callable, default='als'
    param_grid : dict of str -> list
        E.g. ``{'rank': [10, 20, 50], 'reg': [0.02, 0.05, 0.1]}``.
    n_splits : int, default=5
    random_state : int, Generator or None, default=0
        Seeds the folds (one permutation shared by every configuration).
    n_jobs : int, default=1
        joblib workers over the (configuration, fold) cells; -1 uses every core.
    progress : bool, default=True
        Show a tqdm progress bar (on stderr).
    refit : bool, default=True
        Refit the best configuration on all of ``ratings``.
    cold_start, clip
        As in :func:`fit_and_score`.
    **fixed
        Parameters shared by every configuration (e.g. ``biases=True``, ``max_iter=20``).

    Returns
    -------
    GridSearchResult
    """
    import pandas as pd
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    ratings = _check_ratings(ratings)
    configs = _expand_grid(param_grid if param_grid is not None else {})
    n_jobs = check_int("n_jobs", n_jobs, min_value=-1)
    if n_jobs == 0:
        raise ValueError("`n_jobs` must be >= 1 or -1 (all cores); got 0.")
    folds = kfold(ratings, n_splits, random_state)
    cells = [
        (c, f, {**fixed, "random_state": fixed.get("random_state", f), **cfg})
        for c, cfg in enumerate(configs)
        for f in range(len(folds))
    ]
    jobs = (
        delayed(_run_cell)(solver, folds[f][0], folds[f][1], params, cold_start, clip)
        for _, f, params in cells
    )
    bar = tqdm(total=len(cells), disable=not progress, desc="grid search", unit="fit")
    rows: list[dict[str, Any]] = []
    for (c, f, _), out in zip(
        cells,
        Parallel(n_jobs=n_jobs, return_as="generator")(jobs),
        strict=True,
    ):
        rows.append({"config": c, "fold": f, **configs[c], **out})
        bar.update(1)
    bar.close()
    results = pd.DataFrame(rows)
    keys = list(configs[0])
    summary = (
        results.groupby("config")
        .agg(
            rmse_mean=("rmse", "mean"), rmse_std=("rmse", "std"), mae_mean=("mae", "mean"),
            mae_std=("mae", "std"), fit_s_mean=("fit_s", "mean"),
            n_cold_start=("n_cold_start", "sum"),
        )
        .reset_index()
    )
    params_frame = pd.DataFrame(configs)
    params_frame["config"] = range(len(configs))
    summary = params_frame.merge(summary, on="config").sort_values("rmse_mean")
    summary = summary.reset_index(drop=True)
    best_cfg = configs[int(summary.loc[0, "config"])]
    best_params = {k: _py(best_cfg[k]) for k in keys}
    best_model = None
    if refit:
        _, fn, params = resolve_solver(solver, {**fixed, **best_cfg})
        rank = params.pop("rank")
        params.setdefault("random_state", 0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            best_model = fn(ratings, rank, **params)
    return GridSearchResult(
        results=results, summary=summary, best_params=best_params,
        best_score=float(summary.loc[0, "rmse_mean"]), best_model=best_model,
    )


def _py(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v
