"""The result of a fit, shared by :func:`lsqmf.solve` and every comparison solver.

A fitted model predicts entry ``(u, i)`` as ``mu + row_bias[u] + col_bias[i] + P[u] @ Q[:, i]``
(the bias terms are zero when the model has no biases). ``P`` has shape ``(n_rows, rank)`` and
``Q`` has shape ``(rank, n_cols)``, so that ``P @ Q`` approximates the matrix.
"""

from __future__ import annotations

import enum
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ._validation import check_choice
from .ratings import lookup_ids

if TYPE_CHECKING:
    import pandas as pd
    from scipy.optimize import OptimizeResult

__all__ = [
    "COLD_START_POLICIES",
    "STATUS_MESSAGES",
    "ConvergenceWarning",
    "FitResult",
    "History",
    "IterationInfo",
    "Status",
]

#: How to predict a pair whose user or item has no factor (not seen in training):
#: ``'bias'`` falls back to the bias model (global mean + known biases), ``'nan'`` returns NaN,
#: ``'raise'`` raises ``ValueError``.
COLD_START_POLICIES = ("bias", "nan", "raise")


class Status(enum.IntEnum):
    """Termination statuses shared by :func:`lsqmf.solve` and every solver.

    1..4, 0, -1 and -2 are ``scipy.optimize.least_squares``'s codes (scipy 1.16+ uses -2 for a
    stop requested by the callback); the codes below -2 are lsqmf's own early stops. Positive
    codes are successes. ``FTOL`` also stands for the iterative solvers' relative cost change
    below ``tol``; ``VALIDATION`` for a validation score that stopped improving.
    """

    GTOL = 1
    FTOL = 2
    XTOL = 3
    FTOL_XTOL = 4
    VALIDATION = 5
    MAX_ITER = 0
    IMPROPER_INPUT = -1
    CALLBACK = -2
    MAX_TIME = -4
    INTERRUPTED = -5
    NON_FINITE = -6


#: Termination status -> message (one entry per :class:`Status`).
STATUS_MESSAGES: dict[int, str] = {
    Status.FTOL_XTOL: "Both `ftol` and `xtol` termination conditions are satisfied.",
    Status.XTOL: "`xtol` termination condition is satisfied.",
    Status.FTOL: "`ftol` termination condition is satisfied.",
    Status.GTOL: "`gtol` termination condition is satisfied.",
    Status.VALIDATION: "The validation score stopped improving; the best iterate is returned.",
    Status.MAX_ITER: "The maximum number of function evaluations (or iterations) is exceeded.",
    Status.IMPROPER_INPUT: "Improper input parameters status returned from `leastsq`.",
    Status.CALLBACK: "Stopped because the callback returned True.",
    Status.MAX_TIME: "Stopped because the time budget `max_time` was exhausted.",
    Status.INTERRUPTED: "Interrupted (KeyboardInterrupt).",
    Status.NON_FINITE: "Stopped because the residuals became non-finite.",
}


class IterationInfo(NamedTuple):
    """What a solver's ``callback`` receives after each evaluation or iteration.

    ``step`` counts from 0 (the starting point), ``cost`` is the objective there and ``time``
    the seconds since the solver started. A callback that returns True stops the run; the
    solver returns its best point with ``success=False``.
    """

    step: int
    cost: float
    time: float


class ConvergenceWarning(UserWarning):
    """A solver stopped before meeting its convergence criterion; its factors are returned."""


@dataclass(frozen=True, eq=False)
class History:
    """Objective value after each evaluation (``lsq``) or iteration (other solvers).

    Attributes
    ----------
    step : ndarray of int
        Evaluation or iteration number, starting at 0 for the initial point.
    cost : ndarray of float
        The cost at that step (for ``lsq``: scipy's ``0.5 * sum(loss(r**2))``).
    time : ndarray of float
        Seconds since the solver started.
    """

    step: np.ndarray
    cost: np.ndarray
    time: np.ndarray

    @classmethod
    def from_lists(cls, step: list[int], cost: list[float], time: list[float]) -> History:
        return cls(
            np.asarray(step, dtype=np.int64),
            np.asarray(cost, dtype=np.float64),
            np.asarray(time, dtype=np.float64),
        )

    def __len__(self) -> int:
        return len(self.step)

    def to_frame(self) -> pd.DataFrame:
        """The history as a DataFrame with columns step, cost, time."""
        import pandas as pd

        return pd.DataFrame({"step": self.step, "cost": self.cost, "time": self.time})


@dataclass(frozen=True, eq=False, repr=False)
class FitResult:
    """A fitted low-rank model and the record of how it was fitted.

    Attributes
    ----------
    P : ndarray, shape (n_rows, rank)
        Row (user) factors.
    Q : ndarray, shape (rank, n_cols)
        Column (item) factors.
    mu : float
        Global offset (the training mean when biases are fitted, else 0).
    row_bias, col_bias : ndarray or None
        Per-row and per-column biases, or None when the model has none.
    success, status, message, nfev, njev, cost, optimality
        As in :class:`scipy.optimize.OptimizeResult`; ``njev`` and ``optimality`` are None for
        solvers that have no such notion.
    history : History
        Cost against evaluations/iterations and wall time.
    wall_time : float
        Seconds spent in the solver (validation and setup included).
    options : Mapping
        The options the solver ran with (after defaults were filled in).
    solver : str
        Name of the solver in :data:`lsqmf.SOLVERS`.
    optimize_result : scipy.optimize.OptimizeResult or None
        scipy's full record (``lsq`` only).
    row_ids, col_ids : ndarray or None
        Raw user and item ids of each row and column index, when the ratings had them.
    row_counts, col_counts : ndarray of int or None
        Training ratings per row and per column. A row or column with none was never fitted:
        :meth:`predict` treats it as cold-start.
    rms : float or None
        Root mean square of the model error over the observed entries,
        ``sqrt(mean((prediction - value)**2))``: unweighted and without regularization (the
        figure structure-from-motion papers quote), next to ``cost``.
    """

    P: np.ndarray
    Q: np.ndarray
    mu: float = 0.0
    row_bias: np.ndarray | None = None
    col_bias: np.ndarray | None = None
    success: bool = True
    status: int = 1
    message: str = ""
    nfev: int = 0
    njev: int | None = None
    cost: float = float("nan")
    optimality: float | None = None
    history: History = field(
        default_factory=lambda: History.from_lists([], [], [])
    )
    wall_time: float = 0.0
    options: Mapping[str, Any] = field(default_factory=dict)
    solver: str = "lsq"
    optimize_result: OptimizeResult | None = None
    row_ids: np.ndarray | None = None
    col_ids: np.ndarray | None = None
    row_counts: np.ndarray | None = None
    col_counts: np.ndarray | None = None
    rms: float | None = None

    @property
    def rank(self) -> int:
        """Number of latent factors."""
        return int(self.P.shape[1])

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_rows, n_cols)`` of the fitted matrix."""
        return (int(self.P.shape[0]), int(self.Q.shape[1]))

    @property
    def has_biases(self) -> bool:
        return self.row_bias is not None

    def predict(
        self,
        rows: Any,
        cols: Any,
        *,
        cold_start: str = "bias",
        clip: tuple[float, float] | None = None,
    ) -> np.ndarray:
        """Predict entries by row and column *index*.

        Parameters
        ----------
        rows, cols : array_like of int, shape (n,)
            Indices. A pair is cold-start when its row or column index is outside
            ``[0, n_rows)`` / ``[0, n_cols)`` (such as -1) or had no training rating.
        cold_start : {'bias', 'nan', 'raise'}, default='bias'
            What to predict for a cold-start pair: the bias model (global mean plus whichever
            bias is known; the global mean alone without biases), NaN, or raise.
        clip : (low, high), optional
            Clip predictions to the rating scale.

        Returns
        -------
        ndarray of float, shape (n,)
        """
        return self._predict(rows, cols, cold_start=cold_start, clip=clip)[0]

    def predict_ids(
        self,
        users: Any,
        items: Any,
        *,
        cold_start: str = "bias",
        clip: tuple[float, float] | None = None,
    ) -> np.ndarray:
        """Predict entries by raw user and item *id* (models fitted on a DataFrame).

        Ids not seen in training are cold-start pairs; see :meth:`predict`.
        """
        rows = _lookup_ids(self.row_ids, users, self.shape[0])
        cols = _lookup_ids(self.col_ids, items, self.shape[1])
        return self._predict(rows, cols, cold_start=cold_start, clip=clip)[0]

    def _predict(
        self,
        rows: Any,
        cols: Any,
        *,
        cold_start: str = "bias",
        clip: tuple[float, float] | None = None,
    ) -> tuple[np.ndarray, int]:
        """Predictions and the number of cold-start pairs among them."""
        check_choice("cold_start", cold_start, COLD_START_POLICIES)
        rows = np.atleast_1d(np.asarray(rows)).astype(np.int64, copy=False)
        cols = np.atleast_1d(np.asarray(cols)).astype(np.int64, copy=False)
        if rows.shape != cols.shape:
            raise ValueError(
                f"`rows` and `cols` must have the same shape; got {rows.shape} and {cols.shape}."
            )
        n_rows, n_cols = self.shape
        row_ok = (rows >= 0) & (rows < n_rows)
        col_ok = (cols >= 0) & (cols < n_cols)
        if self.row_counts is not None:
            row_ok &= self.row_counts[np.where(row_ok, rows, 0)] > 0
        if self.col_counts is not None:
            col_ok &= self.col_counts[np.where(col_ok, cols, 0)] > 0
        warm = row_ok & col_ok
        n_cold = int(np.count_nonzero(~warm))
        if n_cold and cold_start == "raise":
            t = int(np.flatnonzero(~warm)[0])
            raise ValueError(
                f"{n_cold} pair(s) have a row or column not seen in training, first "
                f"({rows[t]}, {cols[t]}); pass cold_start='bias' or 'nan' to predict them."
            )
        r = np.where(row_ok, rows, 0)
        c = np.where(col_ok, cols, 0)
        pred = np.full(rows.shape, self.mu, dtype=np.float64)
        if self.row_bias is not None:
            pred += np.where(row_ok, self.row_bias[r], 0.0)
        if self.col_bias is not None:
            pred += np.where(col_ok, self.col_bias[c], 0.0)
        pred += np.where(warm, np.einsum("nk,kn->n", self.P[r], self.Q[:, c]), 0.0)
        if n_cold and cold_start == "nan":
            pred[~warm] = np.nan
        if clip is not None:
            lo, hi = clip
            pred = np.clip(pred, lo, hi)
        return pred, n_cold

    def __repr__(self) -> str:
        n, m = self.shape
        return (
            f"FitResult(solver={self.solver!r}, shape=({n}, {m}), rank={self.rank}, "
            f"biases={self.has_biases}, success={self.success}, status={self.status}, "
            f"cost={self.cost:.6g}, nfev={self.nfev})"
        )

    def summary(self) -> str:
        """A few lines describing the fit."""
        n, m = self.shape
        lines = [
            f"solver: {self.solver}  shape: {n} x {m}  rank: {self.rank}"
            f"  biases: {'yes' if self.has_biases else 'no'}",
            f"success: {self.success}  status: {self.status}  message: {self.message}",
            f"cost: {self.cost:.6g}  nfev: {self.nfev}  njev: {self.njev}"
            f"  wall time: {self.wall_time:.3f} s",
        ]
        return "\n".join(lines)


def _lookup_ids(universe: np.ndarray | None, ids: Any, size: int) -> np.ndarray:
    if universe is None:
        raise ValueError(
            "this model has no id map (it was not fitted on a DataFrame); use predict() with "
            "row and column indices."
        )
    return lookup_ids(universe, ids, size)


def warn_not_converged(message: str, stacklevel: int = 3) -> None:
    """Issue the :class:`ConvergenceWarning` for a run returned without success."""
    warnings.warn(message, ConvergenceWarning, stacklevel=stacklevel)
