"""API types (issue #23 items 5, 10): every input kind accepted with the documented conversion,
or a TypeError/ValueError naming the argument."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import lsqmf
from lsqmf import Ratings, as_ratings

D = np.array([[1.0, np.nan, 3.0], [np.nan, 5.0, 2.0]])
#: D's observed entries, in row-major order.
ENTRIES = [(0, 0, 1.0), (0, 2, 3.0), (1, 1, 5.0), (1, 2, 2.0)]
FRAME = pd.DataFrame({"user": [10, 20, 20], "item": ["a", "b", "a"], "rating": [1.0, 2.0, 3.0]})


def _entries(r: Ratings) -> list[tuple[int, int, float]]:
    return sorted(zip(r.rows.tolist(), r.cols.tolist(), r.values.tolist(), strict=True))


def _readonly(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.setflags(write=False)
    return a


DENSE = {
    "float64": lambda: D,
    "float32": lambda: D.astype(np.float32),
    "float16": lambda: D.astype(np.float16),
    "object-floats": lambda: D.astype(object),
    "nested-list": lambda: D.tolist(),
    "fortran": lambda: np.asfortranarray(D),
    "non-contiguous": lambda: np.repeat(D, 2, axis=1)[:, ::2],
    "read-only": lambda: _readonly(D),
}


@pytest.mark.parametrize("kind", sorted(DENSE))
def test_dense_kinds_give_the_same_ratings(kind: str) -> None:
    assert _entries(as_ratings(DENSE[kind]())) == ENTRIES


@pytest.mark.parametrize(("dtype", "nnz"), [("int8", 6), ("bool", 6), ("uint16", 6)])
def test_integer_and_bool_arrays_are_fully_observed(dtype: str, nnz: int) -> None:
    with pytest.warns(UserWarning):  # zeros and no NaN: taken as observed, with a warning
        r = as_ratings(np.nan_to_num(D).astype(dtype))
    assert r.nnz == nnz and r.values.dtype == np.float64


SPARSE_FORMATS = ["csr", "csc", "coo", "bsr", "dia", "lil", "dok"]


@pytest.mark.parametrize("array", [False, True], ids=["matrix", "array"])
@pytest.mark.parametrize("fmt", SPARSE_FORMATS)
def test_every_sparse_format_gives_the_same_ratings(fmt: str, array: bool) -> None:
    S = sp.csr_matrix(np.nan_to_num(D))
    M = (sp.csr_array(S) if array else S).asformat(fmt)
    assert _entries(as_ratings(M)) == ENTRIES


@pytest.mark.parametrize("fmt", ["bsr", "dia"])
def test_padding_zeros_of_bsr_and_dia_are_not_ratings(fmt: str) -> None:
    dense = np.array([[1.0, 0, 0, 0], [0, 0, 0, 2.0], [0, 3.0, 0, 0], [0, 0, 0, 0]])
    M = (sp.bsr_matrix(dense, blocksize=(2, 2)) if fmt == "bsr" else sp.dia_matrix(dense))
    assert M.nnz > 3 or fmt == "dia"  # BSR stores its blocks whole
    assert _entries(as_ratings(M)) == [(0, 0, 1.0), (1, 3, 2.0), (2, 1, 3.0)]


def test_explicit_zeros_of_csr_are_ratings() -> None:
    M = sp.csr_matrix((np.array([0.0, 2.0]), (np.array([0, 1]), np.array([1, 0]))),
                      shape=(2, 2))
    assert _entries(as_ratings(M)) == [(0, 1, 0.0), (1, 0, 2.0)]


BAD_R = {
    "None": (None, TypeError, r"`R` must be a dense array .* got None"),
    "string": ("abc", TypeError, r"`R` must be a dense array .* got 'abc'"),
    "ragged": ([[1, 2], [3]], TypeError, r"`R` must be a numeric array; got \[\[1, 2\], \[3\]\]"),
    "complex": (D + 1j, TypeError, r"`R` must hold real numbers; got a complex array"),
    "object-complex": (np.array([[1 + 1j, 2]], dtype=object), TypeError,
                       r"`R` must be a numeric array"),
    "object-strings": (np.array([["a", 2]], dtype=object), TypeError,
                       r"`R` must be a numeric array"),
    "sparse-complex": (sp.csr_matrix(np.array([[1j, 1]])), TypeError,
                       "`R` must hold real numbers; got a complex sparse matrix"),
    "1e200": (np.array([[1e200, 2.0], [3.0, np.nan]]), ValueError,
              r"rating values must be at most 1e\+150 in magnitude .* got 1e\+200 at row 0, "
              r"column 0\. Divide the ratings"),
}


@pytest.mark.parametrize("case", sorted(BAD_R))
def test_bad_r_is_a_named_error(case: str) -> None:
    R, error, match = BAD_R[case]
    with pytest.raises(error, match=match):
        as_ratings(R)


def test_ratings_of_1e149_are_fitted() -> None:
    R = np.array([[1.0, 2.0], [3.0, np.nan]]) * 1e149
    fit = lsqmf.solvers.get_solver("als")(R, 1, max_iter=50, random_state=0)
    assert np.all(np.isfinite(fit.P)) and np.isfinite(fit.cost)


FRAMES = {
    "nullable-Int64-ids": FRAME.astype({"user": "Int64"}),
    "categorical-ids": FRAME.astype({"user": "category", "item": "category"}),
    "categorical-ratings": FRAME.astype({"rating": "category"}),
    "Float64-ratings": FRAME.astype({"rating": "Float64"}),
    "numeric-string-ratings": FRAME.astype({"rating": str}),
}


@pytest.mark.parametrize("case", sorted(FRAMES))
def test_frame_dtypes_are_converted(case: str) -> None:
    want = as_ratings(FRAME)
    got = as_ratings(FRAMES[case])
    np.testing.assert_array_equal(got.values, want.values)
    assert got.shape == want.shape


BAD_FRAMES = {
    "missing-column": (FRAME.rename(columns={"rating": "x"}), ValueError,
                       r"`rating` column 'rating' is not in the DataFrame; columns are "
                       r"\['user', 'item', 'x'\]"),
    "duplicate-column": (pd.concat([FRAME, FRAME[["rating"]]], axis=1), ValueError,
                         r"more than one column named \['rating'\]"),
    "text-ratings": (FRAME.assign(rating=["a", "b", "c"]), TypeError,
                     "the `rating` column 'rating' must be numeric"),
    "NA-rating": (FRAME.astype({"rating": "Float64"}).assign(
        rating=pd.array([1.0, pd.NA, 2.0], dtype="Float64")), ValueError,
        r"rating values must be finite; 1 are NaN or infinite"),
}


@pytest.mark.parametrize("case", sorted(BAD_FRAMES))
def test_bad_frames_are_named_errors(case: str) -> None:
    frame, error, match = BAD_FRAMES[case]
    with pytest.raises(error, match=match):
        as_ratings(frame)


BAD_WEIGHTS = {
    "string": ("abc", TypeError, r"`weights` must be real numbers; got 'abc'"),
    "nested-strings": ([["a"] * 3] * 2, TypeError, "`weights` must be real numbers"),
    "wrong-shape": (np.ones((3, 3)), ValueError, r"`weights` must have the shape of `R`"),
    "sparse-missing-one": (sp.csr_matrix(np.array([[1.0, 0, 1], [0, 0, 1]])), ValueError,
                           r"`weights` as a sparse matrix must store a weight at every stored "
                           r"entry of `R`; 1 have none \(first at row 1, column 1\)"),
    "sparse-wrong-shape": (sp.csr_matrix(np.ones((3, 3))), ValueError,
                           r"`weights` must have the shape of `R` \(2, 3\)"),
}


@pytest.mark.parametrize("case", sorted(BAD_WEIGHTS))
def test_bad_weights_are_named_errors(case: str) -> None:
    weights, error, match = BAD_WEIGHTS[case]
    R = sp.csr_matrix(np.nan_to_num(D)) if case.startswith("sparse") else D
    with pytest.raises(error, match=match):
        as_ratings(R, weights=weights)


def test_frame_weight_column_must_be_numeric() -> None:
    with pytest.raises(TypeError, match="the `weights` column 'w' must be numeric"):
        as_ratings(FRAME.assign(w=["a", "b", "c"]), weights="w")


def test_sparse_weights_with_a_wider_pattern_are_read_at_the_ratings() -> None:
    S = sp.csr_matrix(np.nan_to_num(D))
    W = sp.csr_matrix(np.arange(1.0, 7.0).reshape(2, 3))
    r = as_ratings(S, weights=W)
    assert r.weights is not None
    assert sorted(zip(r.rows.tolist(), r.cols.tolist(), r.weights.tolist(), strict=True)) == [
        (0, 0, 1.0), (0, 2, 3.0), (1, 1, 5.0), (1, 2, 6.0)]


BIG = {
    "float-1e30": (np.array([1e30, 0.0]), r"`rows` indices must be < 2\*\*63; got 1e\+30\."),
    "uint64-2**63+1": (np.array([2**63 + 1, 0], dtype=np.uint64),
                       r"`rows` indices must be < 2\*\*63; got 9223372036854775809\."),
    "python-int-2**70": (np.array([2**70, 0], dtype=object),
                         r"`rows` indices must be < 2\*\*63; got 1180591620717411303424\."),
}


@pytest.mark.parametrize("case", sorted(BIG))
def test_indices_beyond_int64_are_reported_as_given(case: str) -> None:
    rows, match = BIG[case]
    with pytest.raises(ValueError, match=match) as info:
        Ratings.from_triplets(rows, np.array([0, 1]), np.ones(2))
    assert "-9223372036854775808" not in str(info.value)


@pytest.mark.parametrize("rows", [np.array([0.5, 1.0]), np.array(["a", "b"])],
                         ids=["fractional", "strings"])
def test_non_integer_indices_are_a_type_error(rows: Any) -> None:
    with pytest.raises(TypeError, match="`rows` must hold integer indices"):
        Ratings.from_triplets(rows, np.array([0, 1]), np.ones(2))


# ------------------------------------------------------------------ FitResult by hand
_P, _Q = np.ones((3, 2)), np.ones((2, 4))

BAD_PARTS = {
    "P-None": ({"P": None}, TypeError, r"`P` must be a real 2-d array; got None"),
    "P-string": ({"P": "abc"}, TypeError, r"`P` must be a real 2-d array; got 'abc'"),
    "P-1d": ({"P": np.ones(3)}, ValueError, r"`P` must be 2-dimensional; got shape \(3,\)"),
    "P-complex": ({"P": _P + 1j}, TypeError, r"`P` must be a real 2-d array"),
    "Q-rank": ({"Q": np.ones((3, 4))}, ValueError,
               r"`P` \(n_rows, rank\) and `Q` \(rank, n_cols\) must share the rank; got "
               r"shapes \(3, 2\) and \(3, 4\)"),
    "row_bias-length": ({"row_bias": np.ones(5)}, ValueError,
                        r"`row_bias` must have one entry per row of P \(3\); got 5"),
    "col_bias-length": ({"col_bias": np.ones(2)}, ValueError,
                        r"`col_bias` must have one entry per column of Q \(4\); got 2"),
    "col_bias-strings": ({"col_bias": ["a"] * 4}, TypeError, r"`col_bias` must be a real"),
    "row_ids-length": ({"row_ids": np.arange(7)}, ValueError,
                       r"`row_ids` must have one entry per row of P \(3\); got 7"),
    "col_counts-length": ({"col_counts": np.arange(2)}, ValueError,
                          r"`col_counts` must have one entry per column of Q \(4\); got 2"),
    "mu-string": ({"mu": "x"}, TypeError, r"`mu` must be a real number; got 'x'"),
    "status-string": ({"status": "x"}, TypeError, r"`status` must be an int; got 'x'"),
}


@pytest.mark.parametrize("case", sorted(BAD_PARTS))
def test_fit_result_from_bad_parts_is_a_named_error(case: str) -> None:
    from lsqmf.model.result import FitResult

    parts, error, match = BAD_PARTS[case]
    with pytest.raises(error, match=rf"^FitResult: {match}"):
        FitResult(**{"P": _P, "Q": _Q, **parts})


def test_fit_result_from_lists_is_converted() -> None:
    from lsqmf.model.result import FitResult

    fit = FitResult(P=[[1, 2], [3, 4]], Q=[[1, 0, 1], [0, 1, 1]], mu=np.float32(1.5),
                    row_bias=[0, 1])
    assert fit.P.dtype == np.float64 and fit.shape == (2, 3) and fit.mu == 1.5
    assert isinstance(fit.row_bias, np.ndarray)
    np.testing.assert_allclose(fit.predict(np.array([1]), np.array([2]), clip=None),
                               [1.5 + 1 + 7])
