"""Splits, cold-start predictions, metrics, cross-validation and grid search."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lsqmf import Ratings
from lsqmf.data.synthetic import make_low_rank
from lsqmf.evaluate import (
    cross_validate,
    fit_and_score,
    grid_search,
    holdout_split,
    kfold,
    mae,
    predict_pairs,
    rmse,
    top_n,
    user_holdout,
)
from lsqmf.solvers import SOLVERS

FAST = {"biases": True, "count_scaled": False, "max_iter": 10}


@pytest.fixture
def ratings() -> Ratings:
    r, _ = make_low_rank(40, 30, 2, density=0.5, noise=0.05, random_state=0)
    return r


def _pairs(r: Ratings) -> set[tuple[int, int]]:
    return set(zip(r.rows.tolist(), r.cols.tolist(), strict=True))


def test_metrics() -> None:
    assert rmse([1, 2, 3], [1, 2, 5]) == pytest.approx(np.sqrt(4 / 3))
    assert mae([1, 2, 3], [1, 2, 5]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="same length"):
        rmse([1, 2], [1])
    with pytest.raises(ValueError, match="finite"):
        mae([1.0], [np.nan])


def test_kfold_partitions_and_is_seeded(ratings: Ratings) -> None:
    folds = kfold(ratings, 5, random_state=3)
    assert len(folds) == 5
    tests = [_pairs(te) for _, te in folds]
    assert sum(len(t) for t in tests) == ratings.nnz
    assert set().union(*tests) == _pairs(ratings)
    for train, test in folds:
        assert train.shape == test.shape == ratings.shape
        assert not (_pairs(train) & _pairs(test))
        assert train.nnz + test.nnz == ratings.nnz
    again = kfold(ratings, 5, random_state=3)
    assert all(_pairs(a[1]) == _pairs(b[1]) for a, b in zip(folds, again, strict=True))
    other = kfold(ratings, 5, random_state=4)
    assert _pairs(other[0][1]) != tests[0]


def test_kfold_keeps_id_maps() -> None:
    frame = pd.DataFrame({"user": ["a", "b", "c", "a"], "item": [10, 20, 10, 30],
                          "rating": [1.0, 2.0, 3.0, 4.0]})
    r = Ratings.from_frame(frame)
    for train, test in kfold(r, 2, random_state=0):
        assert list(train.row_ids) == list(test.row_ids) == ["a", "b", "c"]


def test_kfold_invalid(ratings: Ratings) -> None:
    with pytest.raises(ValueError, match="`n_splits` must be an int >= 2; got 1"):
        kfold(ratings, 1)
    with pytest.raises(TypeError, match="`random_state` must be None"):
        kfold(ratings, 2, random_state="x")


def test_holdout_and_user_holdout(ratings: Ratings) -> None:
    train, test = holdout_split(ratings, test_size=0.25, random_state=0)
    assert test.nnz == round(0.25 * ratings.nnz)
    assert not (_pairs(train) & _pairs(test))
    train, test = user_holdout(ratings, test_size=0.3, random_state=0)
    assert not (_pairs(train) & _pairs(test))
    assert train.nnz + test.nnz == ratings.nnz
    counts = ratings.row_counts()
    np.testing.assert_array_equal(test.row_counts(), np.round(0.3 * counts).astype(int))
    assert np.all(train.row_counts() >= 1)
    with pytest.raises(ValueError, match=r"`test_size` must be < 1.0; got 1.5"):
        holdout_split(ratings, test_size=1.5)


def test_cold_start_policies() -> None:
    # user 2 and item 3 have no training entry
    train = Ratings.from_triplets([0, 0, 1, 1], [0, 1, 0, 2], [4.0, 2.0, 3.0, 5.0], (3, 4))
    model = SOLVERS["als"](train, 1, reg=0.1, biases=True, tol=0.5, random_state=0)
    rows, cols = np.array([0, 2, 1, 2]), np.array([3, 0, 1, 3])
    pred, n_cold = predict_pairs(model, train, rows, cols, clip=None)
    assert n_cold == 3
    assert pred[0] == pytest.approx(model.mu + model.row_bias[0])  # item 3 cold
    assert pred[1] == pytest.approx(model.mu + model.col_bias[0])  # user 2 cold
    assert pred[3] == pytest.approx(model.mu)  # both cold
    pred_nan, _ = predict_pairs(model, train, rows, cols, cold_start="nan")
    assert np.isnan(pred_nan[[0, 1, 3]]).all() and np.isfinite(pred_nan[2])
    with pytest.raises(ValueError, match="not seen in training"):
        predict_pairs(model, train, rows, cols, cold_start="raise")
    with pytest.raises(ValueError, match="`cold_start` must be one of"):
        predict_pairs(model, train, rows, cols, cold_start="zero")


def test_clip() -> None:
    train = Ratings.from_triplets([0, 1], [0, 1], [1.0, 5.0], (2, 2))
    model = SOLVERS["als"](train, 1, reg=0.0, max_iter=2, random_state=0, tol=0.5)
    big = model.__class__(P=np.array([[10.0], [10.0]]), Q=np.array([[1.0, 1.0]]))
    pred, _ = predict_pairs(big, train, [0, 1], [1, 0])
    assert np.all(pred == 5.0)
    pred, _ = predict_pairs(big, train, [0, 1], [1, 0], clip=None)
    assert np.all(pred == 10.0)
    pred, _ = predict_pairs(big, train, [0, 1], [1, 0], clip=(0, 7))
    assert np.all(pred == 7.0)
    with pytest.raises(ValueError, match="`clip` must be 'auto', None or"):
        predict_pairs(big, train, [0], [0], clip=(5, 1))


def test_fit_and_score(ratings: Ratings) -> None:
    train, test = kfold(ratings, 4, random_state=0)[0]
    out = fit_and_score("als", train, test, rank=2, reg=0.1, random_state=0, **FAST)
    for key in ("rmse", "mae", "fit_s", "n_cold_start", "n_test", "status", "train_rmse"):
        assert key in out
    assert out["solver"] == "als" and out["rank"] == 2 and out["reg"] == 0.1
    assert out["rmse"] < np.std(test.values)
    assert out["n_test"] == test.nnz == out["n_scored"]


def test_fit_and_score_uses_defaults_and_validates(ratings: Ratings) -> None:
    train, test = kfold(ratings, 4, random_state=0)[0]
    out = fit_and_score("als", train, test, rank=3)
    assert out["count_scaled"] is True  # from SOLVER_DEFAULTS
    with pytest.raises(ValueError, match="`solver` must be one of"):
        fit_and_score("svd", train, test, rank=3)
    short = Ratings.from_triplets([0], [0], [1.0], (1, 1))
    with pytest.raises(ValueError, match="share a shape and id maps"):
        fit_and_score("als", train, short, rank=3)


def test_cross_validate_tidy(ratings: Ratings) -> None:
    cv = cross_validate(ratings, solver="als", n_splits=3, random_state=0, rank=2, reg=0.1,
                        **FAST)
    assert list(cv.columns[:6]) == ["fold", "solver", "fit_s", "rmse", "mae", "n_cold_start"]
    assert list(cv["fold"]) == [0, 1, 2] and len(cv) == 3
    cv2 = cross_validate(ratings, solver="als", n_splits=3, random_state=0, rank=2, reg=0.1,
                         **FAST)
    np.testing.assert_allclose(cv["rmse"], cv2["rmse"])


@pytest.mark.parametrize("n_jobs", [1, 2], ids=["serial", "joblib2"])
def test_grid_search(ratings: Ratings, n_jobs: int) -> None:
    gs = grid_search(ratings, "als", {"rank": [1, 2], "reg": [0.01, 10.0]}, n_splits=3,
                     n_jobs=n_jobs, progress=False, **FAST)
    assert len(gs.results) == 4 * 3
    assert len(gs.summary) == 4
    assert gs.summary["rmse_mean"].is_monotonic_increasing
    assert gs.best_params["reg"] == 0.01 or gs.best_params["rank"] == 2
    assert gs.best_score == pytest.approx(gs.summary["rmse_mean"].iloc[0])
    assert gs.best_model is not None and gs.best_model.rank == gs.best_params["rank"]


def test_grid_search_same_result_in_parallel(ratings: Ratings) -> None:
    grid = {"rank": [2], "reg": [0.1, 1.0]}
    a = grid_search(ratings, "als", grid, n_splits=2, n_jobs=1, progress=False, refit=False,
                    **FAST)
    b = grid_search(ratings, "als", grid, n_splits=2, n_jobs=2, progress=False, refit=False,
                    **FAST)
    np.testing.assert_allclose(a.results["rmse"], b.results["rmse"])
    assert a.best_model is None


def test_grid_search_invalid(ratings: Ratings) -> None:
    with pytest.raises(TypeError, match="`param_grid` must be a non-empty dict"):
        grid_search(ratings, "als", {}, progress=False)
    with pytest.raises(ValueError, match=r"`param_grid\['reg'\]` must be a non-empty list"):
        grid_search(ratings, "als", {"reg": 0.1}, progress=False)


def test_plot_cv_heatmap(ratings: Ratings, tmp_path) -> None:
    from lsqmf.bench.plots_cv import plot_cv_heatmap

    gs = grid_search(ratings, "als", {"rank": [1, 2], "reg": [0.1, 1.0]}, n_splits=2,
                     progress=False, refit=False, **FAST)
    out = plot_cv_heatmap(gs.results, tmp_path / "cv.png")
    assert out.exists() and out.stat().st_size > 1000


def test_fit_and_score_matches_separate_files_by_id() -> None:
    train = Ratings.from_frame(pd.DataFrame({"user": [1, 1, 2, 3], "item": [5, 6, 5, 6],
                                             "rating": [4.0, 2.0, 3.0, 1.0]}))
    test = Ratings.from_frame(pd.DataFrame({"user": [2, 9], "item": [6, 5],
                                            "rating": [2.0, 3.0]}))
    out = fit_and_score("als", train, test, rank=1, max_iter=3, random_state=0)
    assert out["n_cold_start"] == 1 and out["n_test"] == 2


def test_top_n_excludes_and_orders() -> None:
    from lsqmf import FitResult

    model = FitResult(P=np.array([[1.0], [0.0]]), Q=np.array([[3.0, 1.0, 2.0, 5.0]]))
    cols, scores = top_n(model, 0, 2, exclude=[3])
    assert list(cols) == [0, 2] and list(scores) == [3.0, 2.0]
    cols, _ = top_n(model, 0, 10)
    assert list(cols) == [3, 0, 2, 1]
    with pytest.raises(ValueError, match="`row` must be an int <= 1; got 5"):
        top_n(model, 5)


def test_top_n_skips_items_never_fitted() -> None:
    from lsqmf import FitResult

    model = FitResult(P=np.array([[1.0]]), Q=np.array([[3.0, 1.0, 9.0, 5.0]]),
                      row_counts=np.array([3]), col_counts=np.array([1, 1, 0, 1]))
    cols, scores = top_n(model, 0, 3)
    assert cols.tolist() == [3, 0, 1]  # item 2 scores highest but has no training rating
    np.testing.assert_array_equal(scores, [5.0, 3.0, 1.0])
