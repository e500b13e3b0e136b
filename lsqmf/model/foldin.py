r"""Fold-in: factors for new rows (users) or columns (items) without refitting the model.

With the other side of a fitted model held fixed, its objective separates over rows (see
:mod:`lsqmf.solvers.als`), so a new row ``u`` with ratings :math:`v_{ui}` of known columns
:math:`i \in \Omega_u` gets the factor (and bias) that minimizes the model's own objective
restricted to that row,

.. math::

    \min_{z_u}\ \tfrac12\sum_{i\in\Omega_u} \rho\big((d_{ui}(a_i^\top z_u - y_{ui}))^2\big)
        + \tfrac12\sum_j \rho\big(\lambda_j (z_{uj} - z^0_{j})^2\big),

with :math:`z_u = [p_u; b_u]` (just :math:`p_u` without biases), features
:math:`a_i = [q_i; 1]`, targets :math:`y_{ui} = v_{ui} - \mu - c_i` (:math:`v_{ui}` without
biases) and the formulation's scales, read from ``model.options``:

- ``l2`` (every comparison solver; ``solve(formulation='l2')``): :math:`d = \sqrt{w}`,
  :math:`\lambda = \mathrm{reg}\cdot s_u` for the factor and :math:`\mathrm{reg\_bias}\cdot s_u`
  for the bias, :math:`s_u = |\Omega_u|` when ``count_scaled`` else 1, anchor :math:`z^0 = 0`;
- ``prior``: :math:`d = \alpha\sqrt{w}`, :math:`\lambda = \beta^2`, anchor ``anchor`` (the
  new rows' prior factors; zeros by default) and 0 for the bias;
- ``none``: :math:`d = \sqrt{w}`, no regularization (minimum-norm solution when
  underdetermined).

:math:`\rho` is the model's ``loss`` (with ``f_scale``), applied to the data and the
regularization residuals alike, as :func:`lsqmf.solve` does. For the linear loss without bounds
this is a ridge regression solved in closed form, all rows at once; otherwise each row is one
small ``scipy.optimize.least_squares`` problem (``method='trf'``, analytic Jacobian) started
from the ridge solution. New columns are the same with the roles of rows and columns swapped.

Because the fitted factors of a model at its optimum solve exactly these per-row problems, the
fold-in of a training row reproduces that row's fitted factor and bias (the tests check it).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .._validation import check_choice, check_float, check_int, describe
from ..data.ratings import Ratings, as_ratings, lookup_ids

if TYPE_CHECKING:  # the model type; fold-in builds its result as type(model)(...), so that
    from .result import FitResult  # model.result (whose fold_in method calls this) is not imported

__all__ = ["fold_in"]

logger = logging.getLogger(__name__)

#: Losses :func:`fold_in` can apply (scipy's names).
_LOSSES = ("linear", "soft_l1", "huber", "cauchy", "arctan")

#: Largest number of float64 elements of the per-entry outer products built at once.
_BLOCK_ELEMENTS = 4_194_304


@dataclass(frozen=True)
class _Objective:
    """The per-row objective of a model (see the module docstring)."""

    formulation: str
    data_scale: float
    reg: float
    reg_bias: float
    count_scaled: bool
    loss: str
    f_scale: float
    lb: np.ndarray | None
    ub: np.ndarray | None


def fold_in(
    model: FitResult,
    ratings: Any,
    *,
    axis: str = "rows",
    unknown: str = "ignore",
    loss: str | None = None,
    f_scale: float | None = None,
    bounds: Any = None,
    anchor: Any = None,
    tol: float = 1e-10,
    max_nfev: int | None = None,
) -> FitResult:
    """Fold new rows (users) or columns (items) into a fitted model without refitting.

    Parameters
    ----------
    model : FitResult
        A fitted model; its other side (``Q`` and column biases for ``axis='rows'``) is kept.
    ratings : Ratings, DataFrame, dense or sparse array
        The new rows' ratings (anything :func:`lsqmf.as_ratings` accepts). For
        ``axis='rows'`` its rows are the new rows and its columns are the model's columns,
        matched by raw id when both have id maps (a DataFrame ``user, item, rating`` or a
        ratings file), else by index. For ``axis='cols'`` its columns are the new columns and
        its rows the model's rows.
    axis : {'rows', 'cols'}, default='rows'
    unknown : {'ignore', 'raise'}, default='ignore'
        What to do with ratings of a column (row) the model has no factor for: an id not in
        its id map, an index out of range, or one that had no training rating. ``'ignore'``
        drops them and counts them in ``result.options['fold_in']['n_ignored']``.
    loss, f_scale : optional
        Override the model's loss (needed when it was fitted with a callable loss, which a
        model records only by name).
    bounds : (lb, ub), optional
        Bounds of the new factors: scalars bound every factor entry (biases stay free, as in
        :func:`lsqmf.solve`), arrays of length ``rank`` (``rank + 1`` with biases, the bias
        last) bound each coordinate. Required when the model was fitted with bounds that it
        does not record.
    anchor : array_like, shape (n_new, rank), optional
        The new rows' prior factors for the ``prior`` formulation (default zeros).
    tol : float, default=1e-10
        ``ftol``, ``xtol`` and ``gtol`` of the per-row ``least_squares`` (robust loss or
        bounds only).
    max_nfev : int, optional
        Evaluation budget of each per-row ``least_squares``.

    Returns
    -------
    FitResult
        A model of the new rows only (for ``axis='rows'``: ``P`` of shape ``(n_new, rank)``,
        the model's ``Q``, ``col_bias``, ``mu``, column ids and counts; the new rows' ids
        when the ratings had them, and ``row_counts`` = their known ratings), so ``predict``,
        ``predict_ids`` and :func:`lsqmf.evaluate.metrics.top_n` work on it. A new row without any
        known rating gets zero factors and bias and a count of 0: it is cold-start.
        ``options['fold_in']`` records ``axis``, ``n_new``, ``n_ratings`` (used),
        ``n_ignored``, ``loss`` and ``method`` (``'ridge'`` or ``'least_squares'``).

    Raises
    ------
    ValueError
        For an unknown ``axis``/``unknown``, ratings of unknown columns with
        ``unknown='raise'``, ids that cannot be matched, or a model whose loss or bounds are
        not recorded and not given.

    Examples
    --------
    >>> import numpy as np
    >>> from lsqmf.data.synthetic import make_low_rank
    >>> from lsqmf.solvers import als
    >>> R, _ = make_low_rank(30, 20, 2, density=0.6, noise=0.1, random_state=0)
    >>> model = als(R, 2, reg=0.1, biases=True, tol=1e-12, max_iter=2000, random_state=0)
    >>> new = model.fold_in(R.subset(R.rows == 0))  # user 0's ratings, as a new user
    >>> bool(np.allclose(new.P[0], model.P[0], atol=1e-6)), new.shape
    (True, (30, 20))
    """
    tol, max_nfev = _check_fold_in_args(model, ratings, axis, unknown, tol, max_nfev)
    new = ratings if isinstance(ratings, Ratings) else as_ratings(ratings)
    objective = _objective(model, loss, f_scale, bounds)
    rows_axis = axis == "rows"
    s = _Sides.of(model, new, rows_axis)
    rows = _new_rows(model, new, s, objective, unknown, anchor, rows_axis)
    Z, cost, success, method = _solve_rows(rows, objective, tol, max_nfev)
    info = {
        "axis": axis, "n_new": int(s.n_new), "n_ratings": len(rows.y),
        "n_ignored": rows.n_ignored, "loss": objective.loss, "method": method,
    }
    return _result(model, Z, rows.counts, s.new_ids, rows_axis, info, float(cost.sum()),
                   success)


@dataclass(frozen=True)
class _Rows:
    """The per-row problems of the new rows (see the module docstring), one entry per used
    rating: the new row ``own``, features ``A``, data scale ``d`` and target ``y`` of each
    entry; regularization ``lam`` and start (anchor) ``z0`` of each new row, shape
    (n_new, dim); ``counts`` entries per new row; ``n_ignored`` ratings dropped."""

    own: np.ndarray
    A: np.ndarray
    d: np.ndarray
    y: np.ndarray
    lam: np.ndarray
    z0: np.ndarray
    counts: np.ndarray
    n_ignored: int


def _new_rows(model: FitResult, new: Ratings, s: _Sides, objective: _Objective, unknown: str,
              anchor: Any, rows_axis: bool) -> _Rows:
    """The ratings of known columns (rows) and the objective of each new row."""
    what = "column" if rows_axis else "row"
    other = _match(s.other_raw, s.other_ids_new, s.other_ids_model, s.F.shape[0], what)
    known, n_ignored = _known_entries(other, s, unknown, what)
    own, other = s.own[known], other[known]
    values = new.values[known]
    weights = None if new.weights is None else new.weights[known]
    rank = model.rank
    biases = model.has_biases
    z0 = _start(objective, anchor, s.n_new, rank, rank + (1 if biases else 0))
    target = values - (model.mu + s.other_bias[other] if s.other_bias is not None else 0.0)
    design = s.F[other] if not biases else np.hstack([s.F[other], np.ones((len(other), 1))])
    sqrt_w = np.ones(len(values)) if weights is None else np.sqrt(weights)
    counts = np.bincount(own, minlength=s.n_new)
    lam = _reg_diagonal(objective, counts, rank, biases)
    return _Rows(own, design, objective.data_scale * sqrt_w, target, lam, z0, counts,
                 n_ignored)


def _solve_rows(p: _Rows, objective: _Objective, tol: float,
                max_nfev: int | None) -> tuple[np.ndarray, np.ndarray, bool, str]:
    """``(Z, cost per row, success, method)``: the ridge solution, refined row by row by
    ``least_squares`` for a robust loss or bounds."""
    Z = _ridge(p.own, p.A, p.d, p.y, p.lam, p.z0, p.counts)
    cost = np.zeros(len(p.counts))
    if objective.loss != "linear" or objective.lb is not None:
        success = _robust(p.own, p.A, p.d, p.y, p.lam, p.z0, p.counts, Z, cost, objective,
                          tol, max_nfev)
        return Z, cost, success, "least_squares"
    cost[:] = _ridge_cost(p.own, p.A, p.d, p.y, p.lam, p.z0, Z, len(p.counts))
    return Z, cost, True, "ridge"


def _is_model(model: Any) -> bool:
    """Whether ``model`` is a fitted :class:`~lsqmf.FitResult` (by its type's name and fields:
    this module must not import :mod:`lsqmf.model.result`, whose ``fold_in`` method calls it)."""
    names = {c.__name__ for c in type(model).__mro__}
    return "FitResult" in names and dataclasses.is_dataclass(model) and hasattr(model, "Q")


def _check_fold_in_args(model: Any, ratings: Any, axis: str, unknown: str, tol: float,
                        max_nfev: int | None) -> tuple[float, int | None]:
    """Check the arguments of :func:`fold_in`; the checked ``tol`` and ``max_nfev``."""
    if not _is_model(model):
        raise TypeError(f"`model` must be lsqmf.FitResult; got {describe(model)}.")
    check_choice("axis", axis, ("rows", "cols"))
    check_choice("unknown", unknown, ("ignore", "raise"))
    tol = check_float("tol", tol, min_value=0.0, min_inclusive=False)  # type: ignore[assignment]
    if max_nfev is not None:
        max_nfev = check_int("max_nfev", max_nfev, min_value=1)
    if _is_empty(ratings):
        raise ValueError(
            "`ratings` holds no rating: there is nothing to fold in (a user without ratings "
            "is cold-start: predict() gives them the bias model)."
        )
    return tol, max_nfev


@dataclass(frozen=True)
class _Sides:
    """The new side (indices, count, ids) and the model's kept side (factors, bias, ids)."""

    own: np.ndarray
    other_raw: np.ndarray
    n_new: int
    other_ids_new: Any
    new_ids: Any
    F: np.ndarray
    other_bias: np.ndarray | None
    other_counts: np.ndarray | None
    other_ids_model: Any

    @classmethod
    def of(cls, model: FitResult, new: Ratings, rows_axis: bool) -> _Sides:
        if rows_axis:
            return cls(new.rows, new.cols, new.shape[0], new.col_ids, new.row_ids, model.Q.T,
                       model.col_bias, model.col_counts, model.col_ids)
        return cls(new.cols, new.rows, new.shape[1], new.row_ids, new.col_ids, model.P,
                   model.row_bias, model.row_counts, model.row_ids)


def _known_entries(other: np.ndarray, s: _Sides, unknown: str,
                   what: str) -> tuple[np.ndarray, int]:
    """Mask of the ratings whose other side the model has a factor for, and how many not."""
    known = other >= 0
    if s.other_counts is not None:
        known &= s.other_counts[np.where(known, other, 0)] > 0
    n_ignored = int(np.count_nonzero(~known))
    if n_ignored and unknown == "raise":
        t = int(np.flatnonzero(~known)[0])
        raw = s.other_raw
        shown = raw[t] if s.other_ids_new is None else s.other_ids_new[raw[t]]
        raise ValueError(
            f"{n_ignored} rating(s) are of a {what} this model has no factor for, first "
            f"{_plain(shown)!r}; pass unknown='ignore' to drop them."
        )
    if n_ignored:
        logger.info("fold_in: ignored %d rating(s) of unknown %ss", n_ignored, what)
    return known, n_ignored


def _start(objective: _Objective, anchor: Any, n_new: int, rank: int,
           dim: int) -> np.ndarray:
    """The start (and prior) of the new blocks: zeros, or ``anchor`` for the factors."""
    z0 = np.zeros((n_new, dim))
    if anchor is not None:
        if objective.formulation != "prior":
            raise ValueError(
                f"`anchor` applies to the 'prior' formulation only; this model's is "
                f"{objective.formulation!r}."
            )
        a = np.asarray(anchor, dtype=np.float64)
        if a.shape != (n_new, rank) or not np.all(np.isfinite(a)):
            raise ValueError(
                f"`anchor` must be a finite array of shape (n_new, rank) = ({n_new}, {rank}); "
                f"got {describe(anchor)}."
            )
        z0[:, :rank] = a
    return z0


def _is_empty(ratings: Any) -> bool:
    """Whether ``ratings`` (before conversion) holds no rating at all."""
    if isinstance(ratings, Ratings):
        return False
    if hasattr(ratings, "columns") and hasattr(ratings, "__len__"):  # a DataFrame
        return len(ratings) == 0
    if hasattr(ratings, "nnz"):  # scipy.sparse
        return int(ratings.nnz) == 0
    try:
        arr = np.asarray(ratings, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return arr.size == 0 or bool(np.all(np.isnan(arr)))


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _match(
    raw: np.ndarray,
    ids_new: np.ndarray | None,
    ids_model: np.ndarray | None,
    size: int,
    what: str,
) -> np.ndarray:
    """Index in the model of each rating's fixed-side row/column (-1 where unknown)."""
    if ids_new is not None and ids_model is not None:
        return lookup_ids(ids_model, ids_new[raw], size)
    if ids_new is not None:
        raise ValueError(
            f"the new ratings name their {what}s by id but the model has no {what} id map; "
            f"pass ratings indexed by the model's {what} indices (a dense or sparse array)."
        )
    out = raw.astype(np.int64)
    out[(out < 0) | (out >= size)] = -1
    return out


def _objective(model: FitResult, loss: Any, f_scale: Any, bounds: Any) -> _Objective:
    opts = dict(model.options)
    formulation = str(opts.get("formulation", "l2"))
    check_choice("formulation", formulation, ("l2", "prior", "none"))
    reg = float(opts.get("reg") or 0.0)
    reg_bias = opts.get("reg_bias")
    reg_bias = reg if reg_bias is None else float(reg_bias)
    count_scaled = bool(opts.get("count_scaled", False))
    data_scale = 1.0
    if formulation == "prior":
        data_scale = float(opts.get("alpha", 0.9))
        reg = reg_bias = float(opts.get("beta", 0.1)) ** 2
        count_scaled = False
    elif formulation == "none":
        reg = reg_bias = 0.0
    loss_name = str(opts.get("loss", "linear")) if loss is None else loss
    if loss_name not in _LOSSES:
        hint = "" if loss is not None else (
            " (the model was fitted with a loss it records only by name; pass `loss=`)"
        )
        raise ValueError(f"`loss` must be one of {list(_LOSSES)}; got {loss_name!r}{hint}.")
    fs = opts.get("f_scale", 1.0) if f_scale is None else f_scale
    fs = check_float("f_scale", fs, min_value=0.0, min_inclusive=False)
    assert fs is not None
    lb, ub = _bounds(model, opts.get("bounds"), bounds)
    return _Objective(formulation, data_scale, reg, reg_bias, count_scaled, loss_name, float(fs),
                      lb, ub)


def _bounds(model: FitResult, recorded: Any, given: Any) -> tuple[Any, Any]:
    """Per-coordinate ``(lb, ub)`` of ``z`` (length rank [+1]), or ``(None, None)``."""
    if given is None:
        if recorded is None or recorded is False:
            return None, None
        if recorded is True:
            raise ValueError(
                "the model was fitted with bounds it does not record; pass `bounds=(lb, ub)` "
                "for the new factors."
            )
        given = recorded
    if not isinstance(given, tuple | list) or len(given) != 2:
        raise TypeError(f"`bounds` must be a pair (lb, ub); got {describe(given)}.")
    dim = model.rank + (1 if model.has_biases else 0)
    out = []
    for name, b, fill in (("lower bound", given[0], -np.inf), ("upper bound", given[1], np.inf)):
        arr = np.asarray(b, dtype=np.float64)
        if arr.ndim == 0:
            full = np.full(dim, fill)
            full[: model.rank] = arr
            arr = full
        elif arr.shape != (dim,):
            raise ValueError(
                f"`bounds` {name} must be a scalar or have length {dim} (rank"
                f"{' + 1 for the bias' if model.has_biases else ''}); got shape {arr.shape}."
            )
        if np.isnan(arr).any():
            raise ValueError(f"`bounds` {name} must not contain NaN.")
        out.append(arr)
    if np.any(out[0] >= out[1]):
        j = int(np.flatnonzero(out[0] >= out[1])[0])
        raise ValueError(
            f"`bounds` must have lower < upper; at coordinate {j} got {out[0][j]} >= "
            f"{out[1][j]}."
        )
    return out[0], out[1]


def _reg_diagonal(obj: _Objective, counts: np.ndarray, rank: int, biases: bool) -> np.ndarray:
    """:math:`\\lambda_j` of every new row and coordinate, shape (n_new, dim)."""
    s = counts.astype(np.float64) if obj.count_scaled else np.ones(len(counts))
    cols = [np.repeat((obj.reg * s)[:, None], rank, axis=1)]
    if biases:
        cols.append((obj.reg_bias * s)[:, None])
    return np.hstack(cols)


def _ridge(
    own: np.ndarray,
    A: np.ndarray,
    d: np.ndarray,
    y: np.ndarray,
    lam: np.ndarray,
    z0: np.ndarray,
    counts: np.ndarray,
) -> np.ndarray:
    """Closed-form minimizers of the linear-loss objective, shape (n_new, dim)."""
    n_new, dim = z0.shape
    Z = z0.copy()
    order = np.argsort(own, kind="stable")
    indptr = np.concatenate([[0], np.cumsum(counts)])
    w2 = (d**2)[order]
    As, ys = A[order], y[order]
    per_block = max(1, _BLOCK_ELEMENTS // (dim * dim))
    start = 0
    while start < n_new:
        stop = start + 1
        while stop < n_new and indptr[stop + 1] - indptr[start] <= per_block:
            stop += 1
        has = counts[start:stop] > 0
        if has.any():
            lo, hi = indptr[start], indptr[stop]
            Ab, wb = As[lo:hi], w2[lo:hi]
            # entries are sorted by row: one segment sum per non-empty row
            seg_starts = (indptr[start:stop] - lo)[has]
            G = np.add.reduceat(wb[:, None, None] * Ab[:, :, None] * Ab[:, None, :],
                                seg_starts, axis=0)
            h = np.add.reduceat((wb * ys[lo:hi])[:, None] * Ab, seg_starts, axis=0)
            rows = np.arange(start, stop)[has]
            h += lam[rows] * z0[rows]
            G[:, np.arange(dim), np.arange(dim)] += lam[rows]
            Z[rows] = _solve_stack(G, h)
        start = stop
    return Z


def _solve_stack(G: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Solve each ``G[j] z = h[j]``; minimum-norm least squares where ``G[j]`` is singular."""
    try:
        out: np.ndarray = np.linalg.solve(G, h[:, :, None])[:, :, 0]
        if np.all(np.isfinite(out)):
            return out
    except np.linalg.LinAlgError:
        pass
    return np.stack([np.linalg.lstsq(g, b, rcond=None)[0] for g, b in zip(G, h, strict=True)])


def _row_residual(
    A: np.ndarray, d: np.ndarray, y: np.ndarray, lam: np.ndarray, z0: np.ndarray
) -> tuple[Any, Any]:
    keep = lam > 0
    s = np.sqrt(lam[keep])
    J = np.vstack([d[:, None] * A, np.diag(np.sqrt(lam))[keep]])

    def fun(z: np.ndarray) -> np.ndarray:
        return np.concatenate([d * (A @ z - y), s * (z[keep] - z0[keep])])

    def jac(z: np.ndarray) -> np.ndarray:
        return J

    return fun, jac


def _ridge_cost(
    own: np.ndarray, A: np.ndarray, d: np.ndarray, y: np.ndarray, lam: np.ndarray,
    z0: np.ndarray, Z: np.ndarray, n_new: int,
) -> np.ndarray:
    e = d * (np.einsum("tk,tk->t", A, Z[own]) - y)
    data = np.bincount(own, weights=e**2, minlength=n_new)
    return 0.5 * (data + np.sum(lam * (Z - z0) ** 2, axis=1))


def _robust(
    own: np.ndarray, A: np.ndarray, d: np.ndarray, y: np.ndarray, lam: np.ndarray,
    z0: np.ndarray, counts: np.ndarray, Z: np.ndarray, cost: np.ndarray, obj: _Objective,
    tol: float, max_nfev: int | None,
) -> bool:
    """Per-row ``least_squares`` with the model's loss and bounds; updates ``Z`` and ``cost``
    in place and returns whether every row converged."""
    from scipy.optimize import least_squares
    order = np.argsort(own, kind="stable")
    indptr = np.concatenate([[0], np.cumsum(counts)])
    dim = Z.shape[1]
    lb = np.full(dim, -np.inf) if obj.lb is None else obj.lb
    ub = np.full(dim, np.inf) if obj.ub is None else obj.ub
    ok = True
    for u in np.flatnonzero(counts):
        idx = order[indptr[u] : indptr[u + 1]]
        fun, jac = _row_residual(A[idx], d[idx], y[idx], lam[u], z0[u])
        x0 = np.clip(Z[u], lb, ub)
        res = least_squares(
            fun, x0, jac=jac, bounds=(lb, ub), method="trf", loss=obj.loss,
            f_scale=obj.f_scale, ftol=tol, xtol=tol, gtol=tol, max_nfev=max_nfev,
        )
        Z[u] = res.x
        cost[u] = res.cost
        ok &= bool(res.status > 0)
    return ok


def _result(
    model: FitResult,
    Z: np.ndarray,
    counts: np.ndarray,
    new_ids: np.ndarray | None,
    rows_axis: bool,
    info: dict[str, Any],
    cost: float,
    success: bool,
) -> FitResult:
    rank = model.rank
    F_new = np.ascontiguousarray(Z[:, :rank])
    bias_new = np.ascontiguousarray(Z[:, rank]) if model.has_biases else None
    what = "rows" if rows_axis else "columns"
    message = (
        f"folded in {info['n_new']} {what} from {info['n_ratings']} rating(s) "
        f"({info['n_ignored']} ignored) by {info['method']}"
    )
    common: dict[str, Any] = dict(
        mu=model.mu, success=success, status=1 if success else 0, message=message,
        nfev=1 if info["method"] == "ridge" else int(np.count_nonzero(counts)),
        cost=cost, options={**dict(model.options), "fold_in": info}, solver=model.solver,
        train_mean=model.train_mean,
    )
    if rows_axis:
        return type(model)(
            P=F_new, Q=model.Q, row_bias=bias_new, col_bias=model.col_bias,
            row_ids=new_ids, col_ids=model.col_ids, row_counts=counts,
            col_counts=model.col_counts, **common,
        )
    return type(model)(
        P=model.P, Q=np.ascontiguousarray(F_new.T), row_bias=model.row_bias, col_bias=bias_new,
        row_ids=model.row_ids, col_ids=new_ids, row_counts=model.row_counts,
        col_counts=counts, **common,
    )
