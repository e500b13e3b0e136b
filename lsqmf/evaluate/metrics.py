"""Metrics: RMSE and MAE of predictions, and top-``k`` ranking metrics.

:func:`ranking_metrics` scores top-``k`` recommendations against a test split: precision,
recall, MAP and NDCG at ``k`` with an explicit relevance threshold, each user's training items
excluded; ``fit_and_score(..., ranking={'k': 10, 'threshold': 4.0})`` adds them to its dict
(and so to every row of :func:`~lsqmf.evaluate.cross_validate` and
:func:`~lsqmf.evaluate.grid_search`). :func:`top_n` lists a user's best unrated items.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .._validation import check_float, check_int, describe
from ..data.ratings import Ratings
from ..model.result import FitResult

if TYPE_CHECKING:
    pass
from .splits import _check_ratings, align_pairs

logger = logging.getLogger(__name__)

__all__ = [
    "mae",
    "ranking_metrics",
    "rmse",
    "top_n",
]


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


def top_n(
    model: FitResult,
    row: int,
    n: int = 10,
    *,
    exclude: Any = None,
    min_count: int = 1,
    shrinkage: float = 10.0,
    clip: Any = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` columns (items) a row (user) ``row`` is predicted to rate highest.

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
    shrinkage : float, default=10.0
        Rank by the prediction shrunk toward the user's baseline (``mu + b_u``; the training
        mean for a model without biases) by the item's support: ``base + n_i / (n_i + k)
        * (prediction - base)`` with ``n_i`` its training ratings and ``k = shrinkage``. An
        item with one rating predicted at 5.5 on a 1-5 scale keeps a tenth of its lead and
        does not top the list; an item with 100 ratings keeps 91%. 0 ranks by the
        prediction itself (also when the model records no column counts).
    clip : 'auto', (low, high) or None, default='auto'
        The returned scores: the model's predicted ratings clipped as
        :meth:`~lsqmf.FitResult.predict` clips (``'auto'``: the training scale).

    Returns
    -------
    cols, scores : ndarray
        Column indices, best first by the shrunk prediction (ties by column index), and
        their predicted ratings on the data's scale (``model.predict(row, cols, clip=clip)``).
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
    shrink = float(check_float("shrinkage", shrinkage, min_value=0.0))  # type: ignore[arg-type]
    scores = model.P[row] @ model.Q + model.mu
    base = model.mu if model.has_biases else (model.train_mean or 0.0)
    if model.row_bias is not None and model.col_bias is not None:
        scores = scores + model.row_bias[row] + model.col_bias
        base = base + model.row_bias[row]
    rank_by = scores
    if shrink > 0 and model.col_counts is not None:
        counts = np.asarray(model.col_counts, dtype=np.float64)
        rank_by = base + counts / (counts + shrink) * (scores - base)
    allowed = (
        np.ones(n_cols, dtype=bool) if model.col_counts is None
        else model.col_counts >= min_count
    )
    if exclude is not None:
        ex = _column_indices("exclude", exclude)
        allowed[ex[(ex >= 0) & (ex < n_cols)]] = False
    cand = np.flatnonzero(allowed)
    k = min(n, len(cand))
    if k == 0:
        return np.empty(0, dtype=np.int64), np.empty(0)
    # a full sort of the candidates (O(n_cols log n_cols), small next to the scores): ties by
    # column index, also across the n-th place
    order = cand[np.lexsort((cand, -rank_by[cand]))][:k]
    return order, model.predict(np.full(k, row), order, clip=clip)


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
    >>> from lsqmf.evaluate import ranking_metrics
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


def _column_indices(name: str, value: Any) -> np.ndarray:
    """``value`` as an int64 array of column indices: integers only (``[0.7]`` is not column 0
    and ``[True]`` not column 1), a TypeError naming ``name`` otherwise."""
    arr = np.asarray(value)
    if arr.size == 0:
        return np.empty(0, dtype=np.int64)
    if arr.dtype.kind not in "iu":
        raise TypeError(
            f"`{name}` must hold integer column indices; got {describe(value)} (map raw item "
            "ids to indices with the model's col_ids, e.g. lsqmf.data.ratings.lookup_ids)."
        )
    return arr.astype(np.int64).ravel()
