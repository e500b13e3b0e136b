"""Hostile ids: raw user/item ids round-trip exactly (never through a float), BOMs, headers.

Each case is a file's bytes and either the exact id maps (and rating count) it must give, or
the exact error it must raise.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lsqmf import FitResult, Ratings
from lsqmf.data.readers import load_movielens, load_movies, parse_ids, read_input
from lsqmf.model.files import load_model, save_model

BIG1, BIG2 = "100000000000000000001", "100000000000000000002"
I64MAX, I64MIN = "9223372036854775807", "-9223372036854775808"

# (file bytes, expected row_ids, expected col_ids, expected nnz)
PRESERVED = [
    pytest.param(f"{BIG1},1,4\n{BIG2},1,3\n".encode(), [BIG1, BIG2], [1], 2,
                 id="beyond-int64-stay-distinct-strings"),
    pytest.param(f"1,{BIG1},4\n1,{BIG2},3\n".encode(), [1], [BIG1, BIG2], 2,
                 id="beyond-int64-item-ids"),
    pytest.param(f"{I64MAX},1,4\n{I64MIN},1,3\n".encode(), [int(I64MIN), int(I64MAX)], [1], 2,
                 id="int64-extremes-exact-ints"),
    pytest.param(b"9223372036854775808,1,4\n1,1,3\n", ["1", "9223372036854775808"], [1], 2,
                 id="one-past-int64-max-all-strings"),
    pytest.param(b"12345678901234567,1,4\n12345678901234568,1,3\n",
                 [12345678901234567, 12345678901234568], [1], 2,
                 id="17-digit-ids-a-float-would-merge"),
    pytest.param(b"9007199254740993,1,4\n9007199254740992,1,3\n",
                 [9007199254740992, 9007199254740993], [1], 2, id="2-pow-53-plus-1"),
    pytest.param(b"007,1,4\n7,1,3\n", ["007", "7"], [1], 2, id="leading-zeros-stay-strings"),
    pytest.param(b"1.0,1,4\n1,1,3\n", ["1", "1.0"], [1], 2, id="decimal-point-is-a-string"),
    pytest.param(b"+5,1,4\n5,1,3\n", ["+5", "5"], [1], 2, id="plus-sign-is-a-string"),
    pytest.param(b"-0,1,4\n0,1,3\n", ["-0", "0"], [1], 2, id="minus-zero-is-a-string"),
    pytest.param(b"-3,1,4\n2,1,3\n", [-3, 2], [1], 2, id="negative-ints"),
    pytest.param(b"1e3,1,4\n1000,1,3\n", ["1000", "1e3"], [1], 2, id="exponent-is-a-string"),
    pytest.param(b"10,1,4\n9,1,3\n2,1,1\n", [2, 9, 10], [1], 3, id="ints-sorted-numerically"),
    pytest.param(b"b,1,4\na,1,3\nB,1,1\n", ["B", "a", "b"], [1], 3, id="strings-by-code-point"),
    pytest.param(b"1,1,4\na,1,3\n", ["1", "a"], [1], 2, id="mixed-column-all-strings"),
    pytest.param(b"NA,1,4\nnull,1,3\nnan,1,2\nNone,1,1\n", ["NA", "None", "nan", "null"], [1],
                 4, id="na-words-are-ids"),
    pytest.param("é,ü,4\n用户,ü,3\n".encode(), ["é", "用户"], ["ü"], 2, id="utf8-ids"),
    pytest.param("é,1,4\nz,1,3\n".encode("latin-1"), ["z", "é"], [1], 2, id="latin1-ids"),
    pytest.param(b"\xef\xbb\xbfuserId,movieId,rating\n1,10,4\n2,10,3\n", [1, 2], [10], 2,
                 id="utf8-bom-with-header"),
    pytest.param(b"\xef\xbb\xbf1,10,4\n2,10,3\n", [1, 2], [10], 2, id="utf8-bom-no-header"),
    pytest.param("1,10,4\n2,10,3\n".encode("utf-16"), [1, 2], [10], 2, id="utf16-with-bom"),
    pytest.param(b" 1 , 10 ,4\n2,10 , 3\n", [1, 2], [10], 2, id="spaces-around-ids-stripped"),
    pytest.param(b"a b,1,4\nab,1,3\n", ["a b", "ab"], [1], 2, id="inner-space-kept"),
    pytest.param(b"1,10,4\r\n2,10,3\r\n", [1, 2], [10], 2, id="crlf-no-cr-in-ids"),
    pytest.param(b"1,10,4\r2,10,3\r", [1, 2], [10], 2, id="classic-mac-cr-endings"),
    pytest.param(b"a:b::c::4::0\nd::c::3::0\n", ["a:b", "d"], ["c"], 2, id="dat-colon-in-id"),
    pytest.param(f"{BIG1}\t1\t4\t0\n{BIG2}\t1\t3\t0\n".encode(), [BIG1, BIG2], [1], 2,
                 id="tab-format-beyond-int64"),
    pytest.param(b"1,10,4\n2,10,3\n", [1, 2], [10], 2, id="headerless-first-row-kept"),
    pytest.param(b"userId,movieId,rating,timestamp\n1,10,4,0\n", [1], [10], 1,
                 id="movielens-header-dropped"),
    pytest.param(b"\n\n1,10,4\n\n2,10,3\n\n", [1, 2], [10], 2, id="blank-lines-skipped"),
    pytest.param(b"1,10,4,\n2,10,3,\n", [1, 2], [10], 2, id="empty-timestamp-field"),
]


@pytest.mark.parametrize(("content", "rows", "cols", "nnz"), PRESERVED)
def test_ids_preserved(tmp_path: Path, content: bytes, rows: list, cols: list, nnz: int) -> None:
    path = tmp_path / "ratings.txt"
    path.write_bytes(content)
    r = load_movielens(path)
    assert r.row_ids.tolist() == rows
    assert r.col_ids.tolist() == cols
    assert r.nnz == nnz
    for ids, expected in ((r.row_ids, rows), (r.col_ids, cols)):
        kind = "i" if all(isinstance(v, int) for v in expected) else "O"
        assert ids.dtype.kind == kind


# (file bytes, header argument, error type, message pattern)
REFUSED = [
    pytest.param(b"1,2,x\n3,4,5\n", None, ValueError,
                 r"line 1: the rating must be a finite number; got 'x' \(if this line is a "
                 r"header, pass header=True\)", id="headerless-bad-first-rating-not-a-header"),
    pytest.param(b"1,2,NaN\n3,4,5\n", None, ValueError,
                 r"line 1: the rating must be a finite number; got 'NaN'", id="nan-rating"),
    pytest.param(b"1,2,inf\n", None, ValueError, r"line 1: .*finite number; got 'inf'",
                 id="inf-rating"),
    pytest.param(b"1,2,\n", None, ValueError, r"line 1: .*finite number; got ''",
                 id="empty-rating"),
    pytest.param(b"1,2,3\n4,5,3.5 stars\n", None, ValueError,
                 r"line 2: .*finite number; got '3.5 stars'", id="rating-with-words"),
    pytest.param(b"1,2,1_000\n", None, ValueError, r"line 1: .*got '1_000'",
                 id="underscore-number-refused"),
    pytest.param(b",2,3\n", None, ValueError, r"line 1: empty user or item id", id="empty-user"),
    pytest.param(b"1, ,3\n", None, ValueError, r"line 1: empty user or item id",
                 id="blank-item"),
    pytest.param(b"userId,movieId,rating\n1,10,4\n", False, ValueError,
                 r"line 1: the rating must be a finite number; got 'rating'",
                 id="header-false-forces-data"),
    pytest.param(b"1,10,4\n1,20,3\n1,10,5\n", None, ValueError,
                 r"line 3: duplicate \(user, item\) pair: user '1', item '10' was already "
                 r"rated on line 1", id="duplicate-pair-both-lines"),
    pytest.param(f"{BIG1},1,4\n{BIG1},1,3\n".encode(), None, ValueError,
                 rf"line 2: duplicate .*user '{BIG1}'", id="duplicate-big-id"),
]


@pytest.mark.parametrize(("content", "header", "error", "match"), REFUSED)
def test_ids_refused(tmp_path: Path, content: bytes, header: bool | None, error: type,
                     match: str) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes(content)
    with pytest.raises(error, match=match) as info:
        load_movielens(path, header=header)
    assert str(info.value).startswith(f"'{path}', line ")


def test_header_decision_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes(b"user,item,rating\n1,10,4\n")
    with caplog.at_level(logging.INFO, logger="lsqmf.data.readers"):
        r = load_movielens(path)
    assert r.nnz == 1
    assert "line 1 'user,item,rating' read as a header" in caplog.text
    assert "pass header=False" in caplog.text


def test_string_id_header_like_line_is_logged(tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    # ids are words, the rating is a word: a header by the rule, and the choice is said
    path = tmp_path / "r.csv"
    path.write_bytes(b"u1,m1,x\nu2,m2,4\n")
    with caplog.at_level(logging.INFO, logger="lsqmf.data.readers"):
        r = load_movielens(path)
    assert r.row_ids.tolist() == ["u2"] and "read as a header" in caplog.text
    with pytest.raises(ValueError, match=r"line 1: the rating must be a finite number"):
        load_movielens(path, header=False)


def test_header_true_drops_exactly_the_first_line(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes(b"1,10,4\n2,10,3\n")
    assert load_movielens(path, header=True).row_ids.tolist() == [2]


@pytest.mark.parametrize("header", ["yes", 1, 0.0], ids=["str", "int", "float"])
def test_header_argument_type(tmp_path: Path, header: object) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes(b"1,10,4\n")
    with pytest.raises(TypeError, match=r"`header` must be True, False or None; got"):
        load_movielens(path, header=header)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        (["1", "2"], [1, 2]),
        ([BIG1, BIG2], [BIG1, BIG2]),
        ([I64MAX], [int(I64MAX)]),
        (["007"], ["007"]),
        ([], []),
    ],
    ids=["ints", "beyond-int64", "int64-max", "leading-zero", "empty"],
)
def test_parse_ids(ids: list, expected: list) -> None:
    assert parse_ids(ids).tolist() == expected


@pytest.mark.parametrize("ids", [[BIG1, BIG2], ["007", "7"], [I64MAX, "1"], ["é", "x"]],
                         ids=["beyond-int64", "leading-zeros", "int64-max", "unicode"])
def test_ids_survive_a_model_file(tmp_path: Path, ids: list) -> None:
    path = tmp_path / "r.csv"
    path.write_text(f"{ids[0]},1,4\n{ids[1]},1,3\n{ids[0]},2,5\n{ids[1]},2,1\n",
                    encoding="utf-8")
    r = load_movielens(path)
    model = FitResult(P=np.array([[1.0], [2.0]]), Q=np.array([[3.0, 4.0]]), solver="als",
                      row_ids=r.row_ids, col_ids=r.col_ids)
    loaded, _ = load_model(save_model(model, tmp_path / "m.npz"))
    assert loaded.row_ids.tolist() == r.row_ids.tolist()
    users = r.row_ids.tolist()
    np.testing.assert_allclose(loaded.predict_ids(users, [1, 2]),
                               model.predict_ids(users, [1, 2]))


def test_from_frame_python_ints_beyond_int64_stay_distinct() -> None:
    frame = pd.DataFrame({"user": [int(BIG1), int(BIG2)], "item": [1, 1],
                          "rating": [4.0, 3.0]})
    r = Ratings.from_frame(frame)
    assert r.shape == (2, 1) and sorted(r.row_ids.tolist()) == [int(BIG1), int(BIG2)]


def test_movies_ids_exact(tmp_path: Path) -> None:
    path = tmp_path / "movies.csv"
    path.write_text(f"\ufeffmovieId,title,genres\n{BIG1},A,x\n{BIG2},B,y\n", encoding="utf-8")
    movies = load_movies(path)
    assert movies["item"].tolist() == [BIG1, BIG2]


def test_read_input_same_ids_as_load_movielens(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes(f"{BIG1},1,4\n{BIG2},1,3\n".encode())
    assert read_input(path).row_ids.tolist() == load_movielens(path).row_ids.tolist()
