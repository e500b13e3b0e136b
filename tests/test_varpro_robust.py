"""Robust VarPro: the eliminated factor by IRLS, lm-normal on the reduced robust cost."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import lsqmf
from lsqmf.data import Ratings
from lsqmf.data.synthetic import make_affine_sfm
from lsqmf.nls import lm_normal, varpro
from lsqmf.nls.tables import LOSSES

ROBUST = ("huber", "soft_l1", "cauchy")


def _sequence(outliers: float = 0.03, noise: float = 0.5):
    seq = make_affine_sfm(n_frames=10, n_points=40, outliers=outliers, noise=noise,
                          random_state=0)
    r, c = np.nonzero(seq.mask)
    return seq, Ratings(r, c, seq.M[r, c], seq.mask.shape)


def _fd_gradient(red: varpro.ReducedProblem, theta: np.ndarray) -> np.ndarray:
    out = np.zeros_like(theta)
    for j in range(theta.size):
        h = 1e-6 * max(1.0, abs(theta[j]))
        e = np.zeros_like(theta)
        e[j] = h
        out[j] = (red.cost(theta + e) - red.cost(theta - e)) / (2 * h)
    return out


@pytest.mark.parametrize("loss", ROBUST)
def test_robust_gradient_matches_finite_differences(loss: str) -> None:
    seq, R = _sequence()
    red = varpro.build_reduced(R, seq.rank, formulation="none", loss=LOSSES[loss], f_scale=2.0)
    theta = red.pack(np.random.default_rng(1).standard_normal(seq.P.shape))
    A, g = lm_normal._model(red, lm_normal._layout(red), theta)
    fd = _fd_gradient(red, theta)
    assert np.max(np.abs(g - fd)) <= 1e-6 * np.max(np.abs(fd))
    assert np.linalg.eigvalsh(A)[0] >= -1e-8 * np.linalg.eigvalsh(A)[-1]


@pytest.mark.parametrize("loss", ROBUST)
def test_robust_inner_solve_is_stationary(loss: str) -> None:
    """At z*(theta) the robust inner gradient J_z^T (rho' F) vanishes, column by column."""
    seq, R = _sequence()
    red = varpro.build_reduced(R, seq.rank, formulation="none", loss=LOSSES[loss], f_scale=2.0)
    theta = red.pack(np.random.default_rng(2).standard_normal(seq.P.shape))
    sol = red.inner(theta)
    N = R.nnz
    F = sol.residual[:N]
    assert sol.omega is not None
    feats = red._features(sol.P)[red.rows]
    grad = np.zeros_like(sol.Z)
    np.add.at(grad, red.cols, (red.d * sol.omega * F)[:, None] * feats)
    scale = np.bincount(red.cols, weights=np.abs(red.d * F), minlength=red.n_cols)
    assert np.all(np.abs(grad).max(axis=1) <= 1e-6 * (1.0 + scale * np.abs(feats).max()))


def test_linear_loss_row_is_least_squares() -> None:
    seq, R = _sequence()
    a = varpro.build_reduced(R, seq.rank, formulation="none", loss=LOSSES["linear"])
    b = varpro.build_reduced(R, seq.rank, formulation="none")
    theta = a.pack(np.random.default_rng(3).standard_normal(seq.P.shape))
    assert a.loss is None
    assert a.cost(theta) == pytest.approx(b.cost(theta), rel=1e-12)


def test_robust_inner_refused_with_a_ridge() -> None:
    seq, R = _sequence()
    with pytest.raises(ValueError, match="formulation='none'"):
        varpro.build_reduced(R, seq.rank, formulation="l2", reg=0.1, loss=LOSSES["huber"])
    with pytest.raises(ValueError, match="needs formulation='none'"):
        lsqmf.solve(np.where(seq.mask, seq.M, 0.0), seq.rank, mask=seq.mask, formulation="l2",
                    reg=0.1, method="lm-normal", eliminate="Q", loss="huber")


def test_solve_robust_picks_lm_normal_and_recovers_the_clean_fit() -> None:
    """1% gross outliers (30 frames x 120 points, 0.5 px noise): the huber fit's inlier
    predictions are within 0.2 px RMS (the noise is 0.5 px) of the clean optimum's (the fit
    on the inliers only); the L2 fit's are pixels away."""
    seq = make_affine_sfm(n_frames=30, n_points=120, motion="tumble", outliers=0.01,
                          random_state=0)
    M = np.where(seq.mask, seq.M, 0.0)
    inl = seq.mask & ~seq.outliers

    def prediction(mask: np.ndarray, loss: str) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = lsqmf.solve(M, seq.rank, mask=mask, formulation="none", loss=loss,
                              f_scale=2.0, random_state=0)
        assert fit.options["method"] == "lm-normal"
        return fit.P @ fit.Q

    clean = prediction(inl, "linear")

    def gap(X: np.ndarray) -> float:
        return float(np.sqrt(np.mean((X[inl] - clean[inl]) ** 2)))

    assert gap(prediction(seq.mask, "huber")) < 0.2  # below the 0.5 px noise
    assert gap(prediction(seq.mask, "linear")) > 1.0
