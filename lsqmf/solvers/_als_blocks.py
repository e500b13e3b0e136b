r"""The worker side of :func:`lsqmf.solvers.als_dask.als_dask`: rating blocks and the functions
that run where they live.

Blocks
------
With ``B`` blocks, user ``u`` belongs to user block ``u mod B`` (local index ``u div B``) and
item ``i`` to item block ``i mod B`` -- the hash partitioning of MLlib's ALS. Each rating is
held twice: by its user's block (to solve users) and by its item's block (to solve items).
A :class:`SideBlock` holds one side's block and, for every block ``j`` of the other side,

- its *in-link* (what it needs): the sorted local indices of ``j``'s rows its ratings touch,
  and whether it receives them as a *subset* (only those rows, selected where ``j`` lives) or
  ``j``'s *whole* factor block -- whole when it needs at least :data:`WHOLE_FRACTION` of them,
  because a whole block is sent once per worker whichever blocks of that worker read it,
  and needs no select task;
- its *out-link* (what it gives): the sorted local indices of its own rows that ``j`` needs.

Both sides derive the same sets from the same ratings, so they agree without talking. A
half-step of the users sends, for every pair (item block ``j``, user block ``b``) with
ratings, ``j``'s factor rows that ``b`` needs (``(k+1)`` floats per row with biases), then
solves the users of ``b`` with the single-machine :class:`lsqmf.solvers.als.SideSolver` (the
``als_rows`` kernel, or its numpy oracle) on ``b``'s ratings: the same normal equations, the
same regularization :math:`\lambda s_u`, :math:`\lambda_b s_u` (``s_u`` the user's number of
ratings when count-scaled, all of which are in ``b``), the same offsets :math:`\mu + c_i`.

The cost is summed per block: each item block, after its solve, returns
:math:`\tfrac12\sum w\,r^2` over its ratings (with the sweep's final factors) and its
regularization terms; each user block its own. Only scalars reach the client.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..runtime.threads import blas_single_thread, numba_available
from .als import SideSolver

__all__ = [
    "WHOLE_FRACTION",
    "BlockObjective",
    "SideBlock",
    "block_cost",
    "block_size",
    "load_factors",
    "make_block",
    "read_shard",
    "save_factors",
    "select_rows",
    "solve_block",
    "split_triplets",
]

#: A block needing at least this fraction of another block's rows receives that block whole.
WHOLE_FRACTION = 0.5


@dataclass(frozen=True)
class BlockObjective:
    """What every worker function needs to know of the objective (sent with each task)."""

    rank: int
    reg: float
    reg_bias: float
    count_scaled: bool
    biases: bool
    mu: float
    n_blocks: int
    backend: str

    @property
    def width(self) -> int:
        """Columns of a factor block: ``rank`` (+1 for the bias)."""
        return self.rank + (1 if self.biases else 0)


def block_size(n: int, n_blocks: int, index: int) -> int:
    """Rows of ``range(n)`` in block ``index`` (those ``r`` with ``r mod n_blocks == index``)."""
    return max(0, (n - index + n_blocks - 1) // n_blocks)


class SideBlock:
    """One block of one side: its ratings, in-links and out-links (see the module docstring).

    Parameters
    ----------
    index : int
        The block's number ``b``; it owns the rows ``r`` with ``r mod B == b``.
    n_own, n_other : int
        Rows of this side and of the other side (whole problem).
    own, other : ndarray of int, shape (nnz_b,)
        Global indices of this block's ratings on this side and on the other.
    values, weights : ndarray, shape (nnz_b,) (weights may be None)
    obj : BlockObjective
    """

    def __init__(self, index: int, n_own: int, n_other: int, own: np.ndarray,
                 other: np.ndarray, values: np.ndarray, weights: np.ndarray | None,
                 obj: BlockObjective) -> None:
        B = obj.n_blocks
        self.index, self.n_blocks = index, B
        self.n_rows = block_size(n_own, B, index)
        self.own = (own // B).astype(np.int64)
        other_block, other_local = other % B, (other // B).astype(np.int64)
        self.values = np.asarray(values, dtype=np.float64)
        self.weights = None if weights is None else np.asarray(weights, dtype=np.float64)
        self.counts = np.bincount(self.own, minlength=self.n_rows)
        scale = self.counts.astype(float) if obj.count_scaled else np.ones(self.n_rows)
        self.reg_factor, self.reg_bias = obj.reg * scale, obj.reg_bias * scale
        self.sources: list[int] = []  # other blocks with ratings here, in order
        self.whole: list[bool] = []
        self.needs: list[np.ndarray] = []
        self.feature_index = np.empty(len(self.own), dtype=np.int64)
        offset = 0
        for j in range(B):
            at = np.flatnonzero(other_block == j)
            if at.size == 0:
                continue
            needed, position = np.unique(other_local[at], return_inverse=True)
            size_j = block_size(n_other, B, j)
            whole = needed.size >= WHOLE_FRACTION * size_j
            self.feature_index[at] = offset + (other_local[at] if whole else position)
            offset += size_j if whole else needed.size
            self.sources.append(j)
            self.whole.append(bool(whole))
            self.needs.append(needed)
        self.n_features = offset
        # out-links: the own rows that block j of the other side needs (its in-link from here)
        self.gives = [np.unique(self.own[other_block == j]) for j in range(B)]
        mean_offset = self.values - obj.mu
        w = np.ones_like(self.values) if self.weights is None else self.weights
        self.zero_cost = 0.5 * float(w @ (mean_offset * mean_offset)) if obj.biases else \
            0.5 * float(w @ (self.values * self.values))
        self._solver: SideSolver | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_solver"] = None  # rebuilt where the block lands (holds a compiled kernel)
        return state

    def solver(self, obj: BlockObjective) -> SideSolver:
        """The single-machine :class:`SideSolver` over this block's ratings (built once)."""
        if self._solver is None:
            self._solver = SideSolver(
                self.own, self.feature_index, self.n_rows, self.n_features, self.values,
                self.weights, self.reg_factor, self.reg_bias, backend=obj.backend,
            )
        return self._solver

    def links(self) -> dict[str, Any]:
        """What the client plans with: in-link sources, whole flags and sizes, out-link sizes."""
        return {"sources": list(self.sources), "whole": list(self.whole),
                "needs": [int(n.size) for n in self.needs],
                "gives": [int(g.size) for g in self.gives], "n_rows": self.n_rows,
                "nnz": int(self.own.size), "zero_cost": self.zero_cost,
                "counts": self.counts}

    def nbytes(self) -> int:
        """Bytes of the arrays this block holds (its share of the data)."""
        arrays = [self.own, self.values, self.feature_index, self.counts, self.reg_factor,
                  self.reg_bias, *self.needs, *self.gives]
        if self.weights is not None:
            arrays.append(self.weights)
        return int(sum(a.nbytes for a in arrays))


def make_block(index: int, n_own: int, n_other: int, obj: BlockObjective,
               *parts: tuple[np.ndarray, ...]) -> SideBlock:
    """A :class:`SideBlock` from triplet parts ``(own, other, values[, weights])``."""
    own = np.concatenate([p[0] for p in parts]) if parts else np.empty(0, np.int64)
    other = np.concatenate([p[1] for p in parts]) if parts else np.empty(0, np.int64)
    values = np.concatenate([p[2] for p in parts]) if parts else np.empty(0)
    weighted = bool(parts) and len(parts[0]) > 3
    weights = np.concatenate([p[3] for p in parts]) if weighted else None
    return SideBlock(index, n_own, n_other, own, other, values, weights, obj)


def split_triplets(triplets: tuple[np.ndarray, ...], n_blocks: int,
                   side: int) -> list[tuple[np.ndarray, ...]]:
    """One shard's triplets split by the block of side ``side`` (0: rows, 1: columns), each
    part ordered ``(own, other, values[, weights])``."""
    own, other = triplets[side], triplets[1 - side]
    block = own % n_blocks
    out = []
    for b in range(n_blocks):
        at = np.flatnonzero(block == b)
        out.append((own[at], other[at], *(t[at] for t in triplets[2:])))
    return out


def read_shard(path: str, columns: tuple[str, ...]) -> tuple[np.ndarray, ...]:
    """``(rows, cols, values[, weights])`` of one CSV or Parquet shard (read on a worker).

    ``columns`` names the user, item, rating (and optional weight) columns; ids are the
    0-based row and column indices.
    """
    import pandas as pd

    if path.endswith((".parquet", ".pq")):
        frame = pd.read_parquet(path, columns=list(columns))
    else:
        frame = pd.read_csv(path, usecols=list(columns))
    out = [frame[columns[0]].to_numpy(np.int64), frame[columns[1]].to_numpy(np.int64),
           frame[columns[2]].to_numpy(np.float64)]
    if len(columns) > 3:
        out.append(frame[columns[3]].to_numpy(np.float64))
    return tuple(out)


def shard_stats(triplets: tuple[np.ndarray, ...]) -> tuple[float, ...]:
    """``(max row, max column, nnz, sum of weights, sum of weighted values, sum of values,
    sum of squared values, min value, max value)`` of a shard."""
    rows, cols, values = triplets[:3]
    w = triplets[3] if len(triplets) > 3 else np.ones_like(values)
    if rows.size and (rows.min() < 0 or cols.min() < 0):
        raise ValueError("shard ids must be 0-based row and column indices (>= 0); got a "
                         "negative id.")
    return (int(rows.max(initial=-1)), int(cols.max(initial=-1)), int(values.size),
            float(w.sum()), float(w @ values), float(values.sum()), float(values @ values),
            float(values.min(initial=np.inf)), float(values.max(initial=-np.inf)))


def select_rows(block: SideBlock, factors: np.ndarray, j: int) -> np.ndarray:
    """The rows of this block's ``factors`` that block ``j`` of the other side needs."""
    return factors[block.gives[j]]


def solve_block(block: SideBlock, obj: BlockObjective, with_data_cost: bool,
                *messages: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """New factors of the block's rows from the other side's rows it needs (``messages``, in
    ``block.sources`` order); and its ``(cost, squared error)``: the regularization of the new
    rows, plus, when ``with_data_cost``, the data term of its ratings."""
    F = np.concatenate(messages) if messages else np.zeros((0, obj.width))
    k = obj.rank
    with blas_single_thread(numba_available()):
        z = block.solver(obj).solve(
            np.ascontiguousarray(F[:, :k]), obj.mu + F[:, k] if obj.biases else None,
            obj.biases,
        )
    return z, block_cost(block, obj, z, F, with_data_cost)


def block_cost(block: SideBlock, obj: BlockObjective, z: np.ndarray, F: np.ndarray,
               with_data_cost: bool) -> tuple[float, float]:
    """``(cost, squared error)`` of one block: :math:`\\tfrac12\\sum \\lambda s \\|z\\|^2`
    over its rows, plus (``with_data_cost``) :math:`\\tfrac12\\sum w r^2` over its ratings;
    the squared error :math:`\\sum r^2` is unweighted (for the RMS)."""
    k = obj.rank
    cost = 0.5 * float(block.reg_factor @ np.einsum("ij,ij->i", z[:, :k], z[:, :k]))
    if obj.biases:
        cost += 0.5 * float(block.reg_bias @ (z[:, k] * z[:, k]))
    if not with_data_cost:
        return cost, 0.0
    a, f = z[block.own], F[block.feature_index]
    pred = np.einsum("ij,ij->i", a[:, :k], f[:, :k])
    if obj.biases:
        pred += obj.mu + a[:, k] + f[:, k]
    r = pred - block.values
    w = np.ones_like(r) if block.weights is None else block.weights
    return cost + 0.5 * float(w @ (r * r)), float(r @ r)


def evaluate_block(block: SideBlock, obj: BlockObjective, z: np.ndarray,
                   *messages: np.ndarray) -> tuple[float, float]:
    """:func:`block_cost` of given factors ``z`` (the start's cost)."""
    F = np.concatenate(messages) if messages else np.zeros((0, obj.width))
    return block_cost(block, obj, z, F, True)


def save_factors(z: np.ndarray, path: str) -> str:
    """Write a factor block to ``path`` (``.npy``) atomically, on the worker that holds it."""
    target = Path(path)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp.npy")
    np.save(tmp, z)
    os.replace(tmp, target)
    return path


def load_factors(path: str, anchor: Any = None) -> np.ndarray:
    """A factor block written by :func:`save_factors` (``anchor``: a block the scheduler
    places this task beside)."""
    return np.load(path)


def first(pair: tuple[Any, Any]) -> Any:
    """``pair[0]`` (a task, so a solve's factors stay on its worker)."""
    return pair[0]


def second(pair: tuple[Any, Any]) -> Any:
    """``pair[1]``."""
    return pair[1]


def identity(value: Any) -> Any:
    """A task holding ``value`` (the scheduler can recompute it if its worker dies)."""
    return value


def memory_report(dask_worker: Any = None) -> dict[str, float]:
    """Resident memory (peak and now) of the calling process, and the bytes of the rating
    blocks it holds (run on each worker by ``client.run``)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0
    try:
        import psutil

        rss = float(psutil.Process().memory_info().rss)
    except ImportError:  # pragma: no cover - psutil comes with distributed
        rss = float("nan")
    held = 0
    if dask_worker is not None:
        for value in dask_worker.data.values():
            if isinstance(value, SideBlock):
                held += value.nbytes()
    return {"peak_rss": peak, "rss": rss, "block_bytes": float(held)}
