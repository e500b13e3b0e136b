"""The obvious call on measurement matrices (issue #19): the auto choices, no success at the
zero saddle, exact fits of noise-free generated sequences, robust VarPro."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import lsqmf
from lsqmf.data.synthetic import SFM_FAMILIES, make_affine_sfm
from lsqmf.nls.auto import choose_eliminate, choose_method, start_scale
from lsqmf.nls.lm_normal import DECREMENT_TOL, MAX_NORMAL_PARAMS


def _seq(family: str = "turntable", seed: int = 1, **over: object):
    settings = dict(SFM_FAMILIES[family])
    settings.update(dict(n_frames=16, n_points=60), **over)
    return make_affine_sfm(**settings, random_state=seed)  # type: ignore[arg-type]


def _quiet(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lsqmf.solve(*args, **kwargs)


# ------------------------------------------------------------------------ the auto choices
@pytest.mark.parametrize("shape, expected", [((32, 60), "Q"), ((60, 32), "P"), ((40, 40), "Q")],
                         ids=["wide-Q", "tall-P", "square-Q"])
def test_auto_eliminates_the_larger_factor(shape, expected):
    rng = np.random.default_rng(0)
    M = rng.standard_normal((shape[0], 3)) @ rng.standard_normal((3, shape[1]))
    fit = _quiet(M, 3, mask=np.ones(shape, bool), formulation="none", random_state=0)
    assert fit.options["eliminate"] == expected
    assert fit.options["method"] == "lm-normal"
    assert fit.success and fit.rms < 1e-8


def test_auto_falls_back_to_the_feasible_factor():
    dense = np.full((10, 30), np.nan)
    for j in range(30):  # every column seen twice (< rank 3), every row six times
        dense[[j % 10, (j + 1) % 10], j] = 1.0
    ratings = lsqmf.Ratings.from_dense(dense)
    kw = dict(formulation="none", rank=3, biases=False, reg=0.0, has_mask=True)
    assert choose_eliminate("auto", ratings=ratings, **kw) == "P"
    assert choose_eliminate("auto", ratings=ratings, **dict(kw, rank=7)) is None
    assert choose_eliminate("auto", ratings=lsqmf.Ratings.from_dense(np.ones((10, 30))),
                            **kw) == "Q"


@pytest.mark.parametrize("formulation, has_mask, expected", [
    ("prior", True, None), ("prior", False, None), ("l2", False, None), ("l2", True, "Q"),
    ("none", False, "Q"), ("none", True, "Q"),
], ids=["prior-mask", "prior", "l2-ratings", "l2-mask", "none", "none-mask"])
def test_auto_eliminate_keeps_ratings_joint(formulation, has_mask, expected):
    ratings = lsqmf.Ratings.from_dense(np.ones((10, 30)))
    got = choose_eliminate("auto", formulation=formulation, ratings=ratings, rank=2,
                           biases=False, reg=0.1, has_mask=has_mask)
    assert got == expected


def test_auto_method_by_size_and_options():
    kw = dict(rank=4, biases=False, bounds=None, loss="linear")
    assert choose_method("auto", eliminate=None, shape=(10, 10), **kw) == "trf"
    assert choose_method("auto", eliminate="Q", shape=(100, 10**5), **kw) == "lm-normal"
    big = MAX_NORMAL_PARAMS // 4 + 1
    assert choose_method("auto", eliminate="Q", shape=(big, 10**5), **kw) == "trf"
    assert choose_method("auto", eliminate="P", shape=(10**5, big), **kw) == "trf"
    assert choose_method("auto", eliminate="Q", shape=(10, 10), explicit=True, **kw) == "trf"
    assert choose_method("lm", eliminate="Q", shape=(10, 10), **kw) == "lm"


def test_explicit_scipy_method_keeps_the_joint_problem():
    seq = _seq()
    fit = _quiet(seq.M, seq.rank, mask=seq.mask, formulation="none", method="trf",
                 random_state=0, max_nfev=5)
    assert fit.options["eliminate"] is None and fit.options["method"] == "trf"


def test_ratings_defaults_unchanged():
    R = lsqmf.data.make_low_rank(30, 20, 2, density=0.5, random_state=0)[0]
    fit = _quiet(R, 2, random_state=0)
    assert fit.options["method"] == "trf" and fit.options["eliminate"] is None
    assert fit.options["init_scale"] == 0.1


def test_start_scale_follows_the_data():
    ratings = lsqmf.Ratings.from_dense(np.full((4, 4), 300.0))
    assert start_scale(None, "none", ratings, 4) == pytest.approx(np.sqrt(300.0 / 2.0))
    assert start_scale(None, "prior", ratings, 4) == 0.1
    assert start_scale(0.5, "none", ratings, 4) == 0.5


# ------------------------------------------------------------------------ the zero saddle
def test_zero_start_is_not_a_success():
    seq = _seq()
    n, m = seq.M.shape
    fit = _quiet(seq.M, seq.rank, mask=seq.mask, formulation="none",
                 P0=np.zeros((n, seq.rank)), Q0=np.zeros((seq.rank, m)))
    assert not fit.success
    assert "saddle" in fit.message


@pytest.mark.parametrize("formulation", ["prior", "none"])
def test_small_start_on_pixel_data_is_not_a_success(formulation):
    """The issue's case: init_scale=0.1 with ftol=1e-3 on pixel-unit data stopped next to the
    zero factorization after 2 evaluations with success=True."""
    seq = _seq()
    with pytest.warns(lsqmf.ConvergenceWarning, match="Gauss-Newton step"):
        fit = lsqmf.solve(seq.M, seq.rank, mask=seq.mask, formulation=formulation,
                          method="trf", init_scale=0.1, random_state=0)
    assert fit.rms > 10.0 and not fit.success


def test_success_means_a_small_decrement():
    seq = _seq("sparse_long", noise=0.5)
    for s in range(4):
        fit = _quiet(seq.M, seq.rank, mask=seq.mask, formulation="none", random_state=s)
        if not fit.success:
            assert "would still remove" in fit.message or "saddle" in fit.message
        assert fit.status > 0 or not fit.success


# ------------------------------------------------------------------------ exact fits
@pytest.mark.parametrize("family", ["turntable", "tumble", "sparse_long"])
def test_noise_free_sequence_fitted_exactly(family):
    seq = _seq(family, noise=0.0, outliers=0.0)
    fit = _quiet(seq.M, seq.rank, mask=seq.mask, formulation="none", random_state=0)
    assert fit.success
    assert fit.rms < 1e-6
    assert np.allclose(fit.P @ fit.Q, seq.clean, atol=1e-4 * np.abs(seq.clean).max())


def test_decrement_tolerance_is_tight():
    assert DECREMENT_TOL <= 1e-6
