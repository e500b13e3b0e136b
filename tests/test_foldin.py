"""Fold-in of new rows and columns (lsqmf.model.foldin): the model's own objective, without
refitting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lsqmf import ConvergenceWarning, Ratings, solve
from lsqmf.data.synthetic import make_low_rank
from lsqmf.evaluate import top_n
from lsqmf.model.foldin import fold_in
from lsqmf.model.result import FitResult
from lsqmf.solvers import als

TIGHT = {"ftol": 1e-10, "xtol": 1e-10, "gtol": 1e-10}


@pytest.fixture(scope="module")
def ratings() -> Ratings:
    return make_low_rank(12, 9, 2, density=0.75, noise=0.1, random_state=1)[0]


def _als(ratings: Ratings, **kw: object) -> FitResult:
    """ALS run to a tight tolerance: each half-step is exact, so the fixed side is optimal."""
    return als(ratings, 2, tol=1e-13, max_iter=3000, random_state=0, **kw)  # type: ignore[arg-type]


def _transpose(r: Ratings) -> Ratings:
    return Ratings(r.cols, r.rows, r.values, (r.shape[1], r.shape[0]), weights=r.weights)


def _rows_last(ratings: Ratings, **kw: object) -> FitResult:
    """An ALS model of ``ratings`` whose *rows* were solved last (exactly optimal for its Q).

    ALS solves the users, then the items, so a model fitted on the transpose has exactly
    optimal columns -- the rows of ``ratings``. A few sweeps are enough.
    """
    t = als(_transpose(ratings), 2, tol=1e-2, max_iter=200, random_state=0, **kw)  # type: ignore[arg-type]
    return FitResult(
        P=t.Q.T.copy(), Q=t.P.T.copy(), mu=t.mu, row_bias=t.col_bias, col_bias=t.row_bias,
        row_counts=t.col_counts, col_counts=t.row_counts, options=t.options,
        train_mean=t.train_mean,
    )


@pytest.mark.parametrize(
    "options",
    [
        {"reg": 0.1, "biases": False, "count_scaled": False},
        {"reg": 0.1, "biases": True, "count_scaled": False},
        {"reg": 0.05, "reg_bias": 0.5, "biases": True, "count_scaled": True},
    ],
    ids=["plain", "biases", "biases-count-scaled-reg-bias"],
)
def test_training_row_and_column_reproduce_als_factors(
    ratings: Ratings, options: dict[str, object]
) -> None:
    model = _rows_last(ratings, **options)
    for u in (0, 7):
        new = model.fold_in(ratings.subset(ratings.rows == u))
        np.testing.assert_allclose(new.P[u], model.P[u], atol=1e-10)
        if model.has_biases:
            assert new.row_bias is not None and model.row_bias is not None
            assert new.row_bias[u] == pytest.approx(model.row_bias[u], abs=1e-10)
    # ALS updates the columns last, so they are exactly optimal for the final P
    model = als(ratings, 2, tol=1e-2, max_iter=200, random_state=0, **options)  # type: ignore[arg-type]
    for i in (2, 8):
        new = model.fold_in(ratings.subset(ratings.cols == i), axis="cols")
        np.testing.assert_allclose(new.Q[:, i], model.Q[:, i], atol=1e-10)
        if model.has_biases:
            assert new.col_bias is not None and model.col_bias is not None
            assert new.col_bias[i] == pytest.approx(model.col_bias[i], abs=1e-10)


def test_tight_als_rows_reproduce(ratings: Ratings) -> None:
    # the plain way: ALS to a tight tolerance, so P is (nearly) optimal for the final Q too
    model = _als(ratings, reg=0.1, biases=True, count_scaled=False)
    new = model.fold_in(ratings.subset(ratings.rows == 4))
    np.testing.assert_allclose(new.P[4], model.P[4], atol=1e-5)


def test_weights_are_part_of_the_objective(ratings: Ratings) -> None:
    w = np.random.default_rng(3).uniform(0.2, 3.0, ratings.nnz)
    weighted = ratings.with_weights(w)
    model = als(weighted, 2, reg=0.1, biases=True, tol=1e-2, max_iter=200, random_state=0)
    i = 4
    same = model.fold_in(weighted.subset(weighted.cols == i), axis="cols")
    np.testing.assert_allclose(same.Q[:, i], model.Q[:, i], atol=1e-10)
    unweighted = model.fold_in(ratings.subset(ratings.cols == i), axis="cols")
    assert np.abs(unweighted.Q[:, i] - model.Q[:, i]).max() > 1e-3


@pytest.mark.parametrize(
    "options",
    [
        {"loss": "soft_l1", "f_scale": 0.3},
        {"loss": "soft_l1", "f_scale": 0.5, "biases": True},
        {"bounds": (-0.8, 0.8)},
    ],
    ids=["soft_l1", "soft_l1-biases", "bounds"],
)
def test_lsq_robust_loss_and_bounds_reproduce(
    ratings: Ratings, options: dict[str, object]
) -> None:
    model = solve(ratings, 2, formulation="l2", reg=0.05, random_state=0, **TIGHT, **options)
    bounds = options.get("bounds")
    new = model.fold_in(ratings.subset(ratings.cols == 3), axis="cols", bounds=bounds)
    np.testing.assert_allclose(new.Q[:, 3], model.Q[:, 3], atol=1e-5)
    new = model.fold_in(ratings.subset(ratings.rows == 3), bounds=bounds)
    np.testing.assert_allclose(new.P[3], model.P[3], atol=1e-5)
    assert new.options["fold_in"]["method"] == "least_squares"
    if bounds is not None:
        assert np.all(np.abs(new.P) <= 0.8 + 1e-12)


def test_prior_formulation_with_anchor(ratings: Ratings) -> None:
    rng = np.random.default_rng(0)
    P0, Q0 = rng.standard_normal((12, 2)), rng.standard_normal((2, 9))
    model = solve(ratings, 2, P0=P0, Q0=Q0, **TIGHT)
    new = model.fold_in(ratings.subset(ratings.rows == 3), anchor=P0)
    np.testing.assert_allclose(new.P[3], model.P[3], atol=1e-5)


def test_bounds_that_the_model_does_not_record_are_required(ratings: Ratings) -> None:
    with pytest.warns(ConvergenceWarning):
        model = solve(ratings, 2, formulation="l2", reg=0.05, random_state=0, bounds=(-1, 1),
                      max_nfev=2)
    with pytest.raises(ValueError, match=r"fitted with bounds it does not record; pass"):
        model.fold_in(ratings.subset(ratings.rows == 0))


def test_new_user_by_id_predicts_and_recommends() -> None:
    train = pd.DataFrame({
        "user": ["a", "a", "b", "b", "c", "c", "d"],
        "item": [10, 20, 20, 30, 10, 30, 40],
        "rating": [5.0, 3.0, 4.0, 2.0, 4.5, 1.0, 3.0],
    })
    model = als(train, 2, reg=0.1, biases=True, tol=1e-10, max_iter=500, random_state=0)
    new = pd.DataFrame({"user": ["zoe", "zoe", "zoe"], "item": [10, 30, 999],
                        "rating": [5.0, 1.0, 4.0]})
    folded = model.fold_in(new)
    assert folded.options["fold_in"]["n_ignored"] == 1  # item 999 is not in the model
    assert folded.options["fold_in"]["n_ratings"] == 2
    assert list(folded.row_ids) == ["zoe"]
    assert folded.shape == (1, model.shape[1])
    out = folded.predict_ids(["zoe", "zoe"], [20, 40], return_cold_start=True)
    assert out.n_cold_start == 0 and np.all(np.isfinite(out.values))
    cols, _ = top_n(folded, 0, 2, exclude=[0, 2])
    assert sorted(model.col_ids[cols].tolist()) == [20, 40]
    with pytest.raises(ValueError, match=r"1 rating\(s\) are of a column this model has no "
                                         r"factor for, first 999; pass unknown='ignore'"):
        model.fold_in(new, unknown="raise")


def test_new_row_with_no_known_rating_is_cold_start() -> None:
    model = als(np.array([[5.0, 3.0, np.nan], [4.0, np.nan, 1.0], [np.nan, 2.0, 2.5]]), 1,
                reg=0.1, biases=True, tol=1e-10, max_iter=500, random_state=0)
    # the second new row rates only column 5, which the model does not have
    new = Ratings(np.array([0, 1]), np.array([0, 5]), np.array([4.0, 3.0]), (2, 6))
    folded = model.fold_in(new)
    assert folded.options["fold_in"]["n_ignored"] == 1
    np.testing.assert_array_equal(folded.row_counts, [1, 0])
    np.testing.assert_array_equal(folded.P[1], 0.0)
    out = folded.predict([1, 1], [0, 2], return_cold_start=True)
    np.testing.assert_array_equal(out.cold_start, [True, True])
    assert model.col_bias is not None
    np.testing.assert_allclose(out.values, model.mu + model.col_bias[[0, 2]])


@pytest.mark.parametrize(
    "empty",
    [pd.DataFrame({"user": [], "item": [], "rating": []}), np.full((2, 3), np.nan)],
    ids=["empty-frame", "all-nan-array"],
)
def test_empty_rating_list_is_refused(empty: object) -> None:
    model = als(np.array([[5.0, 3.0], [4.0, 1.0]]), 1, reg=0.1, max_iter=5, tol=0.5,
                random_state=0)
    with pytest.raises(ValueError, match=r"^`ratings` holds no rating: there is nothing to "
                                         r"fold in"):
        fold_in(model, empty)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"axis": "users"}, ValueError, r"`axis`"),
        ({"unknown": "drop"}, ValueError, r"`unknown`"),
        ({"loss": "l1"}, ValueError, r"^`loss` must be one of \['linear', 'soft_l1', 'huber', "
                                      r"'cauchy', 'arctan'\]; got 'l1'\.$"),
        ({"anchor": np.zeros((2, 1))}, ValueError, r"`anchor` applies to the 'prior' "
                                                   r"formulation only; this model's is 'l2'"),
        ({"bounds": (1.0, 0.0)}, ValueError, r"`bounds` must have lower < upper; at "
                                             r"coordinate 0 got 1.0 >= 0.0"),
        ({"bounds": 1.0}, TypeError, r"`bounds` must be a pair \(lb, ub\); got 1.0 \(float\)"),
    ],
    ids=["axis", "unknown", "loss", "anchor-not-prior", "bounds-reversed", "bounds-scalar"],
)
def test_bad_arguments(kwargs: dict[str, object], error: type, message: str) -> None:
    R = np.array([[5.0, 3.0], [4.0, 1.0]])
    model = als(R, 1, reg=0.1, max_iter=5, tol=0.5, random_state=0)
    with pytest.raises(error, match=message):
        fold_in(model, R, **kwargs)  # type: ignore[arg-type]


def test_model_without_id_map_refuses_ratings_by_id() -> None:
    model = als(np.array([[5.0, 3.0], [4.0, 1.0]]), 1, reg=0.1, max_iter=5, tol=0.5,
                random_state=0)
    new = pd.DataFrame({"user": ["x"], "item": [0], "rating": [4.0]})
    with pytest.raises(ValueError, match=r"name their columns by id but the model has no "
                                         r"column id map"):
        model.fold_in(new)


# ------------------------------------------------------------------ lsqmf recommend (CLI)

RATINGS = """userId,movieId,rating,timestamp
1,10,4.0,0
1,20,3.5,0
1,30,5.0,0
2,10,2.0,0
2,40,3.0,0
3,20,4.5,0
3,30,4.0,0
3,40,1.0,0
4,10,3.0,0
4,30,2.5,0
5,20,5.0,0
5,40,2.0,0
5,30,4.5,0
"""


@pytest.fixture
def saved(tmp_path: Path) -> dict[str, Path]:
    from lsqmf.cli import main

    ratings = tmp_path / "ratings.csv"
    ratings.write_text(RATINGS)
    new = tmp_path / "new.csv"  # user 77 is new; 88 rated only an item the model lacks
    new.write_text("userId,movieId,rating,timestamp\n77,10,5.0,0\n77,40,1.0,0\n"
                   "77,999,3.0,0\n88,999,4.0,0\n")
    model = tmp_path / "model.npz"
    assert main(["fit", str(ratings), "--solver", "als", "--rank", "2", "--reg", "0.1",
                 "--biases", "--max-iter", "50", "--tol", "1e-6", "--out", str(model)]) == 0
    return {"ratings": ratings, "new": new, "model": model}


def _ranked(out: str) -> list[list[str]]:
    return [ln.split() for ln in out.splitlines() if ln.strip()[:2].rstrip(".").isdigit()]


def test_cli_recommend_folds_in_a_new_user(
    saved: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from lsqmf.cli import main
    from lsqmf.model.files import load_model

    capsys.readouterr()
    assert main(["recommend", str(saved["model"]), "--ratings", str(saved["new"]),
                 "--user", "77", "-n", "5"]) == 0
    out = capsys.readouterr().out
    assert ("top 2 for user 77 (2 rated items excluded; folded in from 2 ratings, 1 rating(s) "
            "of unknown items ignored):") in out
    ranked = _ranked(out)
    assert [r[1] for r in ranked] in (["20", "30"], ["30", "20"])
    # unclipped model scores with four decimals, equal to the API's fold-in
    model, _ = load_model(saved["model"])
    new = pd.DataFrame({"user": [77, 77, 77], "item": [10, 40, 999], "rating": [5.0, 1.0, 3.0]})
    folded = model.fold_in(new)
    expected = folded.predict_ids([77], [int(ranked[0][1])])[0]
    assert ranked[0][2] == f"{expected:.4f}"


def test_cli_recommend_cold_user_is_marked(
    saved: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from lsqmf.cli import main

    capsys.readouterr()
    assert main(["recommend", str(saved["model"]), "--ratings", str(saved["new"]),
                 "--user", "88", "-n", "2"]) == 0
    out = capsys.readouterr().out
    assert ("cold start: none of their 1 rated items is known to the model, ranked by the "
            "bias model") in out
    assert len(_ranked(out)) == 2


def test_cli_recommend_min_ratings(
    saved: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from lsqmf.cli import main

    capsys.readouterr()
    # items 10, 20, 30, 40 have 3, 3, 4, 3 training ratings; user 2 rated 10 and 40
    assert main(["recommend", str(saved["model"]), "--ratings", str(saved["ratings"]),
                 "--user", "2", "--min-ratings", "4"]) == 0
    out = capsys.readouterr().out
    assert "items with < 4 ratings left out" in out
    assert [r[1] for r in _ranked(out)] == ["30"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--min-ratings", "0"], "lsqmf recommend: error: --min-ratings must be >= 1; got 0."),
        (["-n", "0"], "lsqmf recommend: error: -n must be >= 1; got 0."),
    ],
    ids=["min-ratings-0", "n-0"],
)
def test_cli_recommend_bad_counts(
    saved: dict[str, Path], capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    from lsqmf.cli import main

    capsys.readouterr()
    assert main(["recommend", str(saved["model"]), "--ratings", str(saved["ratings"]),
                 "--user", "1", *argv]) == 2
    assert capsys.readouterr().err.strip() == message
