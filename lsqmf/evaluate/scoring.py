"""Scoring one fit: predictions on held-out pairs, clipping, cold start, :func:`fit_and_score`.

Cold start
----------
A test pair whose user or item has no rating in ``train`` has no fitted factor. The policy
``cold_start`` decides what to predict for it: ``'bias'`` (default) falls back to the bias
model -- the global mean plus whichever bias is known (the training mean, which every solver
records as ``FitResult.train_mean``, for a model without biases); ``'nan'`` predicts NaN and
leaves the pair out of the metrics; ``'raise'`` raises ``ValueError``. Every score reports
``n_cold_start``, the number of such pairs; see :mod:`lsqmf.model.result` for the details.

Clipping
--------
``clip='auto'`` (default) clips predictions to the range of the training values (the rating
scale, e.g. 0.5--5 stars); ``clip=(low, high)`` to a given range; ``clip=None`` not at all.
:meth:`lsqmf.FitResult.predict` has the same default (the range recorded by the solver in
``options['rating_scale']``).

:func:`fit_and_score` fits one solver on ``train`` and scores ``test``. Solver names resolve
through :data:`lsqmf.solvers.SOLVERS`; parameters not given are taken from
:data:`lsqmf.solvers.SOLVER_DEFAULTS`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .._validation import check_choice, describe
from ..data.ratings import Ratings
from ..model.result import COLD_START_POLICIES, ConvergenceWarning, FitResult

if TYPE_CHECKING:
    pass
from .metrics import mae, ranking_metrics, rmse
from .splits import _check_ratings, align_pairs

logger = logging.getLogger(__name__)

__all__ = [
    "fit_and_score",
    "predict_pairs",
    "resolve_solver",
]


def predict_pairs(
    model: FitResult,
    train: Ratings,
    rows: Any,
    cols: Any,
    *,
    cold_start: str = "bias",
    clip: Any = "auto",
) -> tuple[np.ndarray, int]:
    """Predict held-out pairs by index, with the cold-start policy and clipping.

    ``rows`` and ``cols`` are indices in ``train``'s indexing, -1 for an id that ``train``
    does not know (as :func:`align_pairs` returns them). A pair is cold when its row or
    column has no entry in ``train`` (its factors were never fitted) or is -1. Returns
    ``(predictions, n_cold_start)``.
    """
    check_choice("cold_start", cold_start, COLD_START_POLICIES)
    if model.row_counts is None or model.col_counts is None:
        # a result built without training counts: take them from `train`
        model = dataclasses.replace(
            model, row_counts=train.row_counts(), col_counts=train.col_counts()
        )
    out = model.predict(rows, cols, cold_start=cold_start, clip=_resolve_clip(clip, train),
                        return_cold_start=True, allow_unknown=True)
    return out.values, out.n_cold_start


def _resolve_clip(clip: Any, train: Ratings) -> tuple[float, float] | None:
    if clip is None:
        return None
    if isinstance(clip, str):
        check_choice("clip", clip, ["auto"])
        return float(train.values.min()), float(train.values.max())
    if not isinstance(clip, tuple | list) or len(clip) != 2 or not float(clip[0]) <= float(
        clip[1]
    ):
        raise ValueError(f"`clip` must be 'auto', None or (low, high); got {describe(clip)}.")
    return float(clip[0]), float(clip[1])


def resolve_solver(
    solver: str | Callable[..., FitResult], params: Mapping[str, Any]
) -> tuple[str, Callable[..., FitResult], dict[str, Any]]:
    """``(name, function, params)``: :func:`lsqmf.solvers.resolve_solver`, the one rule (a
    name gets :data:`~lsqmf.solvers.SOLVER_DEFAULTS` for the parameters not given)."""
    from ..solvers import resolve_solver as resolve

    return resolve(solver, params)


def fit_and_score(
    solver: str | Callable[..., FitResult],
    train: Any,
    test: Any,
    *,
    cold_start: str = "bias",
    clip: Any = "auto",
    return_model: bool = False,
    quiet: bool = True,
    ranking: Mapping[str, Any] | None = None,
    **params: Any,
) -> dict[str, Any]:
    """Fit ``solver`` on ``train`` and score its predictions of ``test``.

    Parameters
    ----------
    solver : str or callable
        A name in :data:`lsqmf.solvers.SOLVERS` (missing parameters come from
        :data:`~lsqmf.solvers.SOLVER_DEFAULTS`) or a function ``f(train, rank, **params)``.
    train, test : Ratings
        Sharing shape and id maps (as the splits here produce), or both with id maps (e.g.
        two files), in which case ``test`` is matched to ``train`` by raw id
        (:func:`align_pairs`).
    cold_start : {'bias', 'nan', 'raise'}, default='bias'
    clip : 'auto', (low, high) or None, default='auto'
    return_model : bool, default=False
        Also return the fitted model under ``'model'``.
    quiet : bool, default=True
        Silence :class:`~lsqmf.ConvergenceWarning` (the status is reported in the dict).
    ranking : dict, optional
        Also compute the ranking metrics of :func:`ranking_metrics` with these options
        (``{}`` for the defaults, ``{'k': 20, 'threshold': 3.5}``); their fields join the
        result. :func:`cross_validate` and :func:`grid_search` pass it through.
    **params
        Solver options (``rank``, ``reg``, ...).

    Returns
    -------
    dict
        ``solver``, ``rmse``, ``mae``, ``fit_s`` (wall seconds of the fit), ``n_test``,
        ``n_scored`` (pairs with a finite prediction), ``n_cold_start``, ``train_rmse``,
        ``cost``, ``n_iter``, ``status``, ``success``, the parameters as used (the seed
        drawn when ``random_state`` was None, ``reg`` as scaled by the data when it was None,
        as recorded in the model's options), and with ``ranking`` the fields of
        :func:`ranking_metrics`.
    """
    train = _check_ratings(train)
    test = _check_ratings(test)
    test_rows, test_cols = align_pairs(train, test)
    check_choice("cold_start", cold_start, COLD_START_POLICIES)
    name, fn, rank, params = _resolve_with_rank(solver, params)
    from ..solvers import warm_up_solver

    # the solver's kernels compiled or loaded from the disk cache now: fit_s never counts it
    warm_up_solver(name, params.get("backend", "auto"))
    t0 = time.perf_counter()
    model = _fit(fn, train, rank, params, quiet=quiet)
    fit_s = time.perf_counter() - t0
    pred, n_cold = predict_pairs(model, train, test_rows, test_cols, cold_start=cold_start,
                                 clip=clip)
    ok = np.isfinite(pred)
    train_pred = model.predict(train.rows, train.cols, clip=_resolve_clip(clip, train))
    out: dict[str, Any] = {
        "solver": name,
        "rmse": rmse(test.values[ok], pred[ok]) if ok.any() else float("nan"),
        "mae": mae(test.values[ok], pred[ok]) if ok.any() else float("nan"),
        "fit_s": fit_s,
        "n_test": test.nnz,
        "n_scored": int(ok.sum()),
        "n_cold_start": n_cold,
        "train_rmse": rmse(train.values, train_pred),
        "cost": model.cost,
        "n_iter": model.nfev,
        "status": model.status,
        "success": bool(model.success),
        "rank": rank,
        **{k: v for k, v in _used(params, model).items() if _scalar(v)},
    }
    if ranking is not None:
        out.update(_ranking_fields(model, train, test, ranking))
    if return_model:
        out["model"] = model
    return out


def _used(params: Mapping[str, Any], model: FitResult) -> dict[str, Any]:
    """The parameters as the fit used them: where the model records a value (the drawn seed,
    ``reg`` scaled by the data, bmf's ``burn_in``), that value, not the None given."""
    recorded = model.options or {}
    used = {k: recorded.get(k, v) if v is None else v for k, v in params.items()}
    for k in ("random_state", "reg"):
        if recorded.get(k) is not None:
            used[k] = recorded[k]
    return used


def _resolve_with_rank(
    solver: str | Callable[..., FitResult], params: Mapping[str, Any]
) -> tuple[str, Callable[..., FitResult], Any, dict[str, Any]]:
    """``(name, function, rank, params)``: :func:`resolve_solver`, ``rank`` taken out."""
    name, fn, resolved = resolve_solver(solver, params)
    resolved = dict(resolved)
    if "rank" not in resolved:
        raise ValueError("`rank` is required (as a parameter or in the solver's defaults).")
    rank = resolved.pop("rank")
    return name, fn, rank, resolved


def _fit(fn: Callable[..., FitResult], ratings: Ratings, rank: Any, params: Mapping[str, Any],
         *, quiet: bool) -> FitResult:
    """``fn(ratings, rank, **params)``, with :class:`~lsqmf.ConvergenceWarning` silenced when
    ``quiet``."""
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore", ConvergenceWarning)
        return fn(ratings, rank, **params)


def _ranking_field_names(ranking: Mapping[str, Any]) -> list[str]:
    """The fields ``fit_and_score(..., ranking=ranking)`` adds, in order."""
    k = ranking.get("k", 10)
    return [f"precision@{k}", f"recall@{k}", f"map@{k}", f"ndcg@{k}", "n_ranked_users",
            "n_users_no_relevant", "n_users_cold", "relevance_threshold"]


def _ranking_fields(
    model: FitResult, train: Ratings, test: Ratings, ranking: Any
) -> dict[str, Any]:
    if not isinstance(ranking, Mapping) or not set(ranking) <= {"k", "threshold"}:
        raise TypeError(
            f"`ranking` must be a dict with keys among 'k' and 'threshold'; got "
            f"{describe(ranking)}."
        )
    return ranking_metrics(model, train, test, **ranking)


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, bool | int | float | str | np.number)
