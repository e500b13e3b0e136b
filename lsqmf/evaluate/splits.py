"""Splits of a ratings set: holdout, k-fold and per-user holdout.

:func:`holdout_split`, :func:`kfold` and :func:`user_holdout` return ``(train, test)`` pairs of
:class:`~lsqmf.Ratings` that share the full ``shape`` and id maps of the input, so an index
means the same user or item in both. All are seeded (``random_state``) and never touch global
random state; the same seed gives the same permutation, hence the same folds for every solver.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from .._validation import check_float, check_int, check_random_state
from ..data.ratings import Ratings, as_ratings

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

__all__ = [
    "align_pairs",
    "holdout_split",
    "kfold",
    "user_holdout",
]


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
    >>> from lsqmf.evaluate import kfold
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
