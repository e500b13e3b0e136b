"""The reference loop: its stored outputs, its rules checked by hand, and its argument checks."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from lsqmf.oracle.golden import case_names, load_case
from lsqmf.oracle.reference import matrix_factorization, matrix_factorization_fast

GOLDEN_CASES = case_names()


def run_on_copies(golden, function=matrix_factorization, **overrides):
    params = golden.params() | overrides
    P, Q = golden.P0.copy(), golden.Q0.copy()
    P_out, Q_out = function(
        golden.R.copy(), P, Q, params["K"], params["max_steps"], params["alpha"],
        params["beta"], params["epsilon"],
    )
    return P_out, Q_out


# --------------------------------------------------------------------------------------------
# stored outputs


@pytest.mark.parametrize("name", GOLDEN_CASES)
def test_reference_reproduces_its_golden_outputs(name):
    golden = load_case(name)
    P, Q = run_on_copies(golden)
    assert_allclose(P, golden.P, rtol=0, atol=1e-12)
    assert_allclose(Q, golden.Q, rtol=0, atol=1e-12)


def test_standard_case_is_the_tutorial_example():
    golden = load_case("standard")
    R = np.array(
        [[5, 3, 0, 1], [4, 0, 0, 1], [1, 1, 0, 5], [1, 0, 0, 4], [0, 1, 5, 4]], dtype=float
    )
    rng = np.random.default_rng(seed=0)
    P0 = rng.random((5, 2))
    Q0 = rng.random((4, 2))
    assert_array_equal(golden.R, R)
    assert_array_equal(golden.P0, P0)
    assert_array_equal(golden.Q0, Q0)
    assert golden.params() == {
        "K": 2, "max_steps": 5000, "alpha": 2e-4, "beta": 0.02, "epsilon": 1e-3
    }
    assert golden.n_steps == 5000
    # the fit is a sensible one: the observed entries are reproduced closely
    observed = R > 0
    assert np.max(np.abs((golden.P @ golden.Q.T - R)[observed])) < 0.2


def test_epsilon_case_stops_early_at_the_recorded_step():
    golden = load_case("epsilon_stop")
    assert golden.beta == 0.0
    assert 1 < golden.n_steps < golden.max_steps
    # exactly n_steps reproduces the stored output; one step fewer does not
    P, Q = run_on_copies(golden, max_steps=golden.n_steps)
    assert_array_equal(P, golden.P)
    assert_array_equal(Q, golden.Q)
    P, Q = run_on_copies(golden, max_steps=golden.n_steps - 1)
    assert not np.array_equal(P, golden.P)
    # and the stored output does meet the stopping rule
    observed = golden.R > 0
    error = np.sum(((golden.R - golden.P @ golden.Q.T)[observed]) ** 2)
    assert error < golden.epsilon


def test_zero_steps_case_outputs_are_its_inputs():
    golden = load_case("zero_steps")
    assert golden.max_steps == 0
    assert_array_equal(golden.P, golden.P0)
    assert_array_equal(golden.Q, golden.Q0)


# --------------------------------------------------------------------------------------------
# the rules, on cases small enough to do by hand


def test_one_step_by_hand_k_order_and_error_once_per_entry():
    # R is 1 x 2 with K = 2; only r_00 = 2 is observed.
    R = np.array([[2.0, 0.0]])
    P = np.array([[1.0, 0.5]])
    Q = np.array([[1.0, 1.0], [0.5, 2.0]])  # (M, K): q_0 = (1, 1), q_1 = (0.5, 2)
    alpha, beta = 0.1, 0.2
    P_out, Q_out = matrix_factorization(R, P, Q, 2, 1, alpha, beta, 0.0)

    # by hand: e_00 = 2 * (2 - (1 * 1 + 0.5 * 1)) = 1, computed once for both k
    e00 = 1.0
    p00 = 1.0 + alpha * (e00 * 1.0 - beta * 1.0)  # 1.08
    q00 = 1.0 + alpha * (e00 * p00 - beta * 1.0)  # 1.088, uses the new p00
    p01 = 0.5 + alpha * (e00 * 1.0 - beta * 0.5)  # 0.59
    q01 = 1.0 + alpha * (e00 * p01 - beta * 1.0)  # 1.039
    assert_allclose(P_out, [[p00, p01]], rtol=1e-15)
    assert_allclose(Q_out, [[q00, q01], [0.5, 2.0]], rtol=1e-15)
    assert_allclose(P_out, [[1.08, 0.59]], rtol=1e-14)
    assert_allclose(Q_out, [[1.088, 1.039], [0.5, 2.0]], rtol=1e-14)

    # the same arithmetic with e recomputed for k = 1 would give a different p01
    e_again = 2 * (2.0 - (p00 * q00 + 0.5 * 1.0))
    assert not np.isclose(0.5 + alpha * (e_again * 1.0 - beta * 0.5), p01)


def test_one_step_by_hand_rows_in_order_share_the_column_factor():
    # R is 2 x 1 with K = 1: row 1 sees the column factor already updated by row 0.
    R = np.array([[2.0], [1.0]])
    P = np.array([[1.0], [0.5]])
    Q = np.array([[1.0]])
    P_out, Q_out = matrix_factorization(R, P, Q, 1, 1, 0.1, 0.2, 0.0)
    # i = 0: e = 2 (2 - 1) = 2; p0 = 1 + 0.1 (2 - 0.2) = 1.18; q = 1 + 0.1 (2.36 - 0.2) = 1.216
    # i = 1: e = 2 (1 - 0.5 * 1.216) = 0.784; p1 = 0.5 + 0.1 (0.784 * 1.216 - 0.1) = 0.5853344
    #        q = 1.216 + 0.1 (0.784 * 0.5853344 - 0.2432) = 1.23757021696
    assert_allclose(P_out, [[1.18], [0.5853344]], rtol=1e-14)
    assert_allclose(Q_out, [[1.23757021696]], rtol=1e-14)


def test_updates_in_place_and_returns_the_callers_arrays():
    R = np.array([[5.0, 3.0, 0.0], [4.0, 0.0, 1.0]])
    R_before = R.copy()
    rng = np.random.default_rng(1)
    P = rng.random((2, 2))
    Q = rng.random((3, 2))
    P0, Q0 = P.copy(), Q.copy()
    P_out, Q_out = matrix_factorization(R, P, Q, 2, max_steps=3)
    assert P_out is P
    assert Q_out is Q
    assert Q_out.shape == (3, 2)  # (M, K), not the (K, M) view the loop works on
    assert not np.array_equal(P, P0)
    assert not np.array_equal(Q, Q0)
    assert_array_equal(R, R_before)


def test_non_positive_entries_are_ignored():
    R = np.array([[0.0, -1.0], [3.0, 0.0]])
    rng = np.random.default_rng(2)
    P = rng.random((2, 2))
    Q = rng.random((2, 2))
    P0, Q0 = P.copy(), Q.copy()
    matrix_factorization(R, P, Q, 2, max_steps=20, alpha=0.01)
    assert_array_equal(P[0], P0[0])  # row 0 has no observed entry
    assert_array_equal(Q[1], Q0[1])  # column 1 has no observed entry
    assert not np.array_equal(P[1], P0[1])


def one_step_scalar(p, q, r, alpha, beta):
    e = 2 * (r - p * q)
    p = p + alpha * (e * q - beta * p)
    q = q + alpha * (e * p - beta * q)
    return p, q


@pytest.mark.parametrize(
    ("epsilon", "stops_after_one_step"),
    [(0.44, True), (0.43, False)],
    ids=["stops-after-1", "regularization-counts-so-runs-on"],
)
def test_epsilon_stop_after_step_includes_regularization(epsilon, stops_after_one_step):
    # R = [[2]], p = q = 1, alpha = beta = 0.1. After one step p = 1.19, q = 1.228 and
    # e = (2 - p q)**2 + beta/2 (p**2 + q**2) = 0.29018... + 0.14620... = 0.43638...
    # so epsilon = 0.44 stops after one step, while 0.43 does not (it would if the
    # regularization term were left out of e).
    alpha, beta = 0.1, 0.1
    p, q = one_step_scalar(1.0, 1.0, 2.0, alpha, beta)
    assert_allclose([p, q], [1.19, 1.228], rtol=1e-14)
    e = (2 - p * q) ** 2 + beta / 2 * (p**2 + q**2)
    assert 0.43 < e < 0.44
    assert (2 - p * q) ** 2 < 0.43

    P, Q = np.array([[1.0]]), np.array([[1.0]])
    matrix_factorization(np.array([[2.0]]), P, Q, 1, 100, alpha, beta, epsilon)
    after_one_step = np.allclose([P[0, 0], Q[0, 0]], [p, q], rtol=1e-14, atol=0)
    assert after_one_step is stops_after_one_step


def test_exact_fit_stops_after_the_first_step():
    # r = p q exactly and beta = 0: the step changes nothing and e = 0 < epsilon
    P, Q = np.array([[2.0]]), np.array([[1.5]])
    matrix_factorization(np.array([[3.0]]), P, Q, 1, 10, 0.1, 0.0, 1e-12)
    assert (P[0, 0], Q[0, 0]) == (2.0, 1.5)


def test_zero_max_steps_changes_nothing():
    P, Q = np.array([[1.0]]), np.array([[1.0]])
    matrix_factorization(np.array([[2.0]]), P, Q, 1, 0)
    assert (P[0, 0], Q[0, 0]) == (1.0, 1.0)


def test_oracle_does_not_import_the_fast_path():
    code = (
        "import sys, numpy as np\n"
        "from lsqmf.oracle.reference import matrix_factorization\n"
        "P, Q = np.ones((2, 1)), np.ones((2, 1))\n"
        "matrix_factorization(np.eye(2) + 1, P, Q, 1, 5)\n"
        "assert 'lsqmf.kernels.core' not in sys.modules, 'oracle imported lsqmf.kernels.core'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------------------------
# argument checks (shared by the oracle and its fast equivalent)


def good_args():
    return {
        "R": np.array([[5.0, 0.0, 1.0], [4.0, 2.0, 0.0]]),
        "P": np.ones((2, 2)),
        "Q": np.full((3, 2), 0.5),
        "K": 2,
        "max_steps": 3,
        "alpha": 2e-4,
        "beta": 0.02,
        "epsilon": 1e-3,
    }


def read_only(a):
    a = np.array(a)
    a.flags.writeable = False
    return a


BAD_ARGS = [
    ("R-1d", {"R": np.ones(3)}, ValueError, r"`R` must be 2-dimensional; got shape \(3,\)"),
    ("R-nan", {"R": np.array([[np.nan, 1, 1], [1, 1, 1]])}, ValueError, "`R` must be finite"),
    ("R-text", {"R": [["a", "b"]]}, TypeError, "`R` must be array-like"),
    ("P-list", {"P": [[1.0, 1.0], [1.0, 1.0]]}, TypeError, "`P` must be a numpy ndarray"),
    ("P-int", {"P": np.ones((2, 2), dtype=int)}, TypeError, "`P` must have dtype float64"),
    ("P-float32", {"P": np.ones((2, 2), np.float32)}, TypeError, "got dtype float32"),
    ("P-readonly", {"P": read_only(np.ones((2, 2)))}, ValueError, "`P` must be writable"),
    ("P-rows", {"P": np.ones((3, 2))}, ValueError, r"`P` must have 2 rows .* got shape \(3, 2\)"),
    ("P-1d", {"P": np.ones(2)}, ValueError, r"`P` must be 2-dimensional; got shape \(2,\)"),
    ("Q-rows", {"Q": np.ones((2, 2))}, ValueError, r"`Q` must have 3 rows .* got shape \(2, 2\)"),
    ("Q-inf", {"Q": np.array([[1, 1], [1, np.inf], [1, 1]])}, ValueError, "`Q` must be fin"),
    ("K-mismatch", {"K": 3}, ValueError, "`K` must equal .* got K=3"),
    ("K-zero", {"K": 0}, ValueError, "`K` must be an int >= 1; got 0"),
    ("K-float", {"K": 2.0}, TypeError, r"`K` must be an int; got 2\.0"),
    ("steps-negative", {"max_steps": -1}, ValueError, "`max_steps` must be an int >= 0"),
    ("steps-none", {"max_steps": None}, TypeError, "`max_steps` must be an int; got None"),
    ("alpha-nan", {"alpha": float("nan")}, ValueError, "`alpha` must be finite"),
    ("alpha-negative", {"alpha": -0.1}, ValueError, "`alpha` must be >= 0.0; got -0.1"),
    ("beta-text", {"beta": "0.02"}, TypeError, "`beta` must be a real number"),
    ("epsilon-negative", {"epsilon": -1.0}, ValueError, "`epsilon` must be >= 0.0"),
]


@pytest.mark.parametrize(
    "function", [matrix_factorization, matrix_factorization_fast], ids=["oracle", "fast"]
)
@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [pytest.param(c, e, m, id=i) for i, c, e, m in BAD_ARGS],
)
def test_bad_arguments_are_rejected_before_any_work(function, changes, error, match):
    args = good_args() | changes
    P_before = np.array(args["P"], dtype=float, copy=True)
    with pytest.raises(error, match=match):
        function(**args)
    assert_array_equal(np.asarray(args["P"], dtype=float), P_before)


@pytest.mark.parametrize(
    "function", [matrix_factorization, matrix_factorization_fast], ids=["oracle", "fast"]
)
def test_p_and_q_sharing_memory_is_rejected(function):
    buffer = np.ones((2, 2))
    with pytest.raises(ValueError, match="`P` and `Q` must not share memory"):
        function(np.ones((2, 2)), buffer, buffer, 2)


def test_r_may_be_a_list_of_lists_as_in_the_tutorial():
    P, Q = np.ones((2, 1)), np.ones((2, 1))
    matrix_factorization([[5, 0], [0, 1]], P, Q, 1, max_steps=2)
    assert P[0, 0] != 1.0
