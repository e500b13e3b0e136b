"""`lsqmf predict --pairs FILE` opens the file like every input (one-line errors, exit 2, never
blocks on a pipe), and raw ids given on the command line round-trip exactly."""

from __future__ import annotations

import gzip
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from lsqmf.cli import main
from lsqmf.cli.models import _parse_id

RATINGS = """userId,movieId,rating,timestamp
1,10,4.0,0
1,20,3.5,0
1,30,5.0,0
2,10,2.0,0
2,40,3.0,0
3,20,4.5,0
3,30,4.0,0
3,40,1.0,0
7,10,3.0,0
7,30,2.5,0
5,20,5.0,0
5,40,2.0,0
"""


@pytest.fixture
def model(tmp_path: Path) -> Path:
    ratings = tmp_path / "ratings.csv"
    ratings.write_text(RATINGS)
    out = tmp_path / "model.npz"
    assert main(["fit", str(ratings), "--solver", "als", "--rank", "2", "--reg", "0.1",
                 "--out", str(out), "--max-iter", "5", "--tol", "0.5"]) == 0
    return out


def _rows(out: str) -> list[list[str]]:
    lines = out.strip().splitlines()
    assert lines[0].split("\t") == ["user", "item", "prediction", "cold_start"]
    return [line.split("\t") for line in lines[1:]]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _npy(tmp: Path) -> Path:
    path = tmp / "pairs.npy"
    np.save(path, np.array([[1, 10]]))
    return path


def _fifo(tmp: Path) -> Path:
    path = tmp / "pairs.fifo"
    os.mkfifo(path)  # nobody writes: opening it for reading would block forever
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(_npy, "is a NumPy .npy file, not a text file; a pairs file is text",
                     id="npy"),
        pytest.param(lambda t: _write(t / "p.bin", b"1 10\x00\x01\xff\xfe\n"),
                     "is a binary file, not a text file; a pairs file is text", id="nul-bytes"),
        pytest.param(lambda t: _write(t / "p.gz", gzip.compress(b"1 10\n")[:12]),
                     "is a truncated or corrupt gzip file", id="truncated-gzip"),
        pytest.param(lambda t: t, "is a directory, not a pairs file", id="directory"),
        pytest.param(lambda t: t / "missing.txt", "no such pairs file:", id="missing"),
        pytest.param(
            _fifo, "is not a regular file (a pipe or a device)", id="fifo",
            marks=pytest.mark.skipif(sys.platform == "win32", reason="no FIFOs on Windows"),
        ),
        pytest.param(lambda t: _write(t / "p.txt", b"1 10\n1 20 30\n"),
                     "p.txt', line 2: expected 'user item'; got '1 20 30'.", id="bad-line"),
    ],
)
def test_bad_pairs_files_are_one_line_errors(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    make: Callable[[Path], Path], message: str,
) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    path = make(bad)
    capsys.readouterr()
    assert main(["predict", str(model), "--pairs", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("lsqmf predict: error: ")
    assert message in captured.err and captured.err.count("\n") == 1
    assert "Traceback" not in captured.err and "UnicodeDecodeError" not in captured.err


def test_long_bad_line_is_quoted_short(model: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path / "p.txt", b"1 " + b"9 " * 500 + b"\n")
    assert main(["predict", str(model), "--pairs", str(path)]) == 2
    err = capsys.readouterr().err
    assert "line 1: expected 'user item'" in err and "...'" in err and len(err) < 300


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"1 10\r\n3,40\r\n\r\n", id="crlf-and-blank-line"),
        pytest.param(gzip.compress(b"1 10\n3,40\n"), id="gzip"),
        pytest.param(b"\xef\xbb\xbf1 10\n3 40\n", id="utf8-bom"),
        pytest.param("1 10\n3 40\n".encode("utf-16"), id="utf16-bom"),
    ],
)
def test_text_pairs_files_in_any_encoding(model: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str],
                                          data: bytes) -> None:
    path = _write(tmp_path / "pairs.txt", data)
    capsys.readouterr()
    assert main(["predict", str(model), "--pairs", str(path)]) == 0
    rows = _rows(capsys.readouterr().out)
    assert [r[:2] for r in rows] == [["1", "10"], ["3", "40"]]
    assert [r[3] for r in rows] == ["no", "no"]


def test_latin1_pairs_file_reads_unknown_ids_as_cold_start(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path / "pairs.txt", b"1 10\n\xe9 10\n")  # not UTF-8: read as latin-1
    capsys.readouterr()
    assert main(["predict", str(model), "--pairs", str(path)]) == 0
    captured = capsys.readouterr()
    rows = _rows(captured.out)
    assert rows[0][3] == "no" and rows[1][:2] == ["\xe9", "10"] and rows[1][3] == "yes"
    assert "1 of 2 pair(s) cold-start" in captured.err


# ------------------------------------------------------------------------------- raw ids
def test_parse_id_only_canonical_integers_become_ints() -> None:
    ints = np.array([1, 7], dtype=np.int64)
    assert _parse_id("7", ints) == 7 and type(_parse_id("7", ints)) is int
    assert _parse_id("-3", ints) == -3
    for text in ["007", "+7", "7.0", " 7", "-0", "0x7", "1e3", "abc"]:
        assert _parse_id(text, ints) == text and type(_parse_id(text, ints)) is str
    assert _parse_id("100000000000000000001", ints) == "100000000000000000001"  # > int64
    assert _parse_id("7", np.array(["7", "x"], dtype=object)) == "7"
    assert _parse_id("7", None) == "7"


@pytest.mark.parametrize(("user", "item"), [("007", "10"), ("7", "010"), ("+7", "10")])
def test_non_canonical_ids_are_unknown_not_renamed(
    model: Path, capsys: pytest.CaptureFixture[str], user: str, item: str
) -> None:
    capsys.readouterr()
    assert main(["predict", str(model), "--user", user, "--item", item]) == 0
    captured = capsys.readouterr()
    (row,) = _rows(captured.out)
    assert row[:2] == [user, item] and row[3] == "yes"
    assert "1 of 1 pair(s) cold-start" in captured.err
    assert main(["predict", str(model), "--user", user, "--item", item,
                 "--cold-start", "raise"]) == 2


def test_pairs_file_mixing_known_and_non_canonical_ids(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path / "pairs.txt", b"7 10\n007 10\n7 30\nx 30\n")
    capsys.readouterr()
    assert main(["predict", str(model), "--pairs", str(path)]) == 0
    rows = _rows(capsys.readouterr().out)
    assert [r[:2] for r in rows] == [["7", "10"], ["007", "10"], ["7", "30"], ["x", "30"]]
    assert [r[3] for r in rows] == ["no", "yes", "no", "yes"]


def test_recommend_non_canonical_user_is_not_user_7(
    model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ratings = str(model.parent / "ratings.csv")
    capsys.readouterr()
    assert main(["recommend", str(model), "--user", "7", "--ratings", ratings, "-n", "1"]) == 0
    capsys.readouterr()
    assert main(["recommend", str(model), "--user", "007", "--ratings", ratings,
                 "-n", "1"]) == 2
    err = capsys.readouterr().err
    assert "`--user` '007' is neither a user of this model nor in" in err
    assert err.count("\n") == 1
