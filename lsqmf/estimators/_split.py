"""RatingsKFold: the folds of :func:`lsqmf.evaluate.search.kfold` as a scikit-learn splitter."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from .._validation import check_int, check_random_state
from ._base import check_id_column

__all__ = ["RatingsKFold"]


class RatingsKFold:
    """K folds of (user, item) pairs, the same folds as :func:`lsqmf.evaluate.search.kfold`.

    :func:`~lsqmf.evaluate.search.kfold` permutes the ratings in lsqmf's order (sorted by
    user, then item, ids in sorted order) with one seeded permutation and cuts it into
    ``n_splits`` contiguous parts; this splitter gives the same parts as row indices of
    ``X``, in any row order of ``X``. With it, scikit-learn's model selection
    (:class:`~sklearn.model_selection.GridSearchCV`, ``cross_val_score``) and lsqmf's
    (:func:`~lsqmf.evaluate.search.cross_validate`, ``grid_search``) test on identical folds.

    Parameters
    ----------
    n_splits : int, default=5
        At least 2.
    random_state : int, numpy.random.Generator or None, default=0
        Seeds the permutation (lsqmf's rule: ``numpy.random.default_rng(random_state)``).

    Examples
    --------
    >>> from lsqmf.estimators import RatingsKFold
    >>> X = [[u, i] for u in range(4) for i in range(5)]
    >>> [len(test) for _, test in RatingsKFold(4, random_state=0).split(X)]
    [5, 5, 5, 5]
    """

    def __init__(self, n_splits: int = 5, *, random_state: Any = 0) -> None:
        self.n_splits = n_splits
        self.random_state = random_state

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        """The number of folds."""
        return check_int("n_splits", self.n_splits, min_value=2)

    def split(self, X: Any, y: Any = None,
              groups: Any = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(train, test)`` row indices of ``X`` for each fold, each sorted.

        Parameters
        ----------
        X : array_like or DataFrame, shape (n_ratings, 2)
            (user id, item id) per rating.
        y, groups
            Ignored (the folds depend on the pairs only).

        Raises
        ------
        ValueError
            If ``X`` is not two columns of ids or has fewer rows than ``n_splits``.
        """
        import pandas as pd

        n_splits = self.get_n_splits()
        frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(np.asarray(X, dtype=object))
        if frame.ndim != 2 or frame.shape[1] != 2:
            raise ValueError(
                "`X` must have exactly 2 columns (user id, item id); got shape "
                f"{frame.shape}."
            )
        n = len(frame)
        if n_splits > n:
            raise ValueError(f"`n_splits` must be at most the number of ratings ({n}); got "
                             f"{n_splits}.")
        codes = []
        for j, what in enumerate(("user", "item")):
            column = check_id_column(frame.iloc[:, j].to_numpy(), what)
            try:
                c, _ = pd.factorize(pd.Series(column), sort=True)
            except TypeError:  # ids of mixed types: as Ratings.from_frame orders them
                c, _ = pd.factorize(pd.Series(column), sort=False)
            codes.append(c)
        order = np.lexsort((codes[1], codes[0]))  # lsqmf's order of the ratings
        perm = check_random_state(self.random_state).permutation(n)
        for part in np.array_split(perm, n_splits):
            test = np.zeros(n, dtype=bool)
            test[order[part]] = True
            yield np.flatnonzero(~test), np.flatnonzero(test)

    def __repr__(self) -> str:
        return f"RatingsKFold(n_splits={self.n_splits}, random_state={self.random_state!r})"
