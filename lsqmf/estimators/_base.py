"""What both estimators share: sklearn version bridges, the solver options, seeds, ids.

Everything that differs between scikit-learn versions (``validate_data`` is a function from
1.6 on and a method before; ``ensure_all_finite`` was ``force_all_finite``) is bridged here
and nowhere else, so the estimator modules read the same on every supported version.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np
import sklearn

from .._validation import describe

__all__ = [
    "COMMON_OPTIONS",
    "FINITE_KEYWORD",
    "check_id_column",
    "sklearn_seed",
    "solver_keywords",
    "validate_data",
]

_SKLEARN_VERSION = tuple(int(p) for p in sklearn.__version__.split(".")[:2] if p.isdigit())

#: The keyword of ``check_array`` that rejects NaN and infinity (renamed in scikit-learn 1.6).
FINITE_KEYWORD = "ensure_all_finite" if _SKLEARN_VERSION >= (1, 6) else "force_all_finite"

#: Solver options both estimators take as constructor parameters (None: the registry's
#: by-name default of the chosen solver, :data:`lsqmf.solvers.SOLVER_DEFAULTS`).
COMMON_OPTIONS = ("rank", "reg", "reg_bias", "biases", "count_scaled", "max_iter", "tol",
                  "init_scale")

#: Options an estimator sets itself; ``solver_options`` must not hold them.
_RESERVED = {
    "random_state": "set the estimator's `random_state` instead",
    "weights": "pass `sample_weight` to fit instead",
}


def validate_data(estimator: Any, X: Any, y: Any = "no_validation", **params: Any) -> Any:
    """:func:`sklearn.utils.validation.validate_data` (1.6+) or the method of older versions."""
    try:
        from sklearn.utils.validation import validate_data as validate
    except ImportError:  # scikit-learn < 1.6
        return estimator._validate_data(X, y, **params)
    return validate(estimator, X, y, **params)


def sklearn_seed(random_state: Any) -> int | np.random.Generator | None:
    """``random_state`` as lsqmf takes it: an int, a Generator or None.

    A :class:`numpy.random.RandomState` (what scikit-learn's tools may pass) gives an int
    seed drawn from it, as scikit-learn's own estimators draw from one.

    Raises
    ------
    TypeError
        For anything else (a bool, a float, a string).
    ValueError
        For a negative int.
    """
    if random_state is None or isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(np.iinfo(np.int32).max))
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if int(random_state) < 0:
            raise ValueError(f"`random_state` must be a non-negative int; got {random_state}.")
        return int(random_state)
    raise TypeError(
        "`random_state` must be None, an int, a numpy.random.Generator or a "
        f"numpy.random.RandomState; got {describe(random_state)}."
    )


def solver_keywords(estimator: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """The solver keywords an estimator gives: its common options that are not None, then
    its ``solver_options``, then its seed.

    Raises
    ------
    TypeError
        If ``solver_options`` is not a dict with string keys.
    ValueError
        If ``solver_options`` repeats a constructor parameter or sets ``random_state`` or
        ``weights``.
    """
    options = estimator.solver_options
    if options is None:
        options = {}
    if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
        raise TypeError(
            f"`solver_options` must be a dict of option name -> value, or None; got "
            f"{describe(options)}."
        )
    for key in options:
        if key in names or key in _RESERVED:
            advice = _RESERVED.get(key, f"set `{key}=` on the estimator instead")
            raise ValueError(
                f"`solver_options` must not hold {key!r}: {advice}; got "
                f"solver_options={dict(options)!r}."
            )
    given = {name: getattr(estimator, name) for name in names}
    return {**{k: v for k, v in given.items() if v is not None}, **options,
            "random_state": sklearn_seed(estimator.random_state)}


def check_id_column(values: np.ndarray, what: str) -> np.ndarray:
    """One column of ids, checked: no missing id, every id hashable.

    Raises
    ------
    ValueError
        For a missing id (NaN or None), naming the row.
    TypeError
        For an id that cannot be a dictionary key (a list, a dict).
    """
    import pandas as pd

    missing = np.asarray(pd.isna(values), dtype=bool)
    if missing.any():
        t = int(np.flatnonzero(missing)[0])
        raise ValueError(
            f"`X` has {int(missing.sum())} missing (NaN or None) {what} id(s), first at "
            f"row {t}; every pair needs both ids."
        )
    if values.dtype == object:
        for t, v in enumerate(values.tolist()):
            try:
                hash(v)
            except TypeError:
                raise TypeError(
                    f"every {what} id in `X` must be hashable: the argument must be a "
                    f"string or a number (or another hashable value); got {describe(v)} at "
                    f"row {t}."
                ) from None
    return values
