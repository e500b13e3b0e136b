"""Data: the :class:`~lsqmf.Ratings` container, file readers, built-in and synthetic data.

============= ==============================================================================
module        what it owns
============= ==============================================================================
``ratings``   :class:`~lsqmf.Ratings` (observed entries, weights, id maps), ``as_ratings``
``readers``   :func:`read_input` (every file format), MovieLens readers, the built-in set
``synthetic`` generators with known truth (:func:`make_low_rank`, :func:`make_affine_sfm`, ...)
============= ==============================================================================

The folder ``ml-latest-small/`` beside these modules is the vendored MovieLens latest-small
data set with its README (its license).
"""

from __future__ import annotations

from .ratings import Ratings, as_ratings
from .readers import load_builtin, load_movielens, read_input
from .synthetic import make_affine_sfm, make_low_rank, make_tracks

__all__ = [
    "Ratings",
    "as_ratings",
    "load_builtin",
    "load_movielens",
    "make_affine_sfm",
    "make_low_rank",
    "make_tracks",
    "read_input",
]
