"""lsqmf.estimators: scikit-learn's own checks, agreement with lsqmf's evaluation, errors.

The regressor must give the numbers of :func:`lsqmf.evaluate.cross_validate` on the same
folds and seeds (to 1e-10), predict new users and items by the model's cold-start rule, and
resolve its defaults in the solver registry; the imputer must keep observed entries, fold new
rows in, and take a sparse matrix's stored entries as the observed ones.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.metrics import get_scorer  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import lsqmf  # noqa: E402
from lsqmf.estimators import MatrixCompletionImputer, RatingRegressor, RatingsKFold  # noqa: E402
from lsqmf.solvers import DEFAULT_SOLVER, SOLVER_DEFAULTS  # noqa: E402

PACKAGE = Path(lsqmf.__file__).resolve().parent


def _ratings_frame(n_users: int = 30, n_items: int = 20, rank: int = 2, density: float = 0.5,
                   seed: int = 0) -> pd.DataFrame:
    """Low-rank ratings with int user ids and string item ids (1-5 stars, noisy)."""
    rng = np.random.default_rng(seed)
    full = 3.0 + rng.normal(size=(n_users, rank)) @ rng.normal(size=(rank, n_items)) / 2
    full += rng.normal(scale=0.1, size=full.shape)
    u, i = np.nonzero(rng.random(full.shape) < density)
    return pd.DataFrame({"user": 100 + u, "item": [f"m{j:02d}" for j in i],
                         "rating": np.clip(full[u, i], 1.0, 5.0)})


def _low_rank_matrix(n_rows: int = 30, n_cols: int = 8, rank: int = 2, missing: float = 0.2,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rows, rank)) @ rng.normal(size=(rank, n_cols))
    return X, np.where(rng.random(X.shape) < missing, np.nan, X)


# ------------------------------------------------------------------ scikit-learn's checks

#: Why RatingRegressor fails these checks of scikit-learn 1.6+ (each is run and must fail:
#: xfail_strict). Its X is (user id, item id) pairs, two columns, each pair rated once.
_TWO_COLUMNS = ("X must be two columns (user id, item id); the check fits an X of {} columns "
                "of random floats")
_DUPLICATES = ("the check's X repeats (user, item) pairs, and a pair rated twice is an error "
               "in lsqmf (lsqmf.Ratings: aggregate duplicates first)")
REGRESSOR_EXPECTED_FAILURES = {
    "check_fit_score_takes_y": _TWO_COLUMNS.format(3),
    "check_dont_overwrite_parameters": _TWO_COLUMNS.format(3),
    "check_n_features_in_after_fitting": _TWO_COLUMNS.format(4),
    "check_positive_only_tag_during_fit": _TWO_COLUMNS.format(3),
    "check_estimators_dtypes": _TWO_COLUMNS.format(5),
    "check_sample_weights_list": _TWO_COLUMNS.format(3),
    "check_sample_weights_shape": _DUPLICATES,
    "check_sample_weights_not_overwritten": _DUPLICATES,
    "check_sample_weight_equivalence_on_dense_data": _TWO_COLUMNS.format(30)
    + "; and it repeats rows, which would be duplicate pairs",
    "check_dtype_object": _TWO_COLUMNS.format(10),
    "check_pipeline_consistency": _TWO_COLUMNS.format(3),
    "check_estimators_nan_inf": _TWO_COLUMNS.format(3)
    + " (NaN ids are refused with a message naming NaN: test_bad_pairs)",
    "check_estimators_pickle": _TWO_COLUMNS.format(3) + " (pickling: test_pickle)",
    "check_f_contiguous_array_estimator": _TWO_COLUMNS.format(3),
    "check_regressors_train": _TWO_COLUMNS.format(10),
    "check_regressor_data_not_an_array": _TWO_COLUMNS.format(10),
    "check_regressors_no_decision_function": _TWO_COLUMNS.format(4),
    "check_supervised_y_2d": _TWO_COLUMNS.format(3),
    "check_regressors_int": _TWO_COLUMNS.format(10),
    "check_non_transformer_estimators_n_iter": _TWO_COLUMNS.format(4),
    "check_methods_sample_order_invariance": _TWO_COLUMNS.format(3)
    + " (order invariance on pairs: test_predict_order_and_subset_invariance)",
    "check_methods_subset_invariance": _TWO_COLUMNS.format(3)
    + " (subset invariance on pairs: test_predict_order_and_subset_invariance)",
    "check_fit2d_1sample": _TWO_COLUMNS.format(10),
    "check_dict_unchanged": _TWO_COLUMNS.format(3),
    "check_fit2d_predict1d": _TWO_COLUMNS.format(3),
}


def _expected_failed_checks(estimator: object) -> dict[str, str]:
    if isinstance(estimator, RatingRegressor):
        return REGRESSOR_EXPECTED_FAILURES
    return {}  # MatrixCompletionImputer passes every check


# small ranks and few iterations; tol large enough that every fit converges (warnings are
# errors in this suite)
CHECKED = [
    RatingRegressor("als", rank=2, max_iter=30, tol=0.05),
    MatrixCompletionImputer("als", rank=2, max_iter=30, tol=0.05),
]

if tuple(int(p) for p in sklearn.__version__.split(".")[:2]) >= (1, 6):
    @parametrize_with_checks(CHECKED, expected_failed_checks=_expected_failed_checks)
    def test_sklearn_check(estimator: object, check: object) -> None:
        check(estimator)  # type: ignore[operator]
else:  # pragma: no cover - scikit-learn < 1.6 has no expected_failed_checks
    def test_sklearn_check() -> None:
        pytest.skip("scikit-learn < 1.6: the checks need `expected_failed_checks` (1.6+)")


def test_expected_failures_are_input_shape_only() -> None:
    """Every listed regressor failure is about the two-column pair input, none about fitting."""
    for name, reason in REGRESSOR_EXPECTED_FAILURES.items():
        assert "two columns" in reason or "pair" in reason, name


# ------------------------------------------------------------------ layering


def test_import_lsqmf_does_not_import_sklearn() -> None:
    code = ("import sys, lsqmf; lsqmf.solve; lsqmf.solvers; lsqmf.evaluate; "
            "print(sorted(m for m in sys.modules if m == 'sklearn' or m.startswith('sklearn.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_estimators_import_no_bench_or_cli() -> None:
    code = ("import sys, lsqmf.estimators; "
            "print(sorted(m for m in sys.modules if m.startswith(('lsqmf.bench', 'lsqmf.cli'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_nothing_in_lsqmf_imports_estimators() -> None:
    offenders = [
        str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
        if "estimators" not in p.relative_to(PACKAGE).parts[:1]
        and ("lsqmf.estimators" in p.read_text() or ".estimators import" in p.read_text())
    ]
    assert offenders == []


# ------------------------------------------------------------------ the regressor


@pytest.mark.filterwarnings("ignore::lsqmf.model.result.ConvergenceWarning")
@pytest.mark.parametrize("solver", ["als", "lsq"])
def test_cross_validated_scores_equal_cross_validate(solver: str) -> None:
    """The same folds (RatingsKFold), seeds (the fold number) and id universes as
    lsqmf.evaluate.cross_validate give the same RMSE per fold, cold-start pairs included."""
    df = _ratings_frame(density=0.3)
    ratings = lsqmf.as_ratings(df)
    params = {"rank": 2, "reg": 0.05, "max_iter": 20, "tol": 1e-4}
    cv = lsqmf.evaluate.cross_validate(df, solver=solver, n_splits=3, random_state=7,
                                       **params)
    X, y = df[["user", "item"]], df["rating"].to_numpy()
    base = RatingRegressor(solver, users=ratings.row_ids, items=ratings.col_ids, **params)
    scorer = get_scorer("neg_root_mean_squared_error")
    rmse = []
    for fold, (train, test) in enumerate(RatingsKFold(3, random_state=7).split(X)):
        est = clone(base).set_params(random_state=fold).fit(X.iloc[train], y[train])
        rmse.append(-scorer(est, X.iloc[test], y[test]))
    assert cv["n_cold_start"].sum() > 0  # the comparison covers the cold-start rule
    np.testing.assert_allclose(rmse, cv["rmse"].to_numpy(), rtol=0, atol=1e-10)


def test_ratings_kfold_equals_kfold() -> None:
    df = _ratings_frame()
    shuffled = df.sample(frac=1.0, random_state=1)  # any row order of X: the same folds
    folds = lsqmf.evaluate.kfold(df, n_splits=4, random_state=3)
    splits = list(RatingsKFold(4, random_state=3).split(shuffled[["user", "item"]]))
    assert RatingsKFold(4).get_n_splits() == 4
    for (_, test_r), (train, test) in zip(folds, splits, strict=True):
        got = shuffled.iloc[test]
        expected = test_r.to_frame()
        key = ["user", "item"]
        pd.testing.assert_frame_equal(
            got.sort_values(key).reset_index(drop=True)[expected.columns],
            expected.sort_values(key).reset_index(drop=True), check_dtype=False,
        )
        assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == len(df)


def test_predict_known_and_new_ids() -> None:
    df = _ratings_frame()
    X, y = df[["user", "item"]], df["rating"]
    est = RatingRegressor("als", rank=2, reg=0.05, max_iter=20, tol=1e-4,
                          random_state=0).fit(X, y)
    assert list(est.feature_names_in_) == ["user", "item"]
    assert est.n_features_in_ == 2 and est.solver_ == "als"
    pairs = pd.DataFrame({"user": [100, 100, 999, 999], "item": ["m00", "new", "m00", "new"]})
    got = est.predict(pairs)
    model = est.model_
    expected = model.predict_ids(pairs["user"].to_numpy(), pairs["item"].to_numpy(),
                                 clip=est.clip_)
    np.testing.assert_array_equal(got, expected)
    # the cold-start rule: the bias model (mu + the known bias)
    col = int(np.flatnonzero(model.col_ids == "m00")[0])
    row = int(np.flatnonzero(model.row_ids == 100)[0])
    assert got[1] == pytest.approx(np.clip(model.mu + model.row_bias[row], *est.clip_))
    assert got[2] == pytest.approx(np.clip(model.mu + model.col_bias[col], *est.clip_))
    assert got[3] == pytest.approx(model.mu)
    nan_est = clone(est).set_params(cold_start="nan").fit(X, y)
    assert np.isnan(nan_est.predict(pairs)[1:]).all()
    with pytest.raises(ValueError, match="not seen in training"):
        clone(est).set_params(cold_start="raise").fit(X, y).predict(pairs)


def test_string_ids_in_a_list_and_dataframe_agree() -> None:
    df = _ratings_frame()
    df["user"] = "u" + df["user"].astype(str)
    est = RatingRegressor("als", rank=2, max_iter=10, tol=1e-3, random_state=0)
    a = clone(est).fit(df[["user", "item"]], df["rating"]).predict(df[["user", "item"]])
    b = clone(est).fit(df[["user", "item"]].to_numpy().tolist(),
                       df["rating"].tolist()).predict(df[["user", "item"]].to_numpy())
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_predict_order_and_subset_invariance() -> None:
    df = _ratings_frame()
    X, y = df[["user", "item"]].to_numpy(), df["rating"].to_numpy()
    est = RatingRegressor("als", rank=2, max_iter=10, tol=1e-3, random_state=0).fit(X, y)
    full = est.predict(X)
    perm = np.random.default_rng(0).permutation(len(X))
    np.testing.assert_array_equal(est.predict(X[perm]), full[perm])
    np.testing.assert_array_equal(est.predict(X[:7]), full[:7])


def test_defaults_come_from_the_registry() -> None:
    df = _ratings_frame()
    assert RatingRegressor().solver == DEFAULT_SOLVER
    for solver in ("als", "bsgd"):
        est = RatingRegressor(solver, max_iter=2, tol=0.0, random_state=0)
        with pytest.warns(lsqmf.ConvergenceWarning):
            est.fit(df[["user", "item"]], df["rating"])
        assert est.solver_params_ == {**SOLVER_DEFAULTS[solver], "max_iter": 2, "tol": 0.0,
                                      "random_state": 0}


def test_solver_options_reach_the_solver_and_clone() -> None:
    df = _ratings_frame()
    X, y = df[["user", "item"]], df["rating"]
    est = RatingRegressor("sgd", rank=2, max_iter=5, tol=0.5,
                          solver_options={"learning_rate": 0.005, "decay": 0.9},
                          random_state=0)
    copy = clone(est)
    assert copy.get_params()["solver_options"] == {"learning_rate": 0.005, "decay": 0.9}
    copy.fit(X, y)
    assert copy.solver_params_["learning_rate"] == 0.005
    assert copy.solver_params_["decay"] == 0.9
    assert est.get_params()["solver_options"] is not copy.get_params()["solver_options"]
    search = GridSearchCV(
        RatingRegressor("als", rank=2, max_iter=50, tol=1e-2, random_state=0),
        {"reg": [0.01, 0.1], "solver_options": [{"max_time": 60.0}]},
        cv=RatingsKFold(3, random_state=0), scoring="neg_root_mean_squared_error",
    ).fit(X, y)
    assert search.best_params_["reg"] in (0.01, 0.1)
    assert search.best_estimator_.solver_params_["max_time"] == 60.0


def test_reproducible_with_random_state() -> None:
    df = _ratings_frame()
    X, y = df[["user", "item"]], df["rating"]
    for solver in ("als", "bmf"):
        # bmf refuses tol (it runs its sweeps); its default is 0.0
        est = RatingRegressor(solver, rank=2, max_iter=10, tol=1e-3 if solver != "bmf" else 0.0,
                              random_state=3)
        a = clone(est).fit(X, y).predict(X)
        b = clone(est).fit(X, y).predict(X)
        np.testing.assert_array_equal(a, b)
    rs = [clone(est).set_params(random_state=np.random.RandomState(5)).fit(X, y).predict(X)
          for _ in range(2)]
    np.testing.assert_array_equal(*rs)  # a RandomState gives an int seed drawn from it


def test_zero_weights_are_left_out() -> None:
    df = _ratings_frame()
    X, y = df[["user", "item"]].to_numpy(), df["rating"].to_numpy()
    w = np.ones(len(y))
    w[: len(y) // 3] = 0.0
    est = RatingRegressor("als", rank=2, max_iter=10, tol=1e-3, random_state=0)
    a = clone(est).fit(X, y, sample_weight=w).predict(X)
    b = clone(est).fit(X[w > 0], y[w > 0]).predict(X)
    np.testing.assert_array_equal(a, b)


def test_r2_score_and_pipeline() -> None:
    df = _ratings_frame()
    X, y = df[["user", "item"]], df["rating"].to_numpy()
    est = RatingRegressor("als", rank=2, max_iter=20, tol=1e-4, random_state=0).fit(X, y)
    pred = est.predict(X)
    r2 = 1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2)
    assert est.score(X, y) == pytest.approx(r2)
    assert make_pipeline(clone(est)).fit(X, y).score(X, y) == pytest.approx(r2)


def test_pickle() -> None:
    import pickle

    df = _ratings_frame()
    X, y = df[["user", "item"]], df["rating"]
    est = RatingRegressor("als", rank=2, max_iter=10, tol=1e-3, random_state=0).fit(X, y)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(est)).predict(X), est.predict(X))


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ({"solver": "nope"}, ValueError, "`solver` must be one of"),
        ({"rank": 0}, ValueError, "`rank`"),
        ({"reg": -1.0}, ValueError, "`reg`"),
        ({"max_iter": "many"}, TypeError, "`max_iter`"),
        ({"cold_start": "zero"}, ValueError, "`cold_start`"),
        ({"clip": (5, 1)}, ValueError, "`clip`"),
        ({"solver_options": [1]}, TypeError, "`solver_options` must be a dict"),
        ({"solver_options": {"rank": 3}}, ValueError, "`solver_options` must not hold 'rank'"),
        ({"solver_options": {"random_state": 3}}, ValueError, "random_state"),
        ({"solver_options": {"learning_rate": 0.1}}, TypeError, "learning_rate"),
        ({"random_state": 1.5}, TypeError, "`random_state`"),
        ({"random_state": -1}, ValueError, "`random_state`"),
        ({"users": [100, 101]}, ValueError, "user id"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_parameters(params: dict, error: type, match: str) -> None:
    df = _ratings_frame()
    with pytest.raises(error, match=match):
        RatingRegressor(**{"solver": "als", **params}).fit(df[["user", "item"]], df["rating"])


@pytest.mark.parametrize(
    ("X", "y", "kwargs", "error", "match"),
    [
        ([[1, 2, 3]], [4.0], {}, ValueError, "exactly 2 columns.*n_features = 3"),
        ([[1, np.nan]], [4.0], {}, ValueError, "NaN"),
        ([["a", None], ["b", "c"]], [4.0, 3.0], {}, ValueError, "missing .* item id"),
        (np.array([["a", {"x": 1}], ["b", "c"]], dtype=object), [4.0, 3.0], {}, TypeError,
         "item id in `X` must be hashable"),
        ([[1, 2], [1, 2]], [4.0, 3.0], {}, ValueError, "duplicate"),
        ([[1, 2]], [np.inf], {}, ValueError, "inf"),
        ([[1, 2], [2, 1]], [4.0, 3.0], {"sample_weight": [1.0]}, ValueError, "`sample_weight`"),
        ([[1, 2], [2, 1]], [4.0, 3.0], {"sample_weight": [0, 0]}, ValueError, "all be zero"),
        ([[1, 2], [2, 1]], [4.0, 3.0], {"sample_weight": [-1, 1]}, ValueError, ">= 0"),
    ],
    ids=["three-columns", "nan-id", "none-id", "unhashable-id", "duplicate-pair", "inf-rating",
         "weight-shape", "zero-weights", "negative-weight"],
)
def test_bad_pairs(X: Any, y: list, kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        RatingRegressor("als", rank=1, max_iter=5, tol=0.5).fit(X, y, **kwargs)


def test_predict_checks_its_input() -> None:
    from sklearn.exceptions import NotFittedError

    est = RatingRegressor("als", rank=1, max_iter=5, tol=0.5)
    with pytest.raises(NotFittedError):
        est.predict([[1, 2]])
    est.fit([[1, 2], [2, 1], [1, 1]], [4.0, 3.0, 5.0])
    with pytest.raises(ValueError, match="X has 3 features"):
        est.predict([[1, 2, 3]])


# ------------------------------------------------------------------ the imputer

#: ALS to convergence on an exactly rank-2 matrix (a small ridge: the error is ~1e-2)
_EXACT = {"rank": 2, "reg": 1e-2, "biases": False, "count_scaled": False, "max_iter": 5000,
          "tol": 1e-6, "random_state": 0}


def test_imputer_recovers_a_low_rank_matrix() -> None:
    X, X_missing = _low_rank_matrix()
    imputer = MatrixCompletionImputer(**_EXACT)
    filled = imputer.fit_transform(X_missing)
    observed = ~np.isnan(X_missing)
    np.testing.assert_array_equal(filled[observed], X_missing[observed])
    assert np.abs(filled - X).max() < 0.05
    # transform folds the rows in: the fitted factors back at convergence
    np.testing.assert_allclose(imputer.transform(X_missing), filled, rtol=0, atol=1e-3)
    assert imputer.model_.P.shape == (30, 2) and imputer.n_iter_ >= 1


def test_imputer_transform_is_fold_in() -> None:
    X, X_missing = _low_rank_matrix(n_rows=40)
    imputer = MatrixCompletionImputer(**_EXACT).fit(X_missing[:30])
    new = X_missing[30:]
    out = imputer.transform(new)
    folded = lsqmf.fold_in(imputer.model_, lsqmf.Ratings.from_dense(new, mask=~np.isnan(new)))
    expected = folded.P @ folded.Q
    missing = np.isnan(new)
    np.testing.assert_allclose(out[missing], expected[missing], rtol=0, atol=1e-12)
    assert np.abs(out - X[30:]).max() < 0.05
    # a row without any observed entry is cold-start: the training mean (no biases)
    empty = imputer.transform(np.full((2, X.shape[1]), np.nan))
    np.testing.assert_allclose(empty, imputer.model_.train_mean)
    # one row at a time gives the same rows
    np.testing.assert_allclose(imputer.transform(new[:1]), out[:1], rtol=0, atol=1e-12)


def test_imputer_sparse_stored_entries_are_observed() -> None:
    import scipy.sparse as sp

    _, X_missing = _low_rank_matrix()
    X_missing[0, 0] = 0.0  # an explicit zero in the sparse matrix is an observed 0
    rows, cols = np.nonzero(~np.isnan(X_missing))
    S = sp.csr_matrix((X_missing[rows, cols], (rows, cols)), shape=X_missing.shape)
    imputer = MatrixCompletionImputer(**_EXACT)
    dense = clone(imputer).fit_transform(X_missing)
    np.testing.assert_allclose(clone(imputer).fit_transform(S), dense, rtol=0, atol=1e-12)
    assert dense[0, 0] == 0.0


def test_imputer_missing_values_zero() -> None:
    _, X_missing = _low_rank_matrix()
    zeros = np.nan_to_num(X_missing, nan=0.0)
    imputer = MatrixCompletionImputer(missing_values=0.0, **_EXACT)
    np.testing.assert_allclose(imputer.fit_transform(zeros),
                               MatrixCompletionImputer(**_EXACT).fit_transform(X_missing),
                               rtol=0, atol=1e-12)


def test_imputer_in_a_pipeline() -> None:
    from sklearn.linear_model import LogisticRegression

    X, X_missing = _low_rank_matrix(n_rows=60)
    y = (X[:, 0] > 0).astype(int)
    pipe = make_pipeline(MatrixCompletionImputer(**_EXACT), LogisticRegression())
    assert pipe.fit(X_missing, y).score(X_missing, y) > 0.8


def test_imputer_multistart() -> None:
    _, X_missing = _low_rank_matrix()
    options = {"rank": 2, "reg": 0.0, "biases": False, "count_scaled": False,
               "init_scale": 1.0, "tol": 1e-10, "random_state": 0}
    imputer = MatrixCompletionImputer("lsq", max_starts=4, **options).fit(X_missing)
    result = imputer.multistart_
    assert 2 <= result.n_starts <= 4
    assert imputer.model_.cost == pytest.approx(result.costs.min())
    again = MatrixCompletionImputer("lsq", max_starts=4, **options).fit(X_missing)
    np.testing.assert_array_equal(again.multistart_.seeds, result.seeds)


@pytest.mark.parametrize("eliminate", ["P", "Q"])
def test_imputer_varpro(eliminate: str) -> None:
    X, X_missing = _low_rank_matrix()
    imputer = MatrixCompletionImputer(
        "lsq", rank=2, reg=0.0, biases=False, count_scaled=False, init_scale=1.0, tol=1e-12,
        eliminate=eliminate, solver_options={"xtol": 1e-12, "gtol": 1e-12}, random_state=0,
    )
    filled = imputer.fit_transform(X_missing)
    assert imputer.solver_params_["eliminate"] == eliminate
    assert np.abs(filled - X).max() < 1e-5


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ({"eliminate": "Q"}, ValueError, "`eliminate` needs solver='lsq'"),
        ({"max_starts": 3}, ValueError, "`max_starts` needs solver='lsq'"),
        ({"solver": "lsq", "eliminate": "X"}, ValueError, "`eliminate`"),
        ({"solver": "lsq", "max_starts": 0}, ValueError, "`max_starts`"),
        ({"missing_values": "NA"}, TypeError, "`missing_values`"),
        ({"solver_options": {"weights": 1}}, ValueError, "sample_weight"),
        ({"rank": -2}, ValueError, "`rank`"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_imputer_bad_parameters(params: dict, error: type, match: str) -> None:
    _, X_missing = _low_rank_matrix()
    with pytest.raises(error, match=match):
        MatrixCompletionImputer(**params).fit(X_missing)


def test_imputer_bad_input() -> None:
    with pytest.raises(ValueError, match="no observed entry"):
        MatrixCompletionImputer(rank=1).fit(np.full((3, 2), np.nan))
    with pytest.raises(ValueError, match="infinity"):
        MatrixCompletionImputer(rank=1).fit(np.array([[1.0, np.inf], [2.0, 3.0]]))
    _, X_missing = _low_rank_matrix()
    imputer = MatrixCompletionImputer(**_EXACT).fit(X_missing)
    with pytest.raises(ValueError, match="features"):
        imputer.transform(X_missing[:, :-1])
