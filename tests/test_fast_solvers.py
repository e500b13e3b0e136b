"""The fast solvers (als_cg, bsgd, bmf): kernels == numpy oracles, agreement with the exact
solvers at convergence, convergence on small seeded problems, determinism."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("numba")

from lsqmf import ConvergenceWarning
from lsqmf.data.synthetic import make_low_rank
from lsqmf.evaluate import holdout_split
from lsqmf.kernels.registry import get_kernel
from lsqmf.solvers import als, als_cg, bmf, bsgd


def _side(rng: np.random.Generator, n: int, m: int, nnz: int) -> tuple[np.ndarray, ...]:
    own = np.sort(rng.integers(0, n, nnz))
    other = rng.integers(0, m, nnz).astype(np.int64)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(own, minlength=n))]).astype(np.int64)
    return own.astype(np.int64), other, indptr


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 12), m=st.integers(1, 9),
       k=st.integers(1, 5), nnz=st.integers(0, 60), with_bias=st.booleans(),
       steps=st.integers(1, 6))
def test_cg_rows_matches_oracle(seed, n, m, k, nnz, with_bias, steps):
    rng = np.random.default_rng(seed)
    _, other, indptr = _side(rng, n, m, nnz)
    y, w = rng.standard_normal(nnz), rng.random(nnz) + 0.5
    F = rng.standard_normal((m, k))
    reg, reg_b = rng.random(n) + 0.1, rng.random(n) + 0.1
    Z0 = rng.standard_normal((n, k + with_bias))
    out = [Z0.copy(), Z0.copy()]
    for backend, Z in zip(("compiled", "numpy"), out, strict=True):
        get_kernel("cg_rows", backend)(indptr, other, y, w, F, with_bias, reg, reg_b, Z, steps)
    # the oracle sums with BLAS in another order: rounding, amplified by CG steps taken after
    # the system is already solved (steps > k + 1)
    np.testing.assert_allclose(out[0], out[1], rtol=1e-8, atol=1e-10)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 12), m=st.integers(1, 9),
       k=st.integers(1, 5), nnz=st.integers(0, 60), with_bias=st.booleans())
def test_gibbs_rows_matches_oracle(seed, n, m, k, nnz, with_bias):
    rng = np.random.default_rng(seed)
    _, other, indptr = _side(rng, n, m, nnz)
    y, w = rng.standard_normal(nnz), rng.random(nnz) + 0.5
    F = rng.standard_normal((m, k))
    k1 = k + with_bias
    A = rng.standard_normal((k1, k1))
    prec, mean = A @ A.T + np.eye(k1), rng.standard_normal(k1)
    eps = rng.standard_normal((n, k1))
    out = [np.zeros((n, k1)), np.zeros((n, k1))]
    for backend, Z in zip(("compiled", "numpy"), out, strict=True):
        get_kernel("gibbs_rows", backend)(indptr, other, y, w, F, with_bias, 1.7, prec, mean,
                                          eps, Z)
    np.testing.assert_allclose(out[0], out[1], rtol=1e-9, atol=1e-11)


def test_cg_rows_with_enough_steps_is_the_exact_ridge_solve():
    rng = np.random.default_rng(3)
    n, m, k = 5, 7, 3
    _, other, indptr = _side(rng, n, m, 30)
    y, w = rng.standard_normal(30), np.ones(30)
    F = rng.standard_normal((m, k))
    reg = np.full(n, 0.5)
    Z = rng.standard_normal((n, k + 1))
    get_kernel("cg_rows")(indptr, other, y, w, F, True, reg, reg, Z, 50)
    for r in range(n):
        sl = slice(indptr[r], indptr[r + 1])
        A = np.hstack([F[other[sl]], np.ones((sl.stop - sl.start, 1))])
        exact = np.linalg.solve(A.T @ A + 0.5 * np.eye(k + 1), A.T @ y[sl])
        np.testing.assert_allclose(Z[r], exact, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("with_bias", [True, False], ids=["biases", "no-biases"])
def test_sgd_epoch_matches_oracle(with_bias):
    rng = np.random.default_rng(1)
    n, m, k, nnz = 9, 7, 3, 40
    rows = rng.integers(0, n, nnz).astype(np.int64)
    cols = rng.integers(0, m, nnz).astype(np.int64)
    v, w = rng.standard_normal(nnz), rng.random(nnz) + 0.5
    order = rng.permutation(nnz).astype(np.int64)
    reg = [rng.random(n), rng.random(m), rng.random(n), rng.random(m)]
    start = [rng.standard_normal((n, k)), rng.standard_normal((m, k)), rng.standard_normal(n),
             rng.standard_normal(m)]
    results = []
    for backend in ("compiled", "numpy"):
        arrays = [a.copy() for a in start]
        loss = get_kernel("bsgd_epoch", backend)(rows, cols, v, w, order, *arrays, 0.2, 0.03,
                                                0.05, *reg, with_bias)
        results.append((loss, arrays))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-12)
    for a, b in zip(results[0][1], results[1][1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_predict_pairs_matches_oracle():
    rng = np.random.default_rng(2)
    P, Qt = rng.standard_normal((6, 3)), rng.standard_normal((5, 3))
    b, c = rng.standard_normal(6), rng.standard_normal(5)
    rows, cols = rng.integers(0, 6, 20), rng.integers(0, 5, 20)
    out = [np.empty(20), np.empty(20)]
    for backend, o in zip(("compiled", "numpy"), out, strict=True):
        get_kernel("predict_pairs", backend)(rows, cols, P, Qt, b, c, 3.0, True, o)
    np.testing.assert_allclose(out[0], out[1], rtol=1e-12)


def test_get_kernel_rejects_unknown_names():
    with pytest.raises(ValueError, match="`name` must be one of"):
        get_kernel("nope")
    with pytest.raises(ValueError, match="`backend` must be one of 'auto', 'compiled', 'numpy'"):
        get_kernel("cg_rows", "gpu")



# ------------------------------------------------------------------ solvers

OBJECTIVE = {"reg": 0.1, "biases": True, "count_scaled": True}
#: bmf refuses reg (its priors are learned; it never used it): its share of OBJECTIVE
BMF_OBJECTIVE = {"biases": True, "count_scaled": True}


@pytest.fixture(scope="module")
def small():
    R, _ = make_low_rank(40, 30, 3, density=0.5, noise=0.1, random_state=0, scale=(1.0, 5.0))
    return R


@pytest.mark.parametrize("objective", [OBJECTIVE, {"reg": 0.05}],
                         ids=["biases-count-scaled", "plain"])
def test_als_cg_reaches_the_exact_als_objective(small, objective):
    exact = als(small, 3, **objective, tol=1e-12, max_iter=3000, random_state=1)
    fast = als_cg(small, 3, **objective, tol=1e-12, max_iter=3000, cg_steps=2,
                  random_state=1)
    assert fast.success and exact.success
    assert fast.cost == pytest.approx(exact.cost, rel=1e-6)
    np.testing.assert_allclose(fast.P @ fast.Q, exact.P @ exact.Q, atol=1e-3)


def test_als_cg_cost_decreases_monotonically(small):
    fit = als_cg(small, 3, **OBJECTIVE, tol=1e-9, max_iter=500, random_state=2)
    cost = np.asarray(fit.history.cost)
    assert np.all(np.diff(cost) <= 1e-9 * cost[:-1])


def test_als_cg_with_rank_plus_one_steps_is_exact_als(small):
    # CG solves a (k+1)-dimensional system exactly in k+1 steps: every sweep is an ALS sweep
    with pytest.warns(ConvergenceWarning):
        exact = als(small, 3, **OBJECTIVE, tol=0.0, max_iter=5, random_state=3)
    with pytest.warns(ConvergenceWarning):
        fast = als_cg(small, 3, **OBJECTIVE, tol=0.0, max_iter=5, cg_steps=4, random_state=3)
    np.testing.assert_allclose(fast.history.cost, exact.history.cost, rtol=1e-8)


def test_bsgd_converges_near_the_als_optimum(small):
    exact = als(small, 3, **OBJECTIVE, tol=1e-12, max_iter=3000, random_state=1)
    fit = bsgd(small, 3, **OBJECTIVE, learning_rate=0.05, decay=0.995, max_iter=3000,
               tol=1e-9, random_state=1)
    assert fit.success
    assert fit.cost == pytest.approx(exact.cost, rel=1e-4)


@pytest.mark.parametrize("solver", [als_cg, bsgd, bmf], ids=["als_cg", "bsgd", "bmf"])
def test_same_seed_same_numbers(small, solver):
    kw = ({"max_iter": 30, **BMF_OBJECTIVE} if solver is bmf
          else {"max_iter": 30, "tol": 0.0, **OBJECTIVE})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = solver(small, 3, random_state=5, **kw)
        b = solver(small, 3, random_state=5, **kw)
        c = solver(small, 3, random_state=6, **kw)
    np.testing.assert_array_equal(a.P, b.P)
    np.testing.assert_array_equal(a.Q, b.Q)
    np.testing.assert_array_equal(a.history.cost, b.history.cost)
    assert not np.array_equal(a.P, c.P)


@pytest.mark.parametrize("solver", [als_cg, bmf], ids=["als_cg", "bmf"])
def test_compiled_and_numpy_backends_agree(small, solver):
    kw = ({"max_iter": 8, "burn_in": 3, **BMF_OBJECTIVE} if solver is bmf
          else {"max_iter": 8, "tol": 0.0, **OBJECTIVE})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = solver(small, 3, random_state=4, backend="compiled", **kw)
        b = solver(small, 3, random_state=4, backend="numpy", **kw)
    np.testing.assert_allclose(a.P @ a.Q, b.P @ b.Q, rtol=1e-7, atol=1e-9)


def test_bmf_recovers_an_exactly_low_rank_matrix():
    R, _ = make_low_rank(60, 50, 2, density=0.4, noise=0.01, random_state=7)
    train, test = holdout_split(R, test_size=0.2, random_state=0)
    fit = bmf(train, 2, max_iter=150, burn_in=50, random_state=0)
    assert fit.success and fit.options["n_samples"] == 100
    pred = fit.predict(test.rows, test.cols)
    assert np.sqrt(np.mean((pred - test.values) ** 2)) < 0.1  # entries have unit variance
    assert fit.rank == 2 and fit.P.shape == (60, 2)


def test_bmf_posterior_mean_compression_matches_the_exact_average():
    from lsqmf.solvers.bmf import MeanFactors

    rng = np.random.default_rng(0)
    # samples inside one rank-3 subspace: every compression to 4 columns is exact
    U, V = rng.standard_normal((15, 3)), rng.standard_normal((12, 3))
    acc, exact = MeanFactors(cap=4), np.zeros((15, 12))
    for _ in range(9):
        P, Qt = U @ rng.standard_normal((3, 2)), V @ rng.standard_normal((3, 2))
        acc.add(P, Qt)
        exact += P @ Qt.T
    assert len(acc.left) < 9  # it did compress
    Pm, Qtm = acc.mean(3)
    np.testing.assert_allclose(Pm @ Qtm.T, exact / 9, atol=1e-10)


def test_bmf_burn_in_longer_than_the_run_keeps_the_last_sample(small):
    # issue 21: a given burn_in >= max_iter is refused (it was reduced silently); the default
    # (None) still adapts to a short run and keeps the last sample
    with pytest.raises(ValueError, match="`burn_in` must be < `max_iter`"):
        bmf(small, 2, max_iter=5, burn_in=10, random_state=0)
    fit = bmf(small, 2, max_iter=5, random_state=0)
    assert fit.options["burn_in"] == 4 and fit.options["n_samples"] == 1
    with pytest.raises(ValueError, match="`burn_in`"):
        bmf(small, 2, burn_in=-1)
