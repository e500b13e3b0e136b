"""Synthetic data with known ground truth: planted low-rank ratings and measurement tracks.

:func:`make_low_rank` draws ratings from a planted rank-``k`` model (optionally with noise) and
:func:`make_tracks` a measurement matrix with a visibility mask; both return the ground-truth
factors, so a solver's answer can be checked against the truth. Every draw takes a
``random_state``.
"""

from __future__ import annotations

import numpy as np

from .._validation import check_float, check_int, check_random_state, describe
from .ratings import Ratings

__all__ = [
    "make_low_rank",
    "make_tracks",
]


def make_low_rank(
    n_rows: int,
    n_cols: int,
    rank: int,
    *,
    density: float = 0.1,
    noise: float = 0.0,
    random_state: int | np.random.Generator | None = None,
    scale: tuple[float, float] | None = None,
    cover: bool = True,
) -> tuple[Ratings, tuple[np.ndarray, np.ndarray]]:
    r"""A random, partially observed, exactly low-rank (plus noise) matrix.

    The truth is :math:`P Q` with ``P`` of shape ``(n_rows, rank)`` and ``Q`` of shape
    ``(rank, n_cols)``, entries standard normal divided by :math:`\sqrt{\mathrm{rank}}` (so
    the entries of :math:`PQ` have unit variance). ``round(density * n_rows * n_cols)``
    distinct entries are observed, drawn without building an ``n_rows x n_cols`` array (memory
    and time are linear in the number of observed entries), and observed with additive
    Gaussian noise of standard deviation ``noise``.

    Parameters
    ----------
    n_rows, n_cols, rank : int
    density : float, default=0.1
        Fraction of observed entries, in (0, 1].
    noise : float, default=0.0
    random_state : int, numpy.random.Generator or None
    scale : (low, high), optional
        Map the observed values affinely onto ``[low, high]`` (e.g. ``(0.5, 5.0)`` for
        MovieLens-like stars) using their min and max; the returned factors stay unscaled.
    cover : bool, default=True
        Also observe one random entry in every row and column that has none.

    Returns
    -------
    ratings : Ratings
    factors : (P, Q)
        The true factors.

    Examples
    --------
    >>> from lsqmf.data.synthetic import make_low_rank
    >>> ratings, (P, Q) = make_low_rank(100, 80, 3, density=0.05, random_state=0)
    >>> ratings.shape, P.shape, Q.shape
    ((100, 80), (100, 3), (3, 80))
    """
    n_rows = check_int("n_rows", n_rows, min_value=1)
    n_cols = check_int("n_cols", n_cols, min_value=1)
    rank = check_int("rank", rank, min_value=1)
    density = check_float("density", density, min_value=0.0, max_value=1.0, min_inclusive=False)  # type: ignore[assignment]
    noise = check_float("noise", noise, min_value=0.0)  # type: ignore[assignment]
    if not isinstance(cover, bool):
        raise TypeError(f"`cover` must be True or False; got {describe(cover)}.")
    if scale is not None:
        if not isinstance(scale, tuple | list) or len(scale) != 2 or not scale[0] < scale[1]:
            raise ValueError(f"`scale` must be a pair (low, high) with low < high; got {scale!r}.")
    rng = check_random_state(random_state)
    P = rng.standard_normal((n_rows, rank)) / np.sqrt(rank)
    Q = rng.standard_normal((rank, n_cols)) / np.sqrt(rank)
    total = n_rows * n_cols
    nnz = max(1, round(density * total))
    flat = rng.choice(total, size=nnz, replace=False)
    rows, cols = np.divmod(flat, n_cols)
    if cover:
        missing_r = np.setdiff1d(np.arange(n_rows), rows)
        missing_c = np.setdiff1d(np.arange(n_cols), cols)
        extra_r = np.concatenate([missing_r, rng.integers(0, n_rows, len(missing_c))])
        extra_c = np.concatenate([rng.integers(0, n_cols, len(missing_r)), missing_c])
        keys = np.unique(np.concatenate([flat, extra_r * n_cols + extra_c]))
        rows, cols = np.divmod(keys, n_cols)
    values = np.einsum("tk,kt->t", P[rows], Q[:, cols])
    if noise:
        values = values + noise * rng.standard_normal(len(values))
    if scale is not None:
        lo, hi = float(scale[0]), float(scale[1])
        vmin, vmax = float(values.min()), float(values.max())
        span = vmax - vmin if vmax > vmin else 1.0
        values = lo + (values - vmin) * (hi - lo) / span
    ratings = Ratings(rows, cols, values, (n_rows, n_cols))
    return ratings, (P, Q)


def make_tracks(
    n_rows: int,
    n_cols: int,
    rank: int,
    *,
    track_fraction: float = 0.3,
    noise: float = 0.01,
    random_state: int | np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    r"""A hard low-rank completion instance: track-like (banded) missing data.

    Like point tracks in a structure-from-motion measurement matrix, column ``j`` (a track)
    is visible in one contiguous band of rows (frames) of random length, about
    ``track_fraction * n_rows`` on average, starting at a random row; the visible entries are
    :math:`(PQ)_{ij}` plus Gaussian noise of standard deviation ``noise``, with ``P`` and
    ``Q`` standard normal. Such banded patterns are where joint optimization and ALS stall
    in local minima. Every column is visible in at least ``rank + 1`` rows and every row in
    at least ``rank + 1`` columns (bands are widened until that holds).

    Parameters
    ----------
    n_rows, n_cols, rank : int
        ``n_rows > rank`` is required.
    track_fraction : float, default=0.3
        Mean band length as a fraction of ``n_rows``, in (0, 1].
    noise : float, default=0.01
    random_state : int, numpy.random.Generator or None

    Returns
    -------
    M : ndarray, shape (n_rows, n_cols)
        The measurement matrix, NaN where not visible.
    mask : ndarray of bool, shape (n_rows, n_cols)
        The visibility mask.
    factors : (P, Q)
        The true factors.

    Examples
    --------
    >>> M, W, (P, Q) = make_tracks(30, 20, 3, random_state=0)
    >>> M.shape, bool(W.sum(axis=0).min() >= 4), bool(W.sum(axis=1).min() >= 4)
    ((30, 20), True, True)
    """
    n_rows = check_int("n_rows", n_rows, min_value=2)
    n_cols = check_int("n_cols", n_cols, min_value=1)
    rank = check_int("rank", rank, min_value=1, max_value=n_rows - 1)
    track_fraction = float(
        check_float("track_fraction", track_fraction, min_value=0.0, max_value=1.0,  # type: ignore[arg-type]
                    min_inclusive=False)
    )
    noise = float(check_float("noise", noise, min_value=0.0))  # type: ignore[arg-type]
    rng = check_random_state(random_state)
    P = rng.standard_normal((n_rows, rank))
    Q = rng.standard_normal((rank, n_cols))
    need = min(rank + 1, n_rows)
    lengths = np.clip(
        rng.geometric(1.0 / max(track_fraction * n_rows, 1.0), size=n_cols), need, n_rows
    )
    starts = (rng.random(n_cols) * (n_rows - lengths + 1)).astype(np.int64)
    rows = np.arange(n_rows)[:, None]
    mask = (rows >= starts[None, :]) & (rows < (starts + lengths)[None, :])
    while (mask.sum(axis=1) < min(rank + 1, n_cols)).any():  # widen bands into thin rows
        u = int(np.flatnonzero(mask.sum(axis=1) < min(rank + 1, n_cols))[0])
        gap = np.minimum(np.abs(starts - u), np.abs(starts + lengths - 1 - u))
        dist = np.where(mask[u], np.inf, gap)
        j = int(np.argmin(dist))
        lo, hi = min(starts[j], u), max(starts[j] + lengths[j], u + 1)
        starts[j], lengths[j] = lo, hi - lo
        mask[lo:hi, j] = True
    M = P @ Q + noise * rng.standard_normal((n_rows, n_cols))
    M[~mask] = np.nan
    return M, mask, (P, Q)
