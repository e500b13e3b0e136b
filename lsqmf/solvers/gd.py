r"""Full-batch gradient descent on the ``'l2'`` objective (fixed step or Adam).

The gradient is :math:`\nabla F(x) = J(x)^\top r(x)` from :meth:`lsqmf.Problem.gradient`,
computed in :math:`O(N k)` without forming ``J``. With ``optimizer='fixed'`` the update is
:math:`x \leftarrow x - \eta \nabla F(x)`; it diverges when :math:`\eta` exceeds
:math:`2/L` (``L`` the local curvature, which grows with the number of ratings per user and
item), so ``learning_rate`` must be scaled to the data. ``optimizer='adam'`` (Kingma & Ba)
rescales every coordinate by a running estimate of its gradient's magnitude and is far less
sensitive to the scale of the problem:

.. math::

    m \leftarrow \beta_1 m + (1-\beta_1) g,\quad v \leftarrow \beta_2 v + (1-\beta_2) g^2,\quad
    x \leftarrow x - \eta\,\frac{m/(1-\beta_1^j)}{\sqrt{v/(1-\beta_2^j)} + \epsilon}.

Adam's cost history is not monotone; the relative-change rule ``tol`` still applies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._validation import check_choice, check_float
from ..result import FitResult, IterationInfo
from ._common import prepare, run_iterations

__all__ = ["OPTIMIZERS", "gd"]

OPTIMIZERS = ("adam", "fixed")


def gd(
    R: Any,
    rank: int,
    *,
    reg: float = 0.1,
    reg_bias: float | None = None,
    count_scaled: bool = False,
    biases: bool = False,
    weights: Any = None,
    random_state: int | np.random.Generator | None = None,
    max_iter: int = 500,
    tol: float = 1e-6,
    max_time: float | None = None,
    callback: Callable[[IterationInfo], Any] | None = None,
    P0: Any = None,
    Q0: Any = None,
    init_scale: float = 0.1,
    optimizer: str = "adam",
    learning_rate: float = 0.01,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
) -> FitResult:
    r"""Fit the ``'l2'`` objective by full-batch gradient descent.

    Parameters
    ----------
    R, rank, reg, reg_bias, count_scaled, biases, weights, random_state, max_iter, tol,
    max_time, callback, P0, Q0, init_scale
        As in :func:`lsqmf.solvers.als`; ``max_iter`` counts gradient steps.
    optimizer : {'adam', 'fixed'}, default='adam'
    learning_rate : float, default=0.01
        Step size :math:`\eta` (Adam: the largest per-coordinate step, roughly).
    beta1, beta2, epsilon : float, default=0.9, 0.999, 1e-8
        Adam's moment decay rates and denominator guard.

    Returns
    -------
    FitResult
        ``solver='gd'``.

    Raises
    ------
    NonFiniteResidualError
        When the iterates diverge (learning rate too large for ``optimizer='fixed'``).

    Examples
    --------
    >>> import numpy as np
    >>> from lsqmf.solvers import gd
    >>> R = np.random.default_rng(0).random((6, 5))
    >>> fit = gd(R, 2, reg=0.01, max_iter=2000, tol=1e-4, learning_rate=0.05, random_state=0)
    >>> fit.status, bool(fit.history.cost[-1] < fit.history.cost[0])
    (2, True)
    """
    check_choice("optimizer", optimizer, OPTIMIZERS)
    lr = check_float("learning_rate", learning_rate, min_value=0.0, min_inclusive=False)
    b1 = check_float("beta1", beta1, min_value=0.0, max_value=1.0, max_inclusive=False)
    b2 = check_float("beta2", beta2, min_value=0.0, max_value=1.0, max_inclusive=False)
    eps = check_float("epsilon", epsilon, min_value=0.0, min_inclusive=False)
    assert lr is not None and b1 is not None and b2 is not None and eps is not None
    setup = prepare(
        "gd", R, rank, reg=reg, reg_bias=reg_bias, count_scaled=count_scaled, biases=biases,
        weights=weights, random_state=random_state, max_iter=max_iter, tol=tol,
        max_time=max_time, callback=callback, P0=P0, Q0=Q0, init_scale=init_scale,
    )
    problem = setup.problem
    m = np.zeros(problem.n_params)
    v = np.zeros(problem.n_params)

    def step(x: np.ndarray, j: int) -> np.ndarray:
        g = problem.gradient(x)
        if optimizer == "fixed":
            return x - lr * g
        m[:] = b1 * m + (1.0 - b1) * g
        v[:] = b2 * v + (1.0 - b2) * g * g
        m_hat = m / (1.0 - b1**j)
        v_hat = v / (1.0 - b2**j)
        return x - lr * m_hat / (np.sqrt(v_hat) + eps)

    hint = (
        "lower `learning_rate`"
        + (" (or use optimizer='adam')" if optimizer == "fixed" else "")
        + " or increase `reg`."
    )
    return run_iterations(
        setup, step, hint=hint,
        options={"optimizer": optimizer, "learning_rate": lr, "beta1": b1, "beta2": b2,
                 "epsilon": eps},
    )
