"""The one loss table (lsqmf.nls.tables.LOSSES): rho, rho', rho'' per row, checked against
finite differences and against scipy's own losses; a new row runs through solve and VarPro."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import least_squares

import lsqmf
from lsqmf.nls import tables
from lsqmf.nls.tables import LOSSES, Loss

from .conftest import random_observed

NAMES = list(LOSSES)
#: squared scaled residuals on both sides of huber's kink (z = 1) and far out
Z = np.array([0.0, 1e-3, 0.3, 0.9, 1.1, 2.5, 10.0, 400.0])


def _welsch(z: np.ndarray) -> np.ndarray:
    """Welsch's loss (scipy lacks it): rho = 1 - exp(-z), rho' = exp(-z), rho'' = -exp(-z)."""
    e = np.exp(-z)
    return np.stack([1.0 - e, e, -e])


def _tukey(z: np.ndarray) -> np.ndarray:
    """Tukey's biweight in z = s^2: (1 - (1 - z)^3) / 3 inside, 1/3 outside."""
    w = np.clip(1.0 - z, 0.0, None)
    return np.stack([(1.0 - w**3) / 3.0, w**2, -2.0 * w])


NEW_ROWS = {"welsch": Loss("welsch", _welsch), "tukey": Loss("tukey", _tukey)}


@pytest.mark.parametrize("name", [*NAMES, *NEW_ROWS])
def test_each_row_is_rho_with_its_derivatives(name: str) -> None:
    row = LOSSES.get(name) or NEW_ROWS[name]
    rho = row.rho(Z)
    assert rho.shape == (3, Z.size)
    assert rho[0, 0] == 0.0 and rho[1, 0] == pytest.approx(1.0)
    h = 1e-6
    away = np.abs(Z - 1.0) > 10 * h  # huber's and tukey's second derivatives jump at z = 1
    up, down = row.rho(Z + h), row.rho(np.maximum(Z - h, 0.0))
    step = (Z + h) - np.maximum(Z - h, 0.0)
    np.testing.assert_allclose(((up[0] - down[0]) / step)[away], rho[1][away], rtol=1e-6,
                               atol=1e-9)
    # at z = 0 the difference is one-sided: its error is about h * |rho'''(0)|
    np.testing.assert_allclose(((up[1] - down[1]) / step)[away], rho[2][away], rtol=1e-5,
                               atol=1e-5)


def test_the_table_is_the_public_loss_list() -> None:
    assert NAMES == ["linear", "soft_l1", "huber", "cauchy", "arctan"]
    assert list(lsqmf.LOSSES) == NAMES
    assert all(row.name == name and row.scipy for name, row in LOSSES.items())


def _residual(x: np.ndarray) -> np.ndarray:
    t = np.linspace(0.0, 3.0, 40)
    y = 2.0 * np.exp(-0.7 * t) + 0.05 * np.sin(7 * t)
    y[::9] += 3.0  # outliers
    return x[0] * np.exp(-x[1] * t) - y


@pytest.mark.parametrize("name", NAMES[1:])
def test_built_in_rows_equal_scipys_string_losses(name: str) -> None:
    """Passed as a callable, a row gives scipy's own loss's cost and solution."""
    kw = dict(f_scale=0.5, method="trf", ftol=1e-12, xtol=1e-12, gtol=1e-12)
    by_name = least_squares(_residual, [1.0, 1.0], loss=name, **kw)
    by_row = least_squares(_residual, [1.0, 1.0], loss=LOSSES[name].rho, **kw)
    assert by_row.cost == pytest.approx(by_name.cost, rel=1e-10)
    np.testing.assert_allclose(by_row.x, by_name.x, rtol=1e-7)
    r = _residual(by_name.x)
    assert LOSSES[name].cost(r, 0.5) == pytest.approx(by_name.cost, rel=1e-12)


@pytest.mark.parametrize("name", NAMES[1:])
def test_solve_with_a_row_as_callable_equals_the_name(name: str) -> None:
    R = random_observed(12, 9, 0.6, seed=31, rank=2, noise=0.3)
    kw = dict(formulation="l2", reg=0.05, random_state=0, f_scale=0.7, ftol=1e-10,
              tr_solver="exact")
    by_name = lsqmf.solve(R, 2, loss=name, **kw)
    by_row = lsqmf.solve(R, 2, loss=LOSSES[name].rho, **kw)
    assert by_row.cost == pytest.approx(by_name.cost, rel=1e-8)
    np.testing.assert_allclose(by_row.P @ by_row.Q, by_name.P @ by_name.Q, atol=1e-5)


@pytest.fixture
def welsch(monkeypatch: pytest.MonkeyPatch) -> Loss:
    row = NEW_ROWS["welsch"]
    monkeypatch.setitem(tables.LOSSES, "welsch", row)
    return row


def _welsch_fit(eliminate: str | None, loss: str = "welsch") -> tuple[np.ndarray, lsqmf.FitResult]:
    R = random_observed(14, 10, 0.6, seed=32, rank=2, noise=0.05)
    R[2, 3] = R[5, 1] = 40.0  # gross outliers
    return R, lsqmf.solve(R, 2, loss=loss, f_scale=0.5, method="trf", formulation="l2",
                          reg=0.01, random_state=0, eliminate=eliminate, ftol=1e-10)


@pytest.mark.parametrize("eliminate", [None, "Q", "P"])
def test_a_new_row_runs_through_solve_with_trf(welsch: Loss, eliminate: str | None) -> None:
    """Adding a loss scipy lacks is one row of the table: it is accepted by name, handed to
    least_squares as its callable (joint and VarPro), and its cost is the one recorded."""
    _, fit = _welsch_fit(eliminate)
    assert fit.options["loss"] == "welsch" and fit.options["eliminate"] == eliminate
    assert fit.success and np.isfinite(fit.cost)
    r = fit.optimize_result.fun
    assert fit.cost == pytest.approx(welsch.cost(r, 0.5), rel=1e-10)
    assert min(fit.history.cost) == pytest.approx(fit.cost, rel=1e-10)


def test_the_new_row_is_robust_to_outliers(welsch: Loss) -> None:
    R, fit = _welsch_fit(None)
    _, ref = _welsch_fit(None, loss="linear")
    inliers = np.isfinite(R) & (R < 30)

    def rms(f: lsqmf.FitResult) -> float:
        return float(np.sqrt(np.mean((f.P @ f.Q - R)[inliers] ** 2)))

    # measured: 0.040 (welsch) vs 0.191 (linear), the noise being 0.05
    assert rms(fit) < 0.06 < 0.15 < rms(ref)


def test_an_unknown_loss_is_refused_with_the_table() -> None:
    with pytest.raises(ValueError, match="`loss` must be one of 'linear', 'soft_l1', 'huber'"):
        lsqmf.solve(random_observed(5, 4, 0.8, seed=1), 1, loss="welsch")
