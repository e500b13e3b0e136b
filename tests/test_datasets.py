"""MovieLens loaders (all formats, malformed files), the built-in set, synthetic data."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from lsqmf.data.readers import (
    builtin_path,
    detect_format,
    load_builtin,
    load_builtin_movies,
    load_movielens,
    load_movies,
    load_ratings,
)
from lsqmf.data.synthetic import make_low_rank

ROWS = [(196, 242, 3.0, 881250949), (186, 302, 3.5, 891717742), (22, 377, 1.0, 878887116),
        (196, 377, 5.0, 881251949)]

FORMATS = {
    "tab": ("u.data", "", "{}\t{}\t{}\t{}"),
    "dat": ("ratings.dat", "", "{}::{}::{}::{}"),
    "csv": ("ratings.csv", "userId,movieId,rating,timestamp\n", "{},{},{},{}"),
}


def _write(path: Path, fmt: str, rows: list = ROWS, extra: str = "") -> Path:
    _, header, line = FORMATS[fmt]
    path.write_text(header + "\n".join(line.format(*r) for r in rows) + "\n" + extra)
    return path


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_load_each_format(tmp_path: Path, fmt: str) -> None:
    # a misleading name: detection reads the content
    path = _write(tmp_path / "data.txt", fmt)
    assert detect_format(path) == fmt
    r = load_movielens(path)
    assert r.shape == (3, 3) and r.nnz == 4
    np.testing.assert_array_equal(r.row_ids, [22, 186, 196])
    np.testing.assert_array_equal(r.col_ids, [242, 302, 377])
    frame = r.to_frame()
    got = {(int(u), int(i)): v for u, i, v in frame.itertuples(index=False)}
    assert got == {(u, i): v for u, i, v, _ in ROWS}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_load_gzip(tmp_path: Path, fmt: str) -> None:
    plain = _write(tmp_path / "r", fmt)
    gz = tmp_path / "r.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    a, b = load_movielens(plain), load_movielens(gz)
    np.testing.assert_array_equal(a.values, b.values)


def test_string_ids_and_blank_lines(tmp_path: Path) -> None:
    p = tmp_path / "r.csv"
    p.write_text("userId,movieId,rating,timestamp\nu1,m1,4,0\n\nu2,m1,2.5,0\n")
    r = load_movielens(p)
    assert list(r.row_ids) == ["u1", "u2"] and r.nnz == 2


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ("{}\t{}", r"line (\d+): expected 4 fields"),
        ("rating", r"the rating must be a finite number; got 'x'"),
        ("extra", r"line (\d+): expected 4 fields .* got 5"),
    ],
    ids=["too-few", "non-numeric", "too-many"],
)
def test_malformed_lines_name_file_and_line(tmp_path: Path, fmt: str, bad: str,
                                            match: str) -> None:
    path = _write(tmp_path / "bad", fmt)
    lines = path.read_text().splitlines()
    sep = {"tab": "\t", "dat": "::", "csv": ","}[fmt]
    target = 2 if fmt == "csv" else 1  # 0-based index of the 3rd data line
    fields = lines[target + 1].split(sep)
    if bad == "{}\t{}":
        fields = fields[:2]
    elif bad == "rating":
        fields[2] = "x"
    else:
        fields.append("9")
    lines[target + 1] = sep.join(fields)
    path.write_text("\n".join(lines) + "\n")
    line_no = target + 2
    with pytest.raises(ValueError, match=match) as info:
        load_movielens(path)
    assert "'" + str(path) + "'" in str(info.value)
    if bad != "rating":
        assert f"line {line_no}" in str(info.value)
    else:
        assert f"line {line_no}:" in str(info.value)


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.csv"
    p.write_text("")
    with pytest.raises(ValueError, match=r"empty\.csv' is empty"):
        load_movielens(p)


def test_header_only(tmp_path: Path) -> None:
    p = tmp_path / "h.csv"
    p.write_text("userId,movieId,rating,timestamp\n")
    with pytest.raises(ValueError, match="no rating lines"):
        load_movielens(p)


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "x"
    p.write_text("hello world\n")
    with pytest.raises(ValueError, match=r"line 1: not a MovieLens ratings line"):
        load_movielens(p)
    with pytest.raises(FileNotFoundError, match="no such ratings file"):
        load_movielens(tmp_path / "nope.csv")
    with pytest.raises(TypeError, match="`path` must be a file path; got 3"):
        load_movielens(3)


def test_duplicate_pair_names_file(tmp_path: Path) -> None:
    p = _write(tmp_path / "dup.dat", "dat", [*ROWS, ROWS[0]])
    with pytest.raises(ValueError, match=r"dup\.dat'.*duplicate.*user .*196.*item .*242"):
        load_movielens(p)


def test_builtin() -> None:
    r = load_builtin()
    assert r.shape == (610, 9724) and r.nnz == 100836
    assert r.values.min() == 0.5 and r.values.max() == 5.0
    assert load_ratings("builtin").nnz == r.nnz
    movies = load_builtin_movies()
    assert list(movies.columns) == ["item", "title", "genres"]
    assert movies.loc[movies["item"] == 1, "title"].item() == "Toy Story (1995)"
    readme = builtin_path("readme").read_text(encoding="latin-1")
    assert "Usage License" in readme


def test_load_movies_formats(tmp_path: Path) -> None:
    csv = tmp_path / "movies.csv"
    csv.write_text('movieId,title,genres\n1,"Dinner, The (1999)",Comedy\n2,Heat (1995),Action\n',
                   encoding="utf-8")
    dat = tmp_path / "movies.dat"
    dat.write_bytes("1::Caf\xe9 (1999)::Drama\n".encode("latin-1"))
    item = tmp_path / "u.item"
    item.write_bytes("1|Toy Story (1995)|01-Jan-1995||http://x|0|0\n".encode("latin-1"))
    assert load_movies(csv)["title"].tolist() == ["Dinner, The (1999)", "Heat (1995)"]
    assert load_movies(dat)["title"].tolist() == ["Café (1999)"]
    assert load_movies(item)["item"].tolist() == [1]
    bad = tmp_path / "bad.dat"
    bad.write_text("1::A::B\nnothing\n")
    with pytest.raises(ValueError, match=r"bad\.dat', line 2"):
        load_movies(bad)


def test_make_low_rank() -> None:
    r, (P, Q) = make_low_rank(200, 300, 4, density=0.02, noise=0.0, random_state=0)
    assert P.shape == (200, 4) and Q.shape == (4, 300)
    assert r.nnz >= round(0.02 * 200 * 300)
    assert np.all(r.row_counts() > 0) and np.all(r.col_counts() > 0)
    np.testing.assert_allclose(r.values, np.einsum("tk,kt->t", P[r.rows], Q[:, r.cols]))
    r2, _ = make_low_rank(200, 300, 4, density=0.02, noise=0.0, random_state=0)
    np.testing.assert_array_equal(r.values, r2.values)
    s, _ = make_low_rank(50, 40, 2, density=0.3, noise=0.1, random_state=1, scale=(0.5, 5.0))
    assert s.values.min() == pytest.approx(0.5) and s.values.max() == pytest.approx(5.0)


def test_make_low_rank_large_sparse_is_cheap() -> None:
    r, _ = make_low_rank(100_000, 50_000, 2, density=1e-6, random_state=0, cover=False)
    assert r.nnz == 5000


@pytest.mark.parametrize(
    ("kw", "match"),
    [({"density": 0.0}, "`density` must be > 0.0"), ({"noise": -1.0}, "`noise` must be >= 0.0"),
     ({"scale": (5, 1)}, "`scale` must be a pair")],
    ids=["density", "noise", "scale"],
)
def test_make_low_rank_invalid(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_low_rank(5, 5, 1, **kw)


@pytest.mark.slow
def test_wheel_ships_builtin_data(tmp_path: Path) -> None:
    """`pip wheel` includes the vendored data and its README (license)."""
    import subprocess
    import sys
    import zipfile

    root = Path(__file__).resolve().parents[1]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(root), "--no-deps",
         "-q", "-w", str(tmp_path)],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("lsqmf-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("ratings.csv.gz", "movies.csv.gz", "README.txt"):
        assert f"lsqmf/data/ml-latest-small/{name}" in names


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("userId,movieId,rating,timestamp\n1,10,4.0,1\n1,20,3.5\n", 3),  # missing timestamp
        ("userId,movieId,rating,timestamp\n1,10,4.0\n1,20,3.5\n", 2),  # every line short
        ("userId,movieId,rating\n1,10,4.0,1\n", 2),  # more fields than the header
    ],
    ids=["one-short-line", "all-short", "longer-than-header"],
)
def test_lines_must_have_the_headers_field_count(tmp_path: Path, text: str, line: int) -> None:
    path = tmp_path / "ratings.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"line {line}: expected \d fields"):
        load_movielens(path)


def test_windows_line_endings(tmp_path: Path) -> None:
    path = tmp_path / "ratings.dat"
    path.write_bytes(b"1::10::4.5::97\r\n1::20::3::97\r\n2::10::5::97\r\n")
    r = load_movielens(path)
    assert r.nnz == 3 and sorted(r.values.tolist()) == [3.0, 4.5, 5.0]
