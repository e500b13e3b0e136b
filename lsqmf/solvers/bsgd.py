r"""Biased SGD with a decaying learning rate (the approach of LIBMF and cornac), compiled.

The ``'l2'`` objective (see :mod:`lsqmf.solvers._common`) is a sum over the observed entries
once each user's and item's regularization is shared among its ratings (as in
:mod:`lsqmf.solvers.sgd`): visiting entry :math:`t = (u, i)` with error
:math:`e_t = v_t - \mu - b_u - c_i - p_u^\top q_i` takes the step

.. math::

    b_u \mathrel{+}= \eta^b_j(w_t e_t - \rho^b_u b_u),\quad
    c_i \mathrel{+}= \eta^b_j(w_t e_t - \rho^b_i c_i),\quad
    p_u \mathrel{+}= \eta_j(w_t e_t q_i - \rho_u p_u),\quad
    q_i \mathrel{+}= \eta_j(w_t e_t p_u - \rho_i q_i),

with :math:`\rho_u = \lambda s_u / n_u` (:math:`\lambda` itself when ``count_scaled``: Funk's
and cornac's rule) and :math:`\rho^b_u = \lambda_b s_u / n_u`; ``reg_bias`` separates the
bias regularization from the factors'. Epoch :math:`j` visits every entry once in an order
drawn with the run's seeded Generator, serially (so the same seed gives the same numbers on
any machine), with the step schedule
:math:`\eta_j = \mathrm{learning\_rate}\cdot\mathrm{decay}^{j-1}` and
:math:`\eta^b_j = \mathrm{bias\_rate}\cdot\eta_j`. With ``decay < 1`` the steps are summable,
so the iterates settle and the relative cost change falls below ``tol``: the run converges
in the sense of the shared stopping rule rather than hovering at a constant-step noise level.

The kernel is ``bsgd_epoch`` of :mod:`lsqmf.kernels.solvers` (item factors item-major, one
contiguous row per item); ``backend='numpy'`` runs its numpy oracle (slow; for tests).
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any

import numpy as np

from .._params import Param
from ..kernels.registry import get_kernel
from ..kernels.solvers import kernel_threads
from ..model.result import FitResult
from ._common import Setup, SolverSpec, prepare, run_iterations
from .sgd import STEP_PARAMS, visit_regs

__all__ = ["SPEC", "bsgd"]


# duplicates: each solver's numpydoc and doctest example share one shape
def bsgd(R: Any, rank: int | None = None, **options: Any) -> FitResult:
    r"""Fit the ``'l2'`` objective by biased SGD with an exponentially decaying step.

    Parameters
    ----------
    R : ndarray, scipy.sparse matrix, pandas.DataFrame or Ratings
        The observed ratings (anything :func:`lsqmf.as_ratings` accepts).
    rank : int, default=20
        Number of latent factors (the registry's ``SOLVER_SPECS['bsgd'].rank``).
    **options
        The shared options of :class:`lsqmf.solvers.SolverOptions` (``max_iter`` counts
        epochs; ``random_state`` seeds the start and every epoch's order) and bsgd's own
        (defaults: ``lsqmf.solvers.SOLVER_SPECS['bsgd']``):

        - ``learning_rate`` : float, step of the first epoch
        - ``decay`` : float in (0, 1], factor applied to the step after every epoch
        - ``bias_rate`` : float, the biases' step relative to the factors'

    Returns
    -------
    FitResult
        ``solver='bsgd'``; ``history.cost`` is the exact objective after each epoch.

    Examples
    --------
    >>> import numpy as np
    >>> from lsqmf.solvers import bsgd
    >>> rng = np.random.default_rng(0)
    >>> R = rng.random((8, 2)) @ rng.random((2, 6))
    >>> fit = bsgd(R, 2, reg=0.001, max_iter=3000, tol=1e-7, learning_rate=0.1,
    ...            decay=0.999, random_state=0)
    >>> fit.status, bool(fit.rms < 0.05)
    (2, True)
    """
    setup = prepare(SPEC, R, rank, options)
    own = setup.own  # checked against SPEC.params by prepare
    lr, decay, bias_rate = own["learning_rate"], own["decay"], own["bias_rate"]
    backend, blocks = setup.backend, own.get("blocks", 0)
    runner = _Epochs(setup, lr, decay, bias_rate, backend)
    if blocks:
        runner.use_blocks(blocks)
    return run_iterations(
        setup, runner.epoch,
        hint="lower `learning_rate` (or `decay`) or increase `reg`.",
        options={"learning_rate": lr, "decay": decay, "bias_rate": bias_rate,
                 "blocks": blocks},
    )


class _Epochs:
    """The arrays of one bsgd run and its epoch step."""

    def __init__(
        self, setup: Setup, lr: float, decay: float, bias_rate: float, backend: str
    ) -> None:
        self.kernel = get_kernel("bsgd_epoch", backend)
        self.setup = setup
        r = setup.ratings
        self.rows = np.ascontiguousarray(r.rows, dtype=np.int64)
        self.cols = np.ascontiguousarray(r.cols, dtype=np.int64)
        self.values = np.ascontiguousarray(r.values, dtype=np.float64)
        self.weights = (np.ones(r.nnz) if r.weights is None
                        else np.ascontiguousarray(r.weights, dtype=np.float64))
        self.reg_row, self.reg_col, self.reg_row_bias, self.reg_col_bias = visit_regs(setup)
        self.lr, self.decay, self.bias_rate = lr, decay, bias_rate
        self.cell_ptr: np.ndarray | None = None
        self.blocks = 0

    def use_blocks(self, blocks: int) -> None:
        """Sort the entries once by cell of a ``blocks x blocks`` grid (rows and columns
        assigned to blocks at random, the entries of a cell in a random order, all drawn with
        the run's Generator) for :func:`lsqmf.kernels.solvers.bsgd_cells` epochs."""
        rng, r = self.setup.rng, self.setup.ratings
        self.blocks = blocks
        row_block = rng.permutation(r.shape[0]) % blocks
        col_block = rng.permutation(r.shape[1]) % blocks
        cell = row_block[self.rows] * blocks + col_block[self.cols]
        shuffle = rng.permutation(r.nnz)
        idx = shuffle[np.argsort(cell[shuffle], kind="stable")]
        self.rows, self.cols = self.rows[idx], self.cols[idx]
        self.values, self.weights = self.values[idx], self.weights[idx]
        self.cell_ptr = np.zeros(blocks * blocks + 1, dtype=np.int64)
        np.cumsum(np.bincount(cell, minlength=blocks * blocks), out=self.cell_ptr[1:])
        self.kernel = get_kernel("bsgd_cells", self.setup.backend)

    def epoch(self, x: np.ndarray, j: int) -> np.ndarray:
        problem = self.setup.problem
        P, Q, b, c = problem.unpack(x)
        P = np.array(P)
        Qt = np.array(Q.T, order="C")
        with_bias = bool(problem.biases)
        b = np.array(b) if with_bias else np.zeros(problem.n_rows)
        c = np.array(c) if with_bias else np.zeros(problem.n_cols)
        lr = self.lr * self.decay ** (j - 1)
        mu = float(problem.mu) if with_bias else 0.0
        regs = (self.reg_row, self.reg_col, self.reg_row_bias, self.reg_col_bias)
        if self.cell_ptr is None:
            order = self.setup.rng.permutation(len(self.values)).astype(np.int64, copy=False)
            self.kernel(self.rows, self.cols, self.values, self.weights, order, P, Qt, b, c,
                        mu, lr, lr * self.bias_rate, *regs, with_bias)
        else:  # a random schedule of the strata, drawn per epoch
            shifts = self.setup.rng.permutation(self.blocks)
            losses = np.zeros(len(self.cell_ptr) - 1)
            with kernel_threads(len(self.values), self.setup.backend):
                self.kernel(self.rows, self.cols, self.values, self.weights, self.cell_ptr,
                            shifts, P, Qt, b, c, mu, lr, lr * self.bias_rate, *regs,
                            with_bias, losses)
        if with_bias:
            return problem.pack(P, Qt.T, b, c)
        return problem.pack(P, Qt.T)


#: The solver's registry entry (collected by :data:`lsqmf.solvers.SOLVER_SPECS`).
SPEC = SolverSpec(
    "bsgd", bsgd, MappingProxyType({"max_iter": 100, "tol": 1e-4}),
    "biased SGD with an exponentially decaying step (deterministic shuffles)",
    params=(
        dataclasses.replace(STEP_PARAMS[0], default=0.02),  # learning_rate
        dataclasses.replace(STEP_PARAMS[1], default=0.9),  # decay
        Param("bias_rate", "float", 1.0, low=0.0,
              help="biases' step as a multiple of the factors' step"),
        Param("blocks", "int", 0, low=0,
              help="0: serial epochs in a shuffled order; B >= 1: LIBMF's blocked parallel "
                   "epochs over a B x B grid (same numbers for any thread count)"),
    ),
    kernels=("bsgd_epoch", "bsgd_cells", "residual_sse"),
    tuning=MappingProxyType({"rank": (20, 50), "reg": (0.02, 0.05)}),
    # the per-rating weight of Funk's rule; 0.05 was the best by-name value on inner holdouts
    # of MovieLens latest-small (std 1.04): reports/defaults/README.md
    reg_per_std=0.05,
)
