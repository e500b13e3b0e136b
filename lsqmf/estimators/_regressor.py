"""RatingRegressor: (user, item) pairs -> ratings, fitted by any solver of the registry."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from .._validation import check_choice, describe
from ..data.ratings import Ratings, lookup_ids
from ..evaluate.scoring import _resolve_clip as resolve_clip
from ..model.result import COLD_START_POLICIES
from ..solvers import resolve_solver
from ._base import COMMON_OPTIONS, check_id_column, solver_keywords, validate_data

__all__ = ["RatingRegressor"]


class RatingRegressor(RegressorMixin, BaseEstimator):
    r"""Matrix-factorization rating prediction as a scikit-learn regressor.

    Each sample is one rating: ``X`` holds (user id, item id) pairs, ``y`` the ratings. The
    pairs are gathered into :class:`lsqmf.Ratings` (rows are users, columns items) and fitted
    by a solver of the registry :data:`lsqmf.solvers.SOLVER_SPECS`, resolved by name with
    :func:`lsqmf.solvers.resolve_solver` exactly as ``lsqmf.evaluate.search.cross_validate``
    and the command line resolve it. The model predicts
    :math:`\mu + b_u + c_i + p_u^\top q_i` (without biases :math:`p_u^\top q_i`).

    Parameters
    ----------
    solver : str, default='bmf'
        A name in :data:`lsqmf.solvers.SOLVER_SPECS` (``'bmf'`` is
        :data:`lsqmf.solvers.DEFAULT_SOLVER`, the default of ``lsqmf fit``).
    rank : int, optional
    reg : float, optional
    reg_bias : float, optional
    biases : bool, optional
    count_scaled : bool, optional
    max_iter : int, optional
    tol : float, optional
    init_scale : float, optional
        The shared solver options (:class:`lsqmf.solvers.SolverOptions`). None (the
        default) takes the solver's by-name default from
        :data:`lsqmf.solvers.SOLVER_DEFAULTS` (e.g. ``rank=20``, ``reg=0.15``, biases and
        count-scaled regularization; ``rank=10`` for ``'bmf'``); the resolved values are in
        :attr:`solver_params_` after fit.
    solver_options : dict, optional
        Every other option of the solver, by its name in the registry: the solver's own
        options (``{'learning_rate': 0.02}`` for ``'sgd'``, ``{'burn_in': 20}`` for
        ``'bmf'``, ``{'method': 'lm'}`` or any :func:`lsqmf.solve` option for ``'lsq'``) and
        the shared ones without a parameter here (``max_time``, ``backend``, ``verbose``,
        ``validation``, ...). It must not repeat a parameter above, nor hold
        ``random_state`` (the parameter) or ``weights`` (``sample_weight`` of :meth:`fit`).
        It is one parameter for :func:`~sklearn.base.clone` and
        :class:`~sklearn.model_selection.GridSearchCV`: search it as a list of dicts
        (``{'solver_options': [{'burn_in': 10}, {'burn_in': 20}]}``), not with ``__``.
    users, items : array_like, optional
        The id universes (as :class:`~sklearn.preprocessing.OneHotEncoder`'s
        ``categories``): row ``u`` of the model is ``users[u]``. Default: the sorted distinct
        ids of the training pairs. Give the ids of all the data to fit every fold of a split
        with the same shape and indices as :func:`lsqmf.evaluate.search.kfold`'s folds (then
        the results equal :func:`lsqmf.evaluate.search.cross_validate`'s); ids of the training
        pairs outside a given universe are an error.
    cold_start : {'bias', 'nan', 'raise'}, default='bias'
        What :meth:`predict` gives a pair whose user or item has no fitted factor (unknown
        id, or no training rating): the bias model (``'bias'``: the global mean plus the known
        bias; the training mean without biases), NaN, or an error; see
        :mod:`lsqmf.model.result`.
    clip : 'auto', (low, high) or None, default='auto'
        Clip predictions to the training ratings' range (``'auto'``), to a given range, or not.
    random_state : int, numpy.random.Generator, numpy.random.RandomState or None
        Seeds the solver's start (and its sampling or shuffles): the same seed gives the same
        model. A ``RandomState`` gives an int seed drawn from it.

    Attributes
    ----------
    model_ : FitResult
        The fitted model (``P`` of shape ``(n_users, rank)``, ``Q`` of shape
        ``(rank, n_items)``, biases, status, history).
    solver_ : str
        The registry name of the solver that ran.
    solver_params_ : dict
        Every keyword the solver received (``rank`` included): registry defaults plus what
        was given.
    users_, items_ : ndarray
        The id universes: the model's row ``u`` is user ``users_[u]``.
    clip_ : (float, float) or None
        The clipping range :meth:`predict` applies.
    n_iter_ : int
        Iterations (sweeps, epochs; residual evaluations for ``'lsq'``) the solver ran.
    n_features_in_ : int
        Always 2.
    feature_names_in_ : ndarray of str
        The two column names, when ``X`` was a DataFrame.

    See Also
    --------
    lsqmf.evaluate.search.cross_validate : the same fits over k folds, as a table.
    lsqmf.estimators.RatingsKFold : lsqmf's folds as a scikit-learn splitter.

    Notes
    -----
    :meth:`score` is scikit-learn's :meth:`~sklearn.base.RegressorMixin.score`, the
    coefficient of determination :math:`R^2` of the predictions (cold-start pairs
    included), as for every scikit-learn regressor. lsqmf's own model selection ranks by
    RMSE: pass ``scoring='neg_root_mean_squared_error'`` to
    :class:`~sklearn.model_selection.GridSearchCV` or
    :func:`~sklearn.model_selection.cross_val_score` to select as
    :func:`lsqmf.evaluate.search.grid_search` does (on one test set R² and RMSE rank models
    alike; their means over folds can differ).

    ``sample_weight`` becomes the per-rating weights of the objective; a rating of weight 0
    is dropped before the ids are collected, so it is the same as leaving it out. A pair
    given twice is an error (aggregate duplicates first). ``ConvergenceWarning`` of a
    solver that ran out of iterations is issued as it is.

    Examples
    --------
    >>> import numpy as np
    >>> from lsqmf.estimators import RatingRegressor
    >>> X = [["ann", "a"], ["ann", "b"], ["bob", "b"], ["cy", "a"], ["cy", "c"], ["bob", "c"]]
    >>> y = [5.0, 3.0, 4.0, 1.0, 2.0, 4.5]
    >>> reg = RatingRegressor("als", rank=2, reg=0.1, random_state=0).fit(X, y)
    >>> reg.predict([["ann", "c"], ["dan", "a"]]).shape   # dan is new: the bias model
    (2,)
    >>> reg.solver_params_["count_scaled"], reg.model_.shape
    (True, (3, 3))
    """

    # duplicates: scikit-learn reads each estimator's params from its own __init__
    def __init__(
        self,
        solver: str = "bmf",
        *,
        rank: int | None = None,
        reg: float | None = None,
        reg_bias: float | None = None,
        biases: bool | None = None,
        count_scaled: bool | None = None,
        max_iter: int | None = None,
        tol: float | None = None,
        init_scale: float | None = None,
        solver_options: dict[str, Any] | None = None,
        users: Any = None,
        items: Any = None,
        cold_start: str = "bias",
        clip: Any = "auto",
        random_state: Any = None,
    ) -> None:
        self.solver = solver
        self.rank = rank
        self.reg = reg
        self.reg_bias = reg_bias
        self.biases = biases
        self.count_scaled = count_scaled
        self.max_iter = max_iter
        self.tol = tol
        self.init_scale = init_scale
        self.solver_options = solver_options
        self.users = users
        self.items = items
        self.cold_start = cold_start
        self.clip = clip
        self.random_state = random_state

    # ------------------------------------------------------------------ fit
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> RatingRegressor:
        """Fit the solver on the ratings ``y`` of the pairs ``X``.

        Parameters
        ----------
        X : array_like or DataFrame, shape (n_ratings, 2)
            (user id, item id) per rating; ids of any hashable type.
        y : array_like, shape (n_ratings,)
            The ratings (finite numbers).
        sample_weight : array_like, shape (n_ratings,), optional
            Non-negative weight of each rating in the objective.

        Returns
        -------
        self : RatingRegressor

        Raises
        ------
        ValueError
            For ``X`` without exactly two columns, missing ids, non-finite ratings,
            duplicate pairs, ids outside ``users``/``items``, or an invalid parameter (named).
        TypeError
            For unhashable ids or a parameter of the wrong type (named).
        """
        check_choice("cold_start", self.cold_start, COLD_START_POLICIES)
        keywords = solver_keywords(self, COMMON_OPTIONS)
        checked, y = validate_data(self, X, y, reset=True, dtype=None, y_numeric=True,
                                   multi_output=False)
        values = np.asarray(y, dtype=np.float64)
        weights = self._weights(sample_weight, len(values))
        users, items = self._id_columns(X, checked)
        if weights is not None:
            keep = weights > 0
            users, items, values, weights = users[keep], items[keep], values[keep], weights[keep]
        ratings = self._ratings(users, items, values, weights)
        self.clip_ = _clip_range(self.clip, ratings)
        name, fn, params = resolve_solver(self.solver, keywords)
        self.solver_params_ = dict(params)
        model = fn(ratings, params.pop("rank"), **params)
        if model.row_counts is None or model.col_counts is None:
            model = dataclasses.replace(model, row_counts=ratings.row_counts(),
                                        col_counts=ratings.col_counts())
        self.model_ = model
        self.solver_ = name
        self.users_ = ratings.row_ids
        self.items_ = ratings.col_ids
        self.n_iter_ = int(model.nfev)
        return self

    @staticmethod
    def _id_columns(X: Any, checked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The user and item id columns of ``X`` (``checked`` its validated array; the
        dtypes of a DataFrame's columns are kept)."""
        if checked.shape[1] != 2:
            raise ValueError(
                "`X` must have exactly 2 columns (user id, item id); got n_features = "
                f"{checked.shape[1]}."
            )
        if hasattr(X, "iloc") and getattr(X, "ndim", 0) == 2:  # a DataFrame
            columns = [X.iloc[:, j].to_numpy() for j in (0, 1)]
        else:
            columns = [checked[:, 0], checked[:, 1]]
        return (check_id_column(columns[0], "user"), check_id_column(columns[1], "item"))

    @staticmethod
    # duplicates: ratings._check_weights' checks, named `sample_weight` for sklearn
    def _weights(sample_weight: Any, n: int) -> np.ndarray | None:
        if sample_weight is None:
            return None
        try:
            w = np.asarray(sample_weight, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"`sample_weight` must be real numbers; got {describe(sample_weight)}."
            ) from err
        if w.shape != (n,):
            raise ValueError(
                f"`sample_weight` must have shape ({n},), one weight per rating; got shape "
                f"{w.shape}."
            )
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError("`sample_weight` must be finite and >= 0.")
        if not np.any(w > 0):
            raise ValueError("`sample_weight` must not all be zero: there is nothing to fit.")
        return w

    def _ratings(self, users: np.ndarray, items: np.ndarray, values: np.ndarray,
                 weights: np.ndarray | None) -> Ratings:
        import pandas as pd

        frame = pd.DataFrame({"user": users, "item": items, "rating": values})
        if weights is not None:
            frame["weight"] = weights
        return Ratings.from_frame(
            frame, weight=None if weights is None else "weight",
            row_ids=None if self.users is None else np.asarray(self.users),
            col_ids=None if self.items is None else np.asarray(self.items),
        )

    # ------------------------------------------------------------------ predict
    def predict(self, X: Any) -> np.ndarray:
        """Predicted ratings of the pairs ``X``; new users or items follow ``cold_start``.

        Parameters
        ----------
        X : array_like or DataFrame, shape (n_pairs, 2)

        Returns
        -------
        ndarray of float, shape (n_pairs,)
            The same numbers as :func:`lsqmf.evaluate.search.predict_pairs` gives for these
            pairs (the same cold-start rule and clipping).
        """
        check_is_fitted(self, "model_")
        users, items = self._id_columns(X, validate_data(self, X, reset=False, dtype=None))
        model = self.model_
        rows = lookup_ids(self.users_, users, model.shape[0])
        cols = lookup_ids(self.items_, items, model.shape[1])
        return model.predict(rows, cols, cold_start=self.cold_start, clip=self.clip_,
                             allow_unknown=True)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.regressor_tags.poor_score = True  # sklearn's generic data are not ratings
        return tags

    def _more_tags(self) -> dict[str, Any]:  # scikit-learn < 1.6
        return {"X_types": ["2darray", "string"], "poor_score": True}


def _clip_range(clip: Any, ratings: Ratings) -> tuple[float, float] | None:
    """``clip`` resolved on the training ratings by :mod:`lsqmf.evaluate.scoring`'s rule,
    refusing a pair that is not two numbers (with the same message) before it."""
    if isinstance(clip, tuple | list) and not all(
        isinstance(c, int | float | np.number) for c in clip
    ):
        raise ValueError(f"`clip` must be 'auto', None or (low, high); got {describe(clip)}.")
    return resolve_clip(clip, ratings)
