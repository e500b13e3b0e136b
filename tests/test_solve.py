"""lsqmf.solve: seed parity, every scipy combination, oracles agreeing, bad input."""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import lsqmf
from lsqmf import ConvergenceWarning, NonFiniteResidualError, solve
from lsqmf.model.gradcheck import JacobianCheckError
from lsqmf.model.problem import Problem
from lsqmf.nls.options import validate
from lsqmf.nls.plan import plan
from lsqmf.nls.result import result
from lsqmf.nls.run import run
from lsqmf.nls.tables import AUTO_OPERATOR_MIN_NNZ, JAC_KINDS, choose_jac
from lsqmf.nls.tables import METHODS as METHOD_TABLE

from .conftest import SEED_MASK, make_seed_problem, random_observed

METHODS = ["trf", "dogbox", "lm"]
TR_SOLVERS = [None, "exact", "lsmr"]
LOSSES = ["linear", "soft_l1", "huber", "cauchy", "arctan"]


# --------------------------------------------------------------------------- seed parity
@pytest.mark.parametrize(
    ("method", "tr_solver"),
    list(itertools.product(METHODS, TR_SOLVERS)),
    ids=[f"{m}-{t}" for m, t in itertools.product(METHODS, TR_SOLVERS)],
)
def test_seed_parity(seed_problem, method: str, tr_solver: str | None) -> None:
    R, P, Q = seed_problem
    fit = solve(R, P0=P, Q0=Q, missing=0, method=method, tr_solver=tr_solver)
    assert fit.success
    assert fit.P.shape == (5, 2) and fit.Q.shape == (2, 4)
    assert np.all(np.abs(fit.P - P) <= 0.1)
    assert np.all(np.abs(fit.Q - Q) <= 0.1)
    assert np.all(np.abs(fit.P @ fit.Q - R)[SEED_MASK] <= 0.01)
    # the caller's priors are untouched: compared with a fresh copy of the seed problem (not
    # with the fixture's own arrays, which are the very objects passed in)
    _, P_fresh, Q_fresh = make_seed_problem()
    np.testing.assert_array_equal(P, P_fresh)
    np.testing.assert_array_equal(Q, Q_fresh)


def test_seed_defaults_match_the_seed_formulation(seed_problem) -> None:
    R, P, Q = seed_problem
    fit = solve(R, P0=P, Q0=Q, missing=0)
    opts = fit.options
    assert (opts["alpha"], opts["beta"], opts["ftol"], opts["x_scale"]) == (0.9, 0.1, 1e-3, "jac")
    assert opts["formulation"] == "prior" and opts["method"] == "trf"


# --------------------------------------------------------------------------- every loss
@pytest.mark.parametrize(
    ("method", "tr_solver", "loss"),
    [
        *itertools.product(["trf", "dogbox"], ["exact", "lsmr", None], LOSSES),
        ("lm", None, "linear"),
    ],
    ids=lambda v: str(v),
)
def test_every_permitted_combination_fits_the_seed_problem(seed_problem, method, tr_solver, loss):
    R, P, Q = seed_problem
    fit = solve(R, P0=P, Q0=Q, missing=0, method=method, tr_solver=tr_solver, loss=loss)
    assert fit.success
    assert np.all(np.isfinite(fit.P)) and np.all(np.isfinite(fit.Q))
    assert np.all(np.abs(fit.P @ fit.Q - R)[SEED_MASK] <= 0.05)
    assert fit.cost <= fit.history.cost[0]


@pytest.mark.parametrize("loss", LOSSES[1:])
def test_robust_losses_resist_outliers(loss: str) -> None:
    R = random_observed(20, 15, 0.5, seed=1, rank=2)
    observed = np.argwhere(~np.isnan(R))
    outliers = observed[::10]
    corrupted = R.copy()
    corrupted[outliers[:, 0], outliers[:, 1]] += 5.0
    inliers = ~np.isnan(R)
    inliers[outliers[:, 0], outliers[:, 1]] = False

    def inlier_error(loss_name: str) -> float:
        fit = solve(corrupted, 2, formulation="l2", reg=1e-3, loss=loss_name, f_scale=0.1,
                    random_state=0, ftol=1e-5, tr_solver="exact", max_nfev=100)
        return float(np.median(np.abs(fit.P @ fit.Q - R)[inliers]))

    with warnings.catch_warnings():  # a capped robust fit may stop at max_nfev; fine here
        warnings.simplefilter("ignore", ConvergenceWarning)
        robust, plain = inlier_error(loss), inlier_error("linear")
    assert robust < 0.5 * plain


def test_callable_loss_matches_the_named_loss() -> None:
    """A callable following scipy's protocol (rows rho, rho', rho'') gives the same fit and
    the same recorded costs as the built-in name, with f_scale applied."""

    def soft_l1(z: np.ndarray) -> np.ndarray:
        t = 1.0 + z
        return np.vstack([2.0 * (np.sqrt(t) - 1.0), t**-0.5, -0.5 * t**-1.5])

    R = random_observed(10, 8, 0.6, seed=21, rank=2)
    kw = dict(formulation="l2", reg=0.01, random_state=0, f_scale=0.3, max_nfev=50)
    a = solve(R, 2, loss="soft_l1", **kw)
    b = solve(R, 2, loss=soft_l1, **kw)
    np.testing.assert_allclose(b.P, a.P, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b.history.cost, a.history.cost, rtol=1e-10)
    assert b.cost == pytest.approx(a.cost, rel=1e-10)
    assert a.history.cost.min() == pytest.approx(a.cost, rel=1e-12)


# --------------------------------------------------------------------------- Jacobian kinds
@pytest.mark.parametrize("jac", ["sparse", "dense", "operator", "kron", "2-point", "3-point"])
def test_jacobian_kinds_reach_the_same_solution(jac: str) -> None:
    R = random_observed(15, 10, 0.5, seed=2, rank=2)
    tight = dict(ftol=1e-12, xtol=1e-12, gtol=1e-12, max_nfev=2000)
    ref = solve(R, 2, formulation="l2", reg=0.01, random_state=0, tr_solver="lsmr", **tight)
    fit = solve(R, 2, formulation="l2", reg=0.01, random_state=0, tr_solver="lsmr", jac=jac,
                **tight)
    assert fit.options["jac"] == jac
    assert fit.cost == pytest.approx(ref.cost, rel=1e-8)
    np.testing.assert_allclose(fit.P @ fit.Q, ref.P @ ref.Q, atol=1e-5)


def test_dense_exact_and_sparse_lsmr_agree() -> None:
    R = random_observed(12, 9, 0.6, seed=3, rank=2)
    tight = dict(ftol=1e-12, xtol=1e-12, gtol=1e-12, max_nfev=2000)
    a = solve(R, 2, formulation="l2", reg=0.05, random_state=1, tr_solver="exact", **tight)
    b = solve(R, 2, formulation="l2", reg=0.05, random_state=1, tr_solver="lsmr", **tight)
    assert a.options["jac"] == "dense" and b.options["jac"] == "sparse"
    assert a.cost == pytest.approx(b.cost, rel=1e-8)
    np.testing.assert_allclose(a.P @ a.Q, b.P @ b.Q, atol=1e-5)


def test_methods_agree_on_an_exactly_low_rank_problem() -> None:
    rng = np.random.default_rng(5)
    R = rng.random((8, 2)) @ rng.random((2, 6))
    preds = []
    for method in METHODS:
        fit = solve(R, 2, formulation="none", method=method, random_state=0, ftol=1e-12,
                    xtol=1e-12, gtol=1e-12, max_nfev=5000)
        preds.append(fit.P @ fit.Q)
        np.testing.assert_allclose(fit.P @ fit.Q, R, atol=1e-6)
    np.testing.assert_allclose(preds[0], preds[2], atol=1e-6)


# --------------------------------------------------------------------------- model options
def test_bounds_give_non_negative_factors() -> None:
    R = random_observed(10, 8, 0.6, seed=4, rank=2)
    for method in ("trf", "dogbox"):
        fit = solve(R, 2, formulation="l2", reg=0.01, bounds=(0, np.inf), method=method,
                    random_state=0)
        assert fit.P.min() >= 0 and fit.Q.min() >= 0


def test_full_length_bounds_array() -> None:
    R = random_observed(6, 5, 0.8, seed=4, rank=1)
    n_params = 6 * 1 + 1 * 5
    lb = np.full(n_params, 0.0)
    ub = np.full(n_params, 0.5)
    fit = solve(R, 1, formulation="l2", reg=0.01, bounds=(lb, ub), random_state=0)
    assert fit.P.max() <= 0.5 and fit.Q.max() <= 0.5 and fit.P.min() >= 0


def test_biases_are_fitted_and_predict() -> None:
    rng = np.random.default_rng(6)
    n, m = 20, 15
    b, c = rng.normal(0, 0.5, n), rng.normal(0, 0.5, m)
    full = 3.0 + b[:, None] + c[None, :] + 0.3 * rng.random((n, 1)) @ rng.random((1, m))
    R = np.where(rng.random((n, m)) < 0.7, full, np.nan)
    fit = solve(R, 1, formulation="l2", reg=1e-4, biases=True, random_state=0, ftol=1e-10)
    assert fit.has_biases and fit.row_bias.shape == (n,) and fit.col_bias.shape == (m,)
    obs = np.argwhere(~np.isnan(R))
    pred = fit.predict(obs[:, 0], obs[:, 1])
    np.testing.assert_allclose(pred, R[obs[:, 0], obs[:, 1]], atol=0.02)
    assert fit.mu == pytest.approx(np.nanmean(R))


def test_zero_weight_equals_dropping_the_entry() -> None:
    R = random_observed(7, 6, 0.7, seed=7, rank=2)
    W = np.ones_like(R)
    i, j = np.argwhere(~np.isnan(R))[3]
    W[i, j] = 0.0
    dropped = R.copy()
    dropped[i, j] = np.nan
    kw = dict(formulation="l2", reg=0.1, random_state=0, ftol=1e-12, xtol=1e-12, gtol=1e-12,
              tr_solver="exact")
    a = solve(R, 2, weights=W, **kw)
    b = solve(dropped, 2, **kw)
    assert a.cost == pytest.approx(b.cost, rel=1e-10)
    np.testing.assert_allclose(a.P, b.P, atol=1e-6)
    np.testing.assert_allclose(a.Q, b.Q, atol=1e-6)


def test_count_scaled_regularization_runs_and_differs() -> None:
    R = random_observed(10, 8, 0.5, seed=8, rank=2)
    kw = dict(formulation="l2", reg=0.1, random_state=0)
    a = solve(R, 2, count_scaled=True, **kw)
    b = solve(R, 2, count_scaled=False, **kw)
    assert a.success and b.success
    assert not np.allclose(a.P @ a.Q, b.P @ b.Q)


def test_dataframe_input_keeps_raw_ids() -> None:
    df = pd.DataFrame(
        {
            "user": ["u1", "u1", "u2", "u3", "u3", "u2"],
            "item": ["a", "b", "b", "a", "c", "c"],
            "rating": [5.0, 3.0, 4.0, 1.0, 2.0, 4.5],
        }
    )
    fit = solve(df, 2, formulation="l2", reg=0.01, random_state=0, ftol=1e-10)
    assert list(fit.row_ids) == ["u1", "u2", "u3"]
    assert list(fit.col_ids) == ["a", "b", "c"]
    np.testing.assert_allclose(fit.predict_ids(["u1", "u2"], ["a", "c"]), [5.0, 4.5], atol=0.2)
    # unknown ids are cold-start pairs
    assert np.isnan(fit.predict_ids(["nobody"], ["a"], cold_start="nan")[0])
    with pytest.raises(ValueError, match="not seen in training"):
        fit.predict_ids(["nobody"], ["a"], cold_start="raise")


def test_rows_without_training_ratings_are_cold_start() -> None:
    R = random_observed(6, 5, 0.8, seed=22, rank=2)
    R[2, :] = np.nan  # user 2 has no rating: its factors are never fitted
    R[:, 4] = np.nan  # nor are item 4's
    fit = solve(R, 2, formulation="l2", reg=0.1, biases=True, random_state=0)
    np.testing.assert_array_equal(fit.row_counts, np.sum(~np.isnan(R), axis=1))
    pred, cold = fit.predict([2, 0, 0], [0, 4, 0], return_cold_start=True)
    assert cold.tolist() == [True, True, False]
    assert pred[0] == pytest.approx(fit.mu + fit.col_bias[0])  # bias model, no factors
    assert pred[1] == pytest.approx(fit.mu + fit.row_bias[0])
    assert np.isnan(fit.predict([2], [0], cold_start="nan")[0])
    with pytest.raises(ValueError, match="not seen in training"):
        fit.predict([0], [4], cold_start="raise")


def test_sparse_input() -> None:
    R = random_observed(9, 7, 0.5, seed=9, rank=2)
    obs = np.argwhere(~np.isnan(R))
    S = sp.csr_array((R[obs[:, 0], obs[:, 1]], (obs[:, 0], obs[:, 1])), shape=R.shape)
    a = solve(S, 2, formulation="l2", reg=0.1, random_state=0)
    b = solve(R, 2, formulation="l2", reg=0.1, random_state=0)
    np.testing.assert_array_equal(a.P, b.P)


def test_same_seed_same_numbers_other_seed_other_numbers() -> None:
    R = random_observed(10, 8, 0.5, seed=10, rank=2)
    a = solve(R, 2, formulation="l2", reg=0.1, random_state=42)
    b = solve(R, 2, formulation="l2", reg=0.1, random_state=42)
    c = solve(R, 2, formulation="l2", reg=0.1, random_state=43)
    np.testing.assert_array_equal(a.P, b.P)
    np.testing.assert_array_equal(a.Q, b.Q)
    assert not np.array_equal(a.P, c.P)
    g = solve(R, 2, formulation="l2", reg=0.1, random_state=np.random.default_rng(42))
    np.testing.assert_array_equal(a.P, g.P)


def test_result_is_frozen_and_complete(seed_problem) -> None:
    R, P, Q = seed_problem
    fit = solve(R, P0=P, Q0=Q, missing=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fit.P = P  # type: ignore[misc]
    with pytest.raises(AttributeError):
        _ = fit.costs  # type: ignore[attr-defined]
    assert fit.optimize_result is not None and fit.nfev == fit.optimize_result.nfev
    assert fit.cost == pytest.approx(fit.optimize_result.cost)
    assert len(fit.history) >= 1 and np.all(np.diff(fit.history.time) >= 0)
    assert fit.history.cost.min() == pytest.approx(fit.cost)
    assert fit.wall_time > 0 and fit.solver == "lsq"
    assert "solver: lsq" in fit.summary()
    assert repr(fit).startswith("FitResult(solver='lsq', shape=(5, 4), rank=2")
    assert len(repr(fit)) < 200


# --------------------------------------------------------------------------- early stops
def test_max_nfev_returns_factors_with_a_warning() -> None:
    R = random_observed(10, 8, 0.5, seed=11, rank=2)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        fit = solve(R, 2, formulation="l2", reg=0.1, random_state=0, max_nfev=3, ftol=1e-15)
    assert not fit.success and fit.status == 0
    assert np.all(np.isfinite(fit.P))
    assert fit.cost < fit.history.cost[0]  # progress was kept


def test_callback_stops_and_returns_best_point() -> None:
    R = random_observed(10, 8, 0.5, seed=12, rank=2)
    seen = []

    def callback(info: lsqmf.IterationInfo) -> bool:
        seen.append(info)
        return info.step >= 4

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a requested stop is not a non-convergence
        fit = solve(R, 2, formulation="l2", reg=0.1, random_state=0, callback=callback,
                    ftol=1e-15)
    assert fit.status == lsqmf.Status.CALLBACK and not fit.success
    assert [s.step for s in seen] == [0, 1, 2, 3, 4]
    assert fit.cost == pytest.approx(min(s.cost for s in seen))


def test_keyboard_interrupt_returns_what_was_computed() -> None:
    R = random_observed(10, 8, 0.5, seed=13, rank=2)

    def interrupt(info: lsqmf.IterationInfo) -> None:
        if info.step == 3:
            raise KeyboardInterrupt

    with pytest.warns(ConvergenceWarning, match="Interrupted"):
        fit = solve(R, 2, formulation="l2", reg=0.1, random_state=0, callback=interrupt,
                    ftol=1e-15)
    assert fit.status == -5 and fit.nfev == 4
    assert fit.cost <= fit.history.cost[0]


def test_time_budget() -> None:
    R = random_observed(10, 8, 0.5, seed=14, rank=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = solve(R, 2, formulation="l2", reg=0.1, random_state=0, max_time=0.0)
    assert "time budget" in fit.message
    assert fit.status == -4 and fit.nfev == 1


def test_non_finite_residuals_raise_with_the_evaluation_and_keep_the_best_point(
    monkeypatch,
) -> None:
    R = random_observed(8, 6, 0.6, seed=15, rank=2)
    original = Problem.residual
    calls = {"n": 0}

    def poisoned(self, x):
        calls["n"] += 1
        r = original(self, x)
        if calls["n"] > 4:  # 1 check at the start, then evaluations 0, 1, 2 are finite
            r = r.copy()
            r[0] = np.nan
        return r

    monkeypatch.setattr(Problem, "residual", poisoned)
    for method in METHODS:
        calls["n"] = 0
        with pytest.raises(NonFiniteResidualError, match="non-finite at evaluation 3") as info:
            solve(R, 2, formulation="l2", reg=0.1, random_state=0, method=method)
        partial = info.value.partial_result
        assert partial is not None and partial.status == -6
        assert np.all(np.isfinite(partial.P))


def test_non_finite_start_is_a_clear_error() -> None:
    R = np.array([[1.0, 2.0], [3.0, np.nan]])
    with pytest.raises(ValueError, match="starting point are not finite"):
        solve(R, P0=np.full((2, 1), 1e200), Q0=np.full((1, 2), 1e200))


def test_linalg_error_is_explained(monkeypatch) -> None:
    run_module = importlib.import_module("lsqmf.nls.run")

    def broken(*args, **kwargs):
        raise np.linalg.LinAlgError("SVD did not converge")

    monkeypatch.setattr(run_module, "least_squares", broken)
    with pytest.raises(np.linalg.LinAlgError, match="try tr_solver='lsmr'"):
        solve(np.array([[1.0, 2.0]]), 1, formulation="l2", random_state=0)


# --------------------------------------------------------------------------- gradient check
def test_check_jacobian_passes_on_the_analytic_jacobian(seed_problem) -> None:
    R, P, Q = seed_problem
    fit = solve(R, P0=P, Q0=Q, missing=0, check_jacobian=1e-7)
    assert fit.success


def test_check_jacobian_catches_a_wrong_jacobian(seed_problem, monkeypatch) -> None:
    R, P, Q = seed_problem
    original = Problem.jacobian

    def wrong(self, x):
        J = original(self, x).copy()
        J.data[0] *= 1.01
        return J

    monkeypatch.setattr(Problem, "jacobian", wrong)
    with pytest.raises(JacobianCheckError, match="differs from finite differences"):
        solve(R, P0=P, Q0=Q, missing=0, check_jacobian=1e-7)


# --------------------------------------------------------------------------- bad input
SEED = (np.where(SEED_MASK, 1.0, np.nan), np.ones((5, 2)), np.ones((2, 4)))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"rank": 0}, ValueError, r"`rank` must be an int >= 1; got 0"),
        ({"rank": "2"}, TypeError, r"`rank` must be an int"),
        ({"rank": 2.0}, TypeError, r"`rank` must be an int"),
        ({"method": "newton"}, ValueError,
         r"`method` must be one of 'auto', 'trf', 'dogbox', 'lm'"),
        ({"tr_solver": "cg"}, ValueError, r"`tr_solver` must be one of None, 'exact', 'lsmr'"),
        ({"loss": "l1"}, ValueError, r"`loss` must be one of 'linear', 'soft_l1'"),
        ({"method": "lm", "loss": "huber"}, ValueError, r"method='lm' supports only"),
        ({"method": "lm", "bounds": (0, 1)}, ValueError, r"method='lm' does not support"),
        ({"tr_solver": "exact", "jac": "operator"}, ValueError, r"needs a dense Jacobian"),
        ({"method": "lm", "jac": "sparse"}, ValueError, r"method='lm' needs a dense"),
        ({"jac": "analytic"}, ValueError, r"`jac` must be one of"),
        ({"f_scale": 0.0}, ValueError, r"`f_scale` must be > 0"),
        ({"f_scale": np.nan}, ValueError, r"`f_scale` must be finite"),
        ({"ftol": -1.0}, ValueError, r"`ftol` must be >= 0"),
        ({"ftol": 0.0, "xtol": 0.0, "gtol": 0.0}, ValueError, r"at least one of"),
        ({"method": "lm", "ftol": None}, ValueError, r"`ftol` must be a float > 0 for"),
        ({"max_nfev": 0}, ValueError, r"`max_nfev` must be an int >= 1"),
        ({"tr_options": {"foo": 1}}, ValueError, r"`tr_options` has key\(s\) \['foo'\]"),
        ({"tr_options": [1]}, TypeError, r"`tr_options` must be a dict"),
        ({"random_state": "seed"}, TypeError, r"`random_state` must be None, an int seed"),
        ({"random_state": -1}, ValueError, r"`random_state` must be a non-negative"),
        ({"x_scale": "auto"}, ValueError, r"`x_scale` must be 'jac'"),
        ({"x_scale": -1.0}, ValueError, r"`x_scale` must be 'jac'"),
        ({"bounds": (1, 0)}, ValueError, r"lower < upper"),
        ({"bounds": (np.zeros(3), 1)}, ValueError, r"length n_params"),
        ({"bounds": 0}, TypeError, r"`bounds` must be a pair"),
        ({"callback": 3}, TypeError, r"`callback` must be callable"),
        ({"formulation": "ridge"}, ValueError, r"`formulation` must be one of"),
        ({"alpha": 0.0}, ValueError, r"`alpha` must be > 0"),
        ({"beta": -0.1}, ValueError, r"`beta` must be >= 0"),
        ({"biases": "yes"}, TypeError, r"`biases` must be True or False"),
        ({"check_jacobian": 0.0}, ValueError, r"`check_jacobian` must be > 0"),
        ({"init_scale": 0}, ValueError, r"`init_scale` must be > 0"),
        ({"max_time": -1}, ValueError, r"`max_time` must be >= 0"),
    ],
    ids=lambda v: ",".join(f"{k}={v[k]!r}"[:30] for k in v) if isinstance(v, dict) else "",
)
def test_bad_arguments(kwargs, error, match) -> None:
    R, P, Q = SEED
    base = {"P0": P, "Q0": Q}
    if "rank" in kwargs:
        base = {}
    with pytest.raises(error, match=match):
        solve(R, **{**base, **kwargs})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"P0": np.ones((4, 2)), "Q0": np.ones((2, 4))}, r"`P0` must have shape \(n_rows, rank\)"),
        ({"P0": np.ones((5, 2)), "Q0": np.ones((3, 4))}, r"`Q0` must have shape \(rank, n_cols\)"),
        ({"P0": np.ones((5, 2)), "rank": 3}, r"`P0` must have shape"),
        ({"P0": np.full((5, 2), np.nan), "Q0": np.ones((2, 4))}, r"`P0` must be finite"),
        ({"P0": np.ones(5)}, r"`P0` must be 2-dimensional"),
        ({}, r"`rank` is required"),
    ],
)
def test_bad_factor_shapes(kwargs, match) -> None:
    R = SEED[0]
    with pytest.raises(ValueError, match=match):
        solve(R, **kwargs)


def test_lm_with_too_few_residuals_is_refused() -> None:
    R = np.array([[1.0, 2.0], [3.0, np.nan]])
    with pytest.raises(ValueError, match="at least as many residuals as unknowns"):
        solve(R, 2, formulation="none", method="lm", random_state=0)


def test_dense_jacobian_too_large_is_refused(monkeypatch) -> None:
    plan_module = importlib.import_module("lsqmf.nls.plan")

    monkeypatch.setattr(plan_module, "MAX_DENSE_JACOBIAN_BYTES", 1000)
    with pytest.raises(ValueError, match="use method='trf' or 'dogbox' with tr_solver='lsmr'"):
        solve(SEED[0], P0=SEED[1], Q0=SEED[2], tr_solver="exact")


def test_lm_ignores_tr_solver_like_scipy(seed_problem) -> None:
    R, P, Q = seed_problem
    a = solve(R, P0=P, Q0=Q, missing=0, method="lm", tr_solver="lsmr")
    b = solve(R, P0=P, Q0=Q, missing=0, method="lm")
    np.testing.assert_array_equal(a.P, b.P)


# --------------------------------------------------------------------------- the stages
def _stage_arguments(**changes):
    """Every argument of solve with its default (what solve hands to validate)."""
    import inspect

    params = inspect.signature(solve).parameters
    args = {name: p.default for name, p in params.items() if p.default is not inspect._empty}
    return {**args, "R": SEED[0], "rank": None, "P0": SEED[1], "Q0": SEED[2], **changes}


def test_validate_gives_one_frozen_record_and_the_seed() -> None:
    ratings, options = validate(_stage_arguments(random_state=7))
    assert isinstance(ratings, lsqmf.Ratings) and ratings.shape == (5, 4)
    assert (options.rank, options.seed, options.jac, options.backend) == (2, 7, "auto", "auto")
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.rank = 3  # type: ignore[misc]
    _, drawn = validate(_stage_arguments(random_state=None))
    assert isinstance(drawn.seed, int)
    _, from_generator = validate(_stage_arguments(random_state=np.random.default_rng(0)))
    assert from_generator.seed is None


def test_plan_decides_jacobian_density_backend_and_threads_once() -> None:
    ratings, options = validate(_stage_arguments(tr_solver="exact"))
    exact = plan(ratings, options)
    assert (exact.jac.name, exact.dense, exact.blas_threads, exact.runner) == (
        "dense", True, 1, "least_squares")
    assert exact.kernels == () and not exact.emulate_jac_scale
    ratings, options = validate(_stage_arguments(tr_solver="lsmr"))
    lsmr = plan(ratings, options)
    assert (lsmr.jac.name, lsmr.dense, lsmr.blas_threads) == ("sparse", False, None)
    ratings, options = validate(_stage_arguments(jac="operator", backend="compiled"))
    op = plan(ratings, options)
    assert op.kernels == ("jac_matvec", "jac_rmatvec") and op.emulate_jac_scale
    assert op.blas_threads == 1 and op.backend == "compiled"
    np.testing.assert_allclose(op.x_scale, 1.0 / op.problem.column_norms(op.x0))
    ratings, options = validate(_stage_arguments(jac="operator", backend="numpy"))
    assert plan(ratings, options).kernels == ()
    ratings, options = validate(_stage_arguments(tr_solver="exact", blas_threads=2))
    assert plan(ratings, options).blas_threads == 2


def test_plan_clips_the_start_into_the_bounds() -> None:
    ratings, options = validate(_stage_arguments(bounds=(0.0, 0.5)))
    p = plan(ratings, options)
    assert p.x0.min() >= 0.0 and p.x0.max() <= 0.5
    np.testing.assert_array_equal(p.lb[: p.problem.n_params], 0.0)


def test_run_and_result_stages() -> None:
    ratings, options = validate(_stage_arguments(random_state=0))
    p = plan(ratings, options)
    outcome = run(p, options)
    assert outcome.opt is not None and outcome.stop_status is None
    assert outcome.evaluations.nfev == outcome.opt.nfev == len(outcome.evaluations.history())
    fit = result(p, options, outcome, t_start=0.0)
    assert fit.success and fit.nfev == outcome.opt.nfev
    assert fit.rms == pytest.approx(p.problem.rms(p.problem.pack(fit.P, fit.Q)))
    assert fit.options["jac"] == "sparse" and fit.options["random_state"] == 0


def test_run_picks_its_runner_from_the_table(monkeypatch) -> None:
    run_module = importlib.import_module("lsqmf.nls.run")
    ratings, options = validate(_stage_arguments())
    p = dataclasses.replace(plan(ratings, options), runner="recorded")
    seen = []

    def recorded(the_plan, the_options):
        seen.append(the_plan.runner)
        return run_module.run_least_squares(the_plan, the_options)

    monkeypatch.setitem(run_module.RUNNERS, "recorded", recorded)
    assert run(p, options).opt is not None and seen == ["recorded"]


# --------------------------------------------------------------------------- the tables
COMBINATIONS = list(itertools.product(METHODS, TR_SOLVERS, list(JAC_KINDS)))


def _needs_dense_oracle(method: str, tr_solver: str | None) -> bool:
    # written out independently of lsqmf.nls.tables: MINPACK and the exact (SVD/QR)
    # trust-region step factorize a dense J
    return method == "lm" or tr_solver == "exact"


def _combination_id(case) -> str:
    method, tr_solver, jac = case
    return f"{method}-{tr_solver}-{jac}"


@pytest.mark.parametrize(
    "case", [c for c in COMBINATIONS
             if not (_needs_dense_oracle(c[0], c[1]) and c[2] in ("sparse", "operator"))],
    ids=_combination_id,
)
def test_every_valid_method_tr_solver_jac_combination_fits(seed_problem, case) -> None:
    method, tr_solver, jac = case
    R, P, Q = seed_problem
    fit = solve(R, P0=P, Q0=Q, missing=0, method=method, tr_solver=tr_solver, jac=jac)
    assert fit.success
    assert np.all(np.abs(fit.P @ fit.Q - R)[SEED_MASK] <= 0.05)
    dense = _needs_dense_oracle(method, tr_solver)
    expected = ("dense" if dense else "sparse") if jac == "auto" else jac
    assert fit.options["jac"] == expected


@pytest.mark.parametrize(
    "case", [c for c in COMBINATIONS
             if _needs_dense_oracle(c[0], c[1]) and c[2] in ("sparse", "operator")],
    ids=_combination_id,
)
def test_every_invalid_combination_is_refused_with_the_alternatives(case) -> None:
    method, tr_solver, jac = case
    who = "method='lm'" if method == "lm" else "tr_solver='exact'"
    with pytest.raises(ValueError, match=rf"{who} needs a dense Jacobian, so jac='{jac}'") as e:
        solve(SEED[0], P0=SEED[1], Q0=SEED[2], method=method, tr_solver=tr_solver, jac=jac)
    assert "Allowed: jac in 'auto', 'dense', 'kron', '2-point', '3-point'" in str(e.value)
    assert "tr_solver='lsmr'" in str(e.value)


def test_tables_cover_every_public_name() -> None:
    assert list(METHOD_TABLE) == [*METHODS, "lm-normal"]
    assert [m for m, spec in METHOD_TABLE.items() if spec.eliminate_only] == ["lm-normal"]
    assert list(JAC_KINDS) == ["auto", "sparse", "dense", "operator", "kron", "2-point",
                               "3-point"]
    assert [m for m, spec in METHOD_TABLE.items() if spec.dense] == ["lm"]
    assert [k for k, spec in JAC_KINDS.items() if spec is not None and not spec.can_be_dense
            ] == ["sparse", "operator"]


@pytest.mark.parametrize(
    ("tr_solver", "nnz", "backend", "expected"),
    [
        ("exact", 10**9, "compiled", "dense"),
        ("lsmr", AUTO_OPERATOR_MIN_NNZ - 1, "compiled", "sparse"),
        ("lsmr", AUTO_OPERATOR_MIN_NNZ, "compiled", "operator"),
        (None, AUTO_OPERATOR_MIN_NNZ, "compiled", "operator"),
        ("lsmr", AUTO_OPERATOR_MIN_NNZ, "numpy", "sparse"),
    ],
    ids=["exact-dense", "lsmr-below", "lsmr-at-threshold", "none-at-threshold", "numpy"],
)
def test_auto_jacobian_rule(tr_solver, nnz, backend, expected) -> None:
    assert choose_jac("auto", "trf", tr_solver, nnz, backend).name == expected
    assert choose_jac("kron", "trf", tr_solver, nnz, backend).name == "kron"


def test_auto_picks_the_operator_above_the_threshold_and_backends_agree(monkeypatch) -> None:
    tables = importlib.import_module("lsqmf.nls.tables")
    monkeypatch.setattr(tables, "AUTO_OPERATOR_MIN_NNZ", 1)
    R = random_observed(15, 10, 0.5, seed=2, rank=2)
    kw = dict(formulation="l2", reg=0.01, random_state=0, tr_solver="lsmr", ftol=1e-12,
              xtol=1e-12, gtol=1e-12, tr_options={"atol": 1e-14, "btol": 1e-14})
    fast = solve(R, 2, backend="compiled", **kw)
    slow = solve(R, 2, backend="numpy", **kw)
    assert fast.options["jac"] == "operator" and fast.options["backend"] == "compiled"
    assert slow.options["jac"] == "sparse" and slow.options["backend"] == "numpy"
    assert fast.cost == pytest.approx(slow.cost, rel=1e-8)
    oracle = solve(R, 2, jac="operator", backend="numpy", **kw)
    np.testing.assert_allclose(fast.P @ fast.Q, oracle.P @ oracle.Q, atol=1e-6)


def test_solve_warms_the_kernels_up_before_the_clock(monkeypatch) -> None:
    solve_module = importlib.import_module("lsqmf.nls.solve")
    calls = []
    monkeypatch.setattr(solve_module, "warm_up", lambda *args: calls.append(args))
    R = random_observed(8, 6, 0.6, seed=3, rank=2)
    solve(R, 2, formulation="l2", reg=0.1, random_state=0, jac="operator", backend="compiled")
    solve(R, 2, formulation="l2", reg=0.1, random_state=0)
    solve(R, 2, formulation="l2", reg=0.1, random_state=0, eliminate="Q", method="trf",
          backend="compiled")
    solve(R, 2, formulation="l2", reg=0.1, random_state=0, eliminate="P", method="lm-normal",
          backend="compiled")
    solve(R, 2, formulation="l2", reg=0.1, random_state=0, eliminate="P", backend="numpy")
    # with eliminate, the inner solve's kernel first: the plan runs it (x_scale='jac')
    assert calls == [
        (("jac_matvec", "jac_rmatvec"), "compiled"), ((), "compiled"),
        (("varpro_gram",), "compiled"),
        (("varpro_gram", "varpro_matvec", "varpro_rmatvec"), "compiled"),
        (("varpro_gram",), "compiled"),
        (("varpro_gram", "normal_tri_pairs", "normal_scatter"), "compiled"),
        (("varpro_gram",), "numpy"), ((), "numpy"),
    ]


# --------------------------------------------------------------------------- seeds, verbose
def test_the_drawn_seed_is_recorded_and_replays_the_run() -> None:
    R = random_observed(10, 8, 0.5, seed=10, rank=2)
    first = solve(R, 2, formulation="l2", reg=0.1)
    seed = first.options["random_state"]
    assert isinstance(seed, int) and seed >= 0
    again = solve(R, 2, formulation="l2", reg=0.1, random_state=seed)
    np.testing.assert_array_equal(again.P, first.P)
    np.testing.assert_array_equal(again.Q, first.Q)
    assert again.options["random_state"] == seed
    other = solve(R, 2, formulation="l2", reg=0.1)
    assert other.options["random_state"] != seed


def _solve_records(caplog, verbose: int, **kwargs):
    R = random_observed(10, 8, 0.5, seed=12, rank=2)
    caplog.clear()
    fit = solve(R, 2, formulation="l2", reg=0.1, random_state=0, verbose=verbose, **kwargs)
    return fit, [r for r in caplog.records if r.name == "lsqmf.solve"]


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"eliminate": "Q"}, {"eliminate": "P", "tr_solver": "exact"},
     {"eliminate": "Q", "method": "lm-normal"}],
    ids=["joint", "varpro-Q", "varpro-P-exact", "lm-normal"],
)
def test_verbose_logs_through_logging_never_prints(caplog, capsys, kwargs) -> None:
    """verbose=1: a line per iteration (each linearization point) and the summary; verbose=2
    also a line per residual evaluation. The same lines for every runner."""
    fit, quiet = _solve_records(caplog, 0, **kwargs)
    assert quiet == []
    fit, one = _solve_records(caplog, 1, **kwargs)
    messages = [r.getMessage() for r in one]
    assert all(r.levelname == "INFO" for r in one)
    assert len(messages) == fit.njev + 1 and fit.njev >= 2
    assert all(m.startswith(f"iteration {i}: cost ") for i, m in enumerate(messages[:-1]))
    assert messages[-1].startswith(f"finished: status {fit.status}, cost ")
    assert f"{fit.nfev} evaluations" in messages[-1]
    fit, lines = _solve_records(caplog, 2, **kwargs)
    messages = [r.getMessage() for r in lines]
    evaluations = [m for m in messages if m.startswith("evaluation ")]
    assert len(messages) == fit.nfev + fit.njev + 1 and messages[-1].startswith("finished")
    assert len(evaluations) == fit.nfev
    assert evaluations[0].startswith("evaluation 0: cost ") and "step norm n/a" in evaluations[0]
    assert all("step norm" in m and m.endswith(" s") for m in evaluations)
    assert all(f"evaluation {i}:" in m for i, m in enumerate(evaluations))
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


@pytest.mark.parametrize("verbose", [-1, 3, "1"])
def test_bad_verbose_is_refused(verbose) -> None:
    error = TypeError if isinstance(verbose, str) else ValueError
    with pytest.raises(error, match="`verbose` must be an int"):
        solve(SEED[0], P0=SEED[1], Q0=SEED[2], verbose=verbose)


# --------------------------------------------------------------------------- BLAS threads
def _blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


@pytest.mark.parametrize(
    ("kwargs", "during"),
    [({"tr_solver": "exact"}, 1), ({"method": "lm"}, 1), ({"tr_solver": "exact",
                                                           "blas_threads": 2}, 2)],
    ids=["exact-small", "lm-small", "explicit-2"],
)
def test_dense_solve_thread_limit_is_scoped_and_restored(kwargs, during) -> None:
    from threadpoolctl import threadpool_limits

    R = random_observed(10, 8, 0.6, seed=16, rank=2)
    seen: list[list[int]] = []
    with threadpool_limits(limits=2, user_api="blas"):
        outside = _blas_threads()
        fit = solve(R, 2, formulation="l2", reg=0.1, random_state=0,
                    callback=lambda info: seen.append(_blas_threads()), **kwargs)
        assert _blas_threads() == outside
    assert seen and all(threads and max(threads) == during for threads in seen)
    assert fit.options["blas_threads"] == during


def test_blas_thread_rule() -> None:
    from lsqmf.runtime.threads import DENSE_SINGLE_THREAD_ENTRIES, blas_threads_for

    assert blas_threads_for(None, True) == 1
    assert blas_threads_for(DENSE_SINGLE_THREAD_ENTRIES, False) == 1
    assert blas_threads_for(DENSE_SINGLE_THREAD_ENTRIES + 1, False) is None
    assert blas_threads_for(None, False) is None


@pytest.mark.parametrize("blas_threads", [0, 1.5])
def test_bad_blas_threads_is_refused(blas_threads) -> None:
    error = TypeError if isinstance(blas_threads, float) else ValueError
    with pytest.raises(error, match="`blas_threads` must be an int"):
        solve(SEED[0], P0=SEED[1], Q0=SEED[2], blas_threads=blas_threads)


def test_bad_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="`backend` must be one of 'auto', 'compiled', 'numpy'"):
        solve(SEED[0], P0=SEED[1], Q0=SEED[2], backend="gpu")


def test_verbose_without_logging_configured_goes_to_stderr(tmp_path) -> None:
    """A script that never configures logging still sees verbose=1 (on stderr, not stdout)."""
    import subprocess
    import sys

    code = ("import numpy as np, lsqmf; "
            "lsqmf.solve(np.array([[1.0, 2.0], [3.0, np.nan]]), 1, formulation='l2', reg=0.1, "
            "random_state=0, verbose=1)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=tmp_path)
    assert proc.stdout == ""
    assert proc.stderr.startswith("lsqmf.solve: iteration 0: cost ")
    assert proc.stderr.splitlines()[-1].startswith("lsqmf.solve: finished: status ")
