"""scikit-learn: GridSearchCV over rank and reg of a RatingRegressor on MovieLens ratings.

Run:  python examples/06_sklearn_gridsearch.py            (300 users x 600 movies, 3x3 grid)
      python examples/06_sklearn_gridsearch.py --quick    (100 x 200, 2x2 grid; for tests)

``lsqmf.estimators.RatingRegressor`` is a scikit-learn regressor whose samples are ratings:
``X`` holds (user id, item id) pairs and ``y`` the ratings; it fits any solver of lsqmf's
registry (here ``'als'``) and predicts unseen users or movies from the bias model.
``RatingsKFold`` is lsqmf's k-fold split (``lsqmf.evaluate.kfold``) as a scikit-learn
splitter, so ``GridSearchCV`` tests on the same folds as lsqmf's own ``cross_validate``.

The last part checks that the two agree: lsqmf's ``cross_validate`` seeds fold ``f``'s fit
with ``f``, so the same fits in scikit-learn are ``clone(best).set_params(random_state=f)``
on fold ``f``; their test RMSEs are the same numbers (to 1e-10). ``users=``/``items=`` give
every fold the id universe of all the data, as lsqmf's splits keep it, so that users seen only
in a test fold are cold-start pairs in both.

Needs scikit-learn (``pip install 'lsqmf[sklearn]'``).
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.metrics import get_scorer
from sklearn.model_selection import GridSearchCV

import lsqmf
from lsqmf.data.readers import load_builtin
from lsqmf.estimators import RatingRegressor, RatingsKFold
from lsqmf.evaluate import cross_validate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="100 users x 200 movies and a 2x2 grid (seconds; for tests)")
    args = parser.parse_args(argv)

    n_users, n_movies = (100, 200) if args.quick else (300, 600)
    grid = ({"rank": [2, 5], "reg": [0.05, 0.15]} if args.quick
            else {"rank": [2, 5, 10], "reg": [0.05, 0.15, 0.5]})
    frame = load_builtin().to_frame()  # a dense corner: the most active users, most rated movies
    frame = frame[frame["user"].isin(frame["user"].value_counts().index[:n_users])
                  & frame["item"].isin(frame["item"].value_counts().index[:n_movies])]
    ratings = lsqmf.as_ratings(frame)
    X, y = frame[["user", "item"]], frame["rating"].to_numpy()
    print(f"ratings: {ratings!r}")

    base = RatingRegressor("als", users=ratings.row_ids, items=ratings.col_ids, random_state=0)
    folds = RatingsKFold(3, random_state=0)
    search = GridSearchCV(base, grid, cv=folds, scoring="neg_root_mean_squared_error")
    with warnings.catch_warnings():  # ALS's 15 sweeps (the registry default) may end short
        warnings.simplefilter("ignore", lsqmf.ConvergenceWarning)
        search.fit(X, y)
    table = pd.DataFrame(search.cv_results_["params"])
    table["rmse"] = -search.cv_results_["mean_test_score"]
    print("GridSearchCV, 3 folds, mean validation RMSE:")
    print(table.sort_values("rmse").to_string(index=False, float_format="{:.4f}".format))
    best = search.best_params_
    print(f"best: rank {best['rank']}, reg {best['reg']} "
          f"(RMSE {-search.best_score_:.4f}); refitted on all ratings: "
          f"{search.best_estimator_.model_.shape[0]} users x "
          f"{search.best_estimator_.model_.shape[1]} movies")

    # the same folds and seeds as lsqmf's cross_validate: the same numbers
    lsqmf_cv = cross_validate(frame, solver="als", n_splits=3, random_state=0, **best)
    scorer = get_scorer("neg_root_mean_squared_error")
    sklearn_rmse = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lsqmf.ConvergenceWarning)
        for fold, (train, test) in enumerate(folds.split(X)):
            est = clone(search.best_estimator_).set_params(random_state=fold)
            est.fit(X.iloc[train], y[train])
            sklearn_rmse.append(-scorer(est, X.iloc[test], y[test]))
    diff = np.abs(np.array(sklearn_rmse) - lsqmf_cv["rmse"].to_numpy()).max()
    print("fold  scikit-learn RMSE  lsqmf cross_validate RMSE")
    for fold, (a, b) in enumerate(zip(sklearn_rmse, lsqmf_cv["rmse"], strict=True)):
        print(f"{fold:>4}  {a:>17.12f}  {b:>25.12f}")
    print(f"max difference {diff:.1e}: agree to 1e-10: {bool(diff <= 1e-10)}")


if __name__ == "__main__":
    main()
