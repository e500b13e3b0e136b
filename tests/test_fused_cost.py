"""The fused cost pass (kernel ``residual_sse``) against its numpy oracle and the residual.

Tolerances: the compiled kernel and the oracle sum the same chunks in a different order inside
each chunk (a loop vs a BLAS dot), so they agree to rounding: 1e-12 relative on the sum of
squares. ``Problem.cost`` against ``0.5 * r @ r`` (the residual vector): 1e-12 relative.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from lsqmf.data.synthetic import make_low_rank
from lsqmf.kernels import core
from lsqmf.kernels.registry import get_kernel
from lsqmf.model.problem import build_problem
from lsqmf.solvers import als
from lsqmf.solvers._holdout import split_validation

pytest.importorskip("numba")

RTOL = 1e-12


def _pairs(seed: int, nnz: int, n: int, m: int, k: int, unknown: bool):
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, n, nnz)
    cols = rng.integers(0, m, nnz)
    if unknown:  # held-out pairs with ids the factors do not know
        rows[rng.random(nnz) < 0.1] = -1
        cols[rng.random(nnz) < 0.1] = -1
    values = rng.normal(3.0, 1.0, nnz)
    d = rng.random(nnz) + 0.5
    for a in (rows, cols, values, d):
        a.setflags(write=False)
    P, Qt = rng.standard_normal((n, k)), rng.standard_normal((m, k))
    return rows, cols, values, d, P, Qt, rng.standard_normal(n), rng.standard_normal(m)


@pytest.mark.parametrize("with_bias", [True, False], ids=["biases", "no-biases"])
@pytest.mark.parametrize("scaled", [True, False], ids=["scaled", "unscaled"])
@pytest.mark.parametrize("clip", [(-np.inf, np.inf), (1.0, 4.0)], ids=["no-clip", "clip"])
@pytest.mark.parametrize("nnz", [0, 1, 5000, 3 * core.SSE_CHUNK + 7], ids=lambda n: f"nnz{n}")
def test_residual_sse_matches_oracle(with_bias, scaled, clip, nnz):
    rows, cols, values, d, P, Qt, b, c = _pairs(nnz, nnz, 50, 40, 6, unknown=not scaled)
    if not scaled:
        d = np.empty(0)
        d.setflags(write=False)
    args = (rows, cols, values, d, P, Qt, b, c, 0.7, with_bias, *clip)
    got = get_kernel("residual_sse", "compiled")(*args)
    want = core.residual_sse_numpy(*args)
    assert_allclose(got, want, rtol=RTOL, atol=0.0)


def test_residual_sse_by_hand():
    """One pair with an unknown row: only mu and the column bias predict it; clipped."""
    rows, cols = np.array([0, -1]), np.array([1, 0])
    P, Qt = np.array([[1.0, 2.0]]), np.array([[0.0, 0.0], [3.0, 4.0]])
    b, c = np.array([0.5]), np.array([0.25, -1.0])
    values, d = np.array([10.0, 1.0]), np.array([2.0, 3.0])
    # pair 0: 1 + 0.5 - 1 + 11 = 11.5, error 1.5, scaled 3; pair 1: 1 + 0.25 = 1.25 -> 0.75
    want = 3.0**2 + 0.75**2
    for backend in ("compiled", "numpy"):
        got = get_kernel("residual_sse", backend)(rows, cols, values, d, P, Qt, b, c, 1.0, True,
                                                  -np.inf, np.inf)
        assert got == pytest.approx(want, rel=1e-15)
        clipped = get_kernel("residual_sse", backend)(rows, cols, values, d, P, Qt, b, c, 1.0,
                                                      True, 0.0, 10.5)  # 11.5 -> 10.5
        assert clipped == pytest.approx(1.0**2 + 0.75**2, rel=1e-15)


def test_residual_sse_one_thread_equals_two_threads():
    numba = pytest.importorskip("numba")
    args = (*_pairs(1, 5 * core.SSE_CHUNK + 3, 300, 200, 8, unknown=False), 0.1, True,
            -np.inf, np.inf)
    kernel = get_kernel("residual_sse", "compiled")
    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = kernel(*args)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = kernel(*args)
    finally:
        numba.set_num_threads(previous)
    assert one == two


@pytest.mark.parametrize("formulation", ["l2", "prior", "none"])
@pytest.mark.parametrize("biases", [True, False], ids=["biases", "no-biases"])
@pytest.mark.parametrize("backend", ["compiled", "numpy"])
def test_problem_cost_is_half_the_squared_residual(formulation, biases, backend):
    R, _ = make_low_rank(60, 45, 3, density=0.3, noise=0.1, random_state=0)
    R = R.with_weights(np.random.default_rng(1).random(R.nnz) + 0.5)
    k = 4
    rng = np.random.default_rng(2)
    kwargs = {"P_prior": rng.standard_normal((60, k)), "Q_prior": rng.standard_normal((k, 45))}
    problem = build_problem(R, k, formulation=formulation, reg=0.3, biases=biases,
                            count_scaled=True, **(kwargs if formulation == "prior" else {}))
    x = rng.standard_normal(problem.n_params)
    r = problem.residual(x)
    assert problem.cost(x, backend=backend) == pytest.approx(0.5 * float(r @ r), rel=RTOL)
    err = problem.predict_observed(x) - R.values
    assert problem.rms(x, backend=backend) == pytest.approx(
        float(np.sqrt(np.mean(err**2))), rel=RTOL)


def test_validation_score_matches_the_clipped_rmse_of_the_predictions():
    R, _ = make_low_rank(80, 60, 3, density=0.3, noise=0.1, random_state=3, scale=(1.0, 5.0))
    train, val = split_validation(R, 0.2, 3, np.random.default_rng(0))
    assert val is not None
    problem = build_problem(train, 3, formulation="l2", reg=0.1, biases=True)
    x = np.random.default_rng(4).standard_normal(problem.n_params)
    P, Q, b, c = problem.unpack(x)
    pred = problem.mu + b[val.rows] + c[val.cols] + np.einsum("nk,kn->n", P[val.rows],
                                                               Q[:, val.cols])
    want = val.rmse(pred)
    for backend in ("compiled", "numpy"):
        assert val.score(problem, x, backend=backend) == pytest.approx(want, rel=RTOL)


@pytest.mark.filterwarnings("ignore::lsqmf.ConvergenceWarning")
def test_solver_history_is_the_same_by_either_backend_of_the_cost():
    """The fused cost changes only the order of the sums: an ALS history by the compiled
    backend matches the numpy backend's to rounding (1e-9 relative after 5 sweeps)."""
    R, _ = make_low_rank(120, 90, 3, density=0.2, noise=0.1, random_state=5)
    fits = [als(R, 3, reg=0.1, biases=True, max_iter=5, tol=0.0, random_state=0,
                backend=backend, validation=0.1) for backend in ("compiled", "numpy")]
    assert_allclose(fits[0].history.cost, fits[1].history.cost, rtol=1e-9)
    assert_allclose(fits[0].options["validation_rmse"], fits[1].options["validation_rmse"],
                    rtol=1e-9)
