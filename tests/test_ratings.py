"""The observed-data model: builders, id maps, validation."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from lsqmf import Ratings, as_ratings


def test_from_dense_nan_marks_missing() -> None:
    R = np.array([[1.0, np.nan], [np.nan, 0.0]])
    r = as_ratings(R)
    assert r.shape == (2, 2)
    np.testing.assert_array_equal(r.rows, [0, 1])
    np.testing.assert_array_equal(r.cols, [0, 1])
    np.testing.assert_array_equal(r.values, [1.0, 0.0])  # the zero is observed


def test_from_dense_missing_zero_convention() -> None:
    R = np.array([[5.0, 0.0, 1.0], [0.0, 2.0, 0.0]])
    r = as_ratings(R, missing=0)
    assert r.nnz == 3
    np.testing.assert_array_equal(r.values, [5.0, 1.0, 2.0])


def test_dense_with_zeros_and_no_nan_warns_and_is_fully_observed() -> None:
    R = np.array([[5.0, 0.0], [1.0, 2.0]])
    with pytest.warns(UserWarning, match="missing=0"):
        r = as_ratings(R)
    assert r.nnz == 4


def test_dense_without_zeros_does_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = as_ratings(np.array([[5.0, 1.0], [1.0, 2.0]]))
    assert r.nnz == 4


def test_from_sparse_keeps_explicit_zeros() -> None:
    A = sp.csr_array((np.array([0.0, 3.0]), (np.array([0, 1]), np.array([1, 0]))), shape=(2, 3))
    r = as_ratings(A)
    assert r.shape == (2, 3)
    assert r.nnz == 2
    np.testing.assert_array_equal(r.values, [0.0, 3.0])


def test_from_sparse_matrix_class_too() -> None:
    A = sp.coo_matrix((np.array([1.0, 2.0]), (np.array([0, 2]), np.array([1, 0]))), shape=(3, 2))
    assert as_ratings(A).nnz == 2


def test_from_frame_arbitrary_ids_round_trip() -> None:
    df = pd.DataFrame(
        {"user": ["bob", "alice", "bob"], "item": [30, 10, 10], "rating": [4.0, 3.5, 2.0]}
    )
    r = Ratings.from_frame(df)
    assert r.shape == (2, 2)
    assert list(r.row_ids) == ["alice", "bob"]
    assert list(r.col_ids) == [10, 30]
    back = r.to_frame().sort_values(["user", "item"]).reset_index(drop=True)
    expected = df.sort_values(["user", "item"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(back, expected, check_dtype=False)
    np.testing.assert_array_equal(r.row_index(["bob", "carol"]), [1, -1])


def test_from_frame_custom_columns_and_weight() -> None:
    df = pd.DataFrame({"u": [1, 2], "i": [5, 6], "r": [1.0, 2.0], "w": [0.5, 2.0]})
    r = Ratings.from_frame(df, user="u", item="i", rating="r", weight="w")
    np.testing.assert_array_equal(r.weights, [0.5, 2.0])


def test_from_frame_with_universe_indexes_against_it() -> None:
    df = pd.DataFrame({"user": [3], "item": ["b"], "rating": [1.0]})
    r = Ratings.from_frame(df, row_ids=[1, 2, 3], col_ids=["a", "b"])
    assert r.shape == (3, 2)
    assert (r.rows[0], r.cols[0]) == (2, 1)
    with pytest.raises(ValueError, match="not in the given id map"):
        Ratings.from_frame(df, row_ids=[1, 2], col_ids=["a", "b"])


def test_weights_dense_aligned() -> None:
    R = np.array([[1.0, np.nan], [2.0, 3.0]])
    W = np.array([[0.1, 9.0], [0.2, 0.3]])
    r = as_ratings(R, weights=W)
    np.testing.assert_array_equal(r.weights, [0.1, 0.2, 0.3])


@pytest.mark.parametrize(
    ("R", "kwargs", "error", "match"),
    [
        pytest.param(np.zeros((0, 3)), {}, ValueError, "empty", id="empty-dense"),
        pytest.param(np.full((2, 2), np.nan), {}, ValueError, "no observed", id="all-missing"),
        pytest.param(np.array([1.0, 2.0]), {}, ValueError, "2-dimensional", id="1d"),
        pytest.param(np.array([[1.0, np.inf]]), {}, ValueError, "infinite", id="inf"),
        pytest.param(np.array([["a", "b"]]), {}, TypeError, "numeric", id="strings"),
        pytest.param(np.ones((2, 2)), {"weights": -np.ones((2, 2))}, ValueError, ">= 0",
                     id="negative-weight"),
        pytest.param(np.ones((2, 2)), {"weights": np.ones((3, 2))}, ValueError, "shape",
                     id="weight-shape"),
        pytest.param(np.ones((2, 2)), {"missing": "x"}, TypeError, "missing", id="missing-type"),
        pytest.param(sp.csr_array((2, 2)), {}, ValueError, "no stored entry", id="empty-sparse"),
        pytest.param(sp.csr_array(np.eye(2)), {"missing": 0}, ValueError, "dense arrays only",
                     id="missing-with-sparse"),
        pytest.param("ratings.csv", {}, TypeError, "must be a dense array", id="str"),
        pytest.param(None, {}, TypeError, "must be a dense array", id="none"),
        pytest.param(np.array([[1 + 1j, 2.0]]), {}, TypeError, "complex", id="complex-dense"),
        pytest.param(sp.csr_array(np.array([[1 + 1j, 0]])), {}, TypeError, "complex",
                     id="complex-sparse"),
    ],
)
def test_bad_input_is_a_clear_error(R, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        as_ratings(R, **kwargs)


@pytest.mark.parametrize(
    ("rows", "cols", "values", "shape", "match"),
    [
        pytest.param([0, 0], [1, 1], [1.0, 2.0], (2, 2), "duplicate", id="duplicate"),
        pytest.param([0, -1], [0, 1], [1.0, 2.0], (2, 2), "row indices must be >= 0",
                     id="negative-row"),
        pytest.param([0, 1], [0, 5], [1.0, 2.0], (2, 2), "column indices must be < 2",
                     id="column-out-of-range"),
        pytest.param([0, 1], [0, 1], [1.0, np.nan], (2, 2), "finite", id="nan-value"),
        pytest.param([0, 1], [0, 1], [1.0, 2.0, 3.0], (2, 2), "same length", id="lengths"),
        pytest.param([0], [0], [1.0], (0, 2), "positive", id="zero-shape"),
        pytest.param([], [], [], (2, 2), "empty", id="empty"),
    ],
)
def test_bad_triplets(rows, cols, values, shape, match) -> None:
    with pytest.raises(ValueError, match=match):
        Ratings(np.array(rows, dtype=int), np.array(cols, dtype=int), values, shape)


def test_duplicate_in_frame_names_raw_ids() -> None:
    df = pd.DataFrame({"user": ["a", "a"], "item": ["x", "x"], "rating": [1.0, 2.0]})
    with pytest.raises(ValueError, match="user 'a', item 'x'"):
        Ratings.from_frame(df)


def test_duplicate_in_sparse_coo() -> None:
    A = sp.coo_array((np.array([1.0, 2.0]), (np.array([0, 0]), np.array([1, 1]))), shape=(2, 2))
    with pytest.raises(ValueError, match="duplicate"):
        as_ratings(A)


def test_frame_errors_name_the_column() -> None:
    df = pd.DataFrame({"user": [1], "item": [2], "score": [3.0]})
    with pytest.raises(ValueError, match="`rating` column 'rating' is not in the DataFrame"):
        Ratings.from_frame(df)
    bad = pd.DataFrame({"user": [1], "item": [2], "rating": ["five"]})
    with pytest.raises(TypeError, match="numeric"):
        Ratings.from_frame(bad)
    with pytest.raises(ValueError, match="missing id"):
        Ratings.from_frame(pd.DataFrame({"user": [None], "item": [2], "rating": [1.0]}))


def test_arrays_are_read_only_and_caller_arrays_untouched() -> None:
    rows = np.array([1, 0])
    r = Ratings(rows, np.array([0, 1]), np.array([1.0, 2.0]), (2, 2))
    with pytest.raises(ValueError):
        r.values[0] = 5.0
    rows[0] = 7  # the caller's array is still writable and not shared
    assert r.rows.tolist() == [0, 1]


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 8),
    m=st.integers(1, 8),
    seed=st.integers(0, 2**16),
)
def test_triplet_order_does_not_matter(n: int, m: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    nnz = int(rng.integers(1, n * m + 1))
    flat = rng.choice(n * m, size=nnz, replace=False)
    rows, cols = np.divmod(flat, m)
    vals = rng.standard_normal(nnz)
    perm = rng.permutation(nnz)
    a = Ratings(rows, cols, vals, (n, m))
    b = Ratings(rows[perm], cols[perm], vals[perm], (n, m))
    for name in ("rows", "cols", "values"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    keys = a.rows * m + a.cols
    assert np.all(np.diff(keys) > 0)  # strictly row-major


def test_subset_keeps_shape_and_ids() -> None:
    df = pd.DataFrame({"user": ["a", "b", "c"], "item": [1, 2, 3], "rating": [1.0, 2.0, 3.0]})
    r = Ratings.from_frame(df)
    s = r.subset(np.array([True, False, True]))
    assert s.shape == r.shape and s.nnz == 2
    assert list(s.row_ids) == ["a", "b", "c"]


def test_from_triplets_default_shape_and_to_sparse() -> None:
    r = Ratings.from_triplets([2, 0], [1, 3], [4.0, 0.0])
    assert r.shape == (3, 4)
    S = r.to_sparse()
    assert S.shape == (3, 4) and S.nnz == 2  # the explicit zero is kept
    assert S[2, 1] == 4.0
    assert r.density == pytest.approx(2 / 12)
    np.testing.assert_array_equal(r.row_counts(), [1, 0, 1])
    np.testing.assert_array_equal(r.col_counts(), [0, 1, 0, 1])


def test_weighted_mean_and_with_weights() -> None:
    r = Ratings.from_triplets([0, 1], [0, 0], [1.0, 3.0])
    assert r.mean() == 2.0
    w = r.with_weights([3.0, 1.0])
    assert w.mean() == pytest.approx(1.5)
    assert "weighted" in repr(w)


@pytest.mark.parametrize(
    ("universe", "ids"),
    [
        (np.array([5, 3, 9, 1]), np.array([9, 4, 1, 5, 5, -1])),
        (np.array([5, 3, 9, 1], dtype=np.uint64), np.array([9, 4, 1], dtype=np.uint64)),
        (np.array([2**62, 7]), np.array([2**62, 2**62 + 1, 7])),
        (np.array(["007", "7", "a"], dtype=object), np.array(["7", "007", "b", "a"], dtype=object)),
        (np.array(["x", "ü", ""]), np.array(["", "ü", "y"])),
        (np.array([1, 2, 3]), np.array([2.0, 3.5])),
        (np.array([1, 2, 3]), np.array(["1", "2"], dtype=object)),
        (np.array([1, 2, 3]), np.array([], dtype=np.int64)),
        (np.array([], dtype=np.int64), np.array([1, 2])),
    ],
)
def test_lookup_ids_matches_pandas_get_indexer(universe, ids) -> None:
    from lsqmf.data.ratings import lookup_ids

    expected = pd.Index(universe).get_indexer(ids).astype(np.int64)
    got = lookup_ids(universe, ids, len(universe))
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, expected)
