"""The compiled matrix-free Jacobian (numba kernels) against the numpy operator and the CSR
Jacobian, inside ``solve``, across thread counts, and without numba."""

from __future__ import annotations

import sys

import numba  # a required dependency
import numpy as np
import pytest

import lsqmf
from lsqmf import Ratings, build_problem


def _problem(biases: bool, formulation: str = "l2", seed: int = 0):
    """A 300 x 200 problem, 4% observed, with a few empty rows and columns."""
    rng = np.random.default_rng(seed)
    n, m, k = 300, 200, 5
    flat = rng.choice(n * m, size=2400, replace=False)
    rows, cols = np.divmod(flat, m)
    keep = (rows % 37 != 0) & (cols % 41 != 0)  # rows/columns 0, 37, ... stay empty
    ratings = Ratings(rows[keep], cols[keep], rng.uniform(1, 5, keep.sum()), (n, m),
                      weights=rng.uniform(0.5, 2, keep.sum()))
    problem = build_problem(
        ratings, k, formulation=formulation, reg=0.3, biases=biases,
        P_prior=rng.standard_normal((n, k)), Q_prior=rng.standard_normal((k, m)),
    )
    return problem, rng.standard_normal(problem.n_params), rng


def _products(problem, x, rng, backend: str):
    op = problem.operator(x, backend=backend)
    v = rng.standard_normal(problem.n_params)
    y = rng.standard_normal(problem.n_residuals)
    return op.matvec(v), op.rmatvec(y)


@pytest.mark.parametrize("biases", [False, True], ids=["plain", "biases"])
@pytest.mark.parametrize("formulation", ["prior", "l2", "none"])
def test_compiled_products_match_numpy_and_csr(biases: bool, formulation: str) -> None:
    problem, x, _ = _problem(biases, formulation)
    fast = _products(problem, x, np.random.default_rng(1), "compiled")
    slow = _products(problem, x, np.random.default_rng(1), "numpy")
    J = problem.jacobian(x)
    rng = np.random.default_rng(1)
    v = rng.standard_normal(problem.n_params)
    y = rng.standard_normal(problem.n_residuals)
    for a, b, exact in zip(fast, slow, (J @ v, J.T @ y), strict=True):
        np.testing.assert_allclose(a, exact, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    # rows and columns without ratings get only their regularization term (or 0)
    n, k = problem.n_rows, problem.rank
    g = fast[1]
    reg = problem._reg_diagonal() * y[problem.ratings.nnz:] if problem.has_reg else 0.0
    empty_row = g[: n * k].reshape(n, k)[37]
    expected = (reg[: n * k].reshape(n, k)[37] if problem.has_reg else np.zeros(k))
    np.testing.assert_array_equal(empty_row, expected)


def test_compiled_products_do_not_depend_on_thread_count() -> None:
    problem, x, _ = _problem(True)
    threads = numba.get_num_threads()
    many = _products(problem, x, np.random.default_rng(2), "compiled")
    try:
        numba.set_num_threads(1)
        one = _products(problem, x, np.random.default_rng(2), "compiled")
    finally:
        numba.set_num_threads(threads)
    for a, b in zip(many, one, strict=True):
        np.testing.assert_array_equal(a, b)


def test_operator_does_not_mutate_its_inputs() -> None:
    problem, x, rng = _problem(True)
    x_before = x.copy()
    v = rng.standard_normal(problem.n_params)
    y = rng.standard_normal(problem.n_residuals)
    v_before, y_before = v.copy(), y.copy()
    op = problem.operator(x)
    first = op.matvec(v)
    x[:] = 0.0  # the operator holds its own copy of the point
    np.testing.assert_array_equal(op.matvec(v), first)
    op.rmatvec(y)
    np.testing.assert_array_equal(v, v_before)
    np.testing.assert_array_equal(y, y_before)
    assert not np.array_equal(x, x_before)


@pytest.mark.parametrize("biases", [False, True], ids=["plain", "biases"])
def test_solve_with_compiled_operator_matches_numpy_operator(biases: bool) -> None:
    rng = np.random.default_rng(3)
    R = rng.random((40, 3)) @ rng.random((3, 30)) * 4 + 1
    R[rng.random(R.shape) < 0.6] = np.nan
    kw = dict(formulation="l2", reg=0.05, biases=biases, tr_solver="lsmr", jac="operator",
              random_state=0, ftol=1e-10, xtol=1e-10, gtol=1e-10,
              tr_options={"atol": 1e-14, "btol": 1e-14})
    ref = lsqmf.solve(R, 3, backend="numpy", **kw)
    fast = lsqmf.solve(R, 3, backend="compiled", **kw)
    assert ref.success and fast.success
    assert (ref.options["backend"], fast.options["backend"]) == ("numpy", "compiled")
    np.testing.assert_allclose(fast.cost, ref.cost, rtol=1e-9)
    np.testing.assert_allclose(fast.P @ fast.Q, ref.P @ ref.Q, rtol=0, atol=1e-6)


def test_operator_solve_matches_sparse_solve_under_the_same_scaling() -> None:
    """With x_scale fixed, the only difference between jac='operator' and jac='sparse' is how
    J is applied: the iterates agree to rounding."""
    rng = np.random.default_rng(4)
    R = rng.random((50, 4)) @ rng.random((4, 40))
    R[rng.random(R.shape) < 0.7] = np.nan
    P0 = np.round(rng.random((50, 4)), 1)
    Q0 = np.round(rng.random((4, 40)), 1)
    problem = build_problem(lsqmf.as_ratings(R), 4, P_prior=P0, Q_prior=Q0)
    x_scale = 1.0 / problem.column_norms(problem.pack(P0, Q0))
    # LSMR solved to high accuracy, so that rounding in the products barely moves its
    # stopping iteration: measured 2e-8 apart (with the default atol=btol=1e-6, 2e-5).
    tight = {"atol": 1e-14, "btol": 1e-14}
    fits = [lsqmf.solve(R, P0=P0, Q0=Q0, tr_solver="lsmr", jac=jac, x_scale=x_scale,
                        tr_options=tight)
            for jac in ("sparse", "operator")]
    assert fits[0].nfev == fits[1].nfev
    np.testing.assert_allclose(fits[1].cost, fits[0].cost, rtol=1e-8)
    np.testing.assert_allclose(fits[1].P, fits[0].P, rtol=0, atol=1e-6)
    np.testing.assert_allclose(fits[1].Q, fits[0].Q, rtol=0, atol=1e-6)


def test_missing_numba_auto_falls_back_to_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    problem, x, _ = _problem(False)
    ref = _products(problem, x, np.random.default_rng(5), "numpy")
    monkeypatch.setitem(sys.modules, "numba", None)  # makes `import numba` raise ImportError
    got = _products(problem, x, np.random.default_rng(5), "auto")
    for a, b in zip(got, ref, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ImportError, match=r"pip install numba"):
        problem.operator(x, backend="compiled")


def test_unknown_backend_is_refused() -> None:
    problem, x, _ = _problem(False)
    with pytest.raises(ValueError, match=r"`backend` must be one of 'auto', 'compiled', 'numpy'"):
        problem.operator(x, backend="gpu")


def _growing_problem():
    """l2 without count scaling from a tiny random start: the Jacobian's column norms grow
    several-fold as the factors grow, so scales fixed at the start go stale."""
    rng = np.random.default_rng(6)
    R = rng.random((60, 3)) @ rng.random((3, 50)) * 2 + 0.5
    R[rng.random(R.shape) < 0.6] = np.nan
    return R, dict(rank=3, formulation="l2", reg=0.05, tr_solver="lsmr", init_scale=0.01,
                   random_state=0)


def test_operator_emulates_jac_scaling_by_restarts() -> None:
    R, kw = _growing_problem()
    tight = dict(ftol=1e-12, xtol=1e-12, gtol=1e-10)
    fit = lsqmf.solve(R, jac="operator", **kw, **tight)
    ref = lsqmf.solve(R, jac="sparse", **kw, **tight)  # scipy's own x_scale='jac'
    assert fit.options["x_scale_restarts"] >= 1
    assert ref.options["x_scale_restarts"] == 0
    assert fit.success
    np.testing.assert_allclose(fit.cost, ref.cost, rtol=1e-8)
    np.testing.assert_allclose(fit.P @ fit.Q, ref.P @ ref.Q, atol=1e-5)
    # every evaluation of every stage is counted and recorded, in order
    assert fit.nfev == len(fit.history)
    np.testing.assert_array_equal(fit.history.step, np.arange(fit.nfev))
    assert fit.njev >= fit.options["x_scale_restarts"] + 1


def test_operator_restarts_respect_max_nfev() -> None:
    R, kw = _growing_problem()
    with pytest.warns(lsqmf.ConvergenceWarning):
        fit = lsqmf.solve(R, jac="operator", max_nfev=20, ftol=1e-12, **kw)
    assert fit.nfev <= 20
    assert not fit.success
    assert fit.options["x_scale_restarts"] >= 1


def test_explicit_x_scale_with_operator_never_restarts() -> None:
    R, kw = _growing_problem()
    fit = lsqmf.solve(R, jac="operator", x_scale=1.0, **kw)
    assert fit.options["x_scale_restarts"] == 0
    assert fit.nfev == fit.optimize_result.nfev


def _blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def test_compiled_operator_solve_runs_blas_on_one_thread() -> None:
    """numba's and OpenBLAS's spinning threads contend on a small machine: the operator solve
    limits BLAS to one thread while it runs, and restores the caller's setting."""
    from threadpoolctl import threadpool_limits

    R, kw = _growing_problem()
    seen: list[list[int]] = []
    with threadpool_limits(limits=2, user_api="blas"):
        outside = _blas_threads()
        lsqmf.solve(R, jac="operator", callback=lambda info: seen.append(_blas_threads()), **kw)
        assert _blas_threads() == outside
    assert seen and all(threads and max(threads) == 1 for threads in seen)
