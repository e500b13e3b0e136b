"""Compiled kernels (lsqmf._compiled) against plain-Python oracles."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from lsqmf import _compiled
from lsqmf.golden import case_names, load_case
from lsqmf.reference import matrix_factorization, matrix_factorization_fast
from lsqmf.verify import verify

pytest.importorskip("numba")


# --------------------------------------------------------------------------------------------
# numba is optional


def test_missing_numba_gives_a_clear_import_error(monkeypatch):
    _compiled.get_kernel("tutorial_mf")  # compiled and cached before numba "disappears"
    monkeypatch.setitem(sys.modules, "numba", None)  # makes `import numba` raise ImportError
    with pytest.raises(ImportError, match=r"install lsqmf\[fast\]"):
        _compiled.get_kernel("tutorial_mf")
    P, Q = np.ones((2, 1)), np.ones((2, 1))
    with pytest.raises(ImportError, match=r"install lsqmf\[fast\]"):
        matrix_factorization_fast(np.ones((2, 2)), P, Q, 1)
    assert_array_equal(P, 1.0)


def test_unknown_kernel_name():
    with pytest.raises(ValueError, match=r"`name` must be one of 'tutorial_mf'.*got 'nope'"):
        _compiled.get_kernel("nope")


def test_kernel_is_compiled_once():
    assert _compiled.get_kernel("tutorial_mf") is _compiled.get_kernel("tutorial_mf")


# --------------------------------------------------------------------------------------------
# matrix_factorization_fast == the reference


@pytest.mark.parametrize("name", case_names())
def test_fast_matches_every_golden_case(name):
    golden = load_case(name)
    P, Q = golden.P0.copy(), golden.Q0.copy()
    P_out, Q_out = matrix_factorization_fast(golden.R, P, Q, **golden.params())
    assert P_out is P and Q_out is Q
    assert_allclose(P, golden.P, rtol=0, atol=1e-10)
    assert_allclose(Q, golden.Q, rtol=0, atol=1e-10)


def test_fast_passes_verify_at_1e_10():
    report = verify(matrix_factorization_fast, atol=1e-10)
    assert report.passed, report.to_records()


def test_fast_accepts_any_memory_layout():
    golden = load_case("tall_k3")
    P_big = np.zeros((golden.R.shape[0], 2 * golden.K))
    P = P_big[:, ::2]  # strided view
    P[:] = golden.P0
    Q = np.asfortranarray(golden.Q0)
    matrix_factorization_fast(golden.R, P, Q, **golden.params())
    assert_allclose(P, golden.P, rtol=0, atol=1e-10)
    assert_allclose(Q, golden.Q, rtol=0, atol=1e-10)
    assert np.all(P_big[:, 1::2] == 0.0)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 5),
    m=st.integers(1, 5),
    K=st.integers(1, 3),
    max_steps=st.integers(0, 30),
    alpha=st.floats(1e-4, 0.05),
    beta=st.floats(0.0, 0.2),
    epsilon=st.sampled_from([0.0, 1e-3, 0.5, 5.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_fast_matches_reference_on_random_small_cases(
    n, m, K, max_steps, alpha, beta, epsilon, seed
):
    rng = np.random.default_rng(seed)
    R = rng.integers(-1, 6, size=(n, m)).astype(float) * rng.random((n, m)) * 2
    P0, Q0 = rng.random((n, K)), rng.random((m, K))
    P_ref, Q_ref = P0.copy(), Q0.copy()
    matrix_factorization(R, P_ref, Q_ref, K, max_steps, alpha, beta, epsilon)
    P, Q = P0.copy(), Q0.copy()
    matrix_factorization_fast(R, P, Q, K, max_steps, alpha, beta, epsilon)
    assert_allclose(P, P_ref, rtol=0, atol=1e-12)
    assert_allclose(Q, Q_ref, rtol=0, atol=1e-12)
