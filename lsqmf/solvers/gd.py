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

from types import MappingProxyType
from typing import Any

import numpy as np

from .._params import Param
from ..model.result import FitResult
from ._common import OPERATOR_KERNELS, SolverSpec, prepare, run_iterations

__all__ = [
    "OPTIMIZERS",
    "SPEC",
    "gd",
]

OPTIMIZERS = ("adam", "fixed")


# duplicates: each solver's numpydoc and doctest example share one shape
def gd(R: Any, rank: int | None = None, **options: Any) -> FitResult:
    r"""Fit the ``'l2'`` objective by full-batch gradient descent.

    Parameters
    ----------
    R, rank
        As in :func:`lsqmf.solvers.als`.
    **options
        The shared options of :class:`lsqmf.solvers.SolverOptions` (``max_iter`` counts
        gradient steps) and gd's own (defaults: ``lsqmf.solvers.SOLVER_SPECS['gd']``):

        - ``optimizer`` : {'adam', 'fixed'}
        - ``learning_rate`` : float, step size :math:`\eta` (Adam: the largest
          per-coordinate step, roughly)
        - ``beta1``, ``beta2``, ``epsilon`` : float, Adam's moment decay rates and
          denominator guard

    Returns
    -------
    FitResult
        ``solver='gd'``.

    Raises
    ------
    NonFiniteResidualError
        When the iterates diverge (learning rate too large), with the best finite iterate
        in ``partial_result``.

    Examples
    --------
    >>> import numpy as np
    >>> from lsqmf.solvers import gd
    >>> R = np.random.default_rng(0).random((6, 5))
    >>> fit = gd(R, 2, reg=0.01, max_iter=2000, tol=1e-4, learning_rate=0.05, random_state=0)
    >>> fit.status, bool(fit.history.cost[-1] < fit.history.cost[0])
    (2, True)
    """
    setup = prepare(SPEC, R, rank, options)
    own = setup.own  # checked against SPEC.params by prepare
    optimizer, lr = own["optimizer"], own["learning_rate"]
    b1, b2, eps = own["beta1"], own["beta2"], own["epsilon"]
    problem = setup.problem
    m = np.zeros(problem.n_params)
    v = np.zeros(problem.n_params)

    def step(x: np.ndarray, j: int) -> np.ndarray:
        g = problem.gradient(x, backend=setup.backend)
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


#: The solver's registry entry (collected by :data:`lsqmf.solvers.SOLVER_SPECS`).
SPEC = SolverSpec(
    "gd", gd, MappingProxyType({"max_iter": 300, "tol": 1e-5}),
    "full-batch gradient descent (Adam or fixed step)",
    params=(
        Param("optimizer", "choice", "adam", choices=OPTIMIZERS, help="update rule"),
        Param("learning_rate", "float", 0.01, low=0.0, low_open=True,
              help="step size (Adam: roughly the largest per-coordinate step)"),
        Param("beta1", "float", 0.9, low=0.0, high=1.0, high_open=True,
              help="Adam's first-moment decay"),
        Param("beta2", "float", 0.999, low=0.0, high=1.0, high_open=True,
              help="Adam's second-moment decay"),
        Param("epsilon", "float", 1e-8, low=0.0, low_open=True,
              help="Adam's denominator guard"),
    ),
    kernels=(*OPERATOR_KERNELS, "residual_sse"),
)
