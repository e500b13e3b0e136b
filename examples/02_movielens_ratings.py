"""MovieLens: a holdout split of the bundled ratings, ALS vs least squares on test RMSE.

Run:  python examples/02_movielens_ratings.py            (about a minute: lsq is the slow one)
      python examples/02_movielens_ratings.py --quick    (100 users x 200 movies, rank 5)

The bundled data set is MovieLens latest-small (610 users, 9,724 movies, 100,836 ratings).
Both solvers minimize the same objective (the 'l2' formulation: squared error, biases,
count-scaled L2 regularization scaled by the data) from the same seeded start, with the
registry's defaults (the same as a direct call's or the command line's); ``fit_and_score``
fits on the training split and scores the test split, predicting pairs with unseen users or
movies from the bias model (``n_cold_start`` counts them). The recommendations are ranked by
the predicted rating shrunk toward the user's baseline by each movie's number of ratings
(``top_n``'s ``shrinkage=10``, as ``lsqmf recommend``), and shown on the 0.5--5 star scale.
"""

from __future__ import annotations

import argparse

from lsqmf import Ratings
from lsqmf.data.readers import load_builtin, load_builtin_movies
from lsqmf.evaluate import fit_and_score, holdout_split, top_n
from lsqmf.solvers import SOLVER_DEFAULTS


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="only the 100 most active users and the 200 most rated movies, "
                        "rank 5 (seconds; for tests)")
    args = parser.parse_args(argv)

    ratings = load_builtin()
    if args.quick:  # a dense corner of the data, rebuilt with its own (smaller) id maps
        frame = ratings.to_frame()
        users = frame["user"].value_counts().index[:100]
        movies = frame["item"].value_counts().index[:200]
        frame = frame[frame["user"].isin(users) & frame["item"].isin(movies)]
        ratings = Ratings.from_frame(frame)
    print(f"ratings: {ratings!r}")
    train, test = holdout_split(ratings, test_size=0.1, random_state=0)
    print(f"holdout: {train.nnz} training / {test.nnz} test ratings")

    print(f"{'solver':6} {'rank':>4} {'test RMSE':>9} {'MAE':>6} {'fit s':>6} {'cold':>5}")
    models = {}
    for name in ("als", "lsq"):
        params = dict(SOLVER_DEFAULTS[name])  # the registry's (rank 20, reg 0.15 x std, ...)
        if args.quick:
            params["rank"] = 5
        score = fit_and_score(name, train, test, random_state=0, return_model=True, **params)
        models[name] = score["model"]
        print(f"{name:6} {params['rank']:>4} {score['rmse']:>9.4f} {score['mae']:>6.4f} "
              f"{score['fit_s']:>6.2f} {score['n_cold_start']:>5}")

    # The 5 movies the first user is predicted to rate highest among those they have not rated
    # in training (ALS model), with titles: ranked by the prediction shrunk by support (a movie
    # with one rating does not top the list on an extrapolated 5.5), scores on the star scale.
    titles = load_builtin_movies().set_index("item")["title"]
    rated = train.cols[train.rows == 0]
    counts = train.col_counts()
    cols, scores = top_n(models["als"], 0, 5, exclude=rated)
    item_ids = cols if train.col_ids is None else train.col_ids[cols]
    user = 0 if train.row_ids is None else train.row_ids[0]
    print(f"top 5 unrated movies for user {user} (als):")
    for item, c, score in zip(item_ids, cols, scores, strict=True):
        print(f"  {score:6.3f}  ({counts[c]:3d} ratings)  {titles.get(item, item)}")


if __name__ == "__main__":
    main()
