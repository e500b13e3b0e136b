"""Ranking metrics (evaluation.ranking_metrics): hand-computed cases, sklearn's NDCG, blocks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import lsqmf.evaluate as ev
from lsqmf import FitResult, Ratings
from lsqmf.data.synthetic import make_low_rank
from lsqmf.evaluate import holdout_split, metrics, ranking_metrics
from lsqmf.solvers import als

sklearn_metrics = pytest.importorskip("sklearn.metrics")


def _hand_model() -> FitResult:
    # user 0 ranks the items 0 > 1 > 2 > 3 > 4; user 1 the reverse; user 2 has no rating
    P = np.array([[1.0], [-1.0], [1.0]])
    Q = np.array([[0.9, 0.8, 0.7, 0.6, 0.5]])
    return FitResult(P=P, Q=Q, row_counts=np.array([1, 1, 0]), col_counts=np.ones(5, int),
                     train_mean=3.0)


def _hand_split() -> tuple[Ratings, Ratings]:
    train = Ratings(np.array([0, 1]), np.array([1, 4]), np.array([3.0, 3.0]), (3, 5))
    test = Ratings(
        np.array([0, 0, 0, 1, 2]),
        np.array([0, 3, 4, 0, 2]),
        np.array([5.0, 4.0, 2.0, 3.5, 5.0]),
        (3, 5),
    )
    return train, test


def test_hand_computed() -> None:
    train, test = _hand_split()
    out = ranking_metrics(_hand_model(), train, test, k=3, threshold=4.0)
    # user 0: candidates 0, 2, 3, 4 (1 was rated in train); top 3 = [0, 2, 3]; relevant {0, 3}
    assert out["precision@3"] == pytest.approx(2 / 3)
    assert out["recall@3"] == pytest.approx(1.0)
    assert out["map@3"] == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert out["ndcg@3"] == pytest.approx((1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3)))
    # user 1 has only a 3.5 (not relevant); user 2 has no training rating (no factor)
    assert out["n_ranked_users"] == 1
    assert out["n_users_no_relevant"] == 1
    assert out["n_users_cold"] == 1
    assert out["relevance_threshold"] == 4.0


def test_threshold_is_inclusive_and_explicit() -> None:
    train, test = _hand_split()
    out = ranking_metrics(_hand_model(), train, test, k=1, threshold=3.5)
    # user 1 now counts: its candidates are 0..3 ranked 3 > 2 > 1 > 0; relevant {0}: a miss
    assert out["n_ranked_users"] == 2
    assert out["precision@1"] == pytest.approx((1 + 0) / 2)
    assert out["recall@1"] == pytest.approx((1 / 2 + 0) / 2)


def test_k_beyond_the_candidates_keeps_k_as_denominator() -> None:
    train, test = _hand_split()
    out = ranking_metrics(_hand_model(), train, test, k=10)
    assert out["precision@10"] == pytest.approx(2 / 10)
    assert out["recall@10"] == pytest.approx(1.0)
    # the same four candidates in the same order as with k=3
    assert out["ndcg@10"] == pytest.approx((1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3)))


def test_relevant_items_the_model_cannot_rank_are_misses() -> None:
    train, test = _hand_split()
    model = _hand_model()
    cold_item = FitResult(P=model.P, Q=model.Q, row_counts=model.row_counts,
                          col_counts=np.array([1, 1, 1, 0, 1]))  # item 3 never fitted
    out = ranking_metrics(cold_item, train, test, k=3)
    assert out["recall@3"] == pytest.approx(1 / 2)
    assert out["precision@3"] == pytest.approx(1 / 3)


def _brute_force(model: FitResult, train: Ratings, test: Ratings, k: int,
                 threshold: float) -> dict[str, float]:
    """Per user, one dense score row, a full sort and sklearn's NDCG."""
    full = model.P @ model.Q + (0.0 if model.col_bias is None else model.col_bias)
    assert model.col_counts is not None and model.row_counts is not None
    prec, rec, ndcg = [], [], []
    for u in range(model.shape[0]):
        rel_items = test.cols[(test.rows == u) & (test.values >= threshold)]
        if len(rel_items) == 0 or model.row_counts[u] == 0:
            continue
        cand = np.setdiff1d(np.flatnonzero(model.col_counts > 0), train.cols[train.rows == u])
        assert np.isin(rel_items, cand).all()  # no cold items in this data set
        ranked = cand[np.argsort(-full[u, cand], kind="stable")][:k]
        hits = np.isin(ranked, rel_items)
        prec.append(hits.sum() / k)
        rec.append(hits.sum() / len(rel_items))
        y_true = np.isin(cand, rel_items).astype(float)[None]
        ndcg.append(sklearn_metrics.ndcg_score(y_true, full[u, cand][None], k=k))
    return {"precision": float(np.mean(prec)), "recall": float(np.mean(rec)),
            "ndcg": float(np.mean(ndcg))}


@pytest.mark.parametrize("k", [1, 5, 12], ids=["k=1", "k=5", "k=12"])
@pytest.mark.parametrize("biases", [False, True], ids=["no-biases", "biases"])
def test_against_brute_force_and_sklearn_ndcg(k: int, biases: bool) -> None:
    ratings, _ = make_low_rank(40, 30, 3, density=0.6, noise=0.3, random_state=0)
    train, test = holdout_split(ratings, test_size=0.25, random_state=1)
    model = als(train, 3, reg=0.1, biases=biases, max_iter=500, tol=1e-3, random_state=0)
    threshold = float(np.quantile(ratings.values, 0.6))
    out = ranking_metrics(model, train, test, k=k, threshold=threshold)
    ref = _brute_force(model, train, test, k, threshold)
    assert out[f"precision@{k}"] == pytest.approx(ref["precision"], rel=1e-12)
    assert out[f"recall@{k}"] == pytest.approx(ref["recall"], rel=1e-12)
    assert out[f"ndcg@{k}"] == pytest.approx(ref["ndcg"], rel=1e-9)


def test_blocks_of_users_give_the_same_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    ratings, _ = make_low_rank(30, 20, 2, density=0.5, noise=0.3, random_state=2)
    train, test = holdout_split(ratings, test_size=0.3, random_state=0)
    model = als(train, 2, reg=0.1, max_iter=500, tol=1e-3, random_state=0)
    threshold = float(np.median(ratings.values))
    whole = ranking_metrics(model, train, test, k=5, threshold=threshold)
    monkeypatch.setattr(metrics, "_RANKING_BLOCK_ELEMENTS", 3 * 20)  # three users per block
    blocked = ranking_metrics(model, train, test, k=5, threshold=threshold)
    assert blocked == pytest.approx(whole, rel=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"k": 0}, ValueError, r"^`k` must be an int >= 1; got 0\.$"),
        ({"k": 2.5}, TypeError, r"^`k` must be an int; got 2\.5 \(float\)\.$"),
        ({"threshold": float("nan")}, ValueError, r"`threshold`"),
    ],
    ids=["k-zero", "k-float", "threshold-nan"],
)
def test_bad_arguments(kwargs: dict[str, object], error: type, message: str) -> None:
    train, test = _hand_split()
    with pytest.raises(error, match=message):
        ranking_metrics(_hand_model(), train, test, **kwargs)  # type: ignore[arg-type]


def test_model_of_another_shape_is_refused() -> None:
    train, test = _hand_split()
    other = FitResult(P=np.ones((2, 1)), Q=np.ones((1, 5)))
    with pytest.raises(ValueError, match=r"^`model` must be fitted on `train`: shapes \(2, 5\) "
                                         r"and \(3, 5\) differ\.$"):
        ranking_metrics(other, train, test)


def test_no_evaluated_user_gives_nan() -> None:
    train, test = _hand_split()
    out = ranking_metrics(_hand_model(), train, test, threshold=6.0)
    assert out["n_ranked_users"] == 0 and math.isnan(out["ndcg@10"])


def test_fit_and_score_hook_adds_the_ranking_fields() -> None:
    train, test = _hand_split()

    def fixed(train: Ratings, rank: int, **params: object) -> FitResult:
        return _hand_model()

    out = ev.fit_and_score(fixed, train, test, rank=1, ranking={"k": 3})
    assert out["precision@3"] == pytest.approx(2 / 3) and out["n_ranked_users"] == 1
    assert "precision@10" not in ev.fit_and_score(fixed, train, test, rank=1)
    with pytest.raises(TypeError, match=r"^`ranking` must be a dict with keys among 'k' and "
                                        r"'threshold'; got \{'n': 3\} \(dict\)\.$"):
        ev.fit_and_score(fixed, train, test, rank=1, ranking={"n": 3})


def test_cli_evaluate_top_k(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lsqmf.cli import main

    train = tmp_path / "train.csv"
    train.write_text("userId,movieId,rating,timestamp\n1,10,4.0,0\n1,20,3.5,0\n2,10,2.0,0\n"
                     "2,40,3.0,0\n3,20,4.5,0\n3,30,4.0,0\n4,30,2.5,0\n4,40,5.0,0\n")
    test = tmp_path / "test.csv"
    test.write_text("userId,movieId,rating,timestamp\n1,30,5.0,0\n2,30,1.0,0\n3,40,4.0,0\n")
    capsys.readouterr()
    assert main(["evaluate", str(train), str(test), "--solver", "als", "--rank", "1",
                 "--max-iter", "5", "--tol", "0.5", "--top-k", "2", "--relevance", "4"]) == 0
    out = capsys.readouterr().out
    assert "(2 users with a rating >= 4 in TEST)" in out and "NDCG@2 " in out
    assert main(["evaluate", str(train), str(test), "--solver", "als", "--rank", "1",
                 "--max-iter", "5", "--tol", "0.5", "--top-k", "2", "--json"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["n_ranked_users"] == 2 and 0.0 <= record["ndcg@2"] <= 1.0
    assert record["relevance_threshold"] == 4.0


def test_cross_validate_records_the_ranking_fields() -> None:
    ratings, _ = make_low_rank(30, 20, 2, density=0.5, noise=0.3, random_state=0)
    cv = ev.cross_validate(ratings, solver="als", n_splits=2, rank=2, max_iter=200, tol=1e-3,
                           ranking={"k": 3, "threshold": 0.0})
    for fold in range(2):
        train, test = ev.kfold(ratings, 2, 0)[fold]
        model = als(train, 2, **{**_als_defaults(), "random_state": fold})
        ref = ranking_metrics(model, train, test, k=3, threshold=0.0)
        assert cv.loc[fold, "ndcg@3"] == pytest.approx(ref["ndcg@3"], rel=1e-9)
        assert cv.loc[fold, "n_ranked_users"] == ref["n_ranked_users"]


def _als_defaults() -> dict[str, object]:
    from lsqmf.solvers import SOLVER_DEFAULTS

    d = dict(SOLVER_DEFAULTS["als"])
    d.pop("rank", None)
    return {**d, "max_iter": 200, "tol": 1e-3}


def test_cli_cv_top_k(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lsqmf.cli import main

    ratings = tmp_path / "ratings.csv"
    ratings.write_text("userId,movieId,rating,timestamp\n" + "".join(
        f"{u},{i},{(u * i) % 5 + 1}.0,0\n" for u in range(1, 7) for i in range(1, 6)
        if (u + i) % 3
    ))
    capsys.readouterr()
    assert main(["cv", str(ratings), "--solver", "als", "--rank", "1", "--folds", "2",
                 "--max-iter", "5", "--tol", "0.5", "--no-progress", "--top-k", "2",
                 "--relevance", "3", "--out", str(tmp_path / "cv")]) == 0
    out = capsys.readouterr().out
    assert "mean over folds, relevance: test rating >= 3" in out and "ndcg@2" in out
    import pandas as pd

    results = pd.read_csv(tmp_path / "cv" / "cv_results.csv")
    assert {"precision@2", "ndcg@2", "n_ranked_users"} <= set(results.columns)


def test_ties_are_broken_by_column_index() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):  # few distinct values: many ties, also across the k-th place
        scores = rng.integers(0, 4, (6, 9)).astype(float)
        scores[rng.random(scores.shape) < 0.2] = -np.inf
        k = int(rng.integers(1, 10))
        expected = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(metrics._top_k(scores, k), expected)
    # four items with one score: the lowest indices win
    model = FitResult(P=np.ones((1, 1)), Q=np.array([[1.0, 2.0, 2.0, 2.0, 2.0]]),
                      row_counts=np.ones(1, int), col_counts=np.ones(5, int), train_mean=3.0)
    train = Ratings(np.array([0]), np.array([0]), np.array([3.0]), (1, 5))
    test = Ratings(np.array([0]), np.array([2]), np.array([5.0]), (1, 5))
    assert ranking_metrics(model, train, test, k=2)["recall@2"] == 1.0  # ranks 1, 2 first
    test = Ratings(np.array([0]), np.array([4]), np.array([5.0]), (1, 5))
    assert ranking_metrics(model, train, test, k=2)["recall@2"] == 0.0
