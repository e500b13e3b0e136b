"""Synthetic data with known ground truth: planted low-rank ratings and measurement matrices.

:func:`make_low_rank` draws ratings from a planted rank-``k`` model (optionally with noise),
:func:`make_tracks` a banded measurement matrix with a visibility mask, and
:func:`make_affine_sfm` an affine structure-from-motion sequence (a rigid object rotating and
translating before an affine camera, in pixels, with self-occlusion, track lifetimes,
occlusion, noise and outliers; :data:`SFM_FAMILIES` holds its benchmark families). All return
the ground truth, so a solver's answer can be checked against it. Every draw takes a
``random_state``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._validation import check_choice, check_float, check_int, check_random_state, describe
from .ratings import Ratings

__all__ = [
    "IMAGE_SIZE",
    "SFM_FAMILIES",
    "AffineSequence",
    "make_affine_sfm",
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
    activity: float = 0.0,
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
    activity : float, default=0.0
        Power-law exponent :math:`s` of the activity of rows and columns: the row (column)
        of rank :math:`j` in a random order is drawn with probability proportional to
        :math:`(j + 1)^{-s}`, so a few users and items hold many ratings and most hold few,
        as in real rating sets (``s = 0.8`` gives MovieLens-like skew). 0 draws the observed
        entries uniformly (the default; the same draws as without the option).

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
    activity = check_float("activity", activity, min_value=0.0)  # type: ignore[assignment]
    if activity:
        flat = _power_law_entries(rng, n_rows, n_cols, nnz, float(activity))
    else:
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


def _power_law_entries(rng: np.random.Generator, n_rows: int, n_cols: int, nnz: int,
                       s: float) -> np.ndarray:
    """``nnz`` distinct flat indices ``row * n_cols + col`` with rows and columns drawn
    independently with power-law probabilities (exponent ``s``, over a random order), in
    O(nnz) memory: draws in rounds with replacement, keeps the distinct ones, trims at random."""
    def weights(n: int) -> np.ndarray:
        w = (np.arange(1, n + 1, dtype=float) ** -s)[rng.permutation(n)]
        return np.cumsum(w / w.sum())

    cdf_r, cdf_c = weights(n_rows), weights(n_cols)
    keys = np.empty(0, dtype=np.int64)
    for _ in range(50):
        draw = max(1024, int(1.2 * (nnz - len(keys))))
        r = np.minimum(np.searchsorted(cdf_r, rng.random(draw)), n_rows - 1)
        c = np.minimum(np.searchsorted(cdf_c, rng.random(draw)), n_cols - 1)
        keys = np.sort(np.concatenate([keys, r * n_cols + c]))
        keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])]  # distinct (sorted)
        if len(keys) >= nnz:
            break
    else:
        raise ValueError(f"`density` is too high for `activity`={s:g}: fewer than {nnz} "
                         f"distinct entries were drawn; lower one of them.")
    return rng.choice(keys, size=nnz, replace=False)


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


# ------------------------------------------------------------------------------- affine SfM
#: Image size ``(width, height)`` in pixels of the generated affine sequences.
IMAGE_SIZE = (640.0, 480.0)

#: Benchmark families of :func:`make_affine_sfm`: each a dict of its keyword settings, so a
#: benchmark draws ``make_affine_sfm(**SFM_FAMILIES[name], random_state=seed)`` and reports
#: per family. Sizes are the benchmark's moderate ones; every family also runs at the
#: generator's full range (40 x 200 to 200 x 10,000 frames x points) by overriding
#: ``n_frames``/``n_points``.
SFM_FAMILIES: dict[str, dict[str, object]] = {
    # a turntable: rotation about the vertical axis, self-occlusion bands, no tracker losses
    "turntable": dict(n_frames=36, n_points=160, motion="turntable", facing=True,
                      lifetime=None, occluder=0.0, noise=0.5, outliers=0.0),
    # a freely tumbling, drifting object: facing bands cut by random track lifetimes and a
    # moving occluder
    "tumble": dict(n_frames=40, n_points=240, motion="tumble", facing=True, lifetime=24.0,
                   occluder=0.15, noise=0.5, outliers=0.0),
    # short tracks in a longer sequence: 5-10% visible (200 x 10,000 with lifetime=14)
    "sparse_long": dict(n_frames=60, n_points=400, motion="tumble", facing=False,
                        lifetime=3.0, occluder=0.0, noise=0.5, outliers=0.0),
    # "tumble" with 2% of the visible observations replaced by gross mismatches
    "outliers": dict(n_frames=40, n_points=240, motion="tumble", facing=True, lifetime=24.0,
                     occluder=0.15, noise=0.5, outliers=0.02),
}


@dataclass(frozen=True)
class AffineSequence:
    r"""An affine structure-from-motion sequence with its ground truth.

    Layout (Buchanan's ``giraffe.M.txt``, and most published measurement matrices): one
    **pair of rows per frame** -- row ``2f`` holds the ``x`` and row ``2f + 1`` the ``y`` image
    coordinates of frame ``f`` -- and **one column per point track**, so ``M`` is
    ``2F x N`` and the visibility of a point is the same in both rows of a frame.

    Attributes
    ----------
    M : ndarray, shape (2 * n_frames, n_points)
        Observed pixel coordinates (noise and outliers included), NaN where not visible.
    mask : ndarray of bool, shape (2 * n_frames, n_points)
        Visibility: ``mask == np.isfinite(M)``.
    clean : ndarray, shape (2 * n_frames, n_points)
        The noise-free, outlier-free coordinates everywhere (visible or not): ``P @ Q``.
    P : ndarray, shape (2 * n_frames, rank)
        The affine cameras: rows ``2f, 2f + 1`` are ``[A_f | t_f]`` (``A_f`` 2 x 3, ``t_f``
        the image translation; without translation ``A_f`` alone).
    Q : ndarray, shape (rank, n_points)
        The points: ``[X; 1]`` (``X`` 3 x N, object coordinates), or ``X`` without translation.
    outliers : ndarray of bool, shape (2 * n_frames, n_points)
        Entries replaced by gross outliers (a subset of ``mask``; both rows of a frame).
    rank : int
        4 with translation, 3 without.
    settings : dict
        The generator's arguments (``random_state`` as given).
    """

    M: np.ndarray
    mask: np.ndarray
    clean: np.ndarray
    P: np.ndarray
    Q: np.ndarray
    outliers: np.ndarray
    rank: int
    settings: dict[str, object] = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        """Number of frames (half the rows of ``M``)."""
        return self.M.shape[0] // 2

    @property
    def n_points(self) -> int:
        """Number of point tracks (columns of ``M``)."""
        return self.M.shape[1]

    @property
    def density(self) -> float:
        """Fraction of visible entries."""
        return float(self.mask.mean())


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues: the rotation by ``angle`` (radians) about the unit vector ``axis``."""
    x, y, z = axis
    K = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + np.sin(angle) * K + (1.0 - np.cos(angle)) * (K @ K)


def _smooth_path(rng: np.random.Generator, n: int, dim: int, knots: int = 4) -> np.ndarray:
    """A smooth random path in [-1, 1]^dim of ``n`` samples (cosine-interpolated knots)."""
    values = rng.uniform(-1.0, 1.0, size=(knots, dim))
    s = np.linspace(0.0, knots - 1.0, n)
    i = np.minimum(np.floor(s).astype(np.int64), knots - 2)
    w = (1.0 - np.cos(np.pi * (s - i))) / 2.0
    return values[i] * (1.0 - w)[:, None] + values[i + 1] * w[:, None]


def _rotations(rng: np.random.Generator, n_frames: int, motion: str,
               rotation: float) -> np.ndarray:
    """Object-to-camera rotations ``(n_frames, 3, 3)``; ``rotation`` is the total angle."""
    out = np.empty((n_frames, 3, 3))
    if motion == "turntable":
        elevation = rng.uniform(np.radians(5.0), np.radians(35.0))
        tilt = _rotation(np.array([1.0, 0.0, 0.0]), elevation)
        theta0 = rng.uniform(0.0, 2.0 * np.pi)
        direction = rng.choice([-1.0, 1.0])
        for f in range(n_frames):
            angle = theta0 + direction * rotation * f / max(n_frames - 1, 1)
            out[f] = tilt @ _rotation(np.array([0.0, 1.0, 0.0]), angle)
        return out
    # tumble: a random start and an angular velocity whose axis drifts smoothly
    q = rng.standard_normal(4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    R = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])
    axes = rng.standard_normal(3) + 0.8 * _smooth_path(rng, n_frames, 3)
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    step = rotation / max(n_frames - 1, 1)
    for f in range(n_frames):
        out[f] = R
        R = _rotation(axes[f], step) @ R
    return out


def _ensure_coverage(vis: np.ndarray, rng: np.random.Generator, min_frames: int,
                     min_points: int) -> None:
    """Widen tracks in place until every track is seen in ``min_frames`` frames (a
    contiguous window about its visible frames) and every frame sees ``min_points`` tracks
    (the tracks nearest in time are extended to reach it)."""
    n_frames, n_points = vis.shape
    counts = vis.sum(axis=0)
    for j in np.flatnonzero(counts < min_frames):
        seen = np.flatnonzero(vis[:, j])
        centre = int(seen.mean()) if seen.size else int(rng.integers(n_frames))
        lo = int(np.clip(centre - min_frames // 2, 0, n_frames - min_frames))
        vis[lo:lo + min_frames, j] = True
    for f in np.flatnonzero(vis.sum(axis=1) < min_points):
        need = min_points - int(vis[f].sum())
        if need <= 0:  # an earlier extension already covered this frame
            continue
        # distance of every unseen track's visible window to frame f
        first = np.where(vis.any(axis=0), vis.argmax(axis=0), n_frames)
        last = np.where(vis.any(axis=0), n_frames - 1 - vis[::-1].argmax(axis=0), -1)
        gap = np.where(f < first, first - f, np.where(f > last, f - last, 0)).astype(float)
        gap[vis[f]] = np.inf
        gap += rng.random(n_points) * 0.5  # random order among ties
        for j in np.argsort(gap)[:need]:
            seen = np.flatnonzero(vis[:, j])
            lo = min(int(f), int(seen.min())) if seen.size else int(f)
            hi = max(int(f), int(seen.max())) if seen.size else int(f)
            vis[lo:hi + 1, j] = True


def _visibility(rng: np.random.Generator, X: np.ndarray, normals: np.ndarray, R: np.ndarray,
                P: np.ndarray, translation: bool, facing: bool, lifetime: float | None,
                occluder: float, dropout: float) -> np.ndarray:
    """Frame x point visibility of the points ``X`` (3 x n): the AND of the causes."""
    n_frames, n = R.shape[0], X.shape[1]
    vis = np.ones((n_frames, n), dtype=bool)
    if facing:
        vis &= np.einsum("fk,kn->fn", R[:, 2, :], normals) > 0.1 * np.linalg.norm(
            normals, axis=0)
    if lifetime is not None:
        length = rng.geometric(1.0 / lifetime, size=n)
        start = np.asarray(rng.integers(-length + 1, n_frames))  # may begin before frame 0
        f_idx = np.arange(n_frames)[:, None]
        vis &= (f_idx >= start[None, :]) & (f_idx < (start + length)[None, :])
    if occluder > 0.0:
        width = IMAGE_SIZE[0]
        x = P[0::2, :3] @ X + (P[0::2, 3:4] if translation else 0.0)
        centre = (np.linspace(-0.1, 1.1, n_frames) * width)[:, None]
        vis &= np.abs(x - centre) > occluder * width / 2
    if dropout > 0.0:
        vis &= rng.random((n_frames, n)) >= dropout
    return vis


def make_affine_sfm(
    n_frames: int = 40,
    n_points: int = 200,
    *,
    motion: str = "tumble",
    rotation: float | None = None,
    translation: bool = True,
    facing: bool = True,
    lifetime: float | None = None,
    occluder: float = 0.0,
    dropout: float = 0.0,
    noise: float = 0.5,
    outliers: float = 0.0,
    affine_jitter: float = 0.03,
    min_frames: int = 3,
    random_state: int | np.random.Generator | None = None,
) -> AffineSequence:
    r"""An affine structure-from-motion sequence: a rigid object seen by an affine camera.

    ``n_points`` points on the surface of a random ellipsoid (semi-axes 0.6-1.2) rotate
    (``motion``) and translate in front of an affine camera; frame ``f`` sees point ``j`` at

    .. math:: m_{fj} = A_f X_j + t_f,\qquad A_f = s_f (I + E_f) R_f[:2, :],

    with ``R_f`` the object's rotation, ``s_f`` a slowly varying scale (the object spans about
    100-400 pixels of a 640 x 480 image), ``E_f`` a small 2 x 2 perturbation (``affine_jitter``:
    skew and aspect, so the camera is affine rather than scaled orthographic) and ``t_f`` a
    smooth path around the image centre. Stacked as two rows per frame (x row, y row; the
    layout of Buchanan's ``giraffe.M.txt``) the measurement matrix
    :math:`M = [A | t]\,[X; 1]` is ``2F x N`` of rank 4 (rank 3 with ``translation=False``,
    the centred case). Coordinates are in pixels (hundreds), far from unit scale.

    Visibility (per frame and point; the x and y rows share it) is the AND of:

    - ``facing``: self-occlusion -- a point is seen while its surface normal faces the
      camera (:math:`(R_f n_j)_z > 0.1`), which gives each track one band of frames per
      revolution;
    - ``lifetime``: tracker losses -- each track lives in one window of frames of geometric
      length with mean ``lifetime`` frames, starting anywhere (tracks enter and leave);
    - ``occluder``: a vertical bar covering this fraction of the image width sweeps across
      the image during the sequence and hides the points behind it (gaps inside tracks);
    - ``dropout``: each remaining observation is lost independently with this probability.

    As a tracker drops tracks shorter than a few frames, a point visible in fewer than
    ``min_frames`` frames is redrawn (a new random surface point), so the columns are tracks
    of at least ``min_frames`` frames with the lengths the causes above give them; a frame
    that still sees fewer than ``rank + 2`` tracks gets the tracks nearest in time extended
    to it. So each column has at least ``2 * min_frames`` visible entries and each row at
    least ``rank + 2``, which ``formulation='none'`` and variable projection need in either
    elimination.

    Visible entries get Gaussian pixel noise of standard deviation ``noise``; a fraction
    ``outliers`` of the visible observations (frame, point) is then replaced, both
    coordinates, by a uniformly random image position (gross mismatches).

    Parameters
    ----------
    n_frames : int, default=40
        Frames ``F`` (``M`` has ``2F`` rows), >= 3.
    n_points : int, default=200
        Point tracks ``N`` (columns of ``M``), >= 8.
    motion : {'tumble', 'turntable'}, default='tumble'
        ``'turntable'``: rotation about the object's vertical axis at a constant rate, seen
        from a random elevation of 5-35 degrees; ``'tumble'``: a random start and an
        angular velocity whose axis drifts smoothly.
    rotation : float, optional
        Total rotation over the sequence in degrees. Default: drawn uniformly from 180-360
        (turntable) or 90-240 (tumble).
    translation : bool, default=True
        Include the image translation ``t_f`` (rank 4); False gives the centred rank-3 case.
    facing : bool, default=True
        Self-occlusion (see above).
    lifetime : float, optional
        Mean track length in frames (>= 1); None: tracks are not lost by the tracker.
    occluder : float, default=0.0
        Width of the sweeping occluder as a fraction of the image width, in [0, 0.5].
    dropout : float, default=0.0
        Probability that an observation is lost independently, in [0, 0.5].
    noise : float, default=0.5
        Pixel noise (standard deviation, pixels).
    outliers : float, default=0.0
        Fraction of visible observations replaced by gross outliers, in [0, 0.5].
    affine_jitter : float, default=0.03
        Size of the per-frame skew/aspect perturbation ``E_f`` (0: scaled orthographic).
    min_frames : int, default=3
        Least number of frames a track is visible in, >= 2.
    random_state : int, numpy.random.Generator or None
        Seeds every random step.

    Returns
    -------
    AffineSequence
        ``M`` (NaN where not visible), ``mask``, the truth ``clean = P @ Q`` with the cameras
        ``P`` and points ``Q``, the ``outliers`` mask and ``rank``.

    See Also
    --------
    SFM_FAMILIES : the benchmark families (settings dicts for this function).

    Notes
    -----
    Sizes from 40 x 200 to 200 x 10,000 (frames x points) take milliseconds to a second.
    ``lsqmf.solve(seq.M, seq.rank, mask=seq.mask, formulation='none', ...)`` fits it; with
    ``noise=0`` and ``outliers=0`` the optimum is ``clean`` itself (RMS 0).

    Examples
    --------
    >>> from lsqmf.data.synthetic import make_affine_sfm
    >>> seq = make_affine_sfm(40, 200, random_state=0)
    >>> seq.M.shape, seq.rank, seq.P.shape, seq.Q.shape
    ((80, 200), 4, (80, 4), (4, 200))
    >>> bool((seq.mask == np.isfinite(seq.M)).all()), bool((seq.mask[0::2] == seq.mask[1::2]).all())
    (True, True)
    >>> bool(np.allclose(seq.P @ seq.Q, seq.clean))
    True
    """
    settings: dict[str, object] = dict(
        n_frames=n_frames, n_points=n_points, motion=motion, rotation=rotation,
        translation=translation, facing=facing, lifetime=lifetime, occluder=occluder,
        dropout=dropout, noise=noise, outliers=outliers, affine_jitter=affine_jitter,
        min_frames=min_frames, random_state=random_state if not isinstance(
            random_state, np.random.Generator) else "Generator",
    )
    opts = _check_sfm_settings(settings)
    rng = check_random_state(random_state)
    rank = 4 if opts["translation"] else 3
    R, P = _sfm_cameras(rng, opts)
    X, vis = _sfm_points(rng, opts, R, P)
    Q = np.vstack([X, np.ones((1, X.shape[1]))]) if opts["translation"] else X
    clean = P @ Q
    _ensure_coverage(vis, rng, opts["min_frames"], min(rank + 2, opts["n_points"]))
    mask = np.repeat(vis, 2, axis=0)
    M, outlier_mask = _sfm_observe(rng, opts, clean, vis)
    M[~mask] = np.nan
    return AffineSequence(M=M, mask=mask, clean=clean, P=P, Q=Q, outliers=outlier_mask,
                          rank=rank, settings=settings)


def _check_sfm_settings(s: dict[str, Any]) -> dict[str, Any]:
    """:func:`make_affine_sfm`'s arguments, checked and converted."""
    o = dict(s)
    o["n_frames"] = check_int("n_frames", s["n_frames"], min_value=3)
    o["n_points"] = check_int("n_points", s["n_points"], min_value=8)
    o["motion"] = check_choice("motion", s["motion"], ("tumble", "turntable"))
    if s["rotation"] is not None:
        o["rotation"] = check_float("rotation", s["rotation"], min_value=0.0, max_value=3600.0)
    for name in ("translation", "facing"):
        if not isinstance(s[name], bool):
            raise TypeError(f"`{name}` must be True or False; got {describe(s[name])}.")
    if s["lifetime"] is not None:
        o["lifetime"] = check_float("lifetime", s["lifetime"], min_value=1.0)
    for name, high in (("occluder", 0.5), ("dropout", 0.5), ("noise", None),
                       ("outliers", 0.5), ("affine_jitter", 0.5)):
        o[name] = float(check_float(name, s[name], min_value=0.0, max_value=high))  # type: ignore[arg-type]
    o["min_frames"] = check_int("min_frames", s["min_frames"], min_value=2,
                                max_value=o["n_frames"])
    return o


def _sfm_cameras(rng: np.random.Generator, o: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The object's rotations ``(F, 3, 3)`` and the affine cameras ``P`` ``(2F, rank)``."""
    n_frames, translation = o["n_frames"], o["translation"]
    rotation = o["rotation"]
    if rotation is None:
        low, high = (180.0, 360.0) if o["motion"] == "turntable" else (90.0, 240.0)
        rotation = float(rng.uniform(low, high))
    R = _rotations(rng, n_frames, o["motion"], np.radians(rotation))
    width, height = IMAGE_SIZE
    base = rng.uniform(60.0, 150.0)  # pixels per object unit
    scale = base * (1.0 + 0.25 * _smooth_path(rng, n_frames, 1)[:, 0])
    E = o["affine_jitter"] * rng.standard_normal((n_frames, 2, 2))
    A = scale[:, None, None] * ((np.eye(2) + E) @ R[:, :2, :])  # (F, 2, 3)
    t = np.array([width / 2, height / 2]) + np.array([width, height]) * 0.18 * _smooth_path(
        rng, n_frames, 2)
    if not translation:
        return R, A.reshape(2 * n_frames, 3)
    return R, np.concatenate([A, t[:, :, None]], axis=2).reshape(2 * n_frames, 4)


def _sfm_points(rng: np.random.Generator, o: dict[str, Any], R: np.ndarray,
                P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points ``X`` (3 x N) on an ellipsoid and their visibility (F x N); a tracker keeps
    only the points it followed for ``min_frames`` frames or more, so candidates seen less
    are redrawn."""
    n_points, min_frames = o["n_points"], o["min_frames"]
    semi = rng.uniform(0.6, 1.2, size=3)
    X_parts, vis_parts, kept = [], [], 0
    for _ in range(200):
        batch = max(64, 2 * (n_points - kept))
        u = rng.standard_normal((3, batch))
        u /= np.linalg.norm(u, axis=0, keepdims=True)
        X_b = semi[:, None] * u
        vis_b = _visibility(rng, X_b, u / semi[:, None], R, P, o["translation"], o["facing"],
                            o["lifetime"], o["occluder"], o["dropout"])
        ok = vis_b.sum(axis=0) >= min_frames
        X_parts.append(X_b[:, ok])
        vis_parts.append(vis_b[:, ok])
        kept += int(ok.sum())
        if kept >= n_points:
            break
    else:
        raise ValueError(
            f"fewer than 1 in 200 points is visible in `min_frames`={min_frames} frames with "
            f"these settings (lifetime={o['lifetime']}, occluder={o['occluder']}, "
            f"dropout={o['dropout']}); raise `lifetime` or lower `min_frames`."
        )
    return (np.concatenate(X_parts, axis=1)[:, :n_points],
            np.concatenate(vis_parts, axis=1)[:, :n_points])


def _sfm_observe(rng: np.random.Generator, o: dict[str, Any], clean: np.ndarray,
                 vis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The observed coordinates (pixel noise, gross outliers) and the outlier mask."""
    width, height = IMAGE_SIZE
    noise, outliers = o["noise"], o["outliers"]
    M = clean + noise * rng.standard_normal(clean.shape) if noise > 0.0 else clean.copy()
    out = np.zeros(vis.shape, dtype=bool)
    if outliers > 0.0:
        f_vis, j_vis = np.nonzero(vis)
        n_out = round(outliers * f_vis.size)
        pick = rng.choice(f_vis.size, size=n_out, replace=False)
        out[f_vis[pick], j_vis[pick]] = True
    outlier_mask = np.repeat(out, 2, axis=0)
    if outliers > 0.0:
        rows, cols = np.nonzero(outlier_mask)
        M[rows, cols] = np.where(rows % 2 == 0, rng.uniform(0.0, width, rows.size),
                                 rng.uniform(0.0, height, rows.size))
    return M, outlier_mask
