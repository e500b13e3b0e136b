"""The least-squares problem: residual, Jacobian and its oracles."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from lsqmf import Ratings, as_ratings, build_problem, check_jacobian, kron_jacobian
from lsqmf.model.problem import FORMULATIONS


@st.composite
def problems(draw):
    """Random small problems over shapes, ranks, densities, formulations, biases, weights."""
    n = draw(st.integers(1, 7))
    m = draw(st.integers(1, 7))
    rank = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**20))
    formulation = draw(st.sampled_from(FORMULATIONS))
    biases = draw(st.booleans())
    weighted = draw(st.booleans())
    count_scaled = draw(st.booleans())
    rng = np.random.default_rng(seed)
    nnz = int(rng.integers(1, n * m + 1))
    flat = rng.choice(n * m, size=nnz, replace=False)
    rows, cols = np.divmod(flat, m)
    weights = rng.uniform(0.1, 3.0, nnz) if weighted else None
    ratings = Ratings(rows, cols, rng.uniform(0.5, 5, nnz), (n, m), weights=weights)
    problem = build_problem(
        ratings, rank, formulation=formulation, biases=biases, reg=float(rng.uniform(0, 1)),
        count_scaled=count_scaled, alpha=float(rng.uniform(0.1, 2)),
        beta=float(rng.uniform(0, 1)), P_prior=rng.standard_normal((n, rank)),
        Q_prior=rng.standard_normal((rank, m)),
    )
    x = rng.standard_normal(problem.n_params)
    return problem, x, rng


@settings(max_examples=60, deadline=None)
@given(problems())
def test_fast_jacobian_equals_kronecker_oracle_exactly(case) -> None:
    problem, x, _ = case
    J = problem.jacobian(x)
    K = kron_jacobian(problem, x)
    assert J.shape == K.shape == (problem.n_residuals, problem.n_params)
    assert abs(J - K).max() == 0.0


@settings(max_examples=40, deadline=None)
@given(problems())
def test_jacobian_matches_finite_differences(case) -> None:
    problem, x, _ = case
    chk = check_jacobian(problem, x, n_columns=None)
    assert chk.max_rel_error < 1e-7


@pytest.mark.parametrize("backend", ["numpy", "compiled"])
@settings(max_examples=40, deadline=None)
@given(case=problems())
def test_matrix_free_operator_matches_sparse_jacobian(case, backend: str) -> None:
    """Both operator paths (numpy; numba kernels) against the CSR Jacobian, which the
    Kronecker oracle checks entry for entry."""
    problem, x, rng = case
    J = problem.jacobian(x)
    op = problem.operator(x, backend=backend)
    v = rng.standard_normal(problem.n_params)
    y = rng.standard_normal(problem.n_residuals)
    np.testing.assert_allclose(op.matvec(v), J @ v, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(op.rmatvec(y), J.T @ y, rtol=1e-12, atol=1e-12)
    V = rng.standard_normal((problem.n_params, 2))
    np.testing.assert_allclose(op.matmat(V), J @ V, rtol=1e-12, atol=1e-12)
    Y = rng.standard_normal((problem.n_residuals, 3))
    np.testing.assert_allclose(op.rmatmat(Y), J.T @ Y, rtol=1e-12, atol=1e-12)
    dense_norms = np.sqrt(np.asarray(J.multiply(J).sum(axis=0)).ravel())
    np.testing.assert_allclose(problem.column_norms(x), dense_norms, rtol=1e-12, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(problems())
def test_jacobian_shape_and_nonzero_count_as_derived(case) -> None:
    problem, x, _ = case
    n, m, k = problem.n_rows, problem.n_cols, problem.rank
    N = problem.ratings.nnz
    n_params = n * k + k * m + (n + m if problem.biases else 0)
    assert problem.n_params == n_params
    per_row = 2 * k + (2 if problem.biases else 0)
    reg_rows = n_params if problem.formulation != "none" else 0
    assert problem.n_residuals == N + reg_rows
    pattern = problem.jac_sparsity()
    assert pattern.nnz == N * per_row + reg_rows == problem.jacobian_nnz()
    J = problem.jacobian(x)
    np.testing.assert_array_equal(J.indices, pattern.indices)
    np.testing.assert_array_equal(J.indptr, pattern.indptr)
    assert J.has_sorted_indices


@settings(max_examples=40, deadline=None)
@given(problems())
def test_cost_and_gradient(case) -> None:
    problem, x, _ = case
    r = problem.residual(x)
    assert problem.cost(x) == pytest.approx(0.5 * r @ r)
    np.testing.assert_allclose(problem.gradient(x), problem.jacobian(x).T @ r, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(problems())
def test_cost_invariant_to_triplet_order(case) -> None:
    problem, x, rng = case
    rt = problem.ratings
    perm = rng.permutation(rt.nnz)
    w = None if rt.weights is None else rt.weights[perm]
    shuffled = Ratings(rt.rows[perm], rt.cols[perm], rt.values[perm], rt.shape, weights=w)
    other = build_problem(
        shuffled, problem.rank, formulation=problem.formulation, biases=problem.biases,
        reg=1.0, P_prior=problem.P_anchor, Q_prior=problem.Q_anchor, beta=0.1,
    )
    same = build_problem(
        rt, problem.rank, formulation=problem.formulation, biases=problem.biases,
        reg=1.0, P_prior=problem.P_anchor, Q_prior=problem.Q_anchor, beta=0.1,
    )
    assert other.cost(x) == same.cost(x)


def test_residual_matches_the_seed_formula() -> None:
    """r = [alpha (PQ - R)_obs row-major; beta vec(P - P0); beta vec(Q - Q0)] written out."""
    rng = np.random.default_rng(3)
    R = np.array([[1.0, np.nan, 2.0], [np.nan, 3.0, 4.0]])
    P0, Q0 = rng.random((2, 2)), rng.random((2, 3))
    problem = build_problem(as_ratings(R), 2, P_prior=P0, Q_prior=Q0, alpha=0.9, beta=0.1)
    P, Q = rng.random((2, 2)), rng.random((2, 3))
    x = problem.pack(P, Q)
    E = P @ Q - R
    expected = np.concatenate(
        [0.9 * E[~np.isnan(R)], 0.1 * (P - P0).ravel(), 0.1 * (Q - Q0).ravel()]
    )
    np.testing.assert_allclose(problem.residual(x), expected, rtol=1e-15)
    P2, Q2, b, c = problem.unpack(x)
    np.testing.assert_array_equal(P2, P)
    np.testing.assert_array_equal(Q2, Q)
    assert b is None and c is None


def test_l2_objective_written_out() -> None:
    rng = np.random.default_rng(4)
    R = np.array([[1.0, np.nan, 2.0], [np.nan, 3.0, 4.0], [5.0, np.nan, np.nan]])
    W = rng.uniform(0.5, 2, R.shape)
    ratings = as_ratings(R, weights=W)
    problem = build_problem(ratings, 2, formulation="l2", reg=0.3, reg_bias=0.7, biases=True,
                            count_scaled=True)
    P, Q = rng.random((3, 2)), rng.random((2, 3))
    b, c = rng.random(3), rng.random(3)
    x = problem.pack(P, Q, b, c)
    obs = ~np.isnan(R)
    mu = np.average(R[obs], weights=W[obs])
    E = (mu + b[:, None] + c[None, :] + P @ Q - R)[obs]
    nu, ni = obs.sum(1), obs.sum(0)
    f = (
        np.sum(W[obs] * E**2)
        + 0.3 * (np.sum(nu[:, None] * P**2) + np.sum(ni[None, :] * Q**2))
        + 0.7 * (np.sum(nu * b**2) + np.sum(ni * c**2))
    )
    assert problem.cost(x) == pytest.approx(0.5 * f, rel=1e-13)


def test_build_problem_validates() -> None:
    ratings = as_ratings(np.array([[1.0, 2.0]]))
    with pytest.raises(ValueError, match="`formulation` must be one of"):
        build_problem(ratings, 1, formulation="ridge")
    with pytest.raises(ValueError, match="needs `P_prior`"):
        build_problem(ratings, 1)
    with pytest.raises(ValueError, match="`reg` must be >= 0"):
        build_problem(ratings, 1, formulation="l2", reg=-1.0)
    with pytest.raises(TypeError, match=r"lsqmf\.Ratings"):
        build_problem(np.ones((2, 2)), 1, formulation="l2")


def test_jacobian_memory_is_linear_in_observed_entries() -> None:
    """A 20000 x 20000 matrix with 4000 observed entries: no n*m allocation anywhere."""
    rng = np.random.default_rng(0)
    n = m = 20_000
    nnz = 4_000
    flat = rng.choice(n * m, size=nnz, replace=False)
    rows, cols = np.divmod(flat, m)
    ratings = Ratings(rows, cols, rng.random(nnz), (n, m))
    tracemalloc.start()
    try:
        problem = build_problem(ratings, 3, formulation="l2", reg=0.1, biases=True)
        x = rng.standard_normal(problem.n_params)
        J = problem.jacobian(x)
        op = problem.operator(x)
        op.rmatvec(problem.residual(x))
        problem.column_norms(x)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sp.issparse(J)
    dense_bytes = n * m * 8
    assert peak < dense_bytes / 50, f"peak {peak} bytes is not O(nnz*rank + n_params)"
