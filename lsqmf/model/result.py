"""The result of a fit, shared by :func:`lsqmf.solve` and every comparison solver.

A fitted model predicts entry ``(u, i)`` as ``mu + row_bias[u] + col_bias[i] + P[u] @ Q[:, i]``
(the bias terms are zero when the model has no biases). ``P`` has shape ``(n_rows, rank)`` and
``Q`` has shape ``(rank, n_cols)``, so that ``P @ Q`` approximates the matrix.

Cold start
----------
A pair is *cold-start* when its row or its column has no fitted factor: it had no training
rating (``row_counts``/``col_counts`` is 0), or, in :meth:`FitResult.predict_ids`, its raw id
is not in the model's id map. The policy ``cold_start`` decides what such a pair gets:

- ``'bias'`` (default): the bias model. With biases, ``mu`` plus whichever of the row and
  column bias is known. Without biases, the training mean :attr:`FitResult.train_mean`, which
  every solver records; a model that does not record it (built by hand, or read from an
  older file) predicts NaN and issues a :class:`ColdStartWarning`, so a missing fallback is
  never a silent 0.0.
- ``'nan'``: NaN.
- ``'raise'``: ``ValueError`` naming the first such pair.

``predict(..., return_cold_start=True)`` returns a :class:`Predictions` record whose
``cold_start`` mask and ``n_cold_start`` count tell which pairs were cold.

Indices
-------
:meth:`FitResult.predict` takes integer indices in ``[0, n_rows)`` / ``[0, n_cols)``. Float
arrays are accepted when every value is an integer (``3.0``); NaN, ``1.7``, booleans,
negative and too large indices are refused with an error that names the argument and shows
the first bad value (a negative index is never read as "from the end", nor an unknown one as
cold start: unknown users are :meth:`FitResult.predict_ids`'s business).
"""

from __future__ import annotations

import enum
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, overload

import numpy as np

from .._validation import check_choice, describe
from ..data.ratings import lookup_ids

if TYPE_CHECKING:
    import pandas as pd
    from scipy.optimize import OptimizeResult

__all__ = [
    "COLD_START_POLICIES",
    "STATUS_MESSAGES",
    "ColdStartWarning",
    "ConvergenceWarning",
    "FitResult",
    "History",
    "IterationInfo",
    "Predictions",
    "Status",
    "check_clip",
    "check_indices",
]

#: How to predict a pair whose user or item has no factor (not seen in training):
#: ``'bias'`` falls back to the bias model (global mean + known biases; the training mean
#: without biases), ``'nan'`` returns NaN, ``'raise'`` raises ``ValueError``.
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


class ColdStartWarning(UserWarning):
    """Cold-start pairs had no fallback under ``cold_start='bias'`` and were predicted as NaN."""


class Predictions(NamedTuple):
    """Predictions with the record of which pairs were cold-start.

    What ``FitResult.predict(..., return_cold_start=True)`` returns; unpacks as
    ``values, cold_start = ...``.

    Attributes
    ----------
    values : ndarray of float
        The predictions, shaped like the requested indices.
    cold_start : ndarray of bool, read-only
        True where the row or the column had no fitted factor (the value follows the
        ``cold_start`` policy there).
    """

    values: np.ndarray
    cold_start: np.ndarray

    @property
    def n_cold_start(self) -> int:
        """Number of cold-start pairs."""
        return int(np.count_nonzero(self.cold_start))


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
        Global offset of the model (the training mean when biases are fitted, else 0).
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
    train_mean : float or None
        (Weighted) mean of the training values, recorded by the solvers whether or not the
        model has biases: the cold-start fallback of a model without biases. None when
        unknown.
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
    train_mean: float | None = None

    def __post_init__(self) -> None:
        _check_parts(self)

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

    @property
    def rating_scale(self) -> tuple[float, float] | None:
        """``(low, high)``, the smallest and largest training value (the solvers record it in
        ``options['rating_scale']``; kept by model files): what :meth:`predict` clips to by
        default. None when not recorded."""
        scale = self.options.get("rating_scale") if self.options else None
        if scale is None:
            return None
        return check_clip(tuple(scale))

    @overload
    def predict(
        self, rows: Any, cols: Any, *, cold_start: str = ..., clip: Any = ...,
        return_cold_start: Literal[False] = ..., allow_unknown: bool = ...,
    ) -> np.ndarray: ...

    @overload
    def predict(
        self, rows: Any, cols: Any, *, cold_start: str = ..., clip: Any = ...,
        return_cold_start: Literal[True], allow_unknown: bool = ...,
    ) -> Predictions: ...

    def predict(
        self,
        rows: Any,
        cols: Any,
        *,
        cold_start: str = "bias",
        clip: Any = "auto",
        return_cold_start: bool = False,
        allow_unknown: bool = False,
    ) -> np.ndarray | Predictions:
        """Predict entries by row and column *index*.

        Parameters
        ----------
        rows, cols : array_like of int, same shape
            Row indices in ``[0, n_rows)`` and column indices in ``[0, n_cols)``. Integer
            arrays, or float arrays whose values are all integers (``2.0``; what a pandas
            column with a missing value becomes) are accepted; booleans, NaN, non-integer
            floats (``1.7``), negative or too large indices are refused. A pair is cold-start
            when its row or column had no training rating (see :attr:`row_counts`).
        cold_start : {'bias', 'nan', 'raise'}, default='bias'
            What to predict for a cold-start pair; see :data:`COLD_START_POLICIES`.
        clip : 'auto', (low, high) or None, default='auto'
            Clip predictions to a range: ``'auto'`` to the training scale
            (:attr:`rating_scale`, the min and max training value, e.g. 0.5--5 stars; no
            clipping when the model records none), a pair ``low <= high`` (neither NaN), or
            None for the raw model values. The same default as ``lsqmf evaluate`` and
            :func:`lsqmf.evaluate.fit_and_score`.
        return_cold_start : bool, default=False
            Return a :class:`Predictions` record (values, cold-start mask and count) instead
            of the bare array.
        allow_unknown : bool, default=False
            Also accept the index -1 as "unknown row/column" (what
            :func:`lsqmf.data.ratings.lookup_ids` and :func:`lsqmf.evaluate.splits.align_pairs`
            return
            for an id the model does not know): such pairs are cold-start.

        Returns
        -------
        ndarray of float, or Predictions
            Shape of ``rows``.

        Raises
        ------
        TypeError
            If ``rows`` or ``cols`` are not integer indices (booleans, strings, objects).
        ValueError
            If an index is NaN, non-integer or out of range, the shapes differ, ``clip`` is
            reversed, or ``cold_start='raise'`` meets a cold-start pair.

        Warns
        -----
        ColdStartWarning
            With ``cold_start='bias'``, when cold-start pairs have no fallback (a model without
            biases and without a recorded :attr:`train_mean`) and come back as NaN.

        Examples
        --------
        >>> import numpy as np
        >>> from lsqmf import FitResult
        >>> model = FitResult(P=np.array([[1.0], [2.0]]), Q=np.array([[1.5, 2.0]]),
        ...                   row_counts=np.array([3, 0]), train_mean=3.25)
        >>> out = model.predict([0, 1], [1, 1], return_cold_start=True)
        >>> out.values.tolist(), out.cold_start.tolist(), out.n_cold_start
        ([2.0, 3.25], [False, True], 1)
        >>> model.predict([0], [1], clip=(0.0, 1.5)).tolist()
        [1.5]
        """
        r = check_indices("rows", rows, self.shape[0], "row", allow_unknown=allow_unknown)
        c = check_indices("cols", cols, self.shape[1], "column", allow_unknown=allow_unknown)
        out = self._predict_index(r, c, cold_start=cold_start, clip=clip)
        return out if return_cold_start else out.values

    @overload
    def predict_ids(
        self, users: Any, items: Any, *, cold_start: str = ..., clip: Any = ...,
        return_cold_start: Literal[False] = ...,
    ) -> np.ndarray: ...

    @overload
    def predict_ids(
        self, users: Any, items: Any, *, cold_start: str = ..., clip: Any = ...,
        return_cold_start: Literal[True],
    ) -> Predictions: ...

    def predict_ids(
        self,
        users: Any,
        items: Any,
        *,
        cold_start: str = "bias",
        clip: Any = "auto",
        return_cold_start: bool = False,
    ) -> np.ndarray | Predictions:
        """Predict entries by raw user and item *id* (models fitted on a DataFrame or file).

        Ids not seen in training are cold-start pairs; the options are those of
        :meth:`predict`.
        """
        rows = _lookup_ids(self.row_ids, users, self.shape[0])
        cols = _lookup_ids(self.col_ids, items, self.shape[1])
        if rows.shape != cols.shape:
            raise ValueError(
                f"`users` and `items` must have the same shape; got {rows.shape} and "
                f"{cols.shape}."
            )
        out = self._predict_index(rows, cols, cold_start=cold_start, clip=clip)
        return out if return_cold_start else out.values

    def fold_in(self, ratings: Any, *, axis: str = "rows", **options: Any) -> FitResult:
        """Factors for new rows (users) or columns (items) against this model's fixed other side.

        See :func:`lsqmf.fold_in` for the parameters. Returns a model of the new rows (or
        columns) only, which predicts and recommends for them without refitting.
        """
        from .foldin import fold_in

        return fold_in(self, ratings, axis=axis, **options)

    def _predict_index(
        self,
        rows: np.ndarray,
        cols: np.ndarray,
        *,
        cold_start: str = "bias",
        clip: Any = None,
    ) -> Predictions:
        """Predictions for checked int64 index arrays; -1 marks an unknown row or column."""
        check_choice("cold_start", cold_start, COLD_START_POLICIES)
        bounds = self.rating_scale if isinstance(clip, str) and clip == "auto" else check_clip(clip)
        if rows.shape != cols.shape:
            raise ValueError(
                f"`rows` and `cols` must have the same shape; got {rows.shape} and {cols.shape}."
            )
        row_ok, col_ok = self._fitted(rows, cols)
        warm = row_ok & col_ok
        cold = ~warm
        n_cold = int(np.count_nonzero(cold))
        if n_cold and cold_start == "raise":
            t = np.unravel_index(int(np.flatnonzero(cold)[0]), cold.shape)
            raise ValueError(
                f"{n_cold} pair(s) have a row or column not seen in training, first "
                f"({rows[t]}, {cols[t]}); pass cold_start='bias' or 'nan' to predict them."
            )
        pred = self._known_terms(rows, cols, row_ok, col_ok, warm)
        if n_cold:
            fallback = self.cold_start_value
            if cold_start == "nan":
                pred[cold] = np.nan
            elif not self.has_biases:
                pred[cold] = np.nan if fallback is None else fallback
                if fallback is None:
                    warnings.warn(
                        f"{n_cold} cold-start pair(s) predicted as NaN: this model has no "
                        "biases and records no training mean (`train_mean`) to fall back on. "
                        "Pass cold_start='nan' to expect NaN, or 'raise'.",
                        ColdStartWarning,
                        stacklevel=3,
                    )
        if bounds is not None:
            pred = np.clip(pred, *bounds)
        cold.setflags(write=False)
        return Predictions(pred, cold)

    def _fitted(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where each row and each column index is in range and had training ratings."""
        n_rows, n_cols = self.shape
        row_ok = (rows >= 0) & (rows < n_rows)
        col_ok = (cols >= 0) & (cols < n_cols)
        if self.row_counts is not None:
            row_ok &= self.row_counts[np.where(row_ok, rows, 0)] > 0
        if self.col_counts is not None:
            col_ok &= self.col_counts[np.where(col_ok, cols, 0)] > 0
        return row_ok, col_ok

    def _known_terms(self, rows: np.ndarray, cols: np.ndarray, row_ok: np.ndarray,
                     col_ok: np.ndarray, warm: np.ndarray) -> np.ndarray:
        """``mu`` plus the biases of the fitted rows and columns plus the factor product
        where both are fitted (``warm``)."""
        r = np.where(row_ok, rows, 0)
        c = np.where(col_ok, cols, 0)
        pred = np.full(rows.shape, self.mu, dtype=np.float64)
        if self.row_bias is not None:
            pred += np.where(row_ok, self.row_bias[r], 0.0)
        if self.col_bias is not None:
            pred += np.where(col_ok, self.col_bias[c], 0.0)
        pred += np.where(warm, np.einsum("...k,k...->...", self.P[r], self.Q[:, c]), 0.0)
        return pred

    @property
    def cold_start_value(self) -> float | None:
        """What ``cold_start='bias'`` predicts for a pair with neither factor nor bias known.

        The global mean ``mu`` for a model with biases; :attr:`train_mean` for a model
        without (None when it was not recorded: such pairs come back as NaN with a
        :class:`ColdStartWarning`).
        """
        if self.has_biases:
            return float(self.mu)
        return None if self.train_mean is None else float(self.train_mean)

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
        used = [f"{k}: {self.options[k]:.4g}" if isinstance(self.options[k], float)
                else f"{k}: {self.options[k]}" for k in ("reg", "random_state")
                if self.options and self.options.get(k) is not None]
        if used:  # the values used (reg scaled by the data, the drawn seed): replayable
            lines.append("  ".join(used))
        return "\n".join(lines)


def check_indices(
    name: str, values: Any, size: int, what: str, *, allow_unknown: bool = False
) -> np.ndarray:
    """``values`` as an int64 array of indices in ``[0, size)`` (and -1, "unknown", with
    ``allow_unknown``), or a clear error."""
    if isinstance(values, bool | np.bool_):
        raise TypeError(f"`{name}` must be integer {what} indices; got a boolean {values!r}.")
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"`{name}` must be integer {what} indices; got {describe(values)}."
        ) from err
    arr = np.atleast_1d(arr)
    if arr.size == 0:
        return np.zeros(arr.shape, dtype=np.int64)
    kind = arr.dtype.kind
    if kind == "b":
        raise TypeError(
            f"`{name}` must be integer {what} indices; got booleans (a mask? pass "
            f"np.flatnonzero(mask)): {describe(values)}."
        )
    if kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            t = int(np.flatnonzero(bad.ravel())[0])
            raise ValueError(
                f"`{name}` must be integer {what} indices; got {float(arr.ravel()[t])!r} at "
                f"position {t}."
            )
        frac = arr != np.round(arr)
        if frac.any():
            t = int(np.flatnonzero(frac.ravel())[0])
            raise ValueError(
                f"`{name}` must be integer {what} indices (floats only when integer-valued, "
                f"such as 2.0); got {float(arr.ravel()[t])!r} at position {t}."
            )
    elif kind not in "iu":
        raise TypeError(f"`{name}` must be integer {what} indices; got {describe(values)}.")
    flat = arr.ravel()
    low = -1 if allow_unknown else 0
    out_of_range = (flat < low) | (flat >= size)
    if out_of_range.any():
        t = int(np.flatnonzero(out_of_range)[0])
        v = flat[t].item()
        unknown = " or -1 (unknown)" if allow_unknown else ""
        raise ValueError(
            f"`{name}` must be {what} indices in [0, {size}){unknown}; got {v!r} at "
            f"position {t}."
        )
    return arr.astype(np.int64)


def check_clip(clip: Any) -> tuple[float, float] | None:
    """``clip`` as ``(low, high)`` floats with ``low <= high``, or None."""
    if clip is None:
        return None
    if isinstance(clip, str) or not hasattr(clip, "__len__") or len(clip) != 2:
        raise TypeError(f"`clip` must be 'auto', None or a pair (low, high); got {describe(clip)}.")
    try:
        lo, hi = float(clip[0]), float(clip[1])
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"`clip` must be a pair of numbers (low, high); got {describe(clip)}."
        ) from err
    if np.isnan(lo) or np.isnan(hi):
        raise ValueError(f"`clip` must not contain NaN; got ({lo}, {hi}).")
    if lo > hi:
        raise ValueError(f"`clip` must be (low, high) with low <= high; got ({lo:g}, {hi:g}).")
    return lo, hi


def _lookup_ids(universe: np.ndarray | None, ids: Any, size: int) -> np.ndarray:
    if universe is None:
        raise ValueError(
            "this model has no id map (it was not fitted on a DataFrame); use predict() with "
            "row and column indices."
        )
    return lookup_ids(universe, ids, size)


def _as_real(name: str, value: Any, ndim: int) -> np.ndarray:
    """``value`` as a float64 array of ``ndim`` dimensions, or a named TypeError/ValueError."""
    if value is None or isinstance(value, str | bytes) or np.iscomplexobj(value):
        raise TypeError(f"FitResult: `{name}` must be a real {ndim}-d array; got "
                        f"{describe(value)}.")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"FitResult: `{name}` must be a real {ndim}-d array; got "
                        f"{describe(value)}.") from err
    if arr.ndim != ndim:
        raise ValueError(f"FitResult: `{name}` must be {ndim}-dimensional; got shape "
                         f"{arr.shape}.")
    return arr


def _check_parts(fit: FitResult) -> None:
    """A FitResult built by hand: factors, biases, ids and counts that fit together (else a
    ValueError/TypeError naming the part), converted to float64 arrays."""
    P, Q = _as_real("P", fit.P, 2), _as_real("Q", fit.Q, 2)
    if P.shape[1] != Q.shape[0]:
        raise ValueError(f"FitResult: `P` (n_rows, rank) and `Q` (rank, n_cols) must share "
                         f"the rank; got shapes {P.shape} and {Q.shape}.")
    object.__setattr__(fit, "P", P)
    object.__setattr__(fit, "Q", Q)
    try:
        mu = float(fit.mu)
    except (TypeError, ValueError) as err:
        raise TypeError(f"FitResult: `mu` must be a real number; got {describe(fit.mu)}.") \
            from err
    object.__setattr__(fit, "mu", mu)
    sizes = {"row": P.shape[0], "col": Q.shape[1]}
    for side, size in sizes.items():
        for part in (f"{side}_bias", f"{side}_ids", f"{side}_counts"):
            value = getattr(fit, part)
            if value is None:
                continue
            if part.endswith("bias"):
                object.__setattr__(fit, part, value := _as_real(part, value, 1))
            if len(value) != size:
                raise ValueError(f"FitResult: `{part}` must have one entry per "
                                 f"{'row of P' if side == 'row' else 'column of Q'} ({size}); "
                                 f"got {len(value)}.")
    if not isinstance(fit.status, int | np.integer) or isinstance(fit.status, bool):
        raise TypeError(f"FitResult: `status` must be an int; got {describe(fit.status)}.")


def warn_not_converged(message: str, stacklevel: int = 3) -> None:
    """Issue the :class:`ConvergenceWarning` for a run returned without success."""
    warnings.warn(message, ConvergenceWarning, stacklevel=stacklevel)
