"""lsqmf._varpro_lm: the reduced normal equations and solve_varpro(method='lm-normal')."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lsqmf
from lsqmf._varpro_lm import MAX_NORMAL_PARAMS, normal_equations
from lsqmf.ratings import as_ratings
from lsqmf.varpro import build_reduced, solve_varpro

GIRAFFE = Path(__file__).resolve().parents[2] / "shared" / "data" / "giraffe" / "giraffe.M.txt"


def _matrix(seed: int, n: int = 9, m: int = 8, k: int = 2, noise: float = 0.1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((n, k)) @ rng.standard_normal((k, m))
    M += noise * rng.standard_normal(M.shape)
    M[rng.random(M.shape) < 0.2] = np.nan
    return M


@pytest.mark.parametrize("biases", [False, True])
@pytest.mark.parametrize(("formulation", "reg"), [("none", 0.0), ("l2", 0.3)])
@pytest.mark.parametrize("weighted", [False, True])
def test_normal_matrix_matches_dense_kaufman(
    biases: bool, formulation: str, reg: float, weighted: bool
) -> None:
    rng = np.random.default_rng(3)
    M = _matrix(1)
    W = rng.random(M.shape) + 0.5 if weighted else None
    red = build_reduced(
        as_ratings(M, weights=W),
        2,
        formulation=formulation,
        reg=reg,
        biases=biases,
        backend="numpy",
    )
    theta = rng.standard_normal(red.n_params)
    A, g = normal_equations(red, theta)
    J = red.dense_jacobian(theta)
    JtJ = J.T @ J
    np.testing.assert_allclose(A, JtJ, rtol=0, atol=1e-10 * np.abs(JtJ).max())
    Jtr = J.T @ red.residual(theta)
    np.testing.assert_allclose(g, Jtr, rtol=0, atol=1e-10 * np.abs(Jtr).max())


@pytest.mark.parametrize("biases", [False, True])
def test_gradient_matches_finite_differences(biases: bool) -> None:
    red = build_reduced(
        as_ratings(_matrix(2)), 2, formulation="l2", reg=0.2, biases=biases, backend="numpy"
    )
    theta = np.random.default_rng(0).standard_normal(red.n_params)
    _, g = normal_equations(red, theta)
    h = 1e-6
    fd = np.array(
        [
            (red.cost(theta + h * e) - red.cost(theta - h * e)) / (2 * h)
            for e in np.eye(red.n_params)
        ]
    )
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-6 * np.abs(fd).max())


@pytest.mark.parametrize("eliminate", ["Q", "P"])
@pytest.mark.parametrize("biases", [False, True])
def test_lm_normal_reaches_the_trf_optimum(eliminate: str, biases: bool) -> None:
    M = _matrix(4, n=12, m=10)
    kw = dict(
        eliminate=eliminate,
        formulation="l2",
        reg=0.05,
        biases=biases,
        ftol=1e-12,
        xtol=1e-12,
        gtol=1e-10,
        backend="numpy",
        random_state=0,
    )
    ref = solve_varpro(M, 2, method="trf", tr_solver="exact", max_nfev=500, **kw)
    fit = solve_varpro(M, 2, method="lm-normal", max_nfev=500, **kw)
    assert fit.success
    assert fit.options["method"] == "lm-normal" and fit.options["jac"] == "normal"
    assert fit.cost == pytest.approx(ref.cost, rel=1e-6)
    assert fit.rms is not None and fit.rms == pytest.approx(ref.rms, rel=1e-5)
    assert fit.optimality is not None and fit.optimality < 1e-6
    assert len(fit.history.cost) == fit.nfev


def test_lm_normal_exact_data_under_none() -> None:
    M = _matrix(6, noise=0.0)
    fit = solve_varpro(
        M,
        2,
        method="lm-normal",
        backend="numpy",
        random_state=1,
        ftol=1e-12,
        xtol=1e-12,
        gtol=1e-12,
    )
    assert fit.rms is not None and fit.rms < 1e-6
    assert fit.status == lsqmf.result.Status.GTOL


def test_through_lsqmf_solve() -> None:
    M = _matrix(7)
    fit = lsqmf.solve(
        M,
        rank=2,
        eliminate="P",
        method="lm-normal",
        formulation="l2",
        reg=0.1,
        random_state=0,
        backend="numpy",
        ftol=1e-10,
    )
    assert fit.options["eliminate"] == "P" and fit.options["method"] == "lm-normal"
    assert fit.P.shape == (9, 2) and fit.Q.shape == (2, 8)


def test_callback_stops() -> None:
    fit = solve_varpro(
        _matrix(8),
        2,
        method="lm-normal",
        backend="numpy",
        random_state=0,
        callback=lambda info: info.step >= 2,
    )
    assert fit.status == lsqmf.result.Status.CALLBACK
    assert fit.nfev == 3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"loss": "huber"}, "loss='linear'"),
        ({"bounds": (-1.0, 1.0)}, "bounds"),
        ({"tr_solver": "lsmr"}, "tr_solver"),
        ({"tr_options": {"damp": 1.0}}, "tr_options"),
        ({"jac": "dense"}, "jac='auto'"),
        ({"jacobian": "full"}, "Kaufman"),
    ],
)
def test_refused_options(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        solve_varpro(_matrix(9), 2, method="lm-normal", backend="numpy", **kwargs)


def test_too_many_unknowns_is_refused() -> None:
    n = MAX_NORMAL_PARAMS + 1
    rows = np.repeat(np.arange(n), 2)
    cols = np.tile([0, 1], n)
    R = lsqmf.Ratings(rows, cols, np.ones(rows.size), (n, 2))
    with pytest.raises(ValueError, match="tr_solver='lsmr'"):
        solve_varpro(R, 1, method="lm-normal", backend="numpy", random_state=0)


@pytest.mark.slow
def test_giraffe_reaches_best_known() -> None:
    if not GIRAFFE.exists():
        pytest.skip(f"the giraffe benchmark data is not at {GIRAFFE}")
    M = np.loadtxt(GIRAFFE)[:, 1:]
    fit = solve_varpro(
        M,
        6,
        eliminate="Q",
        method="lm-normal",
        init_scale=1.0,
        random_state=0,
        ftol=1e-10,
        xtol=1e-10,
        gtol=1e-10,
        max_nfev=300,
    )
    assert fit.rms is not None and fit.rms == pytest.approx(0.322795, rel=1e-5)


def test_multistart_with_lm_normal() -> None:
    M = _matrix(10, noise=0.0)
    res = lsqmf.multistart(
        M,
        2,
        eliminate="Q",
        method="lm-normal",
        formulation="none",
        x_scale=1.0,
        ftol=1e-12,
        xtol=1e-12,
        gtol=1e-12,
        backend="numpy",
        random_state=0,
        max_starts=5,
    )
    assert res.best.rms is not None and res.best.rms < 1e-6
