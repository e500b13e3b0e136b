r"""Block gradient descent: ``inner_steps`` exact-line-search gradient steps per block.

The parameters split into the user block :math:`(P, b)` and the item block :math:`(Q, c)`.
With one block fixed, the residual :math:`r(x)` of the ``'l2'`` objective is *affine* in the
other, so along the block gradient :math:`g` (the gradient with the other block's entries
zeroed) the cost is the exact quadratic

.. math::

    F(x - \alpha g) = F(x) - \alpha\,\|g\|^2 + \tfrac{\alpha^2}{2}\,\|J g\|^2,

minimized by :math:`\alpha^* = \|g\|^2 / \|J g\|^2` (``Jg`` is one matrix-free Jacobian product
in :math:`O(N k)`). Each iteration takes ``inner_steps`` such steps on the user block, then on
the item block; every step decreases :math:`F`. ``inner_steps=1`` is alternating steepest
descent; as ``inner_steps`` grows each block update tends to the exact ALS solve.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import numpy as np

from .._params import Param
from ..model.result import FitResult
from ._common import OPERATOR_KERNELS, SolverSpec, prepare, run_iterations

__all__ = ["SPEC", "als_gd"]


def als_gd(R: Any, rank: int | None = None, **options: Any) -> FitResult:
    r"""Fit the ``'l2'`` objective by alternating blocks of exact-line-search gradient steps.

    Parameters
    ----------
    R, rank
        As in :func:`lsqmf.solvers.als`.
    **options
        The shared options of :class:`lsqmf.solvers.SolverOptions` (``max_iter`` counts
        outer iterations, both blocks) and als_gd's own (defaults:
        ``lsqmf.solvers.SOLVER_SPECS['als_gd']``): ``inner_steps`` : int, gradient steps
        ``L >= 1`` per block and outer iteration.

    Returns
    -------
    FitResult
        ``solver='als_gd'``.

    Examples
    --------
    >>> import numpy as np
    >>> from lsqmf.solvers import als_gd
    >>> R = np.random.default_rng(0).random((6, 5))
    >>> fit = als_gd(R, 2, reg=0.01, max_iter=1000, tol=1e-4, random_state=0)
    >>> bool(np.all(np.diff(fit.history.cost) <= 1e-12))
    True
    """
    setup = prepare(SPEC, R, rank, options)
    inner_steps = setup.own["inner_steps"]  # checked by prepare
    problem = setup.problem
    n, m, k = problem.n_rows, problem.n_cols, problem.rank
    user_block = np.zeros(problem.n_params, dtype=bool)
    user_block[: n * k] = True
    if problem.biases:
        o = n * k + k * m
        user_block[o : o + n] = True
    blocks = (user_block, ~user_block)

    def step(x: np.ndarray, j: int) -> np.ndarray:
        for block in blocks:
            for _ in range(inner_steps):
                g = problem.gradient(x, backend=setup.backend)
                g[~block] = 0.0
                gg = float(g @ g)
                if gg == 0.0:
                    break
                Jg = problem.operator(x, backend=setup.backend).matvec(g)
                curvature = float(Jg @ Jg)
                if curvature <= 0.0:
                    break
                x = x - (gg / curvature) * g
        return x

    return run_iterations(
        setup, step,
        hint="increase `reg`, or check the ratings for extreme values.",
        options={"inner_steps": inner_steps},
    )


#: The solver's registry entry (collected by :data:`lsqmf.solvers.SOLVER_SPECS`).
SPEC = SolverSpec(
    "als_gd", als_gd, MappingProxyType({"max_iter": 40, "tol": 1e-4}),
    "alternating blocks of exact-line-search gradient steps",
    params=(Param("inner_steps", "int", 2, low=1, help="gradient steps per block"),),
    kernels=("als_rows", *OPERATOR_KERNELS, "residual_sse"),
)
