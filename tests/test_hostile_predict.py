"""Hostile inputs to prediction: every bad index, id or clip range gets a named, exact error."""

from __future__ import annotations

import re

import numpy as np
import pytest

from lsqmf import FitResult


@pytest.fixture(scope="module")
def model() -> FitResult:
    rng = np.random.default_rng(0)
    return FitResult(
        P=rng.standard_normal((4, 2)), Q=rng.standard_normal((2, 3)), mu=3.0,
        row_bias=np.zeros(4), col_bias=np.zeros(3), row_counts=np.ones(4, int),
        col_counts=np.ones(3, int), row_ids=np.array([10, 20, 30, 40]),
        col_ids=np.array(["a", "b", "c"]), train_mean=3.0,
    )


BAD_ROWS = [
    ([1.7], ValueError, "`rows` must be integer row indices (floats only when integer-valued, "
                        "such as 2.0); got 1.7 at position 0."),
    ([0, 2.5], ValueError, "`rows` must be integer row indices (floats only when "
                           "integer-valued, such as 2.0); got 2.5 at position 1."),
    ([np.nan], ValueError, "`rows` must be integer row indices; got nan at position 0."),
    ([np.inf], ValueError, "`rows` must be integer row indices; got inf at position 0."),
    ([True], TypeError, "`rows` must be integer row indices; got booleans (a mask? pass "
                        "np.flatnonzero(mask)): [True] (list)."),
    (np.array([True, False]), TypeError, "`rows` must be integer row indices; got booleans "
                                         "(a mask? pass np.flatnonzero(mask)): array of shape "
                                         "(2,) and dtype bool."),
    (True, TypeError, "`rows` must be integer row indices; got a boolean True."),
    ([-1], ValueError, "`rows` must be row indices in [0, 4); got -1 at position 0."),
    ([0, 4], ValueError, "`rows` must be row indices in [0, 4); got 4 at position 1."),
    ([2**40], ValueError, "`rows` must be row indices in [0, 4); got 1099511627776 at "
                          "position 0."),
    (np.array([5], dtype=np.uint64), ValueError, "`rows` must be row indices in [0, 4); got 5 "
                                                 "at position 0."),
    (["1"], TypeError, "`rows` must be integer row indices; got ['1'] (list)."),
    ([None], TypeError, "`rows` must be integer row indices; got [None] (list)."),
    ([1 + 2j], TypeError, "`rows` must be integer row indices; got [(1+2j)] (list)."),
    ({1, 2}, TypeError, "`rows` must be integer row indices; got {1, 2} (set)."),
]


@pytest.mark.parametrize(
    ("rows", "error", "message"),
    BAD_ROWS,
    ids=["float-1.7", "float-2.5-second", "nan", "inf", "bool-list", "bool-array", "bool-scalar",
         "negative", "too-large", "huge", "uint64-too-large", "string", "none", "complex",
         "set"],
)
def test_bad_row_indices_are_refused(
    model: FitResult, rows: object, error: type, message: str
) -> None:
    cols = np.zeros(np.size(rows) if not isinstance(rows, set) else 2, dtype=int)
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        model.predict(rows, cols)


@pytest.mark.parametrize(
    ("cols", "message"),
    [([3], "`cols` must be column indices in [0, 3); got 3 at position 0."),
     ([0.5], "`cols` must be integer column indices (floats only when integer-valued, such as "
             "2.0); got 0.5 at position 0.")],
    ids=["too-large", "float"],
)
def test_bad_column_indices_name_cols(model: FitResult, cols: object, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        model.predict([0], cols)


def test_minus_one_is_refused_unless_allowed(model: FitResult) -> None:
    with pytest.raises(ValueError, match=r"^`rows` must be row indices in \[0, 4\); got -1"):
        model.predict([-1], [0])
    out = model.predict([-1], [0], allow_unknown=True, return_cold_start=True)
    assert out.cold_start.tolist() == [True]
    with pytest.raises(ValueError, match=re.escape(
        "`rows` must be row indices in [0, 4) or -1 (unknown); got -2 at position 0."
    )):
        model.predict([-2], [0], allow_unknown=True)


def test_integer_valued_floats_are_accepted(model: FitResult) -> None:
    np.testing.assert_array_equal(
        model.predict(np.array([0.0, 3.0]), np.array([1.0, 2.0])), model.predict([0, 3], [1, 2])
    )


def test_shapes_must_match(model: FitResult) -> None:
    with pytest.raises(ValueError, match=re.escape(
        "`rows` and `cols` must have the same shape; got (2,) and (3,)."
    )):
        model.predict([0, 1], [0, 1, 2])
    with pytest.raises(ValueError, match=re.escape(
        "`users` and `items` must have the same shape; got (2,) and (1,)."
    )):
        model.predict_ids([10, 20], ["a"])


#: The start of the message for a ``clip`` that is not 'auto', None or a pair.
_PAIR = "`clip` must be 'auto', None or a pair (low, high); got"


@pytest.mark.parametrize(
    ("clip", "error", "message"),
    [
        ((5.0, 1.0), ValueError, "`clip` must be (low, high) with low <= high; got (5, 1)."),
        ((np.nan, 5.0), ValueError, "`clip` must not contain NaN; got (nan, 5.0)."),
        ((1.0,), TypeError, f"{_PAIR} (1.0,) (tuple)."),
        ("nope", TypeError, f"{_PAIR} 'nope' (str)."),
        (3.0, TypeError, f"{_PAIR} 3.0 (float)."),
        (("a", "b"), TypeError, "`clip` must be a pair of numbers (low, high); got ('a', 'b') "
                                "(tuple)."),
    ],
    ids=["reversed", "nan", "one-value", "string", "scalar", "strings"],
)
def test_bad_clip_is_refused(model: FitResult, clip: object, error: type, message: str) -> None:
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        model.predict([0], [0], clip=clip)
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        model.predict_ids([10], ["a"], clip=clip)


def test_equal_clip_bounds_are_allowed(model: FitResult) -> None:
    np.testing.assert_array_equal(model.predict([0, 1], [0, 1], clip=(3.0, 3.0)), [3.0, 3.0])


def test_bad_cold_start_policy(model: FitResult) -> None:
    with pytest.raises(ValueError, match=r"`cold_start`"):
        model.predict([0], [0], cold_start="zero")


def test_unknown_ids_are_cold_start_not_errors(model: FitResult) -> None:
    out = model.predict_ids([10, 99, 10], ["a", "a", "zzz"], return_cold_start=True)
    assert out.cold_start.tolist() == [False, True, True]
    assert out.n_cold_start == 2
    with pytest.raises(ValueError, match=r"^2 pair\(s\) have a row or column not seen in "
                                         r"training, first \(-1, 0\)"):
        model.predict_ids([10, 99, 10], ["a", "a", "zzz"], cold_start="raise")


def test_model_without_id_map_refuses_ids() -> None:
    bare = FitResult(P=np.ones((2, 1)), Q=np.ones((1, 2)))
    with pytest.raises(ValueError, match=r"this model has no id map"):
        bare.predict_ids([0], [0])


# ------------------------------------------------------------------ masked arrays

MASKED = np.ma.array([[5.0, 99.0, 1.0], [3.0, 4.0, 99.0]],
                     mask=[[False, True, False], [False, False, True]])


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, [(0, 0, 5.0), (0, 2, 1.0), (1, 0, 3.0), (1, 1, 4.0)]),
        ({"mask": np.array([[True, True, False], [True, True, True]])},
         [(0, 0, 5.0), (1, 0, 3.0), (1, 1, 4.0)]),
        ({"missing": 1.0}, [(0, 0, 5.0), (1, 0, 3.0), (1, 1, 4.0)]),
    ],
    ids=["mask-respected", "with-visibility-mask", "with-missing-value"],
)
def test_masked_array_masks_are_missing_entries(
    kwargs: dict[str, object], expected: list[tuple[int, int, float]]
) -> None:
    from lsqmf import Ratings, as_ratings

    for r in (Ratings.from_dense(MASKED, **kwargs), as_ratings(MASKED, **kwargs)):  # type: ignore[arg-type]
        assert list(zip(r.rows.tolist(), r.cols.tolist(), r.values.tolist(),
                        strict=True)) == expected
        assert 99.0 not in r.values


def test_masked_zeros_do_not_trigger_the_zero_convention_warning() -> None:
    import warnings

    from lsqmf import Ratings

    a = np.ma.array([[5.0, 0.0], [3.0, 4.0]], mask=[[False, True], [False, False]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Ratings.from_dense(a).nnz == 3


@pytest.mark.parametrize(
    ("array", "kwargs", "error", "message"),
    [
        (np.ma.array([[1.0, 2.0]], mask=[[True, True]]), {}, ValueError,
         "`R` has no observed entry (all entries are missing)."),
        (MASKED, {"mask": np.ones((2, 3))}, TypeError,
         "`mask` must be a boolean array, or integers holding only 0 and 1 (1 = observed); got "
         "array of shape (2, 3) and dtype float64."),
        (np.ma.array([[1 + 1j, 2.0]], mask=[[False, True]]), {}, TypeError,
         "`R` must hold real numbers; got a complex array."),
    ],
    ids=["all-masked", "float-visibility-mask", "complex"],
)
def test_masked_array_errors(array: object, kwargs: dict[str, object], error: type,
                             message: str) -> None:
    from lsqmf import Ratings

    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        Ratings.from_dense(array, **kwargs)  # type: ignore[arg-type]
