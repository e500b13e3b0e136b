"""MatrixCompletionImputer: fill the missing entries of a matrix from a low-rank fit."""

from __future__ import annotations

import dataclasses
import numbers
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .._validation import check_choice, check_int, describe
from ..data.ratings import Ratings
from ..model.result import FitResult
from ..solvers import resolve_solver
from ._base import COMMON_OPTIONS, FINITE_KEYWORD, solver_keywords, validate_data

if TYPE_CHECKING:
    from ..nls.multistart import MultistartResult

__all__ = ["MatrixCompletionImputer"]

#: lsqmf.solve's names of the options the 'lsq' adapter translates (see lsqmf.solvers.lsq).
_LSQ_TRANSLATED = {"max_iter": "max_nfev", "tol": "ftol"}


class MatrixCompletionImputer(TransformerMixin, BaseEstimator):
    r"""Impute missing entries with a low-rank matrix factorization.

    :meth:`fit` fits ``X ≈ P Q`` (plus biases) on the observed entries of ``X`` (samples are
    rows, features columns) with a solver of :data:`lsqmf.solvers.SOLVER_SPECS`, resolved
    by name with :func:`lsqmf.solvers.resolve_solver`; :meth:`transform` returns ``X`` with
    its observed entries kept and its missing ones predicted. New rows get their factors by
    fold-in (:func:`lsqmf.fold_in`): the fitted column factors ``Q`` (and column biases)
    stay fixed and each row's factor solves the model's own objective restricted to that
    row, so transforming one row never depends on the others.

    Parameters
    ----------
    solver : str, default='als'
        A name in :data:`lsqmf.solvers.SOLVER_SPECS`. ``'als'`` and ``'lsq'`` minimize the
        ``'l2'`` objective that fold-in solves per row, so a training row folded in gets its
        fitted factor back at convergence.
    rank, reg, reg_bias, biases, count_scaled, max_iter, tol, init_scale : optional
        The shared solver options (:class:`lsqmf.solvers.SolverOptions`); None takes the
        solver's by-name default (:data:`lsqmf.solvers.SOLVER_DEFAULTS`: rank 20, biases,
        ``reg=0.15`` count-scaled). For a measurement matrix, set ``biases=False``,
        ``count_scaled=False`` and a small ``reg`` (0 fits the observed entries only).
    eliminate : {None, 'P', 'Q'}, default=None
        Variable projection (:mod:`lsqmf.nls.varpro`): solve this factor in closed form and
        optimize only the other. Needs ``solver='lsq'``. The usual choice for measurement
        matrices (structure from motion), whose banded patterns trap joint fits in local
        minima.
    max_starts : int, optional
        Fit with :func:`lsqmf.multistart`: seeded restarts of :func:`lsqmf.solve` until the
        best cost has been seen ``until_seen`` times, at most ``max_starts``; the best start
        is the model. Needs ``solver='lsq'`` (whose options translate as the registry's
        adapter does: ``max_iter`` -> ``max_nfev``, ``tol`` -> ``ftol``,
        ``formulation='l2'``). None (default): one run.
    until_seen : int, default=2
        With ``max_starts``: stop once the best cost was reached this many times.
    solver_options : dict, optional
        Every other option of the solver by its registry name (``{'learning_rate': ...}``,
        ``{'xtol': 1e-10}`` or ``{'method': 'lm'}`` for ``'lsq'``, ``max_time``, ...); it
        must not repeat a parameter above nor hold ``random_state`` or ``weights``.
    missing_values : float, default=np.nan
        The value that marks a missing entry of a dense ``X`` (NaN always does;
        ``missing_values=0`` is lsqmf's seed convention). In a sparse ``X`` the stored entries
        are the observed ones (the sparsity pattern is the explicit mask; a stored NaN is
        missing too).
    random_state : int, numpy.random.Generator, numpy.random.RandomState or None
        Seeds the start (with ``max_starts``: the sequence of starts).

    Attributes
    ----------
    model_ : FitResult
        The fitted model (``P`` of shape ``(n_samples_fit, rank)``, ``Q`` of shape
        ``(rank, n_features)``).
    solver_ : str
    solver_params_ : dict
        Every keyword the solver received (``rank`` included).
    multistart_ : MultistartResult or None
        The record of every start, with ``max_starts``.
    n_iter_ : int
        Iterations (or residual evaluations) of the fit that became the model.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        When ``X`` was a DataFrame.

    Notes
    -----
    :meth:`fit_transform` completes the training rows with their fitted factors, while
    :meth:`transform` folds each row in; the two agree where the fit converged (fold-in of a
    training row reproduces its factor, see :mod:`lsqmf.model.foldin`). A row without an
    observed entry is cold-start: it gets the bias model (column means with biases, the
    training mean without). The output is always a dense float64 array.

    Examples
    --------
    >>> import numpy as np
    >>> from lsqmf.estimators import MatrixCompletionImputer
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(30, 2)) @ rng.normal(size=(2, 6))
    >>> X_missing = np.where(rng.random(X.shape) < 0.2, np.nan, X)
    >>> imputer = MatrixCompletionImputer(rank=2, reg=0.01, biases=False, count_scaled=False,
    ...                                   max_iter=5000, tol=1e-6, random_state=0)
    >>> X_filled = imputer.fit_transform(X_missing)
    >>> bool(np.abs(X_filled - X).max() < 0.05)
    True
    >>> imputer.transform(X_missing[:2]).shape   # new rows: folded in
    (2, 6)
    """

    # duplicates: scikit-learn reads each estimator's params from its own __init__
    def __init__(
        self,
        solver: str = "als",
        *,
        rank: int | None = None,
        reg: float | None = None,
        reg_bias: float | None = None,
        biases: bool | None = None,
        count_scaled: bool | None = None,
        max_iter: int | None = None,
        tol: float | None = None,
        init_scale: float | None = None,
        eliminate: str | None = None,
        max_starts: int | None = None,
        until_seen: int = 2,
        solver_options: dict[str, Any] | None = None,
        missing_values: float = np.nan,
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
        self.eliminate = eliminate
        self.max_starts = max_starts
        self.until_seen = until_seen
        self.solver_options = solver_options
        self.missing_values = missing_values
        self.random_state = random_state

    # ------------------------------------------------------------------ fit
    def fit(self, X: Any, y: Any = None) -> MatrixCompletionImputer:
        """Fit the low-rank model on the observed entries of ``X``.

        Parameters
        ----------
        X : array_like, DataFrame or scipy.sparse, shape (n_samples, n_features)
            NaN (or ``missing_values``) marks a missing entry of a dense ``X``; in a sparse
            ``X`` the stored entries are observed.
        y : None
            Ignored.

        Returns
        -------
        self : MatrixCompletionImputer

        Raises
        ------
        ValueError
            If ``X`` has no observed entry, holds infinity, or a parameter is invalid
            (named); ``eliminate``/``max_starts`` with a solver other than ``'lsq'``.
        TypeError
            For a parameter of the wrong type (named).
        """
        keywords = self._keywords()
        ratings = self._ratings(X, reset=True)
        if ratings is None:
            raise ValueError("`X` has no observed entry (every entry is missing): nothing to "
                             "fit.")
        if self.max_starts is None:
            name, fn, params = resolve_solver(self.solver, keywords)
            self.solver_params_ = dict(params)
            model = fn(ratings, params.pop("rank"), **params)
            self.multistart_: MultistartResult | None = None
        else:
            name, model = self._multistart(ratings, keywords)
        self.model_ = _with_counts(model, ratings)
        self.solver_ = name
        self.n_iter_ = int(model.nfev)
        return self

    def fit_transform(self, X: Any, y: Any = None, **fit_params: Any) -> np.ndarray:
        """Fit, then return ``X`` completed with the fitted factors of its rows.

        Returns
        -------
        ndarray of float, shape (n_samples, n_features)
        """
        self.fit(X, y, **fit_params)
        ratings = self._ratings(X, reset=False)
        return self._complete(self.model_, ratings, np.arange(self.model_.shape[0]))

    def _keywords(self) -> dict[str, Any]:
        """The checked estimator options and the solver keywords they give."""
        check_choice("eliminate", self.eliminate, (None, "P", "Q"))
        if self.max_starts is not None:
            check_int("max_starts", self.max_starts, min_value=1)
            check_int("until_seen", self.until_seen, min_value=1)
        keywords = solver_keywords(self, COMMON_OPTIONS)
        for name in ("eliminate", "max_starts"):
            value = getattr(self, name)
            if value is not None and self.solver != "lsq":
                raise ValueError(
                    f"`{name}` needs solver='lsq' (lsqmf.solve); got {name}={value!r} with "
                    f"solver={self.solver!r}."
                )
        if self.eliminate is not None:
            keywords["eliminate"] = self.eliminate
        return keywords

    def _multistart(self, ratings: Ratings, keywords: dict[str, Any]) -> tuple[str, FitResult]:
        """:func:`lsqmf.multistart` with the 'lsq' adapter's translation of the options."""
        from ..nls.multistart import multistart

        name, _, params = resolve_solver("lsq", keywords)
        self.solver_params_ = dict(params)
        rank = params.pop("rank")
        seed = params.pop("random_state")
        options = {_LSQ_TRANSLATED.get(k, k): v for k, v in params.items()}
        if options.get("method") == "lm":
            options["tr_solver"] = None
        result = multistart(ratings, rank, formulation="l2", max_starts=int(self.max_starts or 1),
                            until_seen=self.until_seen, random_state=seed, **options)
        self.multistart_ = result
        model = result.best
        if model.train_mean is None:
            model = dataclasses.replace(model, train_mean=ratings.mean())
        return name, model

    def _ratings(self, X: Any, *, reset: bool) -> Ratings | None:
        """The observed entries of ``X`` (its shape kept, all-missing rows included); None
        when nothing is observed."""
        missing = self.missing_values
        if isinstance(missing, bool) or not isinstance(missing, numbers.Real):
            raise TypeError(f"`missing_values` must be a number (or NaN); got {describe(missing)}.")
        X = validate_data(self, X, reset=reset, accept_sparse=("csr", "csc", "coo"),
                          dtype=np.float64, **{FINITE_KEYWORD: "allow-nan"})
        if sp.issparse(X):
            coo = sp.coo_matrix(X)
            keep = ~np.isnan(coo.data)
            if not np.isnan(missing):
                keep &= coo.data != missing
            rows, cols, values = coo.row[keep], coo.col[keep], coo.data[keep]
            return Ratings(rows, cols, values, X.shape) if len(values) else None
        observed = ~np.isnan(X)
        if not np.isnan(missing):
            observed &= X != missing
        return Ratings.from_dense(X, mask=observed) if observed.any() else None

    # ------------------------------------------------------------------ transform
    def transform(self, X: Any) -> np.ndarray:
        """``X`` with its missing entries predicted; each row folded into the model.

        Parameters
        ----------
        X : array_like, DataFrame or scipy.sparse, shape (n_samples, n_features)
            New rows (or the training rows) over the fitted features.

        Returns
        -------
        ndarray of float, shape (n_samples, n_features)
            Observed entries as given, missing ones from the row's folded-in factor; a row
            with no observed entry gets the bias model.
        """
        check_is_fitted(self, "model_")
        ratings = self._ratings(X, reset=False)
        if ratings is None:  # every row is cold-start: the bias model
            return self._complete(self.model_, None, np.full(_n_rows(X), -1))
        new = self.model_.fold_in(ratings, unknown="ignore")
        return self._complete(new, ratings, np.arange(ratings.shape[0]))

    def _complete(self, model: FitResult, ratings: Ratings | None,
                  rows: np.ndarray) -> np.ndarray:
        """The model's prediction of every entry of ``rows``, observed entries kept."""
        n_cols = self.model_.shape[1]
        r = np.repeat(rows, n_cols)
        c = np.tile(np.arange(n_cols), len(rows))
        # the columns are features, not ratings: no clipping to the training range
        out = model.predict(r, c, allow_unknown=True, clip=None).reshape(len(rows), n_cols)
        if ratings is not None:
            out[ratings.rows, ratings.cols] = ratings.values
        return out

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.sparse = True
        return tags

    def _more_tags(self) -> dict[str, Any]:  # scikit-learn < 1.6
        return {"allow_nan": True, "X_types": ["2darray", "sparse"]}


def _with_counts(model: FitResult, ratings: Ratings) -> FitResult:
    """``model`` with its training counts (what cold start reads), recorded if missing."""
    if model.row_counts is None or model.col_counts is None:
        model = dataclasses.replace(model, row_counts=ratings.row_counts(),
                                    col_counts=ratings.col_counts())
    return model


def _n_rows(X: Any) -> int:
    return int(X.shape[0]) if hasattr(X, "shape") else len(X)
