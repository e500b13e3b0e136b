"""Compare the analytic Jacobian with central finite differences.

For a column ``j`` of the Jacobian, the central difference
``(r(x + h e_j) - r(x - h e_j)) / (2 h)`` with ``h = eps**(1/3) * max(1, |x_j|)`` has truncation
error ``O(h^2 r''')``; the residual is bilinear in the factors, so along a single coordinate it
is affine and the difference is exact up to rounding. Large problems are checked on a seeded
random subset of columns, which keeps the cost at ``O(n_columns * nnz * rank)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validation import check_int, check_random_state
from .problem import Problem

__all__ = ["JacobianCheck", "JacobianCheckError", "check_jacobian"]


# duplicates: error class + numpydoc'd frozen result record (boilerplate)
class JacobianCheckError(ValueError):
    """The analytic Jacobian disagrees with finite differences beyond the tolerance."""


@dataclass(frozen=True)
class JacobianCheck:
    """Outcome of :func:`check_jacobian`.

    Attributes
    ----------
    max_abs_error : float
        Largest ``|J_analytic - J_fd|`` over the checked columns.
    max_rel_error : float
        ``max_abs_error / max(1, max |J_fd|)`` over the checked columns.
    worst_column : int
        Column of ``x`` where the largest error occurs.
    columns : ndarray of int
        The columns that were checked.
    """

    max_abs_error: float
    max_rel_error: float
    worst_column: int
    columns: np.ndarray


def check_jacobian(
    problem: Problem,
    x: Any,
    *,
    n_columns: int | None = 200,
    random_state: int | np.random.Generator | None = 0,
) -> JacobianCheck:
    """Check :meth:`Problem.jacobian` against central finite differences at ``x``.

    Parameters
    ----------
    problem : Problem
    x : array_like, shape (n_params,)
    n_columns : int or None, default=200
        Check this many columns chosen at random (all columns if None or if ``x`` is shorter).
    random_state : int, Generator or None, default=0
        Chooses the columns.

    Returns
    -------
    JacobianCheck

    Examples
    --------
    >>> import numpy as np
    >>> from lsqmf import as_ratings, build_problem, check_jacobian
    >>> R = np.array([[5.0, 3.0, np.nan], [4.0, np.nan, 1.0]])
    >>> problem = build_problem(as_ratings(R), 2, formulation="l2", reg=0.1)
    >>> x = np.random.default_rng(0).random(problem.n_params)
    >>> check_jacobian(problem, x).max_rel_error < 1e-8
    True
    """
    x = np.asarray(x, dtype=np.float64)
    if x.shape != (problem.n_params,):
        raise ValueError(f"`x` must have shape ({problem.n_params},); got {x.shape}.")
    n = problem.n_params
    if n_columns is None or n_columns >= n:
        columns = np.arange(n)
    else:
        n_columns = check_int("n_columns", n_columns, min_value=1)
        rng = check_random_state(random_state)
        columns = np.sort(rng.choice(n, size=n_columns, replace=False))
    J = problem.jacobian(x).tocsc()
    eps = np.finfo(np.float64).eps
    worst_abs, worst_scale, worst_col = 0.0, 1.0, int(columns[0])
    for j in columns:
        h = eps ** (1 / 3) * max(1.0, abs(x[j]))
        xp, xm = x.copy(), x.copy()
        xp[j] += h
        xm[j] -= h
        h_eff = xp[j] - xm[j]  # the step actually taken, after rounding
        fd = (problem.residual(xp) - problem.residual(xm)) / h_eff
        col = J[:, [j]].toarray().ravel()
        err = float(np.max(np.abs(col - fd)))
        if err > worst_abs:
            worst_abs, worst_col = err, int(j)
        worst_scale = max(worst_scale, float(np.max(np.abs(fd))))
    return JacobianCheck(
        max_abs_error=worst_abs,
        max_rel_error=worst_abs / worst_scale,
        worst_column=worst_col,
        columns=columns,
    )
