"""The Bayesian MF kernels (lsqmf.kernels.bmf): kernel == numpy oracle, the same
draws on one thread and on two, and the sufficient-statistics form of the hyperparameter draw."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("numba")

from lsqmf.kernels.bmf import _BLOCK
from lsqmf.kernels.registry import get_kernel
from lsqmf.solvers.bmf import gauss_wishart_from_stats, sample_gauss_wishart


def _side(rng: np.random.Generator, n: int, m: int, nnz: int) -> tuple[np.ndarray, ...]:
    own = np.sort(rng.integers(0, n, nnz))
    other = rng.integers(0, m, nnz).astype(np.int64)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(own, minlength=n))]).astype(np.int64)
    return other, indptr


def _problem(seed: int, n: int, m: int, k: int, nnz: int, with_bias: bool) -> dict:
    rng = np.random.default_rng(seed)
    other, indptr = _side(rng, n, m, nnz)
    k1 = k + with_bias
    A = rng.standard_normal((k1, k1))
    return {
        "indptr": indptr, "other": other, "values": rng.standard_normal(nnz) + 3.0,
        "weights": rng.random(nnz) + 0.5, "mu": 3.0 if with_bias else 0.0,
        "Zo": rng.standard_normal((m, k1)), "k": k, "with_bias": with_bias, "alpha": 1.7,
        "prior_prec": A @ A.T + np.eye(k1), "prior_mean": rng.standard_normal(k1),
        "eps": rng.standard_normal((n, k1)),
    }


def _draw(backend: str, p: dict) -> tuple[np.ndarray, np.ndarray]:
    n, k1 = p["eps"].shape
    Z, stats = np.full((n, k1), np.nan), np.full((k1 + 1, k1), np.nan)
    get_kernel("gibbs_side", backend)(*p.values(), Z, stats)
    return Z, stats


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 12), m=st.integers(1, 9),
       k=st.integers(1, 5), nnz=st.integers(0, 60), with_bias=st.booleans())
def test_gibbs_side_matches_oracle(seed, n, m, k, nnz, with_bias):
    p = _problem(seed, n, m, k, nnz, with_bias)
    (Z, stats), (Z_ref, stats_ref) = _draw("compiled", p), _draw("numpy", p)
    np.testing.assert_allclose(Z, Z_ref, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(stats, stats_ref, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("with_bias", [True, False], ids=["biases", "no-biases"])
def test_gibbs_side_is_gibbs_rows_with_targets_formed_inside(with_bias):
    # the same conditional as the kernel of lsqmf.kernels.solvers (targets precomputed there)
    p = _problem(3, 40, 30, 4, 300, with_bias)
    Z, _ = _draw("compiled", p)
    k = p["k"]
    y = p["values"] - p["mu"] - (p["Zo"][p["other"], k] if with_bias else 0.0)
    Z_rows = np.zeros_like(Z)
    get_kernel("gibbs_rows")(p["indptr"], p["other"], y, p["weights"],
                                  np.ascontiguousarray(p["Zo"][:, :k]), with_bias, p["alpha"],
                                  p["prior_prec"], p["prior_mean"], p["eps"], Z_rows)
    np.testing.assert_allclose(Z, Z_rows, rtol=1e-10, atol=1e-12)


def test_gibbs_side_one_thread_equals_two_threads():
    # rows are drawn independently with the caller's normals and the statistics are summed per
    # block, then over blocks in order: bit-identical for any thread count
    import numba

    p = _problem(5, 9 * _BLOCK + 7, 50, 6, 6000, True)
    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = _draw("compiled", p)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = _draw("compiled", p)
    finally:
        numba.set_num_threads(previous)
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])


@pytest.mark.parametrize("with_bias", [True, False], ids=["biases", "no-biases"])
def test_sse_pairs_matches_oracle(with_bias):
    rng = np.random.default_rng(2)
    k, n, m, nnz = 3, 8, 6, 40
    k1 = k + with_bias
    rows, cols = rng.integers(0, n, nnz), rng.integers(0, m, nnz)
    v, w = rng.standard_normal(nnz), rng.random(nnz)
    Zu, Zi = rng.standard_normal((n, k1)), rng.standard_normal((m, k1))
    got = get_kernel("sse_pairs")(rows, cols, v, w, Zu, Zi, k, with_bias, 0.7)
    want = get_kernel("sse_pairs", "numpy")(rows, cols, v, w, Zu, Zi, k, with_bias, 0.7)
    assert got == pytest.approx(want, rel=1e-12)


def test_gauss_wishart_from_stats_is_the_draw_from_the_rows():
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((50, 4)) + 1.0
    a = sample_gauss_wishart(np.random.default_rng(7), Z, 2.0)
    b = gauss_wishart_from_stats(np.random.default_rng(7), 50, Z.sum(axis=0), Z.T @ Z, 2.0)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-10)


def test_get_kernel_rejects_unknown_names():
    with pytest.raises(ValueError, match="`name` must be one of"):
        get_kernel("gibbs_sides")
    with pytest.raises(ValueError, match="`backend` must be one of 'auto', 'compiled', 'numpy'"):
        get_kernel("gibbs_side", "gpu")
