"""The fast solvers (als_cg, bsgd, bmf): kernels == numpy oracles, agreement with the exact
solvers at convergence, convergence on small seeded problems, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("numba")

from lsqmf.solvers._kernels import get_kernel


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
    np.testing.assert_allclose(out[0], out[1], rtol=1e-10, atol=1e-12)


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
        loss = get_kernel("sgd_epoch", backend)(rows, cols, v, w, order, *arrays, 0.2, 0.03,
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
    with pytest.raises(ValueError, match="`backend` must be 'compiled' or 'numpy'; got 'gpu'"):
        get_kernel("cg_rows", "gpu")

