"""Resource abuse (issue #23 item 3): refused before allocating, with the size it would need;
long loops interruptible, returning the best iterate so far."""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import pytest

import lsqmf
from lsqmf.model.result import ConvergenceWarning, Status
from lsqmf.runtime import memory
from lsqmf.runtime.memory import MemoryBudgetError, check_budget, fit_bytes, format_bytes
from lsqmf.runtime.parallel import _n_workers, in_order, map_tasks, plan_backend
from lsqmf.solvers import get_solver

#: The solvers whose iterations run in the shared loop (solvers._common.run_iterations).
LOOP_SOLVERS = ["als", "als_cg", "als_gd", "als_sgd", "bsgd", "gd", "sgd"]
#: Every comparison solver that builds its problem through solvers._common.prepare.
PREPARED = [*LOOP_SOLVERS, "bmf"]
GiB = 1024**3


def _eight() -> np.ndarray:
    R = np.full((4, 4), np.nan)
    R[[0, 1, 2, 3, 0, 1, 2, 3], [0, 1, 2, 3, 1, 2, 3, 0]] = [1, 2, 3, 4, 5, 1, 2, 3]
    return R


def _far_ids() -> lsqmf.Ratings:
    """10 ratings whose row indices reach 10^11 (ids taken for indices)."""
    rows = np.array([0, 10**11, 5, 7, 9, 3, 2, 1, 4, 6])
    return lsqmf.Ratings.from_triplets(rows, np.arange(10) % 3, np.linspace(1, 5, 10))


@pytest.fixture
def budget(monkeypatch: pytest.MonkeyPatch) -> int:
    """A fixed 4 GiB available, whatever the machine has."""
    monkeypatch.setattr(memory, "available_bytes", lambda: 4 * GiB)
    return 4 * GiB


CASES = {
    "rank-1e6-on-8-ratings": (_eight, 10**6, r"`rank`=1000000 on 4 x 4 ratings \(8 observed\) "
                              r"would need at least 29\.1 TiB of memory; 4 GiB is available\. "
                              r"Use a smaller `rank`\.$"),
    "rank-1e11": (_eight, 10**11, r"`rank`=100000000000 on 4 x 4 ratings .* would need at "
                  r"least [0-9.e+]+ PiB"),
    "ids-1e11-as-indices": (_far_ids, 5, r"`rank`=5 on 100000000001 x 3 ratings \(10 observed\)"
                            r" would need at least 26\.2 TiB of memory; 4 GiB is available\. Use "
                            r"a smaller `rank` or number the ids consecutively"),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("name", PREPARED)
def test_a_fit_that_cannot_fit_is_refused_before_allocating(name: str, case: str,
                                                             budget: int) -> None:
    data, rank, match = CASES[case]
    with pytest.raises(MemoryBudgetError, match=rf"^lsqmf\.solvers\.{name}: a fit of {match}"):
        get_solver(name)(data(), rank, max_iter=2, random_state=0)


def test_budget_error_is_a_memory_and_a_value_error(budget: int) -> None:
    with pytest.raises(MemoryError) as info:
        check_budget(5 * GiB, "a job")
    assert isinstance(info.value, ValueError)
    assert str(info.value) == "a job would need at least 5 GiB of memory; 4 GiB is available."
    check_budget(4 * GiB, "a job that fits")


def test_a_fit_that_fits_is_not_refused(budget: int) -> None:
    fit = get_solver("als")(_eight(), 2, max_iter=200, random_state=0)
    assert fit.P.shape == (4, 2)


def test_fit_bytes_grows_with_shape_ratings_and_rank() -> None:
    base = fit_bytes(100, 50, 1000, 10)
    assert base == 8 * (6 * 150 * 11 + 5 * 1000 + 4 * 100)
    assert fit_bytes(200, 50, 1000, 10) > base and fit_bytes(100, 50, 2000, 10) > base
    assert fit_bytes(100, 50, 1000, 20) > base


@pytest.mark.parametrize(("n", "text"), [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"),
                                         (3 * GiB, "3 GiB"), (2**60, "1.02e+03 PiB")])
def test_format_bytes(n: int, text: str) -> None:
    assert format_bytes(n) == text


def test_available_memory_is_known_and_positive() -> None:
    have = memory.available_bytes()
    assert have is not None and have > 0


# ----------------------------------------------------------------------- interrupts
class _InterruptAt:
    """A callback that raises KeyboardInterrupt (as Ctrl-C would) at iteration ``at``."""

    def __init__(self, at: int) -> None:
        self.at = at

    def __call__(self, info: Any) -> bool:
        if info.step == self.at:
            raise KeyboardInterrupt
        return False


@pytest.mark.parametrize("name", LOOP_SOLVERS)
def test_ctrl_c_returns_the_best_iterate_so_far(name: str) -> None:
    with pytest.warns(ConvergenceWarning, match=rf"lsqmf\.solvers\.{name}: interrupted "
                      r"\(KeyboardInterrupt\) after iteration 3; returning the"):
        fit = get_solver(name)(_eight(), 2, max_iter=10**12, random_state=0,
                               callback=_InterruptAt(3))
    assert fit.status == Status.INTERRUPTED == -5 and not fit.success
    assert list(fit.history.step) == [0, 1, 2, 3]
    assert fit.cost == min(fit.history.cost)
    assert np.all(np.isfinite(fit.P)) and np.all(np.isfinite(fit.Q))


def test_oscillating_gd_returns_its_best_iterate_not_its_last() -> None:
    """gd with a large learning rate: the cost goes up and down without diverging."""
    ratings = lsqmf.data.synthetic.make_low_rank(40, 30, 2, density=0.5, noise=0.05,
                                                 random_state=0)[0]
    with pytest.warns(ConvergenceWarning, match=r"returning the best factors \(iteration \d+, "
                      r"cost [0-9.]+\)"):
        fit = get_solver("gd")(ratings, 2, learning_rate=5.0, max_iter=50, random_state=0)
    assert fit.history.cost[-1] > min(fit.history.cost)  # the case: the last is not the best
    assert fit.cost == min(fit.history.cost)


def test_max_iter_of_a_monotone_solver_still_returns_the_last_iterate() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit = get_solver("als")(_eight(), 2, max_iter=3, tol=0.0, random_state=0)
    assert fit.cost == fit.history.cost[-1]


def test_max_iter_of_1e12_stopped_by_the_callback() -> None:
    fit = get_solver("als")(_eight(), 2, max_iter=10**12, random_state=0,
                            callback=lambda info: info.step >= 2)
    assert fit.status == Status.CALLBACK and fit.nfev == 2


# ------------------------------------------------------------------------- n_jobs
@pytest.mark.parametrize("n_jobs", [-1000, -2, 0, 1.5, "4", True])
def test_bad_n_jobs_is_refused(n_jobs: Any) -> None:
    with pytest.raises((ValueError, TypeError), match="`n_jobs`"):
        plan_backend(n_jobs)


def _pid(shared: Any, task: int) -> int:
    return os.getpid()


@pytest.mark.slow
def test_a_million_jobs_start_at_most_the_cores_or_the_tasks() -> None:
    got = in_order(map_tasks(_pid, [0, 1, 2], n_jobs=10**6))
    assert len({o.value for o in got}) <= min(3, os.cpu_count() or 1)
    assert _n_workers(10**6, [0, 1, 2]) == min(3, os.cpu_count() or 1)


def test_bmf_ctrl_c_returns_the_mean_of_the_samples_so_far() -> None:
    from lsqmf.data.synthetic import make_low_rank
    from lsqmf.model.result import ConvergenceWarning, Status
    from lsqmf.solvers import bmf

    ratings, _ = make_low_rank(30, 20, 2, density=0.5, random_state=0)

    def ctrl_c_at_sweep_6(info: object) -> None:
        if getattr(info, "step", 0) == 6:
            raise KeyboardInterrupt

    with pytest.warns(ConvergenceWarning, match="interrupted after 6 sweep"):
        fit = bmf(ratings, 2, max_iter=10**12, burn_in=2, callback=ctrl_c_at_sweep_6,
                  random_state=0)
    assert fit.status == Status.INTERRUPTED and not fit.success
    assert np.all(np.isfinite(fit.P)) and np.all(np.isfinite(fit.Q))


@pytest.mark.parametrize("eliminate", [None, "Q"], ids=["joint", "varpro"])
def test_solve_refuses_a_rank_that_cannot_fit_in_memory(eliminate: object) -> None:
    import lsqmf
    from lsqmf.runtime.memory import MemoryBudgetError

    R = np.array([[5.0, 3.0], [4.0, 1.0]])
    with pytest.raises(MemoryBudgetError, match=r"lsqmf.solve: a fit of `rank`=1000000 on 2 x 2 "
                       r"entries \(4 observed\) would need at least .* of memory"):
        lsqmf.solve(R, 10**6, formulation="none", eliminate=eliminate)
