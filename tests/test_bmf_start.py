"""bmf's warm start: CG-ALS sweeps from the random start, then the chain from their factors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("numba")

from lsqmf import ConvergenceWarning
from lsqmf.data.synthetic import make_low_rank
from lsqmf.evaluate import holdout_split
from lsqmf.solvers import SOLVER_SPECS, als_cg, bmf
from lsqmf.solvers._common import prepare
from lsqmf.solvers.bmf import _warm_start

# bmf refuses reg (its priors are learned): the warm start's objective is the registry's
# default, reg=None (0.15 x std, the same for bmf and als_cg)
OBJECTIVE = {"biases": True, "count_scaled": True}


@pytest.fixture(scope="module")
def small():
    R, _ = make_low_rank(40, 30, 3, density=0.5, noise=0.1, random_state=0, scale=(1.0, 5.0))
    return R


def test_warm_start_is_als_cg_from_the_same_random_start(small):
    setup = prepare(SOLVER_SPECS["bmf"], small, 3, {**OBJECTIVE, "random_state": 4})
    x = _warm_start(setup, 2, "compiled")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = als_cg(small, 3, **OBJECTIVE, max_iter=2, tol=0.0, random_state=4)
    P, Q, b, c = setup.problem.unpack(x)
    np.testing.assert_array_equal(P, ref.P)
    np.testing.assert_array_equal(Q, ref.Q)
    np.testing.assert_array_equal(b, ref.row_bias)
    np.testing.assert_array_equal(c, ref.col_bias)


def test_no_warm_start_is_the_random_start(small):
    setup = prepare(SOLVER_SPECS["bmf"], small, 3, {**OBJECTIVE, "random_state": 4})
    assert _warm_start(setup, 0, "compiled") is setup.x0


def test_warm_started_chain_is_deterministic_and_differs_from_the_cold_one(small):
    kw = {**OBJECTIVE, "max_iter": 12, "burn_in": 3, "random_state": 5}
    a = bmf(small, 3, warm_start=2, **kw)
    b = bmf(small, 3, warm_start=2, **kw)
    cold = bmf(small, 3, **kw)
    np.testing.assert_array_equal(a.P, b.P)
    np.testing.assert_array_equal(a.history.cost, b.history.cost)
    assert not np.array_equal(a.P, cold.P)
    assert a.options["warm_start"] == 2 and cold.options["warm_start"] == 0


def test_warm_started_chain_recovers_a_low_rank_matrix():
    R, _ = make_low_rank(60, 50, 2, density=0.4, noise=0.01, random_state=7)
    train, test = holdout_split(R, test_size=0.2, random_state=0)
    fit = bmf(train, 2, max_iter=60, burn_in=10, warm_start=2, random_state=0)
    pred = fit.predict(test.rows, test.cols)
    assert np.sqrt(np.mean((pred - test.values) ** 2)) < 0.1  # entries have unit variance


def test_warm_start_must_be_a_non_negative_int(small):
    with pytest.raises(ValueError, match="`warm_start`"):
        bmf(small, 2, warm_start=-1)
