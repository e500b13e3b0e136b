"""Lenient reading of the common flaws pandas and Surprise accept (issue 21, item 3): a trailing
delimiter, a trailing tab on a ``u.data`` line, trailing whitespace -- read, and logged in one
line naming the file, the count and the first line; a line with more data is still refused."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from lsqmf.data.readers import load_ratings

CLEAN = "1\t10\t4\t881250949\n2\t20\t3\t881250950\n3\t10\t5\t881250951\n"


def _read(tmp_path: Path, name: str, text: str) -> object:
    path = tmp_path / name
    path.write_text(text)
    return load_ratings(str(path))


@pytest.mark.parametrize(
    ("name", "text", "n_flawed", "first"),
    [
        ("u.data", "1\t10\t4\t881250949\n2\t20\t3\t881250950\t\n3\t10\t5\t881250951\n", 1, 2),
        ("u.data", "1\t10\t4\t881250949\t\n2\t20\t3\t881250950\t\n3\t10\t5\t881250951\t \n",
         3, 1),
        ("ratings.csv", "userId,movieId,rating,timestamp,\n1,10,4,881250949,\n"
         "2,20,3,881250950,\n3,10,5,881250951,\n", 3, 2),
        ("ratings.csv", "1,10,4,\n2,20,3,\n3,10,5,  \n", 3, 1),
        ("ratings.dat", "1::10::4::881250949::\n2::20::3::881250950\n3::10::5::881250951\n",
         1, 1),
    ],
    ids=["u.data-one-tab", "u.data-every-line", "csv-header-and-lines", "csv-3-fields",
         "dat-double-colon"],
)
def test_trailing_delimiters_are_read_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                 name: str, text: str, n_flawed: int,
                                                 first: int) -> None:
    clean = _read(tmp_path, "clean.data", CLEAN)
    with caplog.at_level(logging.WARNING, logger="lsqmf.data.readers"):
        got = _read(tmp_path, name, text)
    np.testing.assert_array_equal(got.values, clean.values)
    np.testing.assert_array_equal(got.row_ids.astype(str), clean.row_ids.astype(str))
    lines = [r.getMessage() for r in caplog.records if "empty field" in r.getMessage()]
    assert len(lines) == 1
    assert name in lines[0] and f"{n_flawed} line(s)" in lines[0]
    assert f"first on line {first}" in lines[0]


def test_trailing_whitespace_is_read_silently(tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="lsqmf.data.readers"):
        got = _read(tmp_path, "r.csv", "1,10,4 \n2,20,3   \n3,10, 5\n")
    assert got.values.tolist() == [4.0, 5.0, 3.0] or sorted(got.values.tolist()) == [3, 4, 5]
    assert not caplog.records


@pytest.mark.parametrize("text", ["1,10,4\n2,20,3,7\n", "1\t10\t4\t5\n2\t20\t3\t6\t7\n"],
                         ids=["extra-value", "extra-tab-value"])
def test_extra_data_is_still_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(ValueError, match=r"line 2: expected \d fields"):
        _read(tmp_path, "r.data", text)
