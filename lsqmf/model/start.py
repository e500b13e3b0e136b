"""The one random start every solver uses (``lsq`` included).

Given the same ratings, rank, ``init_scale`` and seed, every solver starts from the same
factors: ``P`` is drawn first, then ``Q``, each entry ``init_scale * N(0, 1)``, and a drawn row
(column) with no observed entry is set to 0 (the minimizer of its regularization term).
Factors the caller gives are used as they are (after shape and finiteness checks).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validation import check_array
from ..data.ratings import Ratings

__all__ = ["random_start"]


def random_start(
    ratings: Ratings,
    rank: int,
    rng: np.random.Generator,
    *,
    init_scale: float,
    P0: Any = None,
    Q0: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Starting factors ``(P, Q)`` of shapes ``(n_rows, rank)`` and ``(rank, n_cols)``.

    Parameters
    ----------
    ratings : Ratings
        The observed entries (their shape and which rows/columns have ratings).
    rank : int
        Number of factors.
    rng : numpy.random.Generator
        The run's generator; ``P`` is drawn before ``Q``.
    init_scale : float
        Standard deviation of the drawn entries.
    P0, Q0 : array_like, optional
        Given starting factors, used instead of drawing (copied).

    Returns
    -------
    P : ndarray, shape (n_rows, rank)
    Q : ndarray, shape (rank, n_cols)
    """
    n, m = ratings.shape
    if P0 is None:
        P = init_scale * rng.standard_normal((n, rank))
        P[ratings.row_counts() == 0] = 0.0
    else:
        P = check_array("P0", P0, shape=(n, rank), copy=True)
    if Q0 is None:
        Q = init_scale * rng.standard_normal((rank, m))
        Q[:, ratings.col_counts() == 0] = 0.0
    else:
        Q = check_array("Q0", Q0, shape=(rank, m), copy=True)
    return P, Q
