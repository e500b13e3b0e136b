r"""ALS on a Dask cluster: one factorization whose ratings never sit in one process.

The objective, the start and the per-row solves are those of :func:`lsqmf.solvers.als`
(same ``'l2'`` cost, same :func:`~lsqmf.model.start.random_start`, same ridge normal equations
with :math:`\lambda s_u`, :math:`\lambda_b s_u` and the offsets :math:`\mu + c_i`, solved by the
same :class:`~lsqmf.solvers.als.SideSolver`: the ``als_rows`` kernel or its numpy oracle). What
changes is where the work runs and how the ratings are split.

Blocking (MLlib's scheme)
-------------------------
With ``B = n_blocks``, user ``u`` is in user block ``u mod B`` and item ``i`` in item block
``i mod B``. Every rating is held by its user's block and by its item's block (twice in all),
each block on one worker; see :mod:`lsqmf.solvers._als_blocks`. A user half-step sends, for every
(item block ``j``, user block ``b``) pair with ratings, the item factors ``b`` needs: only those
rows, selected on ``j``'s worker, or ``j``'s whole factor block when ``b`` needs at least half
of it (a whole block crosses the network once per worker, a subset once per pair). Then every
user block is solved where it lives. The item half-step is the mirror image. Per sweep at most

.. math::

    \text{bytes} \le 8 (k + 1) \sum_{b, j} \min(n_{bj}, |j|) \times 2

move (``n_bj`` the rows of ``j`` that ``b`` touches), which is at most ``8 (k+1) B (n + m)``
and, for sparse blocks, about ``8 (k+1) nnz``: the factors move, the ratings do not.

Same result as ``als``
----------------------
From the same start (same ``random_state``) the iterates equal those of ``als`` up to the
order of floating-point summation inside each row's Gram matrix (a row's ratings are visited
in block order rather than file order): ``tests/test_dask_als.py`` checks factors, biases,
cost history and test RMSE to ``rtol = 1e-8`` after 6 sweeps on well-posed problems
(``reg > 0``), for 1, 2 and 3 blocks, in-process and on a 2-worker cluster. The cost is
summed per block (each item block returns its squared residuals with the sweep's final
factors and its regularization; each user block its regularization): no ``nnz x rank`` array
is ever gathered, only scalars per block, and the factors at the end.

Checkpoints and faults
----------------------
With ``checkpoint=DIR`` (a directory every worker can write, e.g. a shared file system, as
MLlib's checkpoint directory), every finished sweep's factor blocks are written by the
workers that hold them (``.npy``, atomically), then one flushed line of ``history.csv`` (the
run's fingerprint, sweep, cost, RMS, time) by the client; the files of older sweeps are then
removed (the last two sweeps are kept). The next sweep reads its factors from those files,
so the lineage of every task is at most one sweep long: a worker killed mid-sweep is
recovered by the scheduler, which recomputes that worker's rating blocks (from the ratings
held in the graph, or by re-reading the shards) and only the current sweep's tasks. If the
scheduler gives up on a task (``KilledWorker``), the sweep is restarted from the checkpoint
(at most twice). A client that dies is resumed by calling again with the same data, options
and ``checkpoint``: the sweeps on disk are not run again (``max_iter`` counts them).

Data from shards
----------------
``R`` may be CSV or Parquet shards (a directory, a glob, or a list of files) holding 0-based
integer ``user``/``item`` indices and ``rating`` (``columns=`` renames them; a fourth name is a
weight column). Each shard is read by a worker task (pandas, as dask.dataframe does per
partition; Parquet needs pyarrow on the workers), split by block there, and the pieces go
worker to worker: the client sees only per-shard counts and sums.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, cast

import numpy as np

from .._params import Param
from .._validation import describe, resolve_seed
from ..data.ratings import Ratings, as_ratings
from ..kernels.backend import resolve_backend
from ..kernels.registry import warm_up
from ..model.result import STATUS_MESSAGES, FitResult, History, IterationInfo, Status
from ..model.start import random_start
from ..nls.result import NonFiniteResidualError
from ..runtime.checkpoint import FileLock, RowWriter, parse_float, parse_int, read_checkpoint
from ..runtime.parallel import plan_backend
from ._als_blocks import (
    BlockObjective,
    SideBlock,
    block_cost,
    block_size,
    evaluate_block,
    first,
    identity,
    load_factors,
    make_block,
    read_shard,
    save_factors,
    second,
    select_rows,
    shard_stats,
    solve_block,
    split_triplets,
)
from ._common import (
    DIVERGENCE_FACTOR,
    SolverOptions,
    SolverSpec,
    log_result,
    split_options,
    warn_not_converged,
)

__all__ = ["SPEC", "als_dask", "plan_traffic"]

logger = logging.getLogger(__name__)

#: Restarts of a sweep from the checkpoint after the scheduler gave up on one of its tasks.
_RETRIES = 2
#: Column names of a shard: user index, item index, rating (a fourth: weight).
DEFAULT_COLUMNS = ("user", "item", "rating")


def _check_columns(value: Any) -> tuple[str, ...]:
    if (not isinstance(value, (tuple, list)) or len(value) not in (3, 4)
            or not all(isinstance(v, str) for v in value)):
        raise TypeError(f"`columns` must be 3 or 4 column names (user, item, rating[, "
                        f"weight]); got {describe(value)}.")
    return tuple(value)


def _check_checkpoint(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"`checkpoint` must be a directory path or None; got "
                        f"{describe(value)}.")
    return os.fspath(value)


def _any(value: Any) -> Any:
    return value  # `scheduler`: checked when connecting (runtime.parallel.plan_backend)


# duplicates: declared Param rows, like nls/options.py's: one shape by design
PARAMS = (
    Param("scheduler", "custom", None, check=_any, cli=False,
          help="Dask scheduler address, Client or cluster (None: the blocks run here)"),
    Param("n_blocks", "int", None, low=1, allow_none=True,
          help="user blocks = item blocks (None: one per worker thread; 1 without a "
               "scheduler)"),
    Param("checkpoint", "custom", None, check=_check_checkpoint,
          help="directory of per-sweep factor checkpoints, resumed when it holds this run"),
    Param("columns", "custom", DEFAULT_COLUMNS, check=_check_columns, cli=False,
          help="user, item, rating[, weight] columns of shard files"),
)


# ------------------------------------------------------------------------------ executors
class _Here:
    """Runs every block function at once, in this process (``scheduler=None``)."""

    n_threads = 1
    address = None

    def submit(self, fn: Callable[..., Any], *args: Any, key: str,
               worker: int | None = None) -> Any:
        return fn(*args)

    def gather(self, handles: Sequence[Any]) -> list[Any]:
        return list(handles)

    def close(self) -> None:
        pass


class _Dask:
    """Submits block functions to a Dask cluster; blocks are placed round-robin on workers."""

    def __init__(self, scheduler: Any) -> None:
        self.plan = plan_backend(scheduler=scheduler)
        self.client = self.plan.client
        info = self.client.scheduler_info()["workers"]
        self.workers = sorted(info)
        self.n_threads = sum(int(w.get("nthreads", 1)) for w in info.values())
        self.address = self.plan.address
        self.run = os.urandom(4).hex()

    def submit(self, fn: Callable[..., Any], *args: Any, key: str,
               worker: int | None = None) -> Any:
        extra: dict[str, Any] = {}
        if worker is not None and self.workers:
            extra = {"workers": [self.workers[worker % len(self.workers)]],
                     "allow_other_workers": True}
        with warnings.catch_warnings():  # rating blocks are sent once, inside their tasks
            warnings.filterwarnings("ignore", message=".*(Large object|large graph)")
            return self.client.submit(fn, *args, key=f"als-dask-{key}-{self.run}",
                                      pure=False, **extra)

    def gather(self, handles: Sequence[Any]) -> list[Any]:
        return list(self.client.gather(list(handles)))

    def close(self) -> None:
        self.plan.close()


def _is_worker_loss(err: BaseException) -> bool:
    return type(err).__name__ in ("KilledWorker", "CancelledError", "FutureCancelledError")


# ------------------------------------------------------------------------------ the data
@dataclass
class _Data:
    """The distributed ratings: block handles and what the client knows of them."""

    n_rows: int
    n_cols: int
    nnz: int
    mean: float
    obj: BlockObjective
    users: list[Any]
    items: list[Any]
    user_links: list[dict[str, Any]]
    item_links: list[dict[str, Any]]
    row_ids: np.ndarray | None = None
    col_ids: np.ndarray | None = None
    scale: list[float] | None = None

    def row_counts(self) -> np.ndarray:
        return _interleave([L["counts"] for L in self.user_links], self.n_rows)

    def col_counts(self) -> np.ndarray:
        return _interleave([L["counts"] for L in self.item_links], self.n_cols)

    @property
    def shape(self) -> tuple[int, int]:
        return self.n_rows, self.n_cols

    @property
    def zero_cost(self) -> float:
        return float(sum(L["zero_cost"] for L in self.item_links))


def _interleave(blocks: Sequence[np.ndarray], n: int) -> np.ndarray:
    """The global array whose rows ``b::B`` are ``blocks[b]``."""
    B = len(blocks)
    first = np.asarray(blocks[0])
    out = np.zeros((n, *first.shape[1:]), dtype=first.dtype)
    for b, part in enumerate(blocks):
        out[b::B] = part
    return out


def _regs(opts: SolverOptions, std: float) -> tuple[float, float]:
    """``(reg, reg_bias)`` used: as given, or for ``reg=None`` the contract's data-scaled
    defaults (as :func:`lsqmf.solvers._common.data_scaled_options` from a Ratings: ``reg`` is
    the spec's ``reg_per_std`` times the standard deviation of the ratings, ``reg_bias``
    ``reg_per_std`` unless given); ``reg_bias=None`` with a given ``reg`` is ``reg``."""
    per_std = float(getattr(SPEC, "reg_per_std", 0.15))
    if opts.reg is None:
        reg = per_std * (std if std > 0 and np.isfinite(std) else 1.0)
        return reg, per_std if opts.reg_bias is None else float(opts.reg_bias)
    reg = float(opts.reg)
    return reg, reg if opts.reg_bias is None else float(opts.reg_bias)


def _objective(opts: SolverOptions, backend: str, mu: float, n_blocks: int, std: float
               ) -> BlockObjective:
    reg, reg_bias = _regs(opts, std)
    return BlockObjective(
        rank=int(opts.rank), reg=reg, reg_bias=reg_bias, count_scaled=bool(opts.count_scaled),
        biases=bool(opts.biases), mu=mu if opts.biases else 0.0, n_blocks=n_blocks,
        backend=backend,
    )


def _place(ex: Any, obj: BlockObjective, n: int, m: int, users: list[Any],
           items: list[Any], **ids: Any) -> _Data:
    links = ex.gather([ex.submit(_links, b, key=f"links-{s}-{i}")
                       for s, side in enumerate((users, items)) for i, b in enumerate(side)])
    B = obj.n_blocks
    nnz = sum(L["nnz"] for L in links[:B])
    return _Data(n, m, nnz, float("nan"), obj, users, items, links[:B], links[B:], **ids)


def _links(block: SideBlock) -> dict[str, Any]:
    return block.links()


def _from_ratings(ex: Any, r: Ratings, opts: SolverOptions, backend: str,
                  n_blocks: int) -> _Data:
    """Blocks of in-memory ratings: each block's triplets sent once, inside its task."""
    n, m = r.shape
    B = max(1, min(n_blocks, n, m))
    obj = _objective(opts, backend, r.mean(), B, float(np.std(r.values)) if r.nnz else 0.0)
    trip = (r.rows, r.cols, r.values) + (() if r.weights is None else (r.weights,))
    users = [ex.submit(make_block, b, n, m, obj, part, key=f"users-{b}", worker=b)
             for b, part in enumerate(split_triplets(trip, B, 0))]
    items = [ex.submit(make_block, b, m, n, obj, part, key=f"items-{b}", worker=b)
             for b, part in enumerate(split_triplets(trip, B, 1))]
    data = _place(ex, obj, n, m, users, items, row_ids=r.row_ids, col_ids=r.col_ids)
    data.mean = r.mean()
    data.scale = [float(r.values.min()), float(r.values.max())] if r.nnz else None
    return data


def _shard_paths(source: Any) -> list[str]:
    if isinstance(source, (list, tuple)):
        paths = [os.fspath(p) for p in source]
    else:
        text = os.fspath(source)
        if os.path.isdir(text):
            paths = sorted(glob.glob(os.path.join(text, "*.csv"))
                           + glob.glob(os.path.join(text, "*.parquet")))
        else:
            paths = sorted(glob.glob(text)) if any(c in text for c in "*?[") else [text]
    if not paths:
        raise ValueError(f"`R`: no CSV or Parquet shard found at {source!r}.")
    return [os.path.abspath(p) for p in paths]


def _from_shards(ex: Any, paths: list[str], opts: SolverOptions, backend: str,
                 n_blocks: int, columns: tuple[str, ...]) -> _Data:
    """Blocks read by the workers: one read task per shard, split there by block, the pieces
    concatenated on the block's worker; the client gathers per-shard counts and sums only."""
    reads = [ex.submit(read_shard, p, columns, key=f"read-{s}") for s, p in enumerate(paths)]
    stats = ex.gather([ex.submit(shard_stats, t, key=f"stats-{s}")
                       for s, t in enumerate(reads)])
    n, m = max(s[0] for s in stats) + 1, max(s[1] for s in stats) + 1
    tiny = np.finfo(float).tiny
    mean = sum(s[4] for s in stats) / max(sum(s[3] for s in stats), tiny)
    nnz = max(sum(s[2] for s in stats), 1)
    plain_mean = sum(s[5] for s in stats) / nnz
    std = float(np.sqrt(max(sum(s[6] for s in stats) / nnz - plain_mean**2, 0.0)))
    B = max(1, min(n_blocks, n, m))
    obj = _objective(opts, backend, mean, B, std)
    sides = []
    for side, (n_own, n_other) in enumerate(((n, m), (m, n))):
        splits = [ex.submit(split_triplets, t, B, side, key=f"split-{side}-{s}")
                  for s, t in enumerate(reads)]
        sides.append([
            ex.submit(make_block, b, n_own, n_other, obj,
                      *[ex.submit(_part, sp, b, key=f"part-{side}-{s}-{b}")
                        for s, sp in enumerate(splits)],
                      key=f"{('users', 'items')[side]}-{b}", worker=b)
            for b in range(B)])
    data = _place(ex, obj, n, m, sides[0], sides[1])
    data.mean = mean
    data.scale = [min(s[7] for s in stats), max(s[8] for s in stats)]
    return data


def _part(parts: list[Any], b: int) -> Any:
    return parts[b]


# ------------------------------------------------------------------------------ a sweep
def _half_step(ex: Any, data: _Data, solving_users: bool, factors: list[Any], tag: str,
               with_cost: bool) -> tuple[list[Any], list[Any]]:
    """New factor blocks of one side (handles) and their cost pairs (handles)."""
    solving, giving = (data.users, data.items) if solving_users else (data.items, data.users)
    links = data.user_links if solving_users else data.item_links
    side = "u" if solving_users else "i"
    zs, costs = [], []
    for b, block in enumerate(solving):
        messages = [
            factors[j] if whole else
            ex.submit(select_rows, giving[j], factors[j], b, key=f"msg-{side}{tag}-{j}-{b}")
            for j, whole in zip(links[b]["sources"], links[b]["whole"], strict=True)
        ]
        pair = ex.submit(solve_block, block, data.obj, with_cost, *messages,
                         key=f"solve-{side}{tag}-{b}")
        zs.append(ex.submit(first, pair, key=f"z-{side}{tag}-{b}"))
        costs.append(ex.submit(second, pair, key=f"cost-{side}{tag}-{b}"))
    return zs, costs


def _sweep(ex: Any, data: _Data, Qz: list[Any], tag: str
           ) -> tuple[list[Any], list[Any], float, float]:
    """One ALS sweep (users, then items): new factor handles, cost and RMS."""
    Pz, p_costs = _half_step(ex, data, True, Qz, tag, False)
    Qz, q_costs = _half_step(ex, data, False, Pz, tag, True)
    parts = ex.gather(p_costs + q_costs)
    cost = float(sum(c for c, _ in parts))
    rms = float(np.sqrt(sum(s for _, s in parts) / data.nnz)) if data.nnz else float("nan")
    return Pz, Qz, cost, rms


def _evaluate(ex: Any, data: _Data, Pz: list[Any], Qz: list[Any]) -> tuple[float, float]:
    """Cost and RMS of given factor blocks (the start), summed per block."""
    costs = []
    for b, block in enumerate(data.items):
        links = data.item_links[b]
        messages = [Pz[j] if whole else ex.submit(select_rows, data.users[j], Pz[j], b,
                                                  key=f"msg-e-{j}-{b}")
                    for j, whole in zip(links["sources"], links["whole"], strict=True)]
        costs.append(ex.submit(evaluate_block, block, data.obj, Qz[b], *messages,
                               key=f"eval-i-{b}"))
    for b, block in enumerate(data.users):
        costs.append(ex.submit(block_cost, block, data.obj, Pz[b], np.zeros((0, 1)), False,
                               key=f"eval-u-{b}"))
    parts = ex.gather(costs)
    cost = float(sum(c for c, _ in parts))
    return cost, float(np.sqrt(sum(s for _, s in parts) / data.nnz)) if data.nnz else np.nan


def plan_traffic(user_links: Sequence[dict[str, Any]], item_links: Sequence[dict[str, Any]],
                 n_rows: int, n_cols: int, width: int) -> dict[str, int]:
    """Bytes the factor messages of one sweep hold (counted per block pair: whole blocks read
    by several blocks of one worker cross the network once, so this is an upper bound), and
    the bytes of broadcasting each whole factor to every block instead."""
    B = len(user_links)
    sent = 0
    for links, n_other in ((user_links, n_cols), (item_links, n_rows)):
        for L in links:
            for j, whole, need in zip(L["sources"], L["whole"], L["needs"], strict=True):
                sent += (block_size(n_other, B, j) if whole else need) * width * 8
    return {"blocked": sent, "broadcast": B * (n_rows + n_cols) * width * 8}


# ------------------------------------------------------------------------------ checkpoints
class _Checkpoint:
    """Per-sweep factor blocks (written by the workers) and ``history.csv`` (by the client)."""

    COLUMNS: ClassVar[list[str]] = ["cell_id", "sweep", "cost", "rms", "time"]

    def __init__(self, directory: str, fingerprint: str, n_blocks: int) -> None:
        self.n_blocks = n_blocks
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.fingerprint = fingerprint
        self.lock = FileLock(self.dir / "lock", f"checkpoint directory {self.dir}")
        self.lock.acquire()
        self.history = self.dir / "history.csv"

    def rows(self, max_iter: int) -> list[dict[str, str]]:
        """The sweeps already on disk (0: the start), in order; [] for a new directory."""
        if not self.history.exists():
            return []
        known = {self._id(s) for s in range(max(max_iter, 0) + 1)}
        rows = read_checkpoint(self.history, self.COLUMNS, known=known,
                               parsers={"sweep": parse_int, "cost": parse_float},
                               what="factorization (data, options, seed, n_blocks)")
        rows = sorted(rows, key=lambda r: int(r["sweep"]))
        last = int(rows[-1]["sweep"]) if rows else -1
        while rows and not self._complete(last):  # a row whose files were lost: drop it
            rows.pop()
            last = int(rows[-1]["sweep"]) if rows else -1
        return rows

    def _id(self, sweep: int) -> str:
        return f"{self.fingerprint}:{sweep}"

    def path(self, side: str, sweep: int, b: int) -> str:
        return str(self.dir / f"{side}-{sweep:06d}-{b:05d}.npy")

    def _complete(self, sweep: int) -> bool:
        return all(Path(p).exists() for p in self._files(sweep))

    def _files(self, sweep: int) -> list[str]:
        B = self.n_blocks
        return [self.path(s, sweep, b) for s in ("P", "Q") for b in range(B)]

    def save(self, ex: Any, data: _Data, Pz: list[Any], Qz: list[Any], sweep: int,
             row: dict[str, Any]) -> tuple[list[Any], list[Any]]:
        """Write the sweep (workers write blocks, then the client its row); the factor
        handles to continue from: loads of those files (lineage of one sweep)."""
        writes = [ex.submit(save_factors, z, self.path(s, sweep, b),
                            key=f"save-{s}{sweep}-{b}")
                  for s, zs in (("P", Pz), ("Q", Qz)) for b, z in enumerate(zs)]
        ex.gather(writes)
        writer = RowWriter(self.history, self.COLUMNS)
        try:
            writer.write({"cell_id": self._id(sweep), "sweep": sweep, **row})
        finally:
            writer.close()
        for old in range(max(0, sweep - 4), sweep - 1):  # keep the previous sweep too
            for p in self._files(old):
                Path(p).unlink(missing_ok=True)
        return self.load(ex, data, sweep)

    def load(self, ex: Any, data: _Data, sweep: int) -> tuple[list[Any], list[Any]]:
        """Handles of the factor blocks of ``sweep``, each read beside its rating block."""
        return tuple(  # type: ignore[return-value]
            [ex.submit(load_factors, self.path(s, sweep, b), anchor,
                       key=f"load-{s}{sweep}-{b}")
             for b, anchor in enumerate(blocks)]
            for s, blocks in (("P", data.users), ("Q", data.items))
        )

    def close(self) -> None:
        self.lock.release()


def _fingerprint(data: _Data, opts: SolverOptions, seed: int | None) -> str:
    o = data.obj
    text = repr((data.n_rows, data.n_cols, data.nnz, repr(data.mean), o.rank, o.reg, o.reg_bias,
                 o.count_scaled, o.biases, o.n_blocks, seed, repr(float(opts.init_scale)),
                 opts.P0 is None, opts.Q0 is None))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------ the loop
@dataclass
class _Trace:
    """History, stopping rules and the factors to return (the shared rules of
    :mod:`lsqmf.solvers._common`, on costs summed by the blocks)."""

    opts: SolverOptions
    t_start: float
    limit: float
    steps: list[int]
    costs: list[float]
    times: list[float]
    rms: float = float("nan")

    def record(self, j: int, cost: float, rms: float) -> dict[str, Any]:
        """Append sweep ``j``; its checkpoint row."""
        elapsed = time.perf_counter() - self.t_start
        self.steps.append(j)
        self.costs.append(cost)
        self.times.append(elapsed)
        self.rms = rms
        if int(self.opts.verbose) >= 2:
            logger.info("als_dask: sweep %d cost %.6g rms %.6g time %.3f s", j, cost, rms,
                        elapsed)
        return {"cost": cost, "rms": rms, "time": elapsed}

    def decide(self) -> Status | None:
        """The status to stop with after the last recorded sweep, or None."""
        j, cost, elapsed = self.steps[-1], self.costs[-1], self.times[-1]
        callback = self.opts.callback
        if callback is not None and callback(IterationInfo(j, cost, elapsed)):
            return Status.CALLBACK
        if self.converged():
            return Status.FTOL
        if self.opts.max_time is not None and elapsed > float(self.opts.max_time):
            return Status.MAX_TIME
        return None

    def converged(self) -> bool:
        """The relative change of the last sweep's cost is at most ``tol``."""
        if len(self.costs) < 2:
            return False
        previous, cost = self.costs[-2], self.costs[-1]
        tiny = np.finfo(float).tiny
        return abs(previous - cost) <= float(self.opts.tol) * max(abs(previous), tiny)

    def diverged(self, cost: float) -> bool:
        return not np.isfinite(cost) or cost > self.limit


def _gather_factors(ex: Any, data: _Data, Pz: list[Any], Qz: list[Any]
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    k = data.obj.rank
    P = _interleave(ex.gather(Pz), data.n_rows)
    Qt = _interleave(ex.gather(Qz), data.n_cols)
    if data.obj.biases:
        return P[:, :k].copy(), Qt[:, :k].T.copy(), P[:, k].copy(), Qt[:, k].copy()
    return P, Qt.T.copy(), None, None


def _result(ex: Any, data: _Data, trace: _Trace, status: Status, Pz: list[Any],
            Qz: list[Any], options: dict[str, Any], cost: float) -> FitResult:
    P, Q, b, c = _gather_factors(ex, data, Pz, Qz)
    return FitResult(
        P=P, Q=Q, mu=data.obj.mu, row_bias=b, col_bias=c, success=status > 0,
        status=int(status), message=STATUS_MESSAGES[status], nfev=trace.steps[-1], njev=None,
        cost=float(cost), optimality=None,
        history=History.from_lists(trace.steps, trace.costs, trace.times),
        wall_time=time.perf_counter() - trace.t_start, options=options, solver="als_dask",
        row_ids=data.row_ids, col_ids=data.col_ids, row_counts=data.row_counts(),
        col_counts=data.col_counts(), rms=trace.rms, train_mean=data.mean,
    )


def _sweep_retrying(ex: Any, data: _Data, Qz: list[Any], j: int, ck: _Checkpoint | None
                    ) -> tuple[list[Any], list[Any], float, float]:
    """:func:`_sweep`, restarted from the checkpoint of sweep ``j - 1`` when the scheduler
    gave up on a task (its workers kept dying) or lost its inputs."""
    for attempt in range(_RETRIES + 1):
        try:
            return _sweep(ex, data, Qz, f"{j}.{attempt}")
        except Exception as err:
            if ck is None or attempt == _RETRIES or not _is_worker_loss(err):
                raise
            logger.warning("als_dask: sweep %d lost its workers (%s); restarting it from the "
                           "checkpoint of sweep %d", j, type(err).__name__, j - 1)
            _, Qz = ck.load(ex, data, j - 1)
    raise AssertionError("unreachable")  # pragma: no cover


def _iterate(ex: Any, data: _Data, trace: _Trace, start: list[tuple[list[Any], list[Any]]],
             ck: _Checkpoint | None, options: dict[str, Any]
             ) -> tuple[Status, list[Any], list[Any]]:
    """Sweeps from the last recorded one to ``max_iter`` under the shared stopping rules.

    ``start`` holds the factor handles to start from and is emptied, so that no caller keeps
    them alive: a handle held is a task the scheduler would recompute after a worker's death
    (and, with checkpoints, a file it would read again)."""
    Pz, Qz = start.pop()
    status = Status.MAX_ITER
    for j in range(trace.steps[-1] + 1, int(trace.opts.max_iter) + 1):
        newP, newQ, cost, rms = _sweep_retrying(ex, data, Qz, j, ck)
        if trace.diverged(cost):
            raise _divergence(ex, data, trace, Pz, Qz, options, j, cost)
        row = trace.record(j, cost, rms)
        Pz, Qz = (newP, newQ) if ck is None else ck.save(ex, data, newP, newQ, j, row)
        del newP, newQ  # with checkpoints: only the loads of sweep j stay wanted
        stop = trace.decide()
        if stop is not None:
            status = stop
            break
    return status, Pz, Qz


def _divergence(ex: Any, data: _Data, trace: _Trace, Pz: list[Any], Qz: list[Any],
                options: dict[str, Any], j: int, cost: float) -> NonFiniteResidualError:
    what = ("the factors became non-finite (NaN or infinite)" if not np.isfinite(cost)
            else f"the cost exploded to {cost:.3g} (more than {DIVERGENCE_FACTOR:g} x the "
            "start's scale)")
    partial = _result(ex, data, trace, Status.NON_FINITE, Pz, Qz, options, trace.costs[-1])
    return NonFiniteResidualError(
        f"lsqmf.solvers.als_dask: {what} at sweep {j} (the previous sweep's factors are "
        "kept in `partial_result`); increase `reg` (or use biases and count_scaled=True) and "
        "check the ratings.", partial_result=partial)


def _start(ex: Any, data: _Data, opts: SolverOptions, rng: np.random.Generator
           ) -> tuple[list[Any], list[Any]]:
    """Handles of the start's factor blocks: :func:`random_start`'s draws (those of ``als``
    from the same seed), zero biases, sent to the blocks' workers."""
    P, Q = random_start(cast(Ratings, data), int(opts.rank), rng,
                        init_scale=float(opts.init_scale), P0=opts.P0, Q0=opts.Q0)
    P[data.row_counts() == 0] = 0.0
    Q[:, data.col_counts() == 0] = 0.0
    B, extra = data.obj.n_blocks, int(data.obj.biases)
    Pb = np.hstack([P, np.zeros((P.shape[0], extra))])
    Qb = np.hstack([Q.T, np.zeros((Q.shape[1], extra))])
    return ([ex.submit(identity, np.ascontiguousarray(Pb[b::B]), key=f"P0-{b}", worker=b)
             for b in range(B)],
            [ex.submit(identity, np.ascontiguousarray(Qb[b::B]), key=f"Q0-{b}", worker=b)
             for b in range(B)])


def _fit(ex: Any, data: _Data, opts: SolverOptions, options: dict[str, Any],
         rng: np.random.Generator, t_start: float) -> FitResult:
    seed = options["random_state"]
    ck = None
    if options["checkpoint"] is not None:
        ck = _Checkpoint(options["checkpoint"], _fingerprint(data, opts, seed),
                         data.obj.n_blocks)
    try:
        rows = [] if ck is None else ck.rows(int(opts.max_iter))
        if rows:
            last = int(rows[-1]["sweep"])
            Pz, Qz = ck.load(ex, data, last) if ck is not None else ([], [])
            trace = _Trace(opts, time.perf_counter() - float(rows[-1]["time"]), 0.0,
                           [int(r["sweep"]) for r in rows], [float(r["cost"]) for r in rows],
                           [float(r["time"]) for r in rows], float(rows[-1]["rms"] or "nan"))
            logger.info("als_dask: resuming after sweep %d from %s", last, ck.dir if ck else "")
        else:
            Pz, Qz = _start(ex, data, opts, rng)
            cost0, rms0 = _evaluate(ex, data, Pz, Qz)
            trace = _Trace(opts, t_start, 0.0, [0], [cost0],
                           [time.perf_counter() - t_start], rms0)
            if int(opts.verbose) >= 2:
                logger.info("als_dask: sweep 0 cost %.6g rms %.6g", cost0, rms0)
            if ck is not None:
                Pz, Qz = ck.save(ex, data, Pz, Qz, 0, {"cost": cost0, "rms": rms0, "time":
                                                       trace.times[0]})
        trace.limit = DIVERGENCE_FACTOR * max(trace.costs[0], data.zero_cost,
                                              np.finfo(float).tiny)
        if rows and trace.converged():  # a finished run, resumed: nothing left to do
            status = Status.FTOL
        else:
            start = [(Pz, Qz)]
            del Pz, Qz
            status, Pz, Qz = _iterate(ex, data, trace, start, ck, options)
        result = _result(ex, data, trace, status, Pz, Qz, options, trace.costs[-1])
    finally:
        if ck is not None:
            ck.close()
    log_result(logger, int(opts.verbose), result)
    if status == Status.MAX_ITER:
        warn_not_converged(
            f"lsqmf.solvers.als_dask: `max_iter`={opts.max_iter} sweeps reached before the "
            f"relative cost change fell below tol={opts.tol:g} (cost {trace.costs[-1]:.6g}); "
            "returning the last factors. Increase `max_iter` or `tol`.", stacklevel=3)
    return result


def _is_shards(R: Any) -> bool:
    if isinstance(R, (str, os.PathLike)):
        return True
    return (isinstance(R, (list, tuple)) and len(R) > 0
            and all(isinstance(p, (str, os.PathLike)) for p in R))


def _options_record(opts: SolverOptions, own: dict[str, Any], seed: int | None,
                    backend: str, ex: Any, data: _Data) -> dict[str, Any]:
    """``result.options``: the shared record (as every solver's) and the own options (the
    scheduler as its address)."""
    return {
        "rank": opts.rank, "reg": data.obj.reg,
        "reg_bias": data.obj.reg_bias if opts.reg is None else opts.reg_bias,
        "count_scaled": opts.count_scaled, "biases": opts.biases,
        "weights": opts.weights is not None, "max_iter": opts.max_iter, "tol": opts.tol,
        "max_time": opts.max_time, "init_scale": opts.init_scale, "random_state": seed,
        "verbose": opts.verbose, "validation": None, "patience": opts.patience,
        "backend": backend, "rating_scale": data.scale, "scheduler": ex.address,
        "n_blocks": own["n_blocks"], "n_blocks_used": data.obj.n_blocks,
        "checkpoint": own["checkpoint"], "columns": tuple(own["columns"]),
    }


def als_dask(R: Any, rank: Any = None, **options: Any) -> FitResult:
    r"""Fit the ``'l2'`` objective by blocked ALS, on a Dask cluster or in this process.

    Parameters
    ----------
    R : Ratings (anything :func:`lsqmf.as_ratings` accepts), or shard files
        In-memory ratings (each block's triplets are sent once, inside the task that builds
        the block), or CSV/Parquet shards -- a directory, a glob or a list of paths -- that
        the workers read themselves (0-based integer ``user``/``item`` indices, ``rating``).
    rank : int
        Number of latent factors.
    **options
        The shared options of :class:`lsqmf.solvers.SolverOptions` (``validation`` is not
        supported), and:

        scheduler : str, distributed.Client, cluster or None, default=None
            Where the blocks run (None: in this process, one block after the other).
        n_blocks : int or None, default=None
            User blocks (= item blocks); None: one per worker thread of the cluster, 1
            without a scheduler. Clipped to the number of rows and columns.
        checkpoint : path or None, default=None
            Directory of per-sweep checkpoints (see the module docstring); a run that finds
            its own checkpoints there resumes after the last finished sweep.
        columns : tuple of str, default=('user', 'item', 'rating')
            Column names of shard files (a fourth: weights).

    Returns
    -------
    FitResult
        ``solver='als_dask'``; ``nfev`` is the number of sweeps (resumed ones included);
        ``cost`` is the objective summed over the blocks; ``options['scheduler']`` the
        scheduler's address and ``options['n_blocks_used']`` the blocks used.

    Raises
    ------
    SchedulerUnreachableError
        Before any work, if ``scheduler`` cannot be reached or has no worker.
    NonFiniteResidualError
        If the factors become non-finite (the previous sweep's in ``partial_result``).

    Notes
    -----
    The same iterates as :func:`lsqmf.solvers.als` from the same start, up to the order of
    floating-point summation (the module docstring states the tolerance).

    Examples
    --------
    >>> import numpy as np
    >>> from lsqmf.solvers import als, als_dask
    >>> rng = np.random.default_rng(0)
    >>> R = rng.random((8, 3)) @ rng.random((3, 6))
    >>> a = als(R, 2, max_iter=5, tol=0, random_state=1)  # doctest: +SKIP
    >>> d = als_dask(R, 2, n_blocks=3, max_iter=5, tol=0, random_state=1)  # doctest: +SKIP
    >>> bool(np.allclose(a.P, d.P, rtol=1e-8))  # doctest: +SKIP
    True
    """
    opts, own = split_options(SPEC, rank, options)
    if opts.validation is not None:
        raise ValueError("`validation` is not supported by the 'als_dask' solver (score the "
                         "result on held-out ratings instead); got "
                         f"{describe(opts.validation)}.")
    shards = _is_shards(R)
    if shards and opts.weights is not None:
        raise ValueError("`weights` cannot be given with shard files: add a weight column "
                         "and name it as the fourth of `columns`.")
    backend = resolve_backend(opts.backend)
    ex: Any = _Here() if own["scheduler"] is None else _Dask(own["scheduler"])
    try:
        if isinstance(ex, _Here):
            warm_up(SPEC.kernels, backend)  # before the clock, as every solver
        t_start = time.perf_counter()
        rng, seed = resolve_seed(opts.random_state)
        n_blocks = int(own["n_blocks"] or ex.n_threads)
        if shards:
            data = _from_shards(ex, _shard_paths(R), opts, backend, n_blocks, own["columns"])
        else:
            data = _from_ratings(ex, as_ratings(R, weights=opts.weights), opts, backend,
                                 n_blocks)
        record = _options_record(opts, own, seed, backend, ex, data)
        return _fit(ex, data, opts, record, rng, t_start)
    finally:
        ex.close()


#: The solver's registry entry (collected by :data:`lsqmf.solvers.SOLVER_SPECS`).
SPEC = SolverSpec(
    "als_dask", als_dask, MappingProxyType({"max_iter": 15, "tol": 1e-3}),
    "ALS blocked by users and items (MLlib's scheme) on a Dask cluster (--scheduler) or here",
    params=PARAMS, kernels=("als_rows",),
)
