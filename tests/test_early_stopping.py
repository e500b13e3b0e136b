"""``validation=``: held-out RMSE per iteration, patience, the best iterate returned."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("numba")

from lsqmf import ConvergenceWarning, Status
from lsqmf.data.synthetic import make_low_rank
from lsqmf.evaluate import holdout_split
from lsqmf.solvers import als, als_cg, bmf, bsgd

# an overfitting setting: rank above the truth, almost no regularization, noisy entries
OVERFIT = {"reg": 1e-3, "biases": True}
SOLVERS = {"als": als, "als_cg": als_cg, "bsgd": bsgd}


@pytest.fixture(scope="module")
def split():
    R, _ = make_low_rank(60, 40, 2, density=0.3, noise=0.5, random_state=0)
    return holdout_split(R, test_size=0.25, random_state=0)


@pytest.mark.parametrize("name", list(SOLVERS))
def test_stops_on_validation_and_returns_the_best_iterate(split, name):
    train, val = split
    solver = SOLVERS[name]
    kw = {"learning_rate": 0.05, "decay": 1.0} if name == "bsgd" else {}
    fit = solver(train, 8, **OVERFIT, validation=val, patience=3, max_iter=300, tol=0.0,
                 random_state=0, **kw)
    assert fit.status == Status.VALIDATION and fit.success
    hist = fit.options["validation_rmse"]
    best = fit.options["best_iteration"]
    assert len(hist) == fit.nfev and best == int(np.argmin(hist)) + 1
    assert fit.nfev == best + 3  # patience iterations without improvement after the best
    # the returned factors are the best iterate: the same run stopped there
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        again = solver(train, 8, **OVERFIT, max_iter=best, tol=0.0, random_state=0, **kw)
    np.testing.assert_allclose(fit.P, again.P, rtol=1e-12, atol=1e-14)
    assert fit.cost == pytest.approx(again.cost, rel=1e-12)
    pred = np.clip(fit.predict(val.rows, val.cols), train.values.min(), train.values.max())
    assert np.sqrt(np.mean((pred - val.values) ** 2)) == pytest.approx(min(hist), rel=1e-10)


def test_patience_none_records_without_stopping(split):
    train, val = split
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit = als_cg(train, 8, **OVERFIT, validation=val, patience=None, max_iter=40,
                     tol=0.0, random_state=0)
    assert fit.status == Status.MAX_ITER
    assert len(fit.options["validation_rmse"]) == 40


def test_a_fraction_is_split_off_with_the_seed(split):
    train, _ = split
    a = als_cg(train, 2, reg=0.1, validation=0.2, random_state=3)
    b = als_cg(train, 2, reg=0.1, validation=0.2, random_state=3)
    np.testing.assert_array_equal(a.P, b.P)
    assert a.options["validation"] == "fraction=0.2"
    # the model saw 80% of the entries: the rows' training counts add up to that
    assert int(a.row_counts.sum()) == train.nnz - round(0.2 * train.nnz)


def test_bmf_records_the_running_mean_on_validation(split):
    train, val = split
    fit = bmf(train, 2, max_iter=40, burn_in=10, validation=val, patience=None,
              random_state=0)
    hist = fit.options["validation_rmse"]
    assert len(hist) == 30 and fit.status == Status.FTOL
    assert hist[-1] < hist[0]  # averaging samples helps


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        ({"validation": "x"}, TypeError, "`validation` must be None, a Ratings"),
        ({"validation": 1.5}, ValueError, "`validation`"),
        ({"validation": 0.2, "patience": 0}, ValueError, "`patience`"),
        ({"validation": 0.2, "patience": 1.5}, TypeError, "`patience` must be an int"),
    ],
    ids=["string", "fraction-above-1", "patience-0", "patience-float"],
)
def test_invalid_validation_options(split, kw, error, match):
    with pytest.raises(error, match=match):
        als_cg(split[0], 2, **kw)
