"""Measurement matrices: a dense matrix with a boolean visibility mask."""

from __future__ import annotations

import numpy as np
import pytest

from lsqmf import as_ratings
from lsqmf.data.ratings import Ratings
from lsqmf.nls.solve import solve_varpro


def _matrix() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    M = rng.standard_normal((6, 2)) @ rng.standard_normal((2, 5))
    W = rng.random(M.shape) < 0.7
    W[0, 0] = True
    return M, W


@pytest.mark.parametrize("fill", [np.nan, 0.0, 1e6], ids=["nan", "zero", "huge"])
def test_only_mask_entries_are_observed(fill: float) -> None:
    M, W = _matrix()
    R = as_ratings(np.where(W, M, fill), mask=W)
    assert R.nnz == W.sum() and R.shape == M.shape
    np.testing.assert_array_equal(R.values, M[W])
    ref = Ratings.from_dense(np.where(W, M, np.nan))
    np.testing.assert_array_equal(R.rows, ref.rows)
    np.testing.assert_array_equal(R.cols, ref.cols)


def test_mask_with_weights_and_observed_zeros() -> None:
    M, W = _matrix()
    M[W] = 0.0  # zeros are observed values when the mask says so (no warning)
    R = Ratings.from_dense(M, mask=W, weights=np.full(M.shape, 2.0))
    assert R.nnz == W.sum() and np.all(R.weights == 2.0)


@pytest.mark.parametrize(
    ("mask", "kwargs", "error", "match"),
    [
        (np.ones((2, 2), bool), {}, ValueError, "shape"),
        (np.ones((6, 5)), {}, TypeError, "boolean"),
        (np.zeros((6, 5), bool), {}, ValueError, "no True"),
        (None, {"missing": 0.0}, ValueError, "cannot be combined"),
    ],
    ids=["shape", "dtype", "empty", "missing"],
)
def test_bad_masks(mask, kwargs, error, match) -> None:
    M, W = _matrix()
    with pytest.raises(error, match=match):
        as_ratings(M, mask=W if mask is None else mask, **kwargs)


def test_nan_where_mask_is_true_is_an_error() -> None:
    M, W = _matrix()
    M[0, 0] = np.nan
    with pytest.raises(ValueError, match="finite where `mask` is True"):
        as_ratings(M, mask=W)


def test_mask_on_non_dense_input_is_refused() -> None:
    M, W = _matrix()
    with pytest.raises(ValueError, match="dense arrays only"):
        as_ratings(Ratings.from_dense(M), mask=W)


def test_rms_is_filled_and_unweighted() -> None:
    M, W = _matrix()
    fit = solve_varpro(M, 1, mask=W, random_state=0, weights=np.full(M.shape, 4.0))
    pred = fit.P @ fit.Q
    assert fit.rms == pytest.approx(float(np.sqrt(np.mean((pred[W] - M[W]) ** 2))), rel=1e-10)


def test_solve_takes_mask_for_joint_and_eliminated_runs() -> None:
    import lsqmf

    M, W = _matrix()
    filled = np.where(W, M, 123.0)
    # eliminate=None: the joint problem (with mask=, 'auto' would choose variable projection)
    joint = lsqmf.solve(filled, 2, mask=W, formulation="l2", reg=1e-3, random_state=0,
                        eliminate=None)
    ref = lsqmf.solve(np.where(W, M, np.nan), 2, formulation="l2", reg=1e-3, random_state=0,
                      eliminate=None)
    np.testing.assert_array_equal(joint.P, ref.P)
    assert joint.rms == ref.rms
    vp = lsqmf.solve(filled, 2, mask=W, eliminate="Q", formulation="none", init_scale=1.0,
                     random_state=0, ftol=1e-10)
    assert vp.rms is not None and vp.rms < 1e-8
    assert vp.options["eliminate"] == "Q" and vp.options["varpro_jacobian"] == "kaufman"
