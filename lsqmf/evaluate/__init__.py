"""Evaluation: splits, metrics, scoring one fit, cross-validation, grid search and tuning.

=============== ===========================================================================
module          what it owns
=============== ===========================================================================
``splits``      :func:`holdout_split`, :func:`kfold`, :func:`user_holdout`, :func:`align_pairs`
``metrics``     :func:`rmse`, :func:`mae`, :func:`ranking_metrics`, :func:`top_n`
``scoring``     :func:`predict_pairs` (clipping, cold start), :func:`fit_and_score`
``search``      :func:`cross_validate`, :func:`grid_search` (cells, checkpoints, backends)
``tuning``      :func:`~lsqmf.evaluate.tuning.tune` (nested choice on training data only)
=============== ===========================================================================
"""

from __future__ import annotations

from .metrics import mae, ranking_metrics, rmse, top_n
from .scoring import fit_and_score, predict_pairs, resolve_solver
from .search import GridSearchResult, SearchInterrupted, cross_validate, grid_search
from .splits import align_pairs, holdout_split, kfold, user_holdout

__all__ = [
    "GridSearchResult",
    "SearchInterrupted",
    "align_pairs",
    "cross_validate",
    "fit_and_score",
    "grid_search",
    "holdout_split",
    "kfold",
    "mae",
    "predict_pairs",
    "ranking_metrics",
    "resolve_solver",
    "rmse",
    "top_n",
    "user_holdout",
]
