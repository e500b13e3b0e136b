"""scikit-learn estimators over lsqmf's solvers: a rating regressor and a matrix imputer.

A layer above :mod:`lsqmf.evaluate` and :mod:`lsqmf.solvers`: the estimators resolve solver
names in the registry (:func:`lsqmf.solvers.resolve_solver`, the one lookup), fit through the
same functions as :func:`lsqmf.evaluate.search.cross_validate` and predict with the model's
cold-start rule, so a seed and a fold give the same numbers here as there. Nothing in lsqmf
imports this package, and it is the only one that imports scikit-learn (the optional extra
``lsqmf[sklearn]``): ``import lsqmf`` never does.

=============================== ==========================================================
:class:`RatingRegressor`        ``X`` = (user id, item id) pairs, ``y`` = ratings;
                                ``predict`` for known and new users and items
:class:`MatrixCompletionImputer` ``X`` with NaN (or a sparse ``X``: stored = observed) ->
                                 completed ``X``; new rows by fold-in; VarPro and multistart
:class:`RatingsKFold`           the folds of :func:`lsqmf.evaluate.search.kfold` as a
                                scikit-learn splitter
=============================== ==========================================================

Every solver option is a constructor parameter: the shared ones by name (``rank``, ``reg``,
``reg_bias``, ``biases``, ``count_scaled``, ``max_iter``, ``tol``, ``init_scale``; None takes
the registry's by-name default, :data:`lsqmf.solvers.SOLVER_DEFAULTS`), the solver's own in
the dict ``solver_options`` (one parameter for ``get_params``/``set_params``/``clone``), the
seed as ``random_state``.
"""

from ._imputer import MatrixCompletionImputer
from ._regressor import RatingRegressor
from ._split import RatingsKFold

__all__ = ["MatrixCompletionImputer", "RatingRegressor", "RatingsKFold"]
