r"""Seeded restarts until the same optimum is seen twice (RUSSO).

Low-rank factorization with missing data has many local minima, and a single run from a random
start reaches the best one only with some probability :math:`p`. Restarting until the best
cost found so far has been reached ``until_seen`` times (Hong & Fitzgibbon's "restart until
the same optimum is seen twice") stops as soon as the evidence says the best optimum is
probably the global one, after about ``until_seen / p`` runs.

Seeds and determinism
---------------------
One :class:`numpy.random.SeedSequence` built from ``random_state`` spawns one child per start;
start ``j`` runs :func:`lsqmf.solve` with the int seed drawn from child ``j``. The stopping
rule is evaluated after each start *in start order*, so the result depends only on
``random_state`` and the options, not on ``n_jobs``: a parallel batch may compute starts past
the stopping point, and those are discarded. Starts run through
:func:`lsqmf.runtime.parallel.map_tasks`
(serially, on ``n_jobs`` local processes, or on a Dask cluster with ``scheduler=``; the data
go to each worker once) and are consumed in start order, so every backend gives the same
result; stopping cancels the starts still queued.

Two costs count as the same optimum when they agree within ``rtol`` relative to the smaller.
"""

from __future__ import annotations

import logging
import numbers
import time
import warnings
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .._validation import check_float, check_int, describe
from ..model.result import FitResult, Status
from ..runtime.progress import Progress

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["MultistartResult", "multistart"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class MultistartResult:
    """The best fit of a multistart run and the record of every start.

    Attributes
    ----------
    best : FitResult
        The run with the lowest cost.
    seeds : ndarray of int, shape (n_starts,)
        The seed of each start (replay start ``j`` with ``solve(..., random_state=seeds[j])``).
    costs, rms : ndarray of float, shape (n_starts,)
        Final cost and RMS error of each start (inf / NaN for a start that failed).
    statuses : ndarray of int
        :class:`~lsqmf.Status` of each start (``NON_FINITE`` for a failed start).
    wall_times, cpu_times : ndarray of float
        Seconds per start (CPU: of the process that ran it).
    nfev : ndarray of int
    optima : ndarray of float
        The distinct optimum costs found (clustered within ``rtol``), ascending.
    hits : ndarray of int
        How many starts reached each of ``optima``.
    converged : bool
        Whether the best cost was reached ``until_seen`` times before ``max_starts``.
    until_seen, rtol, random_state
        The settings (``random_state`` the recorded int seed, or None for a Generator).
    """

    best: FitResult
    seeds: np.ndarray
    costs: np.ndarray
    rms: np.ndarray
    statuses: np.ndarray
    wall_times: np.ndarray
    cpu_times: np.ndarray
    nfev: np.ndarray
    optima: np.ndarray
    hits: np.ndarray
    converged: bool
    until_seen: int
    rtol: float
    random_state: int | None

    @property
    def n_starts(self) -> int:
        """Number of starts that count (those up to the stopping point)."""
        return len(self.costs)

    @property
    def n_optima(self) -> int:
        """Number of distinct optima found."""
        return len(self.optima)

    def to_frame(self) -> pd.DataFrame:
        """One row per start: seed, cost, rms, status, wall_time, cpu_time, nfev."""
        import pandas as pd

        return pd.DataFrame(
            {
                "seed": self.seeds, "cost": self.costs, "rms": self.rms,
                "status": self.statuses, "wall_time": self.wall_times,
                "cpu_time": self.cpu_times, "nfev": self.nfev,
            }
        )


@dataclass(frozen=True)
class _Run:
    seed: int
    fit: FitResult | None
    cost: float
    rms: float
    status: int
    wall: float
    cpu: float
    nfev: int


def _one_start(R: Any, rank: int, seed: int, options: dict[str, Any]) -> _Run:
    """One seeded run of :func:`lsqmf.solve` (warnings of non-converged runs are recorded as
    their status, not raised)."""
    from .solve import solve

    t0, c0 = time.perf_counter(), time.process_time()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = solve(R, rank, random_state=seed, **options)
    except FloatingPointError as err:  # NonFiniteResidualError and the like
        logger.info("start with seed %d failed: %s", seed, err)
        return _Run(seed, None, np.inf, np.nan, int(Status.NON_FINITE),
                    time.perf_counter() - t0, time.process_time() - c0, 0)
    rms = float("nan") if fit.rms is None else float(fit.rms)
    return _Run(seed, fit, float(fit.cost), rms, int(fit.status), time.perf_counter() - t0,
                time.process_time() - c0, int(fit.nfev))


def _start(shared: tuple[Any, int, dict[str, Any]], seed: int) -> _Run:
    R, rank, options = shared
    return _one_start(R, rank, seed, options)


def _runs_in_order(R: Any, rank: int, seeds: list[int], options: dict[str, Any], n_jobs: int,
                   scheduler: Any) -> Generator[_Run, None, None]:
    """Every start's run in start order, computed ahead by the workers; closing the generator
    cancels the starts still queued. A start whose worker died is a failed run."""
    from ..runtime.parallel import map_tasks

    ready: dict[int, _Run] = {}
    upcoming = 0
    for outcome in map_tasks(_start, seeds, shared=(R, rank, options), n_jobs=n_jobs,
                             scheduler=scheduler, label="multistart"):
        if outcome.ok:
            ready[outcome.index] = outcome.value
        else:
            logger.warning("start with seed %d failed: %s", outcome.task, outcome.error)
            ready[outcome.index] = _Run(outcome.task, None, np.inf, np.nan,
                                        int(Status.INTERRUPTED), np.nan, np.nan, 0)
        while upcoming in ready:
            yield ready.pop(upcoming)
            upcoming += 1


def _same(a: float, b: float, rtol: float, atol: float = 0.0) -> bool:
    return abs(a - b) <= atol + rtol * max(min(abs(a), abs(b)), np.finfo(float).tiny)


def _cluster(costs: np.ndarray, rtol: float, atol: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    finite = np.sort(costs[np.isfinite(costs)])
    optima: list[float] = []
    hits: list[int] = []
    for c in finite:
        if optima and _same(optima[-1], c, rtol, atol):
            hits[-1] += 1
        else:
            optima.append(float(c))
            hits.append(1)
    return np.asarray(optima, dtype=np.float64), np.asarray(hits, dtype=np.int64)


def multistart(
    R: Any,
    rank: int,
    *,
    until_seen: int = 2,
    rtol: float = 1e-6,
    atol: float = 0.0,
    max_starts: int = 50,
    n_jobs: int = 1,
    scheduler: Any = None,
    random_state: int | np.random.Generator | None = None,
    progress: bool | None = None,
    **solve_options: Any,
) -> MultistartResult:
    r"""Run seeded starts of :func:`lsqmf.solve` until the best cost is seen ``until_seen`` times.

    Parameters
    ----------
    R : array_like, sparse matrix, DataFrame or Ratings
        As in :func:`lsqmf.solve` (``mask=`` and the other options go in ``solve_options``).
    rank : int
    until_seen : int, default=2
        Stop once this many starts have reached the best cost found so far.
    rtol : float, default=1e-6
        Two costs within this relative tolerance are the same optimum.
    atol : float, default=0.0
        Plus this absolute tolerance (for problems whose optimum cost is near 0, where
        rounding makes relative comparisons meaningless).
    max_starts : int, default=50
        Upper bound on the number of starts.
    n_jobs : int, default=1
        Starts run ahead on ``n_jobs`` local worker processes; the result does not depend on
        it.
    scheduler : str, distributed.Client or cluster, optional
        Run the starts on a Dask cluster (``'tcp://host:8786'``; see
        :func:`lsqmf.runtime.parallel.plan_backend`); the result is the same.
    random_state : int, Generator or None
        Seeds the :class:`~numpy.random.SeedSequence` that spawns every start's seed (None:
        fresh entropy, recorded in the result).
    progress : bool or None, default=None
        The progress policy of :mod:`lsqmf.runtime.progress`, counting starts: a bar on a
        terminal, a status line every 30 s off one; True adds a last line, False prints nothing.
    **solve_options
        Passed to :func:`lsqmf.solve` (e.g. ``eliminate='Q'``, ``formulation='none'``,
        ``init_scale=1``). ``random_state`` is the start's own.

    Returns
    -------
    MultistartResult

    Examples
    --------
    >>> import numpy as np
    >>> import lsqmf
    >>> rng = np.random.default_rng(0)
    >>> M = rng.standard_normal((8, 2)) @ rng.standard_normal((2, 6))
    >>> M += 0.1 * rng.standard_normal(M.shape)
    >>> M[rng.random(M.shape) < 0.2] = np.nan
    >>> res = lsqmf.multistart(M, 2, random_state=0, eliminate="Q", formulation="none",
    ...                        init_scale=1.0, ftol=1e-10, xtol=1e-10, gtol=1e-10)
    >>> res.converged, res.n_starts
    (True, 2)
    """
    until_seen = check_int("until_seen", until_seen, min_value=1)
    rtol = float(check_float("rtol", rtol, min_value=0.0))  # type: ignore[arg-type]
    atol = float(check_float("atol", atol, min_value=0.0))  # type: ignore[arg-type]
    max_starts = check_int("max_starts", max_starts, min_value=1)
    n_jobs = check_int("n_jobs", n_jobs, min_value=1)
    rank = check_int("rank", rank, min_value=1)
    if "random_state" in solve_options:  # pragma: no cover - caught by Python's signature
        raise TypeError("`random_state` is multistart's own argument.")
    root, recorded = _seed_root(random_state)
    seeds = [
        int(child.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
        for child in root.spawn(max_starts)
    ]
    bar = Progress("lsqmf.multistart", max_starts, progress=progress, unit="starts",
                   estimate=False)  # the run usually stops long before max_starts
    in_order = _counted(_runs_in_order(R, rank, seeds, solve_options, n_jobs, scheduler), bar)
    try:
        runs, converged = _until_seen(in_order, until_seen, rtol, atol)
    finally:
        bar.close()
    return _result(runs, converged, until_seen, rtol, atol, recorded)


def _counted(runs: Generator[_Run, None, None], bar: Progress) -> Generator[_Run, None, None]:
    """``runs``, advancing the progress policy's bar or status line at each start."""
    try:
        for run in runs:
            bar.advance()
            yield run
    finally:
        runs.close()  # cancels the starts still queued


def _seed_root(
    random_state: int | np.random.Generator | None,
) -> tuple[np.random.SeedSequence, int | None]:
    """The root :class:`~numpy.random.SeedSequence` of the starts and the int seed to record
    (None for a Generator, or fresh entropy that is not an int)."""
    if random_state is None:
        root = np.random.SeedSequence()
        return root, int(root.entropy) if isinstance(root.entropy, numbers.Integral) else None
    if isinstance(random_state, np.random.Generator):
        return np.random.SeedSequence(int(random_state.integers(0, 2**63 - 1))), None
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if int(random_state) < 0:
            raise ValueError(f"`random_state` must be a non-negative int; got {random_state}.")
        return np.random.SeedSequence(int(random_state)), int(random_state)
    raise TypeError(
        "`random_state` must be None, an int seed or a numpy.random.Generator; "
        f"got {describe(random_state)}."
    )


def _until_seen(in_order: Generator[_Run, None, None], until_seen: int, rtol: float,
                atol: float) -> tuple[list[_Run], bool]:
    """The runs up to the stopping point, and whether the best cost was seen ``until_seen``
    times; closing ``in_order`` cancels the starts still queued."""
    runs: list[_Run] = []
    best = np.inf
    try:
        for run in in_order:  # the rule in start order: independent of the backend
            runs.append(run)
            if run.cost < best and not _same(run.cost, best, rtol, atol):
                best = run.cost
            n_best = sum(
                1 for r in runs if np.isfinite(r.cost) and _same(r.cost, best, rtol, atol)
            )
            if np.isfinite(best) and n_best >= until_seen:
                return runs, True
    finally:
        in_order.close()  # cancels the starts still queued
    return runs, False


def _result(runs: list[_Run], converged: bool, until_seen: int, rtol: float, atol: float,
            recorded: int | None) -> MultistartResult:
    """The :class:`MultistartResult` of ``runs``; raises when every start failed."""
    costs = np.array([r.cost for r in runs], dtype=np.float64)
    fits = [r for r in runs if r.fit is not None]
    if not fits:
        raise FloatingPointError(
            f"all {len(runs)} starts failed with non-finite residuals; see the log, and try "
            "a regularized formulation or a smaller init_scale."
        )
    best_run = min(fits, key=lambda r: r.cost)
    assert best_run.fit is not None
    optima, hits = _cluster(costs, rtol, atol)
    logger.info(
        "multistart: %d starts, %d distinct optima, best cost %.9g seen %d times",
        len(runs), len(optima), best_run.cost, int(hits[0]) if len(hits) else 0,
    )
    return MultistartResult(
        best=best_run.fit,
        seeds=np.array([r.seed for r in runs], dtype=np.int64),
        costs=costs,
        rms=np.array([r.rms for r in runs], dtype=np.float64),
        statuses=np.array([r.status for r in runs], dtype=np.int64),
        wall_times=np.array([r.wall for r in runs], dtype=np.float64),
        cpu_times=np.array([r.cpu for r in runs], dtype=np.float64),
        nfev=np.array([r.nfev for r in runs], dtype=np.int64),
        optima=optima,
        hits=hits,
        converged=converged,
        until_seen=until_seen,
        rtol=rtol,
        random_state=recorded,
    )
