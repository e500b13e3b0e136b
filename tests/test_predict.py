"""FitResult.predict / predict_ids: the Predictions record and the cold-start policy."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from lsqmf import FitResult
from lsqmf.model.result import ColdStartWarning, Predictions


def _model(*, biases: bool, train_mean: float | None = 3.5) -> FitResult:
    P = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    Q = np.array([[1.0, 2.0, 0.0], [3.0, 4.0, 0.0]])
    extra = dict(row_bias=np.array([0.1, 0.2, 0.0]), col_bias=np.array([-0.1, 0.3, 0.0]),
                 mu=3.0) if biases else {}
    return FitResult(P=P, Q=Q, row_counts=np.array([2, 2, 0]), col_counts=np.array([2, 2, 0]),
                     row_ids=np.array(["u", "v", "w"]), col_ids=np.array([7, 8, 9]),
                     train_mean=train_mean, **extra)  # type: ignore[arg-type]


def test_predictions_record() -> None:
    out = _model(biases=False).predict([0, 1, 2, 0], [1, 0, 0, 2], return_cold_start=True)
    assert isinstance(out, Predictions)
    np.testing.assert_allclose(out.values, [2.0, 3.0, 3.5, 3.5])
    assert out.cold_start.tolist() == [False, False, True, True]
    assert out.n_cold_start == 2
    values, cold = out  # unpacks like a pair
    assert values is out.values and cold is out.cold_start
    assert not out.cold_start.flags.writeable
    with pytest.raises(AttributeError):
        _ = out.n_cold  # type: ignore[attr-defined]  # a misspelt field is an error


def test_bare_array_by_default() -> None:
    pred = _model(biases=False).predict([0], [1])
    assert isinstance(pred, np.ndarray) and pred.tolist() == [2.0]


@pytest.mark.parametrize(
    ("biases", "expected"),
    [(False, [3.5, 3.5, 3.5]), (True, [3.0 - 0.1, 3.0 + 0.1, 3.0])],
    ids=["no-biases-train-mean", "biases-bias-model"],
)
def test_bias_policy_fallbacks(biases: bool, expected: list[float]) -> None:
    # (cold row, warm column), (warm row, cold column), (cold, cold)
    out = _model(biases=biases).predict([2, 0, 2], [0, 2, 2], return_cold_start=True)
    np.testing.assert_allclose(out.values, expected)
    assert out.n_cold_start == 3


def test_no_bias_model_without_train_mean_warns_and_gives_nan() -> None:
    model = _model(biases=False, train_mean=None)
    with pytest.warns(ColdStartWarning, match=r"^2 cold-start pair\(s\) predicted as NaN: this "
                                              r"model has no biases and records no training "
                                              r"mean"):
        out = model.predict([0, 2, 0], [0, 0, 2], return_cold_start=True)
    assert out.values[0] == 1.0 and np.isnan(out.values[1:]).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(model.predict([2], [0], cold_start="nan")).all()  # no warning


def test_never_a_silent_zero_for_unknown_ids() -> None:
    model = _model(biases=False)
    out = model.predict_ids(["u", "nobody"], [8, 8], return_cold_start=True)
    assert out.values.tolist() == [2.0, 3.5]
    assert out.cold_start.tolist() == [False, True]


def test_nan_and_raise_policies() -> None:
    model = _model(biases=True)
    assert np.isnan(model.predict([2], [0], cold_start="nan")).all()
    with pytest.raises(ValueError, match=r"^1 pair\(s\) have a row or column not seen in "
                                         r"training, first \(2, 0\); pass cold_start='bias' "
                                         r"or 'nan' to predict them\.$"):
        model.predict([0, 2], [0, 0], cold_start="raise")


def test_shape_is_kept_and_empty_input_gives_empty_output() -> None:
    model = _model(biases=True)
    out = model.predict(np.array([[0, 1], [2, 0]]), np.array([[1, 0], [0, 2]]),
                        return_cold_start=True)
    assert out.values.shape == (2, 2) and out.cold_start.tolist() == [[False, False],
                                                                       [True, True]]
    np.testing.assert_allclose(out.values[0], [3.0 + 0.1 + 0.3 + 2.0, 3.0 + 0.2 - 0.1 + 3.0])
    empty = model.predict([], [], return_cold_start=True)
    assert empty.values.shape == (0,) and empty.n_cold_start == 0


def test_clip() -> None:
    model = _model(biases=True)
    np.testing.assert_allclose(model.predict([0, 1], [1, 1], clip=(1.0, 5.0)), [5.0, 5.0])


def test_cold_start_value() -> None:
    assert _model(biases=True).cold_start_value == 3.0
    assert _model(biases=False).cold_start_value == 3.5
    assert _model(biases=False, train_mean=None).cold_start_value is None


def test_top_n_refuses_a_cold_row_without_biases() -> None:
    from lsqmf.evaluate import top_n

    with pytest.raises(ValueError, match=r"^row 2 is cold-start \(no training rating, so no "
                                         r"fitted factor\) and the model has no biases"):
        top_n(_model(biases=False), 2, 2)
    cols, scores = top_n(_model(biases=True), 2, 2)  # ranked by the column biases
    assert cols.tolist() == [1, 0] and scores.tolist() == pytest.approx([3.3, 2.9])


@pytest.mark.parametrize("solver", ["als", "gd", "sgd"], ids=["als", "gd", "sgd"])
def test_solvers_record_the_training_mean(solver: str) -> None:
    from lsqmf.solvers import get_solver

    R = np.array([[5.0, 3.0, np.nan], [4.0, np.nan, 1.0], [np.nan, np.nan, np.nan]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a few iterations: convergence is not the point
        fit = get_solver(solver)(R, 1, biases=False, max_iter=3, random_state=0)
    assert fit.train_mean == pytest.approx(13.0 / 4)
    out = fit.predict([2], [0], return_cold_start=True)  # row 2 has no rating
    assert out.cold_start.tolist() == [True] and out.values[0] == pytest.approx(13.0 / 4)


def test_lsq_records_the_training_mean() -> None:
    from lsqmf import solve

    R = np.array([[5.0, 3.0, np.nan], [4.0, np.nan, 1.0], [np.nan, np.nan, np.nan]])
    fit = solve(R, 1, formulation="l2", reg=0.1, random_state=0)
    assert fit.train_mean == pytest.approx(13.0 / 4)


def test_cli_predict_marks_cold_start_and_never_prints_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lsqmf.cli import main

    ratings = tmp_path / "ratings.csv"
    ratings.write_text("userId,movieId,rating,timestamp\n1,10,4.0,0\n1,20,3.0,0\n2,10,2.0,0\n"
                       "2,30,5.0,0\n3,20,4.0,0\n3,30,1.0,0\n")
    model = tmp_path / "model.npz"
    assert main(["fit", str(ratings), "--solver", "als", "--rank", "1", "--no-biases",
                 "--max-iter", "5", "--tol", "0.5", "--out", str(model)]) == 0
    capsys.readouterr()
    assert main(["predict", str(model), "--user", "99", "--item", "10"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[1] == f"99\t10\t{19.0 / 6:.4f}\tyes"  # the training mean
    assert captured.err.strip() == "1 of 1 pair(s) cold-start (--cold-start bias)"


def test_top_n_ties_by_column_index() -> None:
    from lsqmf.evaluate import top_n

    model = FitResult(P=np.ones((1, 1)), Q=np.array([[1.0, 2.0, 2.0, 2.0, 2.0, 0.5]]))
    for n in (1, 2, 3):
        assert top_n(model, 0, n)[0].tolist() == [1, 2, 3][:n]
    assert top_n(model, 0, 3, exclude=[2])[0].tolist() == [1, 3, 4]
