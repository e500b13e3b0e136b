"""The row-solve stages of the compiled kernels (lsqmf.kernels.linalg), each alone."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from lsqmf.kernels import core as _compiled
from lsqmf.kernels import linalg as _kernel_linalg
from lsqmf.kernels import solvers as _kernels
from lsqmf.kernels.registry import get_kernel

STAGES = ("ridge_normal_equations", "cholesky_in_place", "forward_substitution",
          "back_substitution")


def spd(k1: int, seed: int = 0) -> np.ndarray:
    A = np.random.default_rng(seed).random((k1, k1))
    return A @ A.T + k1 * np.eye(k1)


@pytest.mark.parametrize("with_bias", [False, True], ids=["no_bias", "bias"])
def test_ridge_normal_equations_adds_the_rows_gram_and_rhs(with_bias):
    rng = np.random.default_rng(1)
    F = rng.random((5, 3))
    other = np.array([4, 0, 2, 2, 1], dtype=np.int64)
    y, w = rng.random(5), rng.random(5) + 0.5
    k1 = 4 if with_bias else 3
    G0 = np.tril(spd(k1))
    G, h = G0.copy(), np.ones(k1)
    _kernel_linalg.ridge_normal_equations(1, 4, other, y, w, F, with_bias, np.empty(k1), G, h)
    A = F[other[1:4]]
    if with_bias:
        A = np.hstack([A, np.ones((3, 1))])
    W = w[1:4, None]
    assert_allclose(np.tril(G - G0), np.tril((A * W).T @ A), rtol=1e-14)
    assert_array_equal(np.triu(G, 1), np.triu(G0, 1))  # the upper triangle is never written
    assert_allclose(h, 1.0 + (A * W).T @ y[1:4], rtol=1e-14)


def test_cholesky_and_substitutions_solve_a_positive_definite_system():
    M = spd(5)
    G = np.tril(M)
    assert _kernel_linalg.cholesky_in_place(G, 1e-13, True)
    L = np.tril(G)
    assert_allclose(L, np.linalg.cholesky(M), rtol=1e-12)
    b = np.arange(1.0, 6.0)
    v, out = np.empty(5), np.zeros((3, 5))
    _kernel_linalg.forward_substitution(G, b, v)
    assert_allclose(L @ v, b, rtol=1e-12)
    _kernel_linalg.back_substitution(G, v, out, 1)
    assert_allclose(M @ out[1], b, rtol=1e-10)
    assert_array_equal(out[[0, 2]], 0.0)  # only row r is written


@pytest.mark.parametrize("bad", [0.0, np.nan], ids=["singular", "nan"])
def test_cholesky_check_reports_a_bad_pivot(bad):
    G = np.tril(spd(3))
    G[2, 2] = bad
    assert not _kernel_linalg.cholesky_in_place(G.copy(), 1e-13, True)
    G2 = G.copy()
    with np.errstate(invalid="ignore"):  # unchecked: runs to the end, NaN from the bad pivot
        assert _kernel_linalg.cholesky_in_place(G2, 1e-13, False)
    assert not np.isfinite(G2[2, 2])


def test_get_kernel_compiles_the_helpers_of_both_kernel_modules():
    get_kernel("als_rows")
    get_kernel("cg_rows")
    for module in (_compiled, _kernels):
        for name in module._HELPERS:
            assert hasattr(getattr(module, name), "py_func"), (module.__name__, name)
    for name in STAGES:  # the plain functions stay plain where they are defined
        assert not hasattr(getattr(_kernel_linalg, name), "py_func"), name


def test_a_compiled_helper_gives_the_plain_functions_bits():
    get_kernel("als_rows")
    M = spd(6, seed=3)
    G_plain, G_jit = np.tril(M), np.tril(M)
    assert _kernel_linalg.cholesky_in_place(G_plain, 1e-13, True)
    assert _compiled.cholesky_in_place(G_jit, 1e-13, True)
    assert_array_equal(G_plain, G_jit)
