"""Rating data: MovieLens files (every format), the built-in latest-small set, synthetic data.

MovieLens formats, detected from the file's content (not its name)
------------------------------------------------------------------
=================================== ============ ============================================
release                             file         line format
=================================== ============ ============================================
ml-100k                             ``u.data``   ``user<TAB>item<TAB>rating<TAB>timestamp``
ml-1m, ml-10m                       ``ratings.dat`` ``user::item::rating::timestamp``
ml-latest, ml-latest-small, ml-25m  ``ratings.csv`` header ``userId,movieId,rating,timestamp``
=================================== ============ ============================================

Gzip-compressed files are read transparently. Raw user and item ids are mapped to row and
column indices (sorted ids) and kept in the :class:`~lsqmf.Ratings` id maps. Blank lines are
skipped; any other malformed line (wrong number of fields, a rating that is not a finite
number, an empty id) raises ``ValueError`` naming the file and the line number.

The MovieLens latest-small set (100,836 ratings of 9,742 movies by 610 users; GroupLens,
University of Minnesota) ships with lsqmf under ``lsqmf/data/ml-latest-small/`` with its
README, which states its license (research use; redistribution under the same conditions; no
commercial use without permission): :func:`load_builtin` and :func:`load_builtin_movies`.
"""

from __future__ import annotations

import gzip
import io
import os
import warnings
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._validation import check_choice, check_float, check_int, check_random_state, describe
from .ratings import Ratings

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "BUILTIN_DATASETS",
    "BUILTIN_NAME",
    "builtin_path",
    "detect_format",
    "load_builtin",
    "load_builtin_movies",
    "load_movielens",
    "load_movies",
    "load_ratings",
    "make_low_rank",
]

#: The word that names the built-in data set where a ratings path is expected (CLI).
BUILTIN_NAME = "builtin"

_SEPARATORS = {"tab": "\t", "dat": "::", "csv": ","}


def builtin_path(kind: str = "ratings") -> Path:
    """Path of the vendored ``ratings.csv.gz`` or ``movies.csv.gz`` (or ``README.txt``)."""
    names = {"ratings": "ratings.csv.gz", "movies": "movies.csv.gz", "readme": "README.txt"}
    if kind not in names:
        raise ValueError(f"`kind` must be one of {sorted(names)}; got {kind!r}.")
    return Path(str(resources.files("lsqmf") / "data" / "ml-latest-small" / names[kind]))


def _check_path(path: Any) -> Path:
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"`path` must be a file path; got {describe(path)}.")
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such ratings file: {str(p)!r}")
    return p


def _open_text(path: Path, encoding: str = "latin-1") -> io.TextIOBase:
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding=encoding, newline="")
    return open(path, encoding=encoding, newline="")


def _lines(path: Path, encoding: str = "latin-1") -> Iterator[tuple[int, str]]:
    with _open_text(path, encoding) as fh:
        for lineno, line in enumerate(fh, start=1):
            yield lineno, line.rstrip("\r\n")


def detect_format(path: Any) -> str:
    """The MovieLens ratings format of a file: ``'tab'``, ``'dat'`` or ``'csv'``.

    Decided from the first non-blank line: ``::`` separators, tab separators, or commas.

    Raises
    ------
    ValueError
        If the file is empty or its first line matches no format.
    """
    p = _check_path(path)
    for lineno, line in _lines(p):
        if not line.strip():
            continue
        if "::" in line:
            return "dat"
        if "\t" in line:
            return "tab"
        if "," in line:
            return "csv"
        raise ValueError(
            f"{str(p)!r}, line {lineno}: not a MovieLens ratings line (expected fields "
            f"separated by '::', tabs or commas); got {line[:80]!r}."
        )
    raise ValueError(f"{str(p)!r} is empty: there is no rating to read.")


def _has_header(path: Path, fmt: str) -> bool:
    if fmt != "csv":
        return False
    for _, line in _lines(path):
        if line.strip():
            first = line.split(",")[2].strip() if line.count(",") >= 2 else ""
            try:
                float(first)
            except ValueError:
                return True
            return False
    return False


def _split(line: str, fmt: str) -> list[str]:
    return line.split(_SEPARATORS[fmt])


def _first_bad_line(path: Path, fmt: str, header: bool) -> ValueError:
    """Scan the file line by line and describe its first malformed line."""
    n_fields: int | None = None
    seen = False
    n_data = 0
    for lineno, line in _lines(path):
        if header and not seen and line.strip():
            seen = True
            n_fields = len(_split(line, fmt))  # every data line has the header's fields
            continue
        if not line.strip():
            continue
        seen = True
        n_data += 1
        parts = _split(line, fmt)
        if n_fields is None:
            n_fields = len(parts)
            if n_fields not in (3, 4):
                return ValueError(
                    f"{str(path)!r}, line {lineno}: expected 3 or 4 fields (user, item, rating"
                    f"[, timestamp]) separated by {_SEPARATORS[fmt]!r}; got {len(parts)} in "
                    f"{line[:80]!r}."
                )
        if len(parts) != n_fields:
            return ValueError(
                f"{str(path)!r}, line {lineno}: expected {n_fields} fields separated by "
                f"{_SEPARATORS[fmt]!r} (as on the first line); got {len(parts)} in "
                f"{line[:80]!r}."
            )
        if not parts[0].strip() or not parts[1].strip():
            return ValueError(f"{str(path)!r}, line {lineno}: empty user or item id in {line!r}.")
        try:
            value = float(parts[2])
        except ValueError:
            value = float("nan")
        if not np.isfinite(value):
            return ValueError(
                f"{str(path)!r}, line {lineno}: the rating must be a finite number; got "
                f"{parts[2]!r}."
            )
    if n_data == 0:
        return ValueError(f"{str(path)!r} has no rating lines: there is no rating to read.")
    return ValueError(f"{str(path)!r}: could not parse the file as MovieLens {fmt!r} ratings.")


def _read_frame(path: Path, fmt: str, header: bool) -> pd.DataFrame | None:
    """Fast parse with pandas; None when the file needs the line-by-line diagnosis."""
    import pandas as pd

    with open(path, "rb") as fh:
        compression = "gzip" if fh.read(2) == b"\x1f\x8b" else None
    try:
        if fmt == "dat":  # 'a::b::c::d' split on ':' gives empty fields at odd positions
            raw = pd.read_csv(path, sep=":", header=None, dtype=str, engine="c",
                              compression=compression, encoding="latin-1")
            if raw.shape[1] not in (5, 7) or raw.iloc[:, 1::2].notna().to_numpy().any():
                return None
            raw = raw.iloc[:, 0::2]
        else:
            with warnings.catch_warnings():
                # a line longer than the header: pandas would take the first field as the
                # index and shift the others (ParserWarning with index_col=False)
                warnings.simplefilter("error", pd.errors.ParserWarning)
                raw = pd.read_csv(path, sep=_SEPARATORS[fmt], header=0 if header else None,
                                  dtype=str, engine="c", compression=compression,
                                  encoding="latin-1", index_col=False)
    except (pd.errors.ParserError, pd.errors.ParserWarning, pd.errors.EmptyDataError,
            UnicodeDecodeError):
        return None
    if raw.shape[1] not in (3, 4) or len(raw) == 0:
        return None
    if raw.isna().to_numpy().any():  # a short line (pandas pads it with NaN): diagnose it
        return None
    users, items = raw.iloc[:, 0].str.strip(), raw.iloc[:, 1].str.strip()
    ratings = pd.to_numeric(raw.iloc[:, 2], errors="coerce")
    if raw.iloc[:, :3].isna().to_numpy().any() or not np.all(np.isfinite(ratings)):
        return None
    if (users == "").any() or (items == "").any():
        return None
    users = _maybe_int(users)
    items = _maybe_int(items)
    return pd.DataFrame({"user": users, "item": items, "rating": ratings.astype(np.float64)})


def _maybe_int(column: pd.Series) -> pd.Series:
    import pandas as pd

    as_int = pd.to_numeric(column, errors="coerce")
    if as_int.notna().all() and np.all(as_int == np.round(as_int)):
        return as_int.astype(np.int64)
    return column


def load_movielens(path: Any) -> Ratings:
    """Read a MovieLens ratings file of any release into :class:`~lsqmf.Ratings`.

    Parameters
    ----------
    path : str or path-like
        ``u.data`` (ml-100k), ``ratings.dat`` (ml-1m, ml-10m) or ``ratings.csv`` (ml-latest,
        ml-latest-small, ml-25m), possibly gzip-compressed; the format is detected from the
        content (:func:`detect_format`).

    Returns
    -------
    Ratings
        Rows are users and columns items, indexed by sorted raw id; ``row_ids`` and
        ``col_ids`` hold the raw ids (int where the ids are integers).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        For an empty file or a malformed line (the message names the file and line number),
        or a (user, item) pair rated twice.

    Examples
    --------
    >>> from lsqmf.datasets import builtin_path, load_movielens
    >>> load_movielens(builtin_path())
    Ratings(shape=(610, 9724), nnz=100836, density=0.017, with id maps)
    """
    p = _check_path(path)
    fmt = detect_format(p)
    header = _has_header(p, fmt)
    frame = _read_frame(p, fmt, header)
    if frame is None:
        raise _first_bad_line(p, fmt, header)
    try:
        return Ratings.from_frame(frame)
    except ValueError as err:
        raise ValueError(f"{str(p)!r}: {err}") from err


def load_ratings(source: Any) -> Ratings:
    """A ratings file path (any MovieLens format) or the word ``'builtin'`` -> Ratings."""
    if isinstance(source, str) and source == BUILTIN_NAME:
        return load_builtin()
    return load_movielens(source)


#: Names of the built-in data sets.
BUILTIN_DATASETS = ("ml-latest-small",)


def load_builtin(name: str = "ml-latest-small") -> Ratings:
    """The vendored MovieLens latest-small ratings (610 users, 9,724 rated movies).

    See ``lsqmf/data/ml-latest-small/README.txt`` for the data set's license and citation.

    Parameters
    ----------
    name : {'ml-latest-small'}, default='ml-latest-small'
        The built-in data set (only one ships with lsqmf).
    """
    check_choice("name", name, BUILTIN_DATASETS)
    return load_movielens(builtin_path("ratings"))


def load_builtin_movies() -> pd.DataFrame:
    """Titles and genres of the vendored MovieLens latest-small set (see :func:`load_movies`)."""
    return load_movies(builtin_path("movies"))


def load_movies(path: Any) -> pd.DataFrame:
    """Read MovieLens movie titles: ``movies.csv``, ``movies.dat`` or ``u.item``.

    Parameters
    ----------
    path : str or path-like
        ``movies.csv`` (ml-latest, ml-25m; UTF-8, header ``movieId,title,genres``),
        ``movies.dat`` (ml-1m, ml-10m; ``id::title::genres``, latin-1) or ``u.item``
        (ml-100k; ``|``-separated, latin-1), possibly gzip-compressed.

    Returns
    -------
    pandas.DataFrame
        Columns ``item`` (the raw movie id), ``title`` and ``genres`` (``''`` for ``u.item``).

    Raises
    ------
    ValueError
        For an empty file or a line without an id and a title (file and line number named).
    """
    import csv

    import pandas as pd

    p = _check_path(path)
    first = ""
    for _, line in _lines(p, "latin-1"):
        if line.strip():
            first = line
            break
    if not first:
        raise ValueError(f"{str(p)!r} is empty: there is no movie to read.")
    records: list[tuple[Any, str, str]] = []
    if first.lower().startswith("movieid,"):
        with _open_text(p, "utf-8") as fh:
            reader = csv.reader(fh)
            for lineno, row in enumerate(reader, start=1):
                if lineno == 1 or not row:
                    continue
                if len(row) < 2 or not row[0].strip():
                    raise ValueError(
                        f"{str(p)!r}, line {reader.line_num}: expected movieId,title,genres; "
                        f"got {row!r}."
                    )
                records.append((row[0].strip(), row[1], row[2] if len(row) > 2 else ""))
    else:
        sep = "::" if "::" in first else "|"
        for lineno, line in _lines(p, "latin-1"):
            if not line.strip():
                continue
            parts = line.split(sep)
            if len(parts) < 2 or not parts[0].strip():
                raise ValueError(
                    f"{str(p)!r}, line {lineno}: expected id{sep}title{sep}...; got "
                    f"{line[:80]!r}."
                )
            genres = parts[2] if sep == "::" and len(parts) > 2 else ""
            records.append((parts[0].strip(), parts[1], genres))
    if not records:
        raise ValueError(f"{str(p)!r} has no movie lines.")
    frame = pd.DataFrame(records, columns=["item", "title", "genres"])
    frame["item"] = _maybe_int(frame["item"])
    return frame


def make_low_rank(
    n_rows: int,
    n_cols: int,
    rank: int,
    *,
    density: float = 0.1,
    noise: float = 0.0,
    random_state: int | np.random.Generator | None = None,
    scale: tuple[float, float] | None = None,
    cover: bool = True,
) -> tuple[Ratings, tuple[np.ndarray, np.ndarray]]:
    r"""A random, partially observed, exactly low-rank (plus noise) matrix.

    The truth is :math:`P Q` with ``P`` of shape ``(n_rows, rank)`` and ``Q`` of shape
    ``(rank, n_cols)``, entries standard normal divided by :math:`\sqrt{\mathrm{rank}}` (so
    the entries of :math:`PQ` have unit variance). ``round(density * n_rows * n_cols)``
    distinct entries are observed, drawn without building an ``n_rows x n_cols`` array (memory
    and time are linear in the number of observed entries), and observed with additive
    Gaussian noise of standard deviation ``noise``.

    Parameters
    ----------
    n_rows, n_cols, rank : int
    density : float, default=0.1
        Fraction of observed entries, in (0, 1].
    noise : float, default=0.0
    random_state : int, numpy.random.Generator or None
    scale : (low, high), optional
        Map the observed values affinely onto ``[low, high]`` (e.g. ``(0.5, 5.0)`` for
        MovieLens-like stars) using their min and max; the returned factors stay unscaled.
    cover : bool, default=True
        Also observe one random entry in every row and column that has none.

    Returns
    -------
    ratings : Ratings
    factors : (P, Q)
        The true factors.

    Examples
    --------
    >>> from lsqmf.datasets import make_low_rank
    >>> ratings, (P, Q) = make_low_rank(100, 80, 3, density=0.05, random_state=0)
    >>> ratings.shape, P.shape, Q.shape
    ((100, 80), (100, 3), (3, 80))
    """
    n_rows = check_int("n_rows", n_rows, min_value=1)
    n_cols = check_int("n_cols", n_cols, min_value=1)
    rank = check_int("rank", rank, min_value=1)
    density = check_float("density", density, min_value=0.0, max_value=1.0, min_inclusive=False)  # type: ignore[assignment]
    noise = check_float("noise", noise, min_value=0.0)  # type: ignore[assignment]
    if not isinstance(cover, bool):
        raise TypeError(f"`cover` must be True or False; got {describe(cover)}.")
    if scale is not None:
        if not isinstance(scale, tuple | list) or len(scale) != 2 or not scale[0] < scale[1]:
            raise ValueError(f"`scale` must be a pair (low, high) with low < high; got {scale!r}.")
    rng = check_random_state(random_state)
    P = rng.standard_normal((n_rows, rank)) / np.sqrt(rank)
    Q = rng.standard_normal((rank, n_cols)) / np.sqrt(rank)
    total = n_rows * n_cols
    nnz = max(1, round(density * total))
    flat = rng.choice(total, size=nnz, replace=False)
    rows, cols = np.divmod(flat, n_cols)
    if cover:
        missing_r = np.setdiff1d(np.arange(n_rows), rows)
        missing_c = np.setdiff1d(np.arange(n_cols), cols)
        extra_r = np.concatenate([missing_r, rng.integers(0, n_rows, len(missing_c))])
        extra_c = np.concatenate([rng.integers(0, n_cols, len(missing_r)), missing_c])
        keys = np.unique(np.concatenate([flat, extra_r * n_cols + extra_c]))
        rows, cols = np.divmod(keys, n_cols)
    values = np.einsum("tk,kt->t", P[rows], Q[:, cols])
    if noise:
        values = values + noise * rng.standard_normal(len(values))
    if scale is not None:
        lo, hi = float(scale[0]), float(scale[1])
        vmin, vmax = float(values.min()), float(values.max())
        span = vmax - vmin if vmax > vmin else 1.0
        values = lo + (values - vmin) * (hi - lo) / span
    ratings = Ratings(rows, cols, values, (n_rows, n_cols))
    return ratings, (P, Q)
