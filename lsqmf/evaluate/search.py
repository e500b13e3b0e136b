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
model -- the global mean plus whichever bias is known (the training mean, which every solver
records as ``FitResult.train_mean``, for a model without biases); ``'nan'`` predicts NaN and
leaves the pair out of the metrics; ``'raise'`` raises ``ValueError``. Every score reports
``n_cold_start``, the number of such pairs; see :mod:`lsqmf.model.result` for the details.

Ranking
-------
:func:`ranking_metrics` scores top-``k`` recommendations against a test split: precision,
recall, MAP and NDCG at ``k`` with an explicit relevance threshold, each user's training items
excluded; ``fit_and_score(..., ranking={'k': 10, 'threshold': 4.0})`` adds them to its dict
(and so to every row of :func:`cross_validate` and :func:`grid_search`).

Clipping
--------
``clip='auto'`` (default) clips predictions to the range of the training values (the rating
scale, e.g. 0.5--5 stars); ``clip=(low, high)`` to a given range; ``clip=None`` not at all.

Model selection
---------------
:func:`fit_and_score` fits one solver on ``train`` and scores ``test``; :func:`cross_validate`
runs it over k folds into a tidy DataFrame (one row per fold); :func:`grid_search`
cross-validates every combination of a parameter grid (with a tqdm progress bar), picks the
lowest mean validation RMSE and refits it on all the data. Solver names resolve through
:data:`lsqmf.solvers.SOLVERS`; parameters not given are taken from
:data:`lsqmf.solvers.SOLVER_DEFAULTS`.

Cells, backends and checkpoints
-------------------------------
Every (configuration, fold) fit is a *cell*, seeded by its fold number (or the fixed
``random_state``), so it gives the same numbers wherever it runs: serially (``n_jobs=1``),
on local processes (``n_jobs=2``) or on a Dask cluster (``scheduler='tcp://host:8786'``),
through :func:`lsqmf.runtime.parallel.map_tasks`, which sends the ratings and folds to each worker
once. Rows come back as cells finish and are returned in cell order. Nothing finished is lost:
a cell that raises is a row with its ``error`` and NaN scores (a :class:`RuntimeWarning`
names the failures); ``out=`` appends every finished row to a CSV at once, and a rerun with the
same ``out`` runs only the missing (or failed) cells; Ctrl-C raises
:class:`SearchInterrupted` (a ``KeyboardInterrupt``) carrying the finished rows.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import logging
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._validation import check_choice, check_float, check_int, check_random_state, describe
from ..data.ratings import Ratings, as_ratings
from ..model.result import COLD_START_POLICIES, ConvergenceWarning, FitResult

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

__all__ = [
    "GridSearchResult",
    "SearchInterrupted",
    "align_pairs",
    "cross_validate",
    "fit_and_score",
    "grid_search",
    "holdout_split",
    "kfold",
    "mae",
    "predict_pairs",
    "ranking_metrics",
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
    >>> from lsqmf.evaluate.search import kfold
    >>> folds = kfold(np.arange(1.0, 21.0).reshape(4, 5), n_splits=4, random_state=0)
    >>> [(tr.nnz, te.nnz) for tr, te in folds]
    [(15, 5), (15, 5), (15, 5), (15, 5)]
    """
    ratings = _check_ratings(ratings)
    return [_complement(ratings, part) for part in _kfold_parts(ratings, n_splits, random_state)]


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

    ``rows`` and ``cols`` are indices in ``train``'s indexing, -1 for an id that ``train``
    does not know (as :func:`align_pairs` returns them). A pair is cold when its row or
    column has no entry in ``train`` (its factors were never fitted) or is -1. Returns
    ``(predictions, n_cold_start)``.
    """
    check_choice("cold_start", cold_start, COLD_START_POLICIES)
    if model.row_counts is None or model.col_counts is None:
        # a result built without training counts: take them from `train`
        model = dataclasses.replace(
            model, row_counts=train.row_counts(), col_counts=train.col_counts()
        )
    out = model.predict(rows, cols, cold_start=cold_start, clip=_resolve_clip(clip, train),
                        return_cold_start=True, allow_unknown=True)
    return out.values, out.n_cold_start


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
    min_count: int = 1,
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
    min_count : int, default=1
        Recommend only columns with at least this many training ratings
        (``model.col_counts``); the default leaves out the columns that had none (their
        factors were never fitted). A higher value keeps rarely rated items, whose scores
        rest on a handful of ratings, off the list.

    Returns
    -------
    cols, scores : ndarray
        Column indices and predicted scores (unclipped), best first, ties by column index.
        Costs O(n_cols * rank). For a cold-start row (no training rating) of a model with
        biases, the ranking is by the column biases.

    Raises
    ------
    ValueError
        For a cold-start row of a model without biases (all scores would be equal).
    """
    n = check_int("n", n, min_value=1)
    min_count = check_int("min_count", min_count, min_value=1)
    n_rows, n_cols = model.shape
    row = check_int("row", row, min_value=0, max_value=n_rows - 1)
    if model.col_counts is None and min_count > 1:
        raise ValueError(
            f"`min_count`={min_count} needs the model's column counts (`col_counts`), which "
            "this model does not record."
        )
    if model.row_counts is not None and model.row_counts[row] == 0 and not model.has_biases:
        raise ValueError(
            f"row {row} is cold-start (no training rating, so no fitted factor) and the model "
            "has no biases: every item would score the same. Fold the user's ratings in "
            "(FitResult.fold_in) or use a model with biases."
        )
    scores = model.P[row] @ model.Q + model.mu
    if model.row_bias is not None and model.col_bias is not None:
        scores = scores + model.row_bias[row] + model.col_bias
    allowed = (
        np.ones(n_cols, dtype=bool) if model.col_counts is None
        else model.col_counts >= min_count
    )
    if exclude is not None:
        ex = np.asarray(exclude, dtype=np.int64)
        allowed[ex[(ex >= 0) & (ex < n_cols)]] = False
    cand = np.flatnonzero(allowed)
    k = min(n, len(cand))
    if k == 0:
        return np.empty(0, dtype=np.int64), np.empty(0)
    # a full sort of the candidates (O(n_cols log n_cols), small next to the scores): ties by
    # column index, also across the n-th place
    order = cand[np.lexsort((cand, -scores[cand]))][:k]
    return order, scores[order]


# ------------------------------------------------------------------ ranking metrics

#: Largest score block (users x columns, float64 elements) that :func:`ranking_metrics` holds.
_RANKING_BLOCK_ELEMENTS = 2_097_152


def ranking_metrics(
    model: FitResult,
    train: Any,
    test: Any,
    *,
    k: int = 10,
    threshold: float = 4.0,
) -> dict[str, Any]:
    r"""Top-``k`` ranking quality of ``model`` on a test split: precision, recall, MAP, NDCG.

    For every user (row) the candidates are the items (columns) the model has a factor for
    (a training rating) minus the items the user rated in ``train``; they are ranked by the
    model's score :math:`c_i + p_u^\top q_i` (ties by column index) and the first ``k`` are
    the recommendations. An item is *relevant* to a user when its test rating is
    ``>= threshold``. With :math:`h_j \in \{0, 1\}` the relevance of the ``j``-th
    recommendation and :math:`R_u` the number of relevant test items of the user,

    .. math::

        \mathrm{P@k} = \tfrac1k\sum_{j\le k} h_j,\quad
        \mathrm{R@k} = \tfrac1{R_u}\sum_{j\le k} h_j,\quad
        \mathrm{AP@k} = \tfrac{1}{\min(k, R_u)}\sum_{j\le k} h_j\,\mathrm{P@j},\quad
        \mathrm{NDCG@k} = \frac{\sum_{j\le k} h_j/\log_2(j+1)}
                               {\sum_{j\le \min(k, R_u)} 1/\log_2(j+1)}

    (binary gains, as ``sklearn.metrics.ndcg_score`` with 0/1 relevance), each averaged over
    the evaluated users (MAP is the mean of AP).

    Users with no relevant test item are not evaluated (every metric would be 0 or
    undefined for them); nor are users the model has no factor for (no training rating, or a
    test user id unknown to ``train``). Both are counted in the result. Relevant test items
    the model cannot rank (items without a training rating, or unknown ids) stay in
    :math:`R_u`: they are misses.

    Scores are computed for blocks of users (about two million scores at a time), so memory
    stays bounded for any number of users; time is :math:`O(n\,m\,k_{\rm rank})`.

    Parameters
    ----------
    model : FitResult
        Fitted on ``train`` (same shape).
    train, test : Ratings
        As for :func:`fit_and_score` (a split, or two files matched by raw id).
    k : int, default=10
    threshold : float, default=4.0
        Relevance threshold on the test ratings.

    Returns
    -------
    dict
        ``precision@k``, ``recall@k``, ``map@k``, ``ndcg@k`` (NaN when no user is evaluated),
        ``n_ranked_users`` (users evaluated), ``n_users_no_relevant``, ``n_users_cold`` and
        ``relevance_threshold``.

    Examples
    --------
    >>> import numpy as np
    >>> from lsqmf import FitResult, Ratings
    >>> from lsqmf.evaluate.search import ranking_metrics
    >>> model = FitResult(P=np.ones((1, 1)), Q=np.array([[0.9, 0.8, 0.7, 0.6, 0.5]]),
    ...                   row_counts=np.ones(1, int), col_counts=np.ones(5, int))
    >>> train = Ratings(np.array([0]), np.array([1]), np.array([3.0]), (1, 5))
    >>> test = Ratings(np.array([0, 0, 0]), np.array([0, 3, 4]), np.array([5.0, 4.0, 2.0]),
    ...                (1, 5))
    >>> out = ranking_metrics(model, train, test, k=3)
    >>> [round(out[m], 4) for m in ("precision@3", "recall@3", "map@3", "ndcg@3")]
    [0.6667, 1.0, 0.8333, 0.9197]
    """
    train, test, k, threshold = _check_ranking_args(model, train, test, k, threshold)
    rel = _relevance(model, train, test, threshold)
    users = np.flatnonzero(rel.warm & (rel.n_rel > 0))
    sums = np.zeros(4)
    block = max(1, _RANKING_BLOCK_ELEMENTS // model.shape[1])
    for start in range(0, len(users), block):
        sums += _block_sums(model, rel, users[start : start + block], k)
    n_users = len(users)
    means = sums / n_users if n_users else np.full(4, np.nan)
    keys = [f"precision@{k}", f"recall@{k}", f"map@{k}", f"ndcg@{k}"]
    out: dict[str, Any] = {key: float(v) for key, v in zip(keys, means, strict=True)}
    out.update(
        n_ranked_users=n_users,
        n_users_no_relevant=int(np.count_nonzero(rel.in_test & (rel.n_rel == 0))),
        n_users_cold=int(np.count_nonzero(~rel.warm & (rel.n_rel > 0))) + rel.n_unknown_users,
        relevance_threshold=float(threshold),
    )
    return out


def _check_ranking_args(model: Any, train: Any, test: Any, k: Any,
                        threshold: Any) -> tuple[Ratings, Ratings, int, float]:
    """The checked arguments of :func:`ranking_metrics`."""
    if not isinstance(model, FitResult):
        raise TypeError(f"`model` must be lsqmf.FitResult; got {describe(model)}.")
    train = _check_ratings(train)
    test = _check_ratings(test)
    k = check_int("k", k, min_value=1)
    threshold = check_float("threshold", threshold)
    if not np.isfinite(threshold):
        raise ValueError(f"`threshold` must be finite; got {threshold}.")
    if model.shape != train.shape:
        raise ValueError(
            f"`model` must be fitted on `train`: shapes {model.shape} and {train.shape} differ."
        )
    return train, test, k, threshold


@dataclass(frozen=True)
class _Relevance:
    """What :func:`ranking_metrics` needs of the splits, in ``train``'s indexing."""

    n_rel: np.ndarray  # relevant test items per row (user)
    in_test: np.ndarray  # rows with a test entry
    warm: np.ndarray  # rows with a training rating
    n_unknown_users: int  # distinct test users unknown to ``train``
    rel_csr: Any  # relevant (row, column) test pairs the model can rank, a CSR matrix
    train_csr: Any  # the training entries, a CSR matrix
    blocked: np.ndarray  # columns without a training rating


def _relevance(model: FitResult, train: Ratings, test: Ratings, threshold: float) -> _Relevance:
    import scipy.sparse as sp

    n_rows, n_cols = model.shape
    t_rows, t_cols = align_pairs(train, test)
    known_user = t_rows >= 0
    relevant = (test.values >= threshold) & known_user
    row_counts = model.row_counts if model.row_counts is not None else train.row_counts()
    col_counts = model.col_counts if model.col_counts is not None else train.col_counts()
    rel_mask = relevant & (t_cols >= 0)
    rel_csr = sp.csr_matrix(
        (np.ones(int(rel_mask.sum()), dtype=bool), (t_rows[rel_mask], t_cols[rel_mask])),
        shape=(n_rows, n_cols),
    )
    return _Relevance(
        n_rel=np.bincount(t_rows[relevant], minlength=n_rows),
        in_test=np.bincount(t_rows[known_user], minlength=n_rows) > 0,
        warm=row_counts > 0,
        n_unknown_users=len(np.unique(test.rows[~known_user])),
        rel_csr=rel_csr,
        train_csr=train.to_sparse().tocsr(),
        blocked=np.flatnonzero(col_counts <= 0),
    )


def _block_sums(model: FitResult, rel: _Relevance, ub: np.ndarray, k: int) -> np.ndarray:
    """Sums over the users ``ub`` of P@k, R@k, AP@k and NDCG@k."""
    kk = min(k, model.shape[1])
    scores = model.P[ub] @ model.Q
    if model.col_bias is not None:
        scores += model.col_bias
    scores[:, rel.blocked] = -np.inf
    seen = rel.train_csr[ub]
    scores[np.repeat(np.arange(len(ub)), np.diff(seen.indptr)), seen.indices] = -np.inf
    top = _top_k(scores, kk)
    valid = np.isfinite(np.take_along_axis(scores, top, axis=1))
    hits = (rel.rel_csr[ub].toarray()[np.arange(len(ub))[:, None], top] & valid).astype(float)
    n_hits = hits.sum(axis=1)
    r_u = rel.n_rel[ub].astype(float)
    prec_at = np.cumsum(hits, axis=1) / np.arange(1, kk + 1)
    discount = 1.0 / np.log2(np.arange(2, kk + 2))
    ideal = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))])
    return np.array([
        np.sum(n_hits / k),
        np.sum(n_hits / r_u),
        np.sum((prec_at * hits).sum(axis=1) / np.minimum(k, r_u)),
        np.sum((hits @ discount) / ideal[np.minimum(k, rel.n_rel[ub])]),
    ])


# ------------------------------------------------------------------ fit and score


def resolve_solver(
    solver: str | Callable[..., FitResult], params: Mapping[str, Any]
) -> tuple[str, Callable[..., FitResult], dict[str, Any]]:
    """``(name, function, params)``: :func:`lsqmf.solvers.resolve_solver`, the one rule (a
    name gets :data:`~lsqmf.solvers.SOLVER_DEFAULTS` for the parameters not given)."""
    from ..solvers import resolve_solver as resolve

    return resolve(solver, params)


def fit_and_score(
    solver: str | Callable[..., FitResult],
    train: Any,
    test: Any,
    *,
    cold_start: str = "bias",
    clip: Any = "auto",
    return_model: bool = False,
    quiet: bool = True,
    ranking: Mapping[str, Any] | None = None,
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
    ranking : dict, optional
        Also compute the ranking metrics of :func:`ranking_metrics` with these options
        (``{}`` for the defaults, ``{'k': 20, 'threshold': 3.5}``); their fields join the
        result. :func:`cross_validate` and :func:`grid_search` pass it through.
    **params
        Solver options (``rank``, ``reg``, ...).

    Returns
    -------
    dict
        ``solver``, ``rmse``, ``mae``, ``fit_s`` (wall seconds of the fit), ``n_test``,
        ``n_scored`` (pairs with a finite prediction), ``n_cold_start``, ``train_rmse``,
        ``cost``, ``n_iter``, ``status``, ``success``, the parameters used, and with
        ``ranking`` the fields of :func:`ranking_metrics`.
    """
    train = _check_ratings(train)
    test = _check_ratings(test)
    test_rows, test_cols = align_pairs(train, test)
    check_choice("cold_start", cold_start, COLD_START_POLICIES)
    name, fn, rank, params = _resolve_with_rank(solver, params)
    from ..kernels.backend import warm_up_solver

    # the solver's kernels compiled or loaded from the disk cache now: fit_s never counts it
    warm_up_solver(name, params.get("backend", "auto"))
    t0 = time.perf_counter()
    model = _fit(fn, train, rank, params, quiet=quiet)
    fit_s = time.perf_counter() - t0
    pred, n_cold = predict_pairs(model, train, test_rows, test_cols, cold_start=cold_start,
                                 clip=clip)
    ok = np.isfinite(pred)
    train_pred = model.predict(train.rows, train.cols, clip=_resolve_clip(clip, train))
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
    if ranking is not None:
        out.update(_ranking_fields(model, train, test, ranking))
    if return_model:
        out["model"] = model
    return out


def _resolve_with_rank(
    solver: str | Callable[..., FitResult], params: Mapping[str, Any]
) -> tuple[str, Callable[..., FitResult], Any, dict[str, Any]]:
    """``(name, function, rank, params)``: :func:`resolve_solver`, ``rank`` taken out."""
    name, fn, resolved = resolve_solver(solver, params)
    resolved = dict(resolved)
    if "rank" not in resolved:
        raise ValueError("`rank` is required (as a parameter or in the solver's defaults).")
    rank = resolved.pop("rank")
    return name, fn, rank, resolved


def _fit(fn: Callable[..., FitResult], ratings: Ratings, rank: Any, params: Mapping[str, Any],
         *, quiet: bool) -> FitResult:
    """``fn(ratings, rank, **params)``, with :class:`~lsqmf.ConvergenceWarning` silenced when
    ``quiet``."""
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore", ConvergenceWarning)
        return fn(ratings, rank, **params)


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` largest scores of each row, best first, ties by column."""
    top = np.sort(np.argpartition(-scores, k - 1, axis=1)[:, :k], axis=1)
    top_scores = np.take_along_axis(scores, top, axis=1)
    # a tie across the k-th place: argpartition chose among the tied columns arbitrarily;
    # those rows get a full stable sort instead
    kth = top_scores.min(axis=1)
    tied = np.count_nonzero(scores >= kth[:, None], axis=1) > k
    if tied.any():
        full = np.argsort(-scores[tied], axis=1, kind="stable")[:, :k]
        top[tied] = np.sort(full, axis=1)
        top_scores[tied] = np.take_along_axis(scores[tied], top[tied], axis=1)
    order = np.argsort(-top_scores, axis=1, kind="stable")
    out: np.ndarray = np.take_along_axis(top, order, axis=1)
    return out


def _ranking_field_names(ranking: Mapping[str, Any]) -> list[str]:
    """The fields ``fit_and_score(..., ranking=ranking)`` adds, in order."""
    k = ranking.get("k", 10)
    return [f"precision@{k}", f"recall@{k}", f"map@{k}", f"ndcg@{k}", "n_ranked_users",
            "n_users_no_relevant", "n_users_cold", "relevance_threshold"]


def _ranking_fields(
    model: FitResult, train: Ratings, test: Ratings, ranking: Any
) -> dict[str, Any]:
    if not isinstance(ranking, Mapping) or not set(ranking) <= {"k", "threshold"}:
        raise TypeError(
            f"`ranking` must be a dict with keys among 'k' and 'threshold'; got "
            f"{describe(ranking)}."
        )
    return ranking_metrics(model, train, test, **ranking)


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, bool | int | float | str | np.number)


def _kfold_parts(ratings: Ratings, n_splits: int, random_state: Any) -> list[np.ndarray]:
    """The test indices of every fold of :func:`kfold` (one seeded permutation, cut)."""
    n_splits = check_int("n_splits", n_splits, min_value=2)
    if n_splits > ratings.nnz:
        raise ValueError(
            f"`n_splits` must be at most the number of ratings ({ratings.nnz}); got {n_splits}."
        )
    rng = check_random_state(random_state)
    perm = rng.permutation(ratings.nnz)
    return list(np.array_split(perm, n_splits))


# ------------------------------------------------------------------ cells: CV and grid search
#: Fields of :func:`fit_and_score`'s dict before the solver's parameters, in its order.
_SCORE_FIELDS = ["solver", "rmse", "mae", "fit_s", "n_test", "n_scored", "n_cold_start",
                 "train_rmse", "cost", "n_iter", "status", "success", "rank"]
#: Float fields of a cell row (NaN in a failed row).
_FLOAT_FIELDS = ["rmse", "mae", "fit_s", "train_rmse", "cost"]


class SearchInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`cross_validate` or :func:`grid_search`.

    Attributes
    ----------
    results : pandas.DataFrame
        The rows of every cell finished before the interrupt (also in ``out`` when given),
        in cell order.
    n_cells : int
        How many cells the run has in all.
    """

    def __init__(self, results: pd.DataFrame, n_cells: int) -> None:
        super().__init__(f"interrupted after {len(results)} of {n_cells} cells")
        self.results = results
        self.n_cells = n_cells


@dataclass(frozen=True)
class _Cell:
    """One (configuration, fold) fit: what a worker needs besides the shared data."""

    index: int
    config: int
    fold: int
    params: dict[str, Any]
    cell_id: str


class _CellData:
    """Shared by every cell (sent once to each worker): the ratings, the folds' test indices,
    the solver and the scoring options. Folds are built on first use and kept."""

    def __init__(self, ratings: Ratings, parts: list[np.ndarray], solver: Any,
                 cold_start: str, clip: Any) -> None:
        self.ratings = ratings
        self.parts = parts
        self.solver = solver
        self.cold_start = cold_start
        self.clip = clip
        self._folds: dict[int, tuple[Ratings, Ratings]] = {}

    def fold(self, f: int) -> tuple[Ratings, Ratings]:
        if f not in self._folds:
            self._folds[f] = _complement(self.ratings, self.parts[f])
        return self._folds[f]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_folds": {}}


def _score_cell(data: _CellData, cell: _Cell) -> dict[str, Any]:
    """fit_and_score on one cell; an exception becomes the row's ``error`` (never raised)."""
    train, test = data.fold(cell.fold)
    try:
        row = fit_and_score(data.solver, train, test, cold_start=data.cold_start,
                            clip=data.clip, **cell.params)
    except Exception as err:
        return {"error": f"{type(err).__name__}: {err}".replace("\n", " ").strip()[:500]}
    return {**row, "error": ""}


def _fingerprint(ratings: Ratings, parts: list[np.ndarray], solver: Any, cold_start: str,
                 clip: Any) -> hashlib.blake2b:
    h = hashlib.blake2b(digest_size=8)
    h.update(repr((ratings.shape, ratings.nnz, _solver_name(solver), cold_start,
                   repr(clip))).encode())
    for a in (ratings.rows, ratings.cols, ratings.values, *parts):
        h.update(np.ascontiguousarray(a).tobytes())
    return h


def _solver_name(solver: Any) -> str:
    return solver if isinstance(solver, str) else getattr(solver, "__name__", "custom")


def _make_cells(data: _CellData, configs: list[dict[str, Any]],
                params_of: Callable[[dict[str, Any], int], dict[str, Any]]) -> list[_Cell]:
    base = _fingerprint(data.ratings, data.parts, data.solver, data.cold_start, data.clip)
    cells: list[_Cell] = []
    for c, cfg in enumerate(configs):
        for f in range(len(data.parts)):
            params = params_of(cfg, f)
            h = base.copy()
            h.update(repr((f, sorted((k, repr(v)) for k, v in params.items()))).encode())
            cells.append(_Cell(len(cells), c, f, params, h.hexdigest()))
    return cells


def _columns(head: list[str], data: _CellData, cell: _Cell) -> list[str]:
    """Columns of a cell row: ``head``, fit_and_score's fields, ``error``, ``cell_id``."""
    if isinstance(data.solver, str):
        try:
            params = resolve_solver(data.solver, cell.params)[2]
        except (ValueError, TypeError, KeyError):
            params = dict(cell.params)
    else:
        params = dict(cell.params)
    cols = list(head)
    ranking = params.get("ranking")
    ranked = _ranking_field_names(ranking) if isinstance(ranking, Mapping) else []
    for k in [*_SCORE_FIELDS, *(k for k, v in params.items() if _scalar(v)), *ranked]:
        if k not in cols:
            cols.append(k)
    return [*cols, "error", "cell_id"]


def _failed_text(frame: pd.DataFrame, keys: list[str]) -> str:
    bad = frame[frame["error"].astype(str).str.len() > 0]
    parts = []
    for _, r in bad.head(5).iterrows():
        where = ", ".join(f"{k}={_py(r[k])}" for k in keys)
        parts.append(f"fold {r['fold']}{' (' + where + ')' if where else ''}: {r['error']}")
    more = f"; and {len(bad) - 5} more" if len(bad) > 5 else ""
    return "; ".join(parts) + more


def _read_frame(path: Path, columns: list[str]) -> pd.DataFrame:
    import pandas as pd

    frame = pd.read_csv(path, dtype={"error": str, "cell_id": str, "solver": str})
    frame["error"] = frame["error"].fillna("")
    return frame[columns]


def _done_cells(path: Path | None, cells: list[_Cell], by_id: dict[str, _Cell],
                columns: list[str], desc: str) -> set[str]:
    """Ids of the cells that an earlier run already finished in ``path`` (without error)."""
    from ..runtime.checkpoint import parse_bool, parse_float, parse_int, read_checkpoint

    done: set[str] = set()
    if path is not None:
        if path.is_dir():
            raise ValueError(f"`out` must be a CSV file path; got the directory {str(path)!r}.")
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.stat().st_size:
            parsers: dict[str, Callable[[str], Any]] = {
                **dict.fromkeys(_FLOAT_FIELDS, parse_float),
                **dict.fromkeys(["n_test", "n_scored", "n_cold_start", "fold"], parse_int),
                "success": lambda s: s == "" or parse_bool(s),
            }
            rows = read_checkpoint(path, columns, known=by_id, parsers=parsers,
                                   keep=lambda r: r["error"] == "", what=desc)
            done = {r["cell_id"] for r in rows}
            logger.info("%s: %d of %d cells already done in %s", desc, len(done), len(cells),
                        path)
    return done


def _cells_frame(path: Path | None, columns: list[str], by_id: dict[str, _Cell],
                 rows_by_index: dict[int, dict[str, Any]]) -> pd.DataFrame:
    """The rows so far in cell order: read back from ``path``, else the rows in memory."""
    import pandas as pd

    if path is not None:
        table = _read_frame(path, columns)
        order = table["cell_id"].map({cid: c.index for cid, c in by_id.items()})
        return table.iloc[np.argsort(order.to_numpy(), kind="stable")].reset_index(
            drop=True
        )
    rows = [rows_by_index[i] for i in sorted(rows_by_index)]
    return pd.DataFrame(rows, columns=columns)


def _cell_row(outcome: Any, data: _CellData, head_of: Callable[[_Cell], dict[str, Any]],
              columns: list[str], extra_seen: set[str], desc: str) -> dict[str, Any]:
    """The row of a finished cell (scores or its error); warns once per unrecorded field."""
    cell: _Cell = outcome.task
    value = outcome.value if outcome.ok else {"error": outcome.error}
    row = {**head_of(cell), **value, "cell_id": cell.cell_id}
    row.setdefault("solver", _solver_name(data.solver))
    for k in _FLOAT_FIELDS:
        row.setdefault(k, float("nan"))
    extra = set(row) - set(columns) - extra_seen
    if extra:
        extra_seen |= extra
        logger.warning("%s: fields %s are not recorded", desc, sorted(extra))
    return row


def _run_cells(
    data: _CellData,
    cells: list[_Cell],
    head_of: Callable[[_Cell], dict[str, Any]],
    columns: list[str],
    *,
    n_jobs: int,
    scheduler: Any,
    out: Any,
    progress: bool,
    desc: str,
) -> pd.DataFrame:
    """Run (or resume) the cells; one row per cell in cell order; rows written as they finish.

    With ``out``, the finished cells of an earlier run with the same data, folds, solver and
    parameters are kept (failed ones run again) and every new row is appended at once.
    """
    from tqdm.auto import tqdm

    from ..runtime.checkpoint import RowWriter, sort_rows
    from ..runtime.parallel import map_tasks, plan_backend

    path = None if out is None else Path(out)
    by_id = {c.cell_id: c for c in cells}
    done = _done_cells(path, cells, by_id, columns, desc)
    todo = [c for c in cells if c.cell_id not in done]
    backend = plan_backend(n_jobs, scheduler)  # connects (or fails) before any work
    rows_by_index: dict[int, dict[str, Any]] = {}
    writer = RowWriter(path, columns) if path is not None else None
    bar = tqdm(total=len(cells), initial=len(done), disable=not progress, desc=desc,
               unit="fit")
    extra_seen: set[str] = set()
    try:
        for outcome in map_tasks(_score_cell, todo, shared=data, backend=backend,
                                 label=desc.replace(" ", "-")):
            row = _cell_row(outcome, data, head_of, columns, extra_seen, desc)
            rows_by_index[outcome.task.index] = row
            if writer is not None:
                writer.write(row)
            bar.update(1)
    except KeyboardInterrupt:
        if writer is not None:
            writer.close()
            writer = None
        bar.close()
        raise SearchInterrupted(_cells_frame(path, columns, by_id, rows_by_index),
                                len(cells)) from None
    finally:
        if writer is not None:
            writer.close()
        bar.close()
        backend.close()
    if path is not None:  # appended in completion order; left in cell order
        sort_rows(path, lambda r: by_id[r["cell_id"]].index)
    return _cells_frame(path, columns, by_id, rows_by_index)


def _warn_failures(results: pd.DataFrame, keys: list[str], what: str) -> None:
    n_bad = int((results["error"].astype(str).str.len() > 0).sum())
    if n_bad:
        warnings.warn(
            f"{n_bad} of {len(results)} {what} cells failed (their rows have the error and NaN "
            f"scores): {_failed_text(results, keys)}",
            RuntimeWarning,
            stacklevel=3,
        )


def cross_validate(
    ratings: Any,
    *,
    solver: str | Callable[..., FitResult] = "als",
    n_splits: int = 5,
    random_state: int | np.random.Generator | None = 0,
    cold_start: str = "bias",
    clip: Any = "auto",
    n_jobs: int = 1,
    scheduler: Any = None,
    out: str | Path | None = None,
    progress: bool = False,
    **params: Any,
) -> pd.DataFrame:
    """K-fold cross-validation of one solver configuration.

    The folds come from :func:`kfold` with ``random_state``; the solver's own
    ``random_state`` (initial factors, shuffles) is ``params['random_state']`` if given, else
    the fold number. The folds run in parallel as :func:`grid_search`'s cells do.

    Parameters
    ----------
    n_jobs, scheduler, out, progress
        As in :func:`grid_search`.

    Returns
    -------
    pandas.DataFrame
        One row per fold: ``fold``, ``fit_s``, ``rmse``, ``mae``, ``n_cold_start``, the other
        fields of :func:`fit_and_score`, ``error`` (empty unless the fold failed: then the
        scores are NaN and a :class:`RuntimeWarning` names it) and ``cell_id``.

    Raises
    ------
    SearchInterrupted
        On Ctrl-C (a ``KeyboardInterrupt``), with the finished folds in ``results``.

    Examples
    --------
    >>> from lsqmf.data.readers import make_low_rank
    >>> from lsqmf.evaluate.search import cross_validate
    >>> ratings, _ = make_low_rank(40, 30, 2, density=0.5, noise=0.1, random_state=0)
    >>> cv = cross_validate(ratings, solver="als", n_splits=3, rank=2, reg=0.1, biases=False,
    ...                     count_scaled=False, random_state=0)
    >>> list(cv["fold"]), bool((cv["rmse"] < 0.5).all())
    ([0, 1, 2], True)
    """
    ratings = _check_ratings(ratings)
    check_choice("cold_start", cold_start, COLD_START_POLICIES)
    data = _CellData(ratings, _kfold_parts(ratings, n_splits, random_state), solver,
                     cold_start, clip)
    cells = _make_cells(data, [{}], lambda cfg, f: {"random_state": f, **params})
    first = ["fold", "solver", "fit_s", "rmse", "mae", "n_cold_start"]
    columns = _columns(first, data, cells[0])
    results = _run_cells(data, cells, lambda c: {"fold": c.fold}, columns, n_jobs=n_jobs,
                         scheduler=scheduler, out=out, progress=progress,
                         desc="cross-validation")
    _warn_failures(results, [], "cross-validation")
    return results


@dataclass(frozen=True)
class GridSearchResult:
    """What :func:`grid_search` returns.

    Attributes
    ----------
    results : pandas.DataFrame
        One row per (configuration, fold), in that order: ``config`` (index of the
        configuration), ``fold``, the grid parameters, the :func:`fit_and_score` fields,
        ``error`` (empty unless the cell failed) and ``cell_id``.
    summary : pandas.DataFrame
        One row per configuration: the grid parameters, mean and std of validation RMSE and
        MAE (NaN unless every fold finished), mean fit time, total cold-start pairs,
        ``n_failed``; sorted by mean RMSE.
    best_params : dict
        The configuration with the lowest mean validation RMSE (empty if none finished).
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


def _mean_all(s: pd.Series) -> float:
    return float(s.mean(skipna=False))


def _summarize(results: pd.DataFrame, configs: list[dict[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    res = results.assign(failed=results["error"].astype(str).str.len() > 0)
    summary = (
        res.groupby("config")
        .agg(
            rmse_mean=("rmse", _mean_all), rmse_std=("rmse", "std"),
            mae_mean=("mae", _mean_all), mae_std=("mae", "std"),
            fit_s_mean=("fit_s", "mean"), n_cold_start=("n_cold_start", "sum"),
            n_failed=("failed", "sum"),
        )
        .reset_index()
    )
    params_frame = pd.DataFrame(configs)
    params_frame["config"] = range(len(configs))
    summary = params_frame.merge(summary, on="config").sort_values("rmse_mean", kind="stable")
    return summary.reset_index(drop=True)


def grid_search(
    ratings: Any,
    solver: str | Callable[..., FitResult] = "als",
    param_grid: Mapping[str, Sequence[Any]] | None = None,
    *,
    n_splits: int = 5,
    random_state: int | np.random.Generator | None = 0,
    n_jobs: int = 1,
    scheduler: Any = None,
    out: str | Path | None = None,
    progress: bool = True,
    refit: bool = True,
    cold_start: str = "bias",
    clip: Any = "auto",
    **fixed: Any,
) -> GridSearchResult:
    """Cross-validate every combination of ``param_grid`` and refit the best on all data.

    Every (configuration, fold) *cell* is one fit; cells run serially, on local processes
    or on a Dask cluster (:mod:`lsqmf.runtime.parallel`) with the same seeds, so the results are the
    same rows in the same order on every backend.

    Parameters
    ----------
    ratings : Ratings or anything :func:`lsqmf.as_ratings` accepts
    solver : str or callable, default='als'
    param_grid : dict of str -> list
        E.g. ``{'rank': [10, 20, 50], 'reg': [0.02, 0.05, 0.1]}``.
    n_splits : int, default=5
    random_state : int, Generator or None, default=0
        Seeds the folds (one permutation shared by every configuration). Each fit is seeded
        by ``fixed['random_state']`` if given, else by its fold number.
    n_jobs : int, default=1
        Local worker processes (joblib) over the cells; -1 uses every core; 1 is serial.
    scheduler : str, distributed.Client or cluster, optional
        Run the cells on a Dask cluster (``'tcp://host:8786'``; needs ``lsqmf[cluster]``); the
        ratings are sent to each worker once. Also used: an enclosing
        ``joblib.parallel_config(backend='dask')``. An unreachable scheduler raises
        :class:`~lsqmf.runtime.parallel.SchedulerUnreachableError` before any work.
    out : str or Path, optional
        A CSV checkpoint: every finished cell is appended at once, and a rerun with the same
        path (same data, folds, solver and parameters) keeps the finished cells and runs the
        others (failed cells run again). Rows that are broken or belong to other cells are
        dropped with a warning.
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
        A cell that raised is a row with its ``error`` and NaN scores (a
        :class:`RuntimeWarning` names the failures); its configuration is not eligible as the
        best.

    Raises
    ------
    SearchInterrupted
        On Ctrl-C (a ``KeyboardInterrupt``), with the finished cells in ``results`` (and in
        ``out``).
    """
    ratings = _check_ratings(ratings)
    configs = _expand_grid(param_grid if param_grid is not None else {})
    check_choice("cold_start", cold_start, COLD_START_POLICIES)
    data = _CellData(ratings, _kfold_parts(ratings, n_splits, random_state), solver,
                     cold_start, clip)
    cells = _make_cells(
        data, configs,
        lambda cfg, f: {**fixed, "random_state": fixed.get("random_state", f), **cfg},
    )
    keys = list(configs[0])
    columns = _columns(["config", "fold", *keys], data, cells[0])
    results = _run_cells(
        data, cells, lambda c: {"config": c.config, "fold": c.fold, **configs[c.config]},
        columns, n_jobs=n_jobs, scheduler=scheduler, out=out, progress=progress,
        desc="grid search",
    )
    _warn_failures(results, keys, "grid search")
    summary = _summarize(results, configs)
    if not np.isfinite(summary.loc[0, "rmse_mean"]):
        warnings.warn("no configuration finished every fold: there is no best one.",
                      RuntimeWarning, stacklevel=2)
        return GridSearchResult(results=results, summary=summary, best_params={},
                                best_score=float("nan"), best_model=None)
    best_cfg = configs[int(summary.loc[0, "config"])]
    return GridSearchResult(
        results=results, summary=summary, best_params={k: _py(best_cfg[k]) for k in keys},
        best_score=float(summary.loc[0, "rmse_mean"]),
        best_model=_refit(ratings, solver, {**fixed, **best_cfg}) if refit else None,
    )


def _refit(ratings: Ratings, solver: str | Callable[..., FitResult],
           params: Mapping[str, Any]) -> FitResult:
    """The best configuration fitted on all of ``ratings`` (seed 0 unless given)."""
    _, fn, rank, resolved = _resolve_with_rank(solver, params)
    resolved.setdefault("random_state", 0)
    return _fit(fn, ratings, rank, resolved, quiet=True)


def _py(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v
