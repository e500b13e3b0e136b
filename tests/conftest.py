"""Shared, seeded fixtures for the test suite."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True, scope="session")
def _single_threaded_blas() -> Iterator[None]:
    """Run BLAS on one thread: the suite's matrices are small, and on a loaded 2-core machine
    multi-threaded OpenBLAS makes them 20x slower. Results do not depend on it."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


#: The seed problem's observation mask (0 = missing).
SEED_MASK = np.array(
    [[1, 1, 0, 1], [1, 0, 0, 1], [1, 1, 0, 1], [1, 0, 0, 1], [0, 1, 1, 1]], dtype=bool
)


def make_seed_problem() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The seed example: R (0 = missing), priors P (5x2) and Q (2x4)."""
    rng = np.random.default_rng(0)
    P_h = rng.random((5, 2))
    Q_h = rng.random((2, 4))
    R = np.round(P_h @ Q_h, 2) * SEED_MASK
    return R, np.round(P_h, 1), np.round(Q_h, 1)


@pytest.fixture
def seed_problem() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return make_seed_problem()


def random_observed(
    n: int, m: int, density: float, seed: int, *, rank: int = 2, noise: float = 0.0
) -> np.ndarray:
    """A dense (n, m) low-rank-plus-noise matrix with NaN at unobserved entries.

    Every row and column keeps at least one observed entry.
    """
    rng = np.random.default_rng(seed)
    R = rng.random((n, rank)) @ rng.random((rank, m)) + noise * rng.standard_normal((n, m))
    mask = rng.random((n, m)) < density
    mask[np.arange(n), rng.integers(0, m, n)] = True
    mask[rng.integers(0, n, m), np.arange(m)] = True
    return np.where(mask, R, np.nan)
