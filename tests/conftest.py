"""Shared, seeded fixtures for the test suite."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from threadpoolctl import threadpool_limits

# Hypothesis profiles. "ci" (loaded when CI=true) is derandomized with fixed example counts,
# so a CI run draws the same examples every time and its result reproduces; "dev" (the
# default otherwise) draws fresh examples each run, to keep finding new cases. A test's own
# @settings(max_examples=...) still applies under either profile. Choose one explicitly
# with HYPOTHESIS_PROFILE=ci|dev.
settings.register_profile(
    "ci", derandomize=True, max_examples=40, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=40, deadline=None)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE")
    or ("ci" if os.environ.get("CI", "").lower() == "true" else "dev")
)


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
