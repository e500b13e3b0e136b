r"""Validation ratings for early stopping: resolving ``validation=``, scoring an iterate.

Every iterative solver accepts ``validation`` (a shared option of
:class:`~lsqmf.solvers._common.SolverOptions`):

- a :class:`~lsqmf.Ratings` of held-out ratings (the same shape and id maps as the training
  ratings, as the splits of :mod:`lsqmf.evaluate.search` produce, or both with id maps, in which
  case the held-out pairs are matched by raw id); or
- a float in (0, 1): that fraction of the training entries is split off with the run's seeded
  generator (after the random start is drawn, so the start is the one the run would use
  without validation) and the solver fits the rest.

After every iteration the loop (:class:`~lsqmf.solvers._common.Tracker`) computes the RMSE of
the iterate's predictions at the held-out pairs -- clipped to the training range, as
:func:`lsqmf.evaluate.scoring.fit_and_score` does, and with the bias model for pairs whose row or
column has no training rating (their factors are 0) -- keeps the best iterate, and stops with
``Status.VALIDATION`` when the RMSE has not improved for ``patience`` iterations
(``patience=None``: record only). The result is the best iterate; its
``options['validation_rmse']`` holds the RMSE after each iteration and
``options['best_iteration']`` the iteration returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validation import check_float, check_int, describe
from ..data.ratings import Ratings, lookup_ids
from ..kernels.registry import get_kernel
from ..model.problem import Problem

__all__ = ["Validation", "check_validation", "split_validation"]


@dataclass(frozen=True)
class Validation:
    """Held-out pairs (indices in the training ratings) and the early-stopping rule.

    Attributes
    ----------
    rows, cols : ndarray of int64, shape (n,)
        Pair indices; -1 marks an id unknown to the training ratings.
    values : ndarray, shape (n,)
    clip : (float, float)
        The training range predictions are clipped to.
    patience : int or None
        Iterations without improvement before stopping (None: never stop).
    source : str
        ``'ratings'`` or ``'fraction=<f>'`` (recorded in ``result.options``).
    """

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    clip: tuple[float, float]
    patience: int | None
    source: str
    min_delta: float = 0.0

    @property
    def size(self) -> int:
        return int(self.values.shape[0])

    def rmse(self, pred: np.ndarray) -> float:
        """RMSE of predictions at the pairs (clipped to :attr:`clip`)."""
        err = np.clip(pred, *self.clip) - self.values
        return float(np.sqrt(np.mean(err * err))) if err.size else float("nan")

    def score(self, problem: Problem, x: np.ndarray, *, backend: str = "numpy") -> float:
        """Validation RMSE of the iterate ``x`` of ``problem``: the clipped predictions'
        squared errors summed in one fused pass over the pairs (kernel ``residual_sse`` or its
        numpy oracle, by ``backend``), without arrays of predictions or factor rows."""
        if not self.size:
            return float("nan")
        P, Q, b, c = problem.unpack(x)
        empty = np.empty(0)
        unscaled = empty.view()
        unscaled.setflags(write=False)  # the kernel's type for `d` (Problem.data_scale's)
        sse = get_kernel("residual_sse", backend)(
            self.rows, self.cols, self.values, unscaled, P, np.ascontiguousarray(Q.T),
            empty if b is None else b, empty if c is None else c, float(problem.mu),
            problem.biases, *self.clip,
        )
        return float(np.sqrt(sse / self.size))


def check_validation(validation: Any, patience: Any) -> tuple[Any, int | None]:
    """Type and range checks of ``validation`` and ``patience`` (before any work)."""
    if patience is not None:
        patience = check_int("patience", patience, min_value=1)
    if validation is None or isinstance(validation, Ratings):
        return validation, patience
    if isinstance(validation, bool) or not isinstance(validation, int | float | np.floating):
        raise TypeError(
            f"`validation` must be None, a Ratings of held-out ratings or a fraction in (0, 1); "
            f"got {describe(validation)}."
        )
    frac = check_float("validation", validation, min_value=0.0, max_value=1.0,
                       min_inclusive=False, max_inclusive=False)
    return frac, patience


def split_validation(
    ratings: Ratings, validation: Any, patience: int | None, rng: np.random.Generator
) -> tuple[Ratings, Validation | None]:
    """The ratings to fit and the :class:`Validation` (None when ``validation`` is None).

    Raises
    ------
    ValueError
        If a fraction leaves no training or no validation entry, or held-out ratings cannot be
        matched to the training ratings.
    """
    if validation is None:
        return ratings, None
    if isinstance(validation, Ratings):
        rows, cols = _align(ratings, validation)
        train, held, source = ratings, validation, "ratings"
    else:
        n_val = round(float(validation) * ratings.nnz)
        if n_val < 1 or n_val >= ratings.nnz:
            raise ValueError(
                f"`validation`={validation:g} of {ratings.nnz} ratings leaves no validation or "
                f"no training entry; use a larger fraction or pass held-out Ratings."
            )
        mask = np.zeros(ratings.nnz, dtype=bool)
        mask[rng.permutation(ratings.nnz)[:n_val]] = True
        train, held = ratings.subset(~mask), ratings.subset(mask)
        rows, cols, source = held.rows, held.cols, f"fraction={validation:g}"
    clip = (float(train.values.min()), float(train.values.max()))
    arrays = [np.array(a, dtype=dtype) for a, dtype in
              ((rows, np.int64), (cols, np.int64), (held.values, np.float64))]
    for a in arrays:  # read-only, as the training ratings' (the kernel's argument types)
        a.setflags(write=False)
    return train, Validation(rows=arrays[0], cols=arrays[1], values=arrays[2], clip=clip,
                             patience=patience, source=source)


def _align(train: Ratings, held: Ratings) -> tuple[np.ndarray, np.ndarray]:
    def same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
        if a is None or b is None:
            return a is None and b is None
        return a is b or (len(a) == len(b) and bool(np.all(a == b)))

    if train.shape == held.shape and same(train.row_ids, held.row_ids) and same(
        train.col_ids, held.col_ids
    ):
        return held.rows, held.cols
    if (train.row_ids is not None and held.row_ids is not None
            and train.col_ids is not None and held.col_ids is not None):
        return (lookup_ids(train.row_ids, held.row_ids[held.rows], train.shape[0]),
                lookup_ids(train.col_ids, held.col_ids[held.cols], train.shape[1]))
    raise ValueError(
        f"`validation` must share the training ratings' shape and id maps, or both must have "
        f"id maps; got shapes {train.shape} (training) and {held.shape} (validation)."
    )
