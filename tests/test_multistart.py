"""multistart: seeded restarts until the best optimum is seen twice."""

from __future__ import annotations

import numpy as np
import pytest

from lsqmf.nls.multistart import _cluster, multistart

OPTS = dict(
    eliminate="Q", formulation="none", init_scale=1.0, ftol=1e-10, xtol=1e-10, gtol=1e-10,
    max_nfev=100,
)


def _problem(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((12, 3)) @ rng.standard_normal((3, 10))
    M += 0.3 * rng.standard_normal(M.shape)
    M[rng.random(M.shape) < 0.35] = np.nan
    return M


def test_deterministic_for_a_seed() -> None:
    M = _problem()
    a = multistart(M, 2, random_state=3, **OPTS)
    b = multistart(M, 2, random_state=3, **OPTS)
    np.testing.assert_array_equal(a.seeds, b.seeds)
    np.testing.assert_array_equal(a.costs, b.costs)
    np.testing.assert_array_equal(a.best.P, b.best.P)
    assert a.random_state == 3


def test_parallel_equals_serial() -> None:
    M = _problem(1)
    serial = multistart(M, 2, random_state=5, n_jobs=1, **OPTS)
    parallel = multistart(M, 2, random_state=5, n_jobs=2, **OPTS)
    np.testing.assert_array_equal(serial.seeds, parallel.seeds)
    np.testing.assert_allclose(serial.costs, parallel.costs, rtol=0, atol=0)
    np.testing.assert_array_equal(serial.best.P, parallel.best.P)


def test_stopping_rule() -> None:
    M = _problem(2)
    res = multistart(M, 2, random_state=0, until_seen=3, **OPTS)
    assert res.converged
    best = res.best.cost
    near = np.abs(res.costs - best) <= 1e-6 * best
    assert near.sum() == 3  # stops at the third hit ...
    assert near[-1]  # ... which is the last start
    assert res.hits.sum() == res.n_starts and res.optima[0] == pytest.approx(best)
    assert res.best.cost == res.costs.min()
    frame = res.to_frame()
    assert list(frame.columns) == ["seed", "cost", "rms", "status", "wall_time", "cpu_time", "nfev"]


def test_max_starts_bounds_the_run() -> None:
    M = _problem(3)
    res = multistart(M, 2, random_state=0, until_seen=50, max_starts=4, **OPTS)
    assert res.n_starts == 4 and not res.converged


def test_cluster_within_rtol() -> None:
    optima, hits = _cluster(np.array([1.0, 1.0 + 1e-9, 2.0, np.inf, 1.0 - 1e-9]), 1e-6)
    np.testing.assert_allclose(optima, [1.0 - 1e-9, 2.0])
    np.testing.assert_array_equal(hits, [3, 1])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"until_seen": 0}, "until_seen"), ({"rtol": -1.0}, "rtol"), ({"n_jobs": 0}, "n_jobs"),
     ({"random_state": "x"}, "random_state")],
    ids=["until_seen", "rtol", "n_jobs", "random_state"],
)
def test_invalid_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        multistart(_problem(), 2, **kwargs)


def test_multistart_follows_the_progress_policy(capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    M = rng.standard_normal((8, 2)) @ rng.standard_normal((2, 6))
    M[rng.random(M.shape) < 0.2] = np.nan
    options = dict(random_state=0, eliminate="Q", formulation="none", init_scale=1.0)
    multistart(M, 2, progress=False, **options)
    assert capsys.readouterr().err == ""
    res = multistart(M, 2, progress=True, **options)  # off a terminal: the last line
    err = capsys.readouterr().err
    assert f"lsqmf.multistart: {res.n_starts}" in err and "starts" in err
