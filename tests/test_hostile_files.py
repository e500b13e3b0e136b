"""Hostile input files for the one reader (:func:`lsqmf.data.readers.read_input`) and the text
loaders: binary files, truncated or corrupt gzip, odd shapes, dense matrices, bad options.

Each case is a file and either the Ratings it must give or the exact error it must raise
(never a traceback from numpy, pandas, zipfile or gzip, never garbled bytes).
"""

from __future__ import annotations

import gzip
import io
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from lsqmf import FitResult
from lsqmf.data.readers import detect_format, load_movielens, load_movies, read_input
from lsqmf.model.files import save_model

GOOD_CSV = b"1,10,4\n2,10,3\n2,20,5\n"


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def _npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def _sparse_npz() -> bytes:
    buf = io.BytesIO()
    sp.save_npz(buf, sp.csr_array(np.array([[1.0, 0.0], [0.0, 2.0]])))
    return buf.getvalue()


def _model_npz(tmp: Path) -> bytes:
    model = FitResult(P=np.ones((2, 1)), Q=np.ones((1, 2)), solver="als")
    return save_model(model, tmp / "model.npz").read_bytes()


def _zip_with(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(name, data)
    return buf.getvalue()


DENSE = np.array([[1.0, np.nan, 3.0], [np.nan, 5.0, 6.0]])

# (file name, content maker(tmp) -> bytes, read_input kwargs, error, message pattern)
REFUSED: list = [
    pytest.param("x.npy", lambda t: _npy(np.array([{"a": 1}], dtype=object)), {}, ValueError,
                 r"holds Python objects \(pickled\); only numeric arrays are read, never "
                 r"pickles", id="npy-pickled-objects"),
    pytest.param("x.npy", lambda t: _npy(DENSE)[:-10], {}, ValueError,
                 r"is not a readable \.npy file", id="npy-truncated"),
    pytest.param("x.npy", lambda t: b"\x93NUMPY", {}, ValueError, r"is not a readable \.npy",
                 id="npy-magic-only"),
    pytest.param("x.npy", lambda t: _npy(np.ones(3)), {}, ValueError,
                 r"the \.npy file must hold a 2-D matrix; got shape \(3,\)", id="npy-1d"),
    pytest.param("x.npy", lambda t: _npy(np.ones((2, 2, 2))), {}, ValueError,
                 r"must hold a 2-D matrix; got shape \(2, 2, 2\)", id="npy-3d"),
    pytest.param("x.npy", lambda t: _npy(np.ones((2, 2), dtype=bool)), {}, ValueError,
                 r"must hold a numeric matrix; got dtype bool", id="npy-bool"),
    pytest.param("x.npy", lambda t: _npy(np.array([["a", "b"]])), {}, ValueError,
                 r"must hold a numeric matrix; got dtype <U1", id="npy-strings"),
    pytest.param("x.npy", lambda t: _npy(np.ones((2, 2), dtype=complex)), {}, ValueError,
                 r"must hold a numeric matrix; got dtype complex128", id="npy-complex"),
    pytest.param("x.npy", lambda t: _npy(np.full((2, 2), np.nan)), {}, ValueError,
                 r"x\.npy': .*no observed", id="npy-all-missing"),
    pytest.param("x.npy", lambda t: _npy(DENSE), {"dense": True}, ValueError,
                 r"`dense` applies to text files; .* is read as \.npy", id="npy-with-dense"),
    pytest.param("x.npz", lambda t: _npz(a=np.ones((2, 2)), b=np.ones((2, 2))), {}, ValueError,
                 r"not a scipy\.sparse \.npz matrix .* nor one dense array; got members "
                 r"\['a', 'b'\]", id="npz-two-arrays"),
    pytest.param("x.npz", lambda t: _npz(a=np.ones(3)), {}, ValueError,
                 r"not a scipy\.sparse \.npz matrix; as one dense array, the \.npz file must "
                 r"hold a 2-D matrix; got shape \(3,\)", id="npz-one-1d-array"),
    pytest.param("x.npz", lambda t: _npz(a=np.array([None], dtype=object)), {}, ValueError,
                 r"holds Python objects \(pickled\)", id="npz-pickled-objects"),
    pytest.param("x.npz", lambda t: _sparse_npz()[:40], {}, ValueError,
                 r"is not a readable \.npz \(zip\) file", id="npz-truncated"),
    pytest.param("x.npz", lambda t: b"PK\x05\x06" + b"\x00" * 18, {}, ValueError,
                 r"not a scipy\.sparse \.npz matrix .*got members \[\]", id="npz-empty-zip"),
    pytest.param("x.npz", _model_npz, {}, ValueError, r"is an lsqmf model file, not ratings",
                 id="npz-is-a-model-file"),
    pytest.param("x.npz", lambda t: _zip_with("a.npy", b"garbage"), {}, ValueError,
                 r"x\.npz': .*", id="npz-member-not-npy"),
    pytest.param("x.npz", lambda t: _sparse_npz(), {"missing": 0.0}, ValueError,
                 r"`missing` applies to dense inputs; in a sparse \.npz", id="npz-sparse-missing"),
    pytest.param("r.csv", lambda t: _npy(DENSE), {"format": "csv"}, ValueError,
                 r"is a NumPy \.npy file, not a text file", id="npy-forced-as-csv"),
    pytest.param("r.csv", lambda t: _sparse_npz(), {"format": "csv"}, ValueError,
                 r"is a zip archive \(e\.g\. an \.npz file\), not a text file",
                 id="npz-forced-as-csv"),
    pytest.param("r.csv", lambda t: b"\x00\x01\x02binary\xff\xfe", {}, ValueError,
                 r"is a binary file, not a text file", id="nul-bytes"),
    pytest.param("r.gz", lambda t: gzip.compress(GOOD_CSV)[:-12], {}, ValueError,
                 r"is a truncated or corrupt gzip file \(Compressed file ended before the "
                 r"end-of-stream marker was reached\)", id="gzip-truncated"),
    pytest.param("r.gz", lambda t: gzip.compress(GOOD_CSV)[:12], {}, ValueError,
                 r"is a truncated or corrupt gzip file", id="gzip-header-only"),
    pytest.param("r.gz", lambda t: b"\x1f\x8b" + b"\x00" * 30, {}, ValueError,
                 r"is a truncated or corrupt gzip file", id="gzip-garbage"),
    pytest.param("r.gz", lambda t: _corrupt_crc(gzip.compress(GOOD_CSV)), {}, ValueError,
                 r"is a truncated or corrupt gzip file \(CRC check failed", id="gzip-bad-crc"),
    pytest.param("r.gz", lambda t: gzip.compress(_npy(DENSE)), {}, ValueError,
                 r"is a NumPy \.npy file, not a text file", id="gzipped-npy"),
    pytest.param("r.gz", lambda t: gzip.compress(gzip.compress(GOOD_CSV)), {}, ValueError,
                 r"is a gzip file inside a gzip file", id="double-gzip"),
    pytest.param("r.gz", lambda t: gzip.compress(b""), {}, ValueError,
                 r"is empty: there is no rating to read", id="gzip-of-nothing"),
    pytest.param("r.csv", lambda t: b"", {}, ValueError, r"is empty: there is no rating",
                 id="empty"),
    pytest.param("r.csv", lambda t: b"  \n\t\n\n", {}, ValueError,
                 r"is empty: there is no rating to read", id="whitespace-only"),
    pytest.param("r.csv", lambda t: b"userId,movieId,rating,timestamp\n", {}, ValueError,
                 r"has no rating lines", id="header-only"),
    pytest.param("r.csv", lambda t: b"user,item\n1,2,3\n", {}, ValueError,
                 r"line 1: expected a header of 3 or 4 fields \(user, item, rating\[, "
                 r"timestamp\]\) separated by ','; got 2 in 'user,item'", id="two-column-header"),
    pytest.param("r.csv", lambda t: b"user,item,rating\n1,2\n", {}, ValueError,
                 r"line 2: expected 3 fields separated by ',' \(as in the header on line 1\); "
                 r"got 2", id="short-line-after-header"),
    pytest.param("r.csv", lambda t: b"1,2\n3,4\n", {}, ValueError,
                 r"line 1: expected 3 or 4 fields .*; got 2 in '1,2'", id="two-column-data"),
    pytest.param("r.csv", lambda t: b"1,2,3,4,5\n", {}, ValueError,
                 r"line 1: expected 3 or 4 fields .*got 5 in '1,2,3,4,5' \(a dense matrix of "
                 r"numbers\? read it with dense=True, --dense on the CLI\)",
                 id="dense-csv-without-flag"),
    pytest.param("r.csv", lambda t: b"1,10,4\n2,10,3,0\n", {}, ValueError,
                 r"line 2: expected 3 fields separated by ',' \(as on line 1\); got 4",
                 id="ragged-lines"),
    pytest.param("r.txt", lambda t: b"1 10 4\n", {}, ValueError,
                 r"line 1: not a MovieLens ratings line \(expected fields separated by '::', "
                 r"tabs or commas\); got '1 10 4'", id="space-separated"),
    pytest.param("r.txt", lambda t: b"root:x:0:0:root:/root:/bin/bash\n", {}, ValueError,
                 r"line 1: not a MovieLens ratings line", id="etc-passwd-like"),
    pytest.param("r.csv", lambda t: GOOD_CSV, {"missing": 0.0}, ValueError,
                 r"`missing` applies to dense inputs .* is read as ratings lines",
                 id="missing-with-ratings-text"),
    pytest.param("d.csv", lambda t: b"1,2,3\n4,5\n", {"dense": True}, ValueError,
                 r"line 2: expected 3 fields \(as on line 1\); got 2", id="dense-ragged"),
    pytest.param("d.csv", lambda t: b"1,2,3\n4,x,6\n", {"dense": True}, ValueError,
                 r"line 2: field 2 must be a number or empty \(missing\); got 'x'",
                 id="dense-word"),
    pytest.param("d.csv", lambda t: b",,\n,,\n", {"dense": True}, ValueError,
                 r"d\.csv': .*no observed", id="dense-all-missing"),
    pytest.param("d.csv", lambda t: b"a,b\n", {"dense": True}, ValueError,
                 r"has no matrix rows", id="dense-header-only"),
    pytest.param("d.csv", lambda t: b"", {"dense": True}, ValueError,
                 r"is empty: there is no matrix to read", id="dense-empty"),
]


def _corrupt_crc(data: bytes) -> bytes:
    b = bytearray(data)
    b[-8] ^= 0xFF  # the CRC32 of the trailer
    return bytes(b)


@pytest.mark.parametrize(("name", "make", "kwargs", "error", "match"), REFUSED)
def test_file_refused(tmp_path: Path, name: str, make: Callable[[Path], bytes],
                      kwargs: dict, error: type, match: str) -> None:
    path = tmp_path / name
    path.write_bytes(make(tmp_path))
    with pytest.raises(error, match=match) as info:
        read_input(path, **kwargs)
    message = str(info.value)
    assert f"'{path}'" in message, message  # the file is named
    assert "\n" not in message and len(message) < 400
    assert "\\x" not in message  # no garbled bytes echoed


@pytest.mark.parametrize(
    ("name", "make", "kwargs", "shape", "nnz"),
    [
        pytest.param("x.npy", lambda t: _npy(DENSE), {}, (2, 3), 4, id="npy-dense"),
        pytest.param("x.bin", lambda t: _npy(DENSE), {}, (2, 3), 4, id="npy-any-name"),
        pytest.param("x.npy", lambda t: _npy(np.array([[1, 0], [3, 4]])), {"missing": 0.0},
                     (2, 2), 3, id="npy-int-missing-zero"),
        pytest.param("x.npz", lambda t: _sparse_npz(), {}, (2, 2), 2, id="npz-sparse"),
        pytest.param("x.npz", lambda t: _npz(R=DENSE), {}, (2, 3), 4, id="npz-one-dense"),
        pytest.param("d.csv", lambda t: b"1,,3\nnan,5,6\n", {"dense": True}, (2, 3), 4,
                     id="dense-csv-empty-and-nan"),
        pytest.param("d.tsv", lambda t: b"1\t\t3\n\t5\t6\n", {"dense": True}, (2, 3), 4,
                     id="dense-tsv"),
        pytest.param("d.txt", lambda t: b"1 nan 3\nNA 5 6\n", {"dense": True}, (2, 3), 4,
                     id="dense-whitespace-na"),
        pytest.param("d.csv", lambda t: b"a,b,c\n1,,3\n,5,6\n", {"dense": True}, (2, 3), 4,
                     id="dense-header-auto"),
        pytest.param("d.csv", lambda t: b"1,2\n0,4\n", {"dense": True, "missing": 0.0}, (2, 2),
                     3, id="dense-missing-value"),
        pytest.param("d.gz", lambda t: gzip.compress(b"1,2\n3,4\n"), {"dense": True}, (2, 2),
                     4, id="dense-gzip"),
        pytest.param("r.gz", lambda t: gzip.compress(GOOD_CSV), {}, (2, 2), 3, id="gzip-csv"),
        pytest.param("r.gz", lambda t: gzip.compress(GOOD_CSV) + gzip.compress(b"3,30,1\n"),
                     {}, (3, 3), 4, id="gzip-multi-member"),
        pytest.param("r.csv", lambda t: b"\xef\xbb\xbf" + GOOD_CSV, {}, (2, 2), 3,
                     id="bom-csv"),
        pytest.param("r.csv", lambda t: "1,10,4\n2,10,3\n".encode("utf-16"), {}, (2, 1), 2,
                     id="utf16"),
        pytest.param("r.csv", lambda t: b"1,10,4\n2,10,3\n3,\xe9,1\n", {}, (3, 2), 3,
                     id="invalid-utf8-falls-back-to-latin1"),
        pytest.param("r.dat", lambda t: b"1::10::4::0\n", {"format": "dat"}, (1, 1), 1,
                     id="forced-dat"),
        pytest.param("r.csv", lambda t: b"1\t10\t4\n", {"format": "tab"}, (1, 1), 1,
                     id="forced-tab"),
    ],
)
def test_file_read(tmp_path: Path, name: str, make: Callable[[Path], bytes], kwargs: dict,
                   shape: tuple, nnz: int) -> None:
    path = tmp_path / name
    path.write_bytes(make(tmp_path))
    r = read_input(path, **kwargs)
    assert r.shape == shape and r.nnz == nnz


def test_dense_csv_values_exact(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(b"1,,3\n,5,6.25\n")
    r = read_input(path, dense=True)
    assert r.rows.tolist() == [0, 0, 1, 1] and r.cols.tolist() == [0, 2, 1, 2]
    assert r.values.tolist() == [1.0, 3.0, 5.0, 6.25]


def test_latin1_fallback_keeps_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes(b"caf\xe9,1,4\n")
    assert load_movielens(path).row_ids.tolist() == ["café"]


def test_long_bad_line_is_quoted_short(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes(b",".join([b"1"] * 5000) + b"\n")
    with pytest.raises(ValueError, match=r"got 5000 in '1,1,1.*\.\.\.'") as info:
        read_input(path)
    assert len(str(info.value)) < 400


@pytest.mark.parametrize(
    ("source", "kwargs", "error", "match"),
    [
        pytest.param(3, {}, TypeError, r"`path` must be a file path; got 3 \(int\)", id="int"),
        pytest.param(None, {}, TypeError, r"`path` must be a file path; got None",
                     id="none"),
        pytest.param("nope.csv", {}, FileNotFoundError,
                     r"no such ratings file: 'nope\.csv' \(it does not exist\)", id="missing"),
        pytest.param(".", {}, ValueError, r"'\.' is a directory, not a ratings file",
                     id="directory"),
        pytest.param("/dev/zero", {}, ValueError, r"'/dev/zero' is not a regular file \(a pipe "
                     r"or a device\)", id="device"),
        pytest.param("builtin", {"format": "xml"}, ValueError, r"`format` must be one of",
                     id="bad-format"),
        pytest.param("builtin", {"dense": "yes"}, TypeError,
                     r"`dense` must be True or False; got 'yes'", id="dense-str"),
        pytest.param("builtin", {"header": "no"}, TypeError,
                     r"`header` must be True, False or None; got 'no'", id="header-str"),
        pytest.param("builtin", {"missing": float("nan")}, ValueError,
                     r"`missing` must be finite; got nan", id="missing-nan"),
        pytest.param("builtin", {"dense": True}, ValueError,
                     r"the built-in data set takes no `format`, `dense` or `missing`",
                     id="builtin-dense"),
    ],
)
def test_read_input_arguments(source: object, kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        read_input(source, **kwargs)


def test_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "ratings.fifo"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match=r"is not a regular file \(a pipe or a device\)"):
        read_input(fifo)


@pytest.mark.parametrize(
    ("loader", "content", "match"),
    [
        pytest.param(load_movielens, _npy(DENSE), r"is a NumPy \.npy file, not a text file",
                     id="load_movielens-npy"),
        pytest.param(detect_format, _npy(DENSE), r"is a NumPy \.npy file, not a text file",
                     id="detect_format-npy"),
        pytest.param(load_movies, _npy(DENSE), r"is a NumPy \.npy file, not a text file",
                     id="load_movies-npy"),
        pytest.param(load_movies, gzip.compress(b"x")[:-5], r"truncated or corrupt gzip",
                     id="load_movies-truncated-gzip"),
        pytest.param(load_movielens, _sparse_npz(), r"is a zip archive", id="load_movielens-npz"),
    ],
)
def test_text_loaders_refuse_binary(tmp_path: Path, loader: Callable, content: bytes,
                                    match: str) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match):
        loader(path)


# ------------------------------------------------------------------ quoted CSV fields
@pytest.mark.parametrize(("text", "rows"), [
    pytest.param('"1","1","3.5"\n"1","2","4"\n"2","1","2"\n', 3, id="quoted-data-first-line"),
    pytest.param('"user","item","rating"\n"1","1","3.5"\n"1","2","4"\n', 2, id="quoted-header"),
    pytest.param('1,"1",3.5\n"2",1,"4"\n', 2, id="some-fields-quoted"),
    pytest.param('"u ""x""",1,3\n"v",2,4\n', 2, id="escaped-quotes"),
])
def test_quoted_csv_fields_are_read_unquoted(tmp_path: Path, text: str, rows: int) -> None:
    from lsqmf.data import read_input

    path = tmp_path / "r.csv"
    path.write_text(text)
    r = read_input(path)
    assert r.nnz == rows
    assert r.values[0] == 3.5 or r.values[0] == 3.0
    assert all('"' not in str(i) or i == 'u "x"' for i in r.row_ids.tolist())
