r"""What ``method='auto'``, ``eliminate='auto'`` and ``init_scale=None`` pick (issue #19).

The rules read only the problem's sizes, counts and options, so a call picks the same on
every machine:

``eliminate='auto'``
    Variable projection for ``formulation='none'`` (any input) and for ``'l2'`` when a
    ``mask=`` is given (a measurement matrix); never for ``'prior'`` (no closed form) nor for
    ratings under ``'l2'`` without a mask (what rating users got before: the joint problem).
    The factor eliminated is the *larger* one (``'Q'`` when ``n_cols >= n_rows``, else
    ``'P'``), so the optimized factor has the fewer unknowns, unless some of its vectors have
    fewer than ``rank`` (+1 with biases) observations and no ridge (their inner problem has no
    unique solution); then the other one, and the joint problem when neither can be. Measured
    (``reports/sfm/defaults.md``): on giraffe (240 x 166) it eliminates ``'P'``, which reached
    the optimum from 148 of 150 starts at 1.4 s against 145 of 150 at 2.2 s for ``'Q'``; on the
    generated families it eliminates the points and is 3-10x faster per start than the other
    choice, with the same or better success rate on all but one measured sequence (see the
    report).
``method='auto'``
    ``'lm-normal'`` with variable projection when the optimized factor has at most
    :data:`~lsqmf.nls.tables.MAX_NORMAL_PARAMS` unknowns (its dense reduced normal matrix
    fits), there are no bounds and the loss is linear or (under ``'none'``) any row of the
    loss table (robust VarPro: the eliminated factor by IRLS, :mod:`lsqmf.nls.varpro`);
    otherwise ``'trf'`` (with variable projection: the matrix-free reduced operator with
    LSMR, least-squares inner solves).
``x_scale=None``
    ``1.0`` (Levenberg's damping on the orthonormalized factor) for lm-normal, ``'jac'``
    for scipy's methods (what they had).
``init_scale=None``
    ``0.1`` under ``'prior'`` and ``'l2'`` (the rating default, unchanged), and
    ``sqrt(rms / sqrt(rank))`` under ``'none'``, ``rms`` the root mean square of the observed
    values, so that ``P0 @ Q0`` has the data's scale: plain least squares has no ridge, and a
    start at 0.1 on pixel-unit data sits next to the zero saddle.
"""

from __future__ import annotations

import numpy as np

from ..data.ratings import Ratings
from .tables import MAX_NORMAL_PARAMS, METHODS

__all__ = ["AUTO", "LM_NORMAL_X_SCALE", "choose_eliminate", "choose_method", "start_scale"]

#: The value of ``method``/``eliminate`` that asks for these rules.
AUTO = "auto"
#: ``x_scale=None`` with lm-normal: Levenberg's damping ``mu I`` on the orthonormalized
#: factor. Measured against Marquardt's ``mu diag(A)`` (``'jac'``) on 5 turntable sequences
#: x 4 starts: 20/20 against 14/20 at the same median time (reports/sfm/defaults.md).
LM_NORMAL_X_SCALE = 1.0
#: ``init_scale=None`` under the regularized formulations.
RATINGS_INIT_SCALE = 0.1


def _feasible(counts: np.ndarray, k1: int, ridge: bool) -> bool:
    """Every vector with data has at least ``k1`` observations (or a ridge)."""
    return ridge or not bool(np.any((counts > 0) & (counts < k1)))


def choose_eliminate(requested: str | None, *, formulation: str, ratings: Ratings, rank: int,
                     biases: bool, reg: float, has_mask: bool) -> str | None:
    """``eliminate`` as run (see the module docstring)."""
    if requested != AUTO:
        return requested
    if formulation == "prior" or (formulation == "l2" and not has_mask):
        return None
    n, m = ratings.shape
    k1 = rank + (1 if biases else 0)
    ridge = formulation == "l2" and reg > 0
    feasible = {"Q": _feasible(ratings.col_counts(), k1, ridge),
                "P": _feasible(ratings.row_counts(), k1, ridge)}
    for factor in (("Q", "P") if m >= n else ("P", "Q")):
        if feasible[factor]:
            return factor
    return None


def choose_method(requested: str, *, eliminate: str | None, shape: tuple[int, int],
                  rank: int, biases: bool, bounds: object, loss: object,
                  explicit: bool = False, unregularized: bool = True) -> str:
    """``method`` as run (see the module docstring); ``explicit``: the caller chose what
    only scipy's methods take (a ``tr_solver``, the full VarPro Jacobian);
    ``unregularized``: formulation ``'none'`` (lm-normal's robust inner solve needs it)."""
    if requested != AUTO:
        return requested
    robust_ok = loss == "linear" or (METHODS["lm-normal"].robust_loss and unregularized)
    if eliminate is None or bounds is not None or not robust_ok or explicit:
        return "trf"
    n = shape[0] if eliminate == "Q" else shape[1]
    n_theta = n * rank + (n if biases else 0)
    return "lm-normal" if n_theta <= MAX_NORMAL_PARAMS else "trf"


def start_scale(init_scale: float | None, formulation: str, ratings: Ratings,
                rank: int) -> float:
    """The standard deviation of the random start (see the module docstring)."""
    if init_scale is not None:
        return float(init_scale)
    if formulation != "none":
        return RATINGS_INIT_SCALE
    values = np.asarray(ratings.values, dtype=np.float64)
    rms = float(np.sqrt(np.mean(values**2))) if values.size else 1.0
    return float(np.sqrt(max(rms, 1e-300) / np.sqrt(rank)))
