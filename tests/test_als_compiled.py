"""The compiled ALS half-step (kernel ``als_rows``) against the numpy path it replaces."""

from __future__ import annotations

import importlib
import sys
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lsqmf import ConvergenceWarning, FitResult
from lsqmf.kernels.registry import get_kernel
from lsqmf.solvers import SOLVERS
from lsqmf.solvers._common import Setup, prepare
from lsqmf.solvers.als import SPEC as ALS

pytest.importorskip("numba")

als_module = importlib.import_module("lsqmf.solvers.als")


def _setup(
    R: np.ndarray, rank: int, *, reg: float = 0.3, reg_bias: float = 0.2,
    count_scaled: bool = False, biases: bool = False, weights: np.ndarray | None = None,
    seed: int = 0,
) -> Setup:
    # reg_bias only with biases: a solver refuses an option the model does not use
    return prepare(
        ALS, R, rank, reg=reg, reg_bias=reg_bias if biases else None,
        count_scaled=count_scaled, biases=biases,
        weights=weights, random_state=seed, max_iter=1, tol=0.0, max_time=None, callback=None,
        P0=None, Q0=None, init_scale=0.5,
    )


def _both_sides(setup: Setup) -> list[tuple[als_module.SideSolver, np.ndarray, np.ndarray]]:
    """Each side with random fixed-side factors and the offset the solver would use."""
    problem = setup.problem
    rng = np.random.default_rng(1)
    P, Q, b, c = problem.unpack(setup.x0)
    P = rng.standard_normal(P.shape)
    if b is not None and c is not None:
        b, c = rng.standard_normal(b.shape), rng.standard_normal(c.shape)
    user_offset = None if c is None else problem.mu + c
    item_offset = None if b is None else problem.mu + b
    return [
        (als_module.user_side(setup), Q.T, user_offset),
        (als_module.item_side(setup), P, item_offset),
    ]


def test_compiled_path_is_the_default_with_numba() -> None:
    setup = _setup(np.eye(3) + 1.0, 2)
    assert als_module.user_side(setup)._kernel is get_kernel("als_rows")


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 9), m=st.integers(1, 9), rank=st.integers(1, 4),
    density=st.floats(0.0, 1.0), biases=st.booleans(), count_scaled=st.booleans(),
    weighted=st.booleans(), seed=st.integers(0, 2**16),
)
def test_half_step_matches_numpy_path(
    n: int, m: int, rank: int, density: float, biases: bool, count_scaled: bool,
    weighted: bool, seed: int,
) -> None:
    """Rows with 0, 1 and many ratings; with/without biases, weights and count scaling."""
    rng = np.random.default_rng(seed)
    R = rng.standard_normal((n, m)) + 3.0
    R[rng.random((n, m)) > density] = np.nan
    R[0, 0] = 1.0  # at least one observed entry
    w = rng.random((n, m)) + 0.5 if weighted else None
    setup = _setup(R, rank, count_scaled=count_scaled, biases=biases, weights=w, seed=seed)
    for side, features, offset in _both_sides(setup):
        assert side._kernel is not None
        z = side.solve(features, offset, biases)
        z_ref = side.solve_numpy(features, offset, biases)
        np.testing.assert_allclose(z, z_ref, rtol=1e-10, atol=1e-10 * np.abs(z_ref).max())
        np.testing.assert_array_equal(z[side.counts == 0], 0.0)


def test_many_ratings_per_row_matches_numpy_path() -> None:
    rng = np.random.default_rng(3)
    R = rng.random((40, 300)) * 4 + 1
    R[rng.random(R.shape) < 0.3] = np.nan
    setup = _setup(R, 8, reg=0.05, count_scaled=True, biases=True, weights=rng.random(R.shape))
    for side, features, offset in _both_sides(setup):
        z = side.solve(features, offset, True)
        np.testing.assert_allclose(z, side.solve_numpy(features, offset, True), rtol=1e-10,
                                   atol=1e-12)


def test_singular_rows_fall_back_to_numpy_path() -> None:
    """reg = 0: a row with one rating and rank 2 has a singular system (pinv semantics)."""
    R = np.full((4, 3), np.nan)
    R[0, 0] = 2.0  # user 0: one rating -> singular Gram matrix
    R[1:, :] = np.arange(9.0).reshape(3, 3) + 1.0
    setup = _setup(R, 2, reg=0.0, reg_bias=0.0)
    side, features, offset = _both_sides(setup)[0]
    kernel = get_kernel("als_rows")
    out, failed = np.empty((4, 2)), np.empty(4, dtype=bool)
    F = np.ascontiguousarray(features)
    n_failed = kernel(side._indptr64, side._other64, side.values, side._weights64, F,
                      side._reg_factor64, side._reg_bias64, False, out, failed)
    assert n_failed >= 1 and failed[0]
    z, z_ref = side.solve(features, offset, False), side.solve_numpy(features, offset, False)
    np.testing.assert_array_equal(z[failed], z_ref[failed])
    np.testing.assert_allclose(z, z_ref, rtol=1e-8, atol=1e-10)


def test_half_step_does_not_depend_on_thread_count() -> None:
    import numba

    rng = np.random.default_rng(5)
    R = rng.random((50, 60))
    R[rng.random(R.shape) < 0.6] = np.nan
    setup = _setup(R, 5, count_scaled=True, biases=True)
    side, features, offset = _both_sides(setup)[1]
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = side.solve(features, offset, True)
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_array_equal(side.solve(features, offset, True), one)


def _fit(backend: str, R: np.ndarray, **kw: object) -> FitResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return SOLVERS["als"](R, 4, random_state=0, backend=backend, **kw)


@pytest.mark.parametrize("biases", [False, True], ids=["plain", "biases"])
def test_full_fit_matches_numpy_path(biases: bool) -> None:
    rng = np.random.default_rng(7)
    R = rng.random((60, 4)) @ rng.random((4, 80)) * 4 + 0.5
    R[rng.random(R.shape) < 0.8] = np.nan
    kw = {"reg": 0.1, "count_scaled": True, "biases": biases, "max_iter": 30, "tol": 0.0}
    ref = _fit("numpy", R, **kw)
    fast = _fit("compiled", R, **kw)
    assert fast.nfev == ref.nfev == 30
    for name in ("P", "Q") + (("row_bias", "col_bias") if biases else ()):
        a, b = getattr(fast, name), getattr(ref, name)
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-8 * np.abs(b).max())
    np.testing.assert_allclose(fast.cost, ref.cost, rtol=1e-12)


def test_missing_numba_auto_falls_back_to_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    R = np.arange(12.0).reshape(3, 4) + 1.0
    ref = _fit("numpy", R, max_iter=3)
    monkeypatch.setitem(sys.modules, "numba", None)  # makes `import numba` raise ImportError
    fit = _fit("auto", R, max_iter=3)
    np.testing.assert_array_equal(fit.P, ref.P)
    with pytest.raises(ImportError, match=r"pip install numba"):
        SOLVERS["als"](R, 2, max_iter=1, backend="compiled")


def test_numpy_backend_uses_no_kernel() -> None:
    setup = _setup(np.eye(3) + 1.0, 2)
    side = als_module.SideSolver(
        setup.ratings.rows, setup.ratings.cols, 3, 3, setup.ratings.values, None,
        setup.reg_row, setup.reg_row_bias, backend="numpy",
    )
    assert side._kernel is None


@pytest.mark.parametrize("solver", ["als", "gd", "als_gd", "als_sgd", "sgd"])
def test_comparison_solvers_run_blas_on_one_thread(solver: str) -> None:
    """numba's and OpenBLAS's spinning threads contend on a small machine: with numba installed
    the iterations run BLAS on one thread, and the caller's setting is restored after."""
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads() -> list[int]:
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    R = np.arange(1.0, 13.0).reshape(3, 4)
    seen: list[list[int]] = []
    with threadpool_limits(limits=2, user_api="blas"):
        outside = blas_threads()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            SOLVERS[solver](R, 2, max_iter=3, random_state=0,
                            callback=lambda info: seen.append(blas_threads()))
        assert blas_threads() == outside
    assert seen and all(threads and max(threads) == 1 for threads in seen)
