"""Rating data from files: one reader for every input file, MovieLens formats, built-in data.

Synthetic generators live in :mod:`lsqmf.data.synthetic`.

:func:`read_input` is the one reader behind every ``lsqmf`` subcommand. It decides what a file
holds from its content (not its name):

================================ ==================================================================
content                          read as
================================ ==================================================================
``\\x93NUMPY`` (``.npy``)         a dense matrix (NaN, or ``missing``, marks unobserved entries)
zip (``.npz``)                   a ``scipy.sparse.save_npz`` matrix, or one dense array
``MATLAB 5.0 MAT-file`` (``.mat``) a named matrix (``matrix=``) and optional visibility mask
                                 (``mask=``) of a MATLAB v5/v7 file (``scipy.io.loadmat``);
                                 v7.3 (HDF5) files are refused with a message saying so
gzip                             its decompressed content, by the rules of this table
text                             ratings lines (the MovieLens formats below); a dense matrix of
                                 numbers only with ``dense=True`` (``--dense`` on the CLI)
================================ ==================================================================

MovieLens formats, detected from the first non-blank line
---------------------------------------------------------
=================================== =============== ============================================
release                             file            line format
=================================== =============== ============================================
ml-100k                             ``u.data``      ``user<TAB>item<TAB>rating<TAB>timestamp``
ml-1m, ml-10m                       ``ratings.dat`` ``user::item::rating::timestamp``
ml-latest, ml-latest-small, ml-25m  ``ratings.csv`` header ``userId,movieId,rating,timestamp``
=================================== =============== ============================================

Ids
    Id fields are read as text, never through a float. When every id of a column is a canonical
    integer (``0``, ``-12``, ``196``; no sign ``+``, no leading zeros, no ``1.0``) that fits in
    int64, the ids become int64; otherwise every id of the column stays the exact string of the
    file (so ``100000000000000000001`` and ``100000000000000000002`` stay two users, and
    ``007`` is not ``7``). Raw ids are mapped to row and column indices in sorted order and kept
    in the :class:`~lsqmf.Ratings` id maps.
Text
    UTF-8 (a byte-order mark is dropped; UTF-16 with a byte-order mark is decoded), falling back
    to latin-1 for files that are not valid UTF-8. A file with NUL bytes is binary and refused
    with a message saying what it looks like.
Header
    ``header=None`` (default) reads the first non-blank line as a header only when its rating
    field (the third) is not a number and its user and item fields are not both numbers; the
    choice is logged (logger ``lsqmf.data.readers``, level INFO). ``header=True`` / ``False`` forces
    it. A first line whose ids are numbers but whose rating is not is a malformed data line,
    not a header, and is reported as such (no data row is dropped silently).
Errors
    Blank lines are skipped; any other malformed line (wrong number of fields, a rating that is
    not a finite number, an empty id, a (user, item) pair rated twice) raises ``ValueError``
    naming the file and the line number; a truncated or corrupt gzip file, a binary file given
    as text and an unreadable ``.npy``/``.npz`` raise ``ValueError`` naming the file.

The MovieLens latest-small set (100,836 ratings of 9,742 movies by 610 users; GroupLens,
University of Minnesota) ships with lsqmf under ``lsqmf/data/ml-latest-small/`` with its
README, which states its license (research use; redistribution under the same conditions; no
commercial use without permission): :func:`load_builtin` and :func:`load_builtin_movies`.
"""

from __future__ import annotations

import gzip
import logging
import math
import re
import zipfile
import zlib
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._validation import check_choice, check_file, check_float, describe
from .ratings import Ratings

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

__all__ = [
    "BUILTIN_DATASETS",
    "BUILTIN_NAME",
    "INPUT_FORMATS",
    "builtin_path",
    "detect_format",
    "load_builtin",
    "load_builtin_movies",
    "load_movielens",
    "load_movies",
    "load_ratings",
    "parse_ids",
    "read_input",
    "read_text_lines",
]


#: The word that names the built-in data set where a ratings path is expected (CLI).
BUILTIN_NAME = "builtin"


#: Values of ``format`` in :func:`read_input`.
INPUT_FORMATS = ("auto", "csv", "tab", "dat", "npy", "npz", "mat")


_SEPARATORS = {"tab": "\t", "dat": "::", "csv": ","}


_GZIP_MAGIC = b"\x1f\x8b"


_NPY_MAGIC = b"\x93NUMPY"


_ZIP_MAGIC = b"PK\x03\x04"


_EMPTY_ZIP = b"PK\x05\x06"


_MAT_MAGIC = b"MATLAB"  # the text header of MATLAB v5, v7 and v7.3 files


_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"  # at offset 0, 512, 1024, ... (v7.3 at 512)


_QUOTE = 80  # characters of a bad line quoted in an error message


_CANONICAL_INT = re.compile(r"0|-?[1-9][0-9]*")


_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def builtin_path(kind: str = "ratings") -> Path:
    """Path of the vendored ``ratings.csv.gz`` or ``movies.csv.gz`` (or ``README.txt``)."""
    names = {"ratings": "ratings.csv.gz", "movies": "movies.csv.gz", "readme": "README.txt"}
    if kind not in names:
        raise ValueError(f"`kind` must be one of {sorted(names)}; got {kind!r}.")
    return Path(str(resources.files("lsqmf") / "data" / "ml-latest-small" / names[kind]))


def _check_path(path: Any, what: str = "ratings") -> Path:
    return check_file(path, what)


def _quote(line: str) -> str:
    return repr(line if len(line) <= _QUOTE else line[:_QUOTE] + "...")


# ------------------------------------------------------------------------------- raw bytes
def _read_bytes(path: Path) -> bytes:
    """The file's content, gunzipped when it is gzip-compressed."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ValueError(f"{str(path)!r}: cannot read the file ({err.strerror or err}).") from err
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as err:
            raise ValueError(
                f"{str(path)!r} is a truncated or corrupt gzip file ({err}); re-download or "
                "re-compress it."
            ) from err
    return data


def _binary_kind(head: bytes) -> str | None:
    """What a binary file looks like, or None for text."""
    if head.startswith(_NPY_MAGIC):
        return "a NumPy .npy file"
    if head.startswith(_MAT_MAGIC) and b"MAT-file" in head[:128]:
        return "a MATLAB .mat file"
    if head.startswith((_ZIP_MAGIC, _EMPTY_ZIP)):
        return "a zip archive (e.g. an .npz file)"
    if head.startswith(_GZIP_MAGIC):
        return "a gzip file inside a gzip file"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return None  # UTF-16 with a byte-order mark
    if b"\x00" in head:
        return "a binary file"
    return None


def _decode(data: bytes, path: Path) -> str:
    """Text of a file: BOM dropped, UTF-8 or UTF-16 (with BOM), else latin-1."""
    kind = _binary_kind(data[:8192])
    if kind is not None:
        raise ValueError(
            f"{str(path)!r} is {kind}, not a text file; ratings text is expected here (.npy and "
            ".npz inputs are read by lsqmf.data.readers.read_input and every lsqmf subcommand)."
        )
    if data.startswith(b"\xef\xbb\xbf"):
        logger.info("%s: UTF-8 byte-order mark dropped", path)
        data = data[3:]
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as err:
            raise ValueError(f"{str(path)!r}: invalid UTF-16 text ({err}).") from err
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        logger.info("%s: not valid UTF-8; read as latin-1", path)
        return data.decode("latin-1")


def _text_lines(path: Path) -> list[str]:
    """The file's lines (gunzipped, decoded), without line endings; index + 1 is the line."""
    return _split_lines(_decode(_read_bytes(path), path))


def read_text_lines(path: Any, *, what: str = "text") -> list[str]:
    """The lines of a small text input file, opened and checked like :func:`read_input`.

    Parameters
    ----------
    path : str or path-like
        A text file, optionally gzip-compressed (UTF-8, UTF-16 with a byte-order mark, else
        latin-1; any line endings).
    what : str, default='text'
        What the file holds, for error messages (e.g. ``'pairs'``).

    Returns
    -------
    list of str
        The lines without line endings; index + 1 is the line number.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        For a directory, a pipe or device (never read: it could block), an unreadable,
        truncated or corrupt file, or a binary file (.npy, zip, NUL bytes).
    TypeError
        If ``path`` is not a file path.
    """
    p = _check_path(path, what)
    data = _read_bytes(p)
    kind = _binary_kind(data[:8192])
    if kind is not None:
        raise ValueError(f"{str(p)!r} is {kind}, not a text file; a {what} file is text.")
    return _split_lines(_decode(data, p))


def _split_lines(text: str) -> list[str]:
    if "\r" in text:  # Windows (CRLF) and classic Mac (CR) line endings
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


# ------------------------------------------------------------------------------- ids
def _is_number(text: str) -> bool:
    return _NUMBER.fullmatch(text.strip()) is not None


def parse_ids(ids: Any) -> np.ndarray:
    """Raw ids read as text -> int64 when every one is a canonical integer in int64, else str.

    Parameters
    ----------
    ids : array_like of str

    Returns
    -------
    ndarray
        ``int64`` when every id matches ``0|-?[1-9][0-9]*`` and fits in int64; otherwise an
        object array of the unchanged strings. No id ever goes through a float, so the
        conversion is exact and reversible (``str(int_id)`` gives back the text).

    Examples
    --------
    >>> parse_ids(["196", "-3"]).tolist()
    [196, -3]
    >>> parse_ids(["100000000000000000001", "100000000000000000002"]).tolist()
    ['100000000000000000001', '100000000000000000002']
    >>> parse_ids(["7", "007"]).tolist()
    ['7', '007']
    """
    arr = np.asarray(ids, dtype=object)
    texts = [str(v) for v in arr.ravel()]
    if texts and all(_CANONICAL_INT.fullmatch(t) for t in texts):
        if all(len(t.lstrip("-")) <= 18 for t in texts):
            return np.array([int(t) for t in texts], dtype=np.int64).reshape(arr.shape)
        values = [int(t) for t in texts]
        info = np.iinfo(np.int64)
        if all(info.min <= v <= info.max for v in values):
            return np.array(values, dtype=np.int64).reshape(arr.shape)
        logger.info(
            "ids beyond int64 (e.g. %s): every id of the column kept as a string",
            next(t for t, v in zip(texts, values, strict=True) if not info.min <= v <= info.max),
        )
    out = np.empty(arr.shape, dtype=object)
    out.ravel()[:] = texts if arr.size else []
    return out


def _index_ids(column: Any) -> tuple[np.ndarray, np.ndarray]:
    """Codes (indices into the sorted unique ids) and the sorted unique ids, parsed."""
    # codes in order of first appearance, by a dict (pandas.factorize costs its 0.2 s import)
    first: dict[Any, int] = {}
    codes = np.fromiter((first.setdefault(v, len(first)) for v in column), dtype=np.int64,
                        count=len(column))
    ids = parse_ids(np.array(list(first), dtype=object))
    order = np.argsort(ids, kind="stable")  # ints numerically, strings by code point
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank[np.asarray(codes, dtype=np.int64)], ids[order]


# ------------------------------------------------------------------------------- ratings text
def detect_format(path: Any) -> str:
    """The MovieLens ratings format of a file: ``'tab'``, ``'dat'`` or ``'csv'``.

    Decided from the first non-blank line: ``::`` separators, tab separators, or commas.

    Raises
    ------
    ValueError
        If the file is empty, binary, or its first line matches no format.
    """
    p = _check_path(path)
    return _detect(_text_lines(p), p)


def _detect(lines: list[str], path: Path) -> str:
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if "::" in line:
            return "dat"
        if "\t" in line:
            return "tab"
        if "," in line:
            return "csv"
        raise ValueError(
            f"{str(path)!r}, line {lineno}: not a MovieLens ratings line (expected fields "
            f"separated by '::', tabs or commas); got {_quote(line)}."
        )
    raise ValueError(f"{str(path)!r} is empty: there is no rating to read.")


def _looks_like_header(fields: list[str]) -> bool:
    """A first line is a header when its rating field is not a number and its ids are not
    both numbers (a line ``1,2,x`` is a malformed data line)."""
    fields = [_unquote(f) for f in fields]  # "1","1","3.5" is data, not a header
    if len(fields) < 3:
        return not any(_is_number(f) for f in fields)
    rating = fields[2].strip()
    try:
        float(rating)
    except ValueError:
        return not (_is_number(fields[0]) and _is_number(fields[1]))
    return False


def _unquote(field: str) -> str:
    """A CSV field without the double quotes around it (``"1"`` -> ``1``)."""
    field = field.strip()
    if len(field) >= 2 and field[0] == field[-1] == '"':
        return field[1:-1].replace('""', '"').strip()
    return field


def _bad(path: Path, lineno: int, message: str) -> ValueError:
    return ValueError(f"{str(path)!r}, line {lineno}: {message}")


def _trimmed(parts: list[str], n_fields: int = 3) -> list[str]:
    """``parts`` without trailing blank fields beyond the first ``n_fields`` (a trailing
    delimiter or a trailing tab, as pandas and Surprise read them): only empty or
    whitespace fields go, never data."""
    end = len(parts)
    while end > n_fields and not parts[end - 1].strip():
        end -= 1
    return parts if end == len(parts) else parts[:end]


def _log_trimmed(path: Path, count: int, first: int) -> None:
    """One line for the lenient reading: the file, how many lines and the first one."""
    if count:
        logger.warning(
            "%s: %d line(s) end with an empty field (a trailing delimiter or whitespace), "
            "first on line %d; read without it (no data dropped)", path, count, first)


def _parse_ratings(
    lines: list[str], path: Path, fmt: str, header: bool | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(line numbers, user texts, item texts, ratings) of the data lines, checked."""
    sep = _SEPARATORS[fmt]
    numbered = [(i + 1, line) for i, line in enumerate(lines) if line.strip()]
    if not numbered:
        raise ValueError(f"{str(path)!r} is empty: there is no rating to read.")
    header = _decide_header(numbered[0], path, sep, header)
    numbered, n_fields, where = _data_field_count(numbered, path, sep, header)
    return _parse_data_lines(numbered, path, sep, n_fields, where, header)


def _decide_header(first_line: tuple[int, str], path: Path, sep: str, header: bool | None) -> bool:
    """``header``, or (when None) whether the first non-blank line looks like a header."""
    if header is not None:
        return header
    first_no, first = first_line
    header = _looks_like_header(first.split(sep))
    if header:
        logger.info(
            "%s: line %d %s read as a header (its rating field is not a number); "
            "pass header=False to read it as data",
            path,
            first_no,
            _quote(first),
        )
    else:
        logger.debug("%s: no header line", path)
    return header


def _data_field_count(
    numbered: list[tuple[int, str]], path: Path, sep: str, header: bool
) -> tuple[list[tuple[int, str]], int, str]:
    """(data lines, fields per line, where that count comes from), the header dropped.

    The count is the header's when there is one, else the first data line's; either must be
    3 or 4 (user, item, rating[, timestamp]).
    """
    n_fields: int | None = None
    where = ""
    if header:
        first_no, first = numbered[0]
        first_fields = _trimmed(first.split(sep))
        if len(first_fields) not in (3, 4):
            raise _bad(
                path,
                first_no,
                f"expected a header of 3 or 4 fields (user, item, rating[, timestamp]) "
                f"separated by {sep!r}; got {len(first_fields)} in {_quote(first)}.",
            )
        n_fields = len(first_fields)
        where = f" (as in the header on line {first_no})"
        numbered = numbered[1:]
    if not numbered:
        raise ValueError(f"{str(path)!r} has no rating lines: there is no rating to read.")
    if n_fields is None:
        lineno, line = numbered[0]
        n_fields = len(_trimmed(line.split(sep)))
        where = f" (as on line {lineno})"
        if n_fields not in (3, 4):
            hint = ""
            if n_fields > 4 and all(_is_number(f) or not f.strip() for f in line.split(sep)):
                hint = " (a dense matrix of numbers? read it with dense=True, --dense on the CLI)"
            raise _bad(
                path,
                lineno,
                f"expected 3 or 4 fields (user, item, rating[, timestamp]) separated by "
                f"{sep!r}; got {n_fields} in {_quote(line)}{hint}.",
            )
    return numbered, n_fields, where


def _parse_data_lines(
    numbered: list[tuple[int, str]],
    path: Path,
    sep: str,
    n_fields: int,
    where: str,
    header: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(line numbers, user texts, item texts, ratings) of the data lines, each checked."""
    linenos = np.empty(len(numbered), dtype=np.int64)
    users: list[str] = []
    items: list[str] = []
    ratings = np.empty(len(numbered), dtype=np.float64)
    n_trimmed = first_trimmed = 0
    for t, (lineno, line) in enumerate(numbered):
        parts = line.split(sep)
        if len(parts) > n_fields and not "".join(parts[n_fields:]).strip():
            n_trimmed += 1  # trailing delimiter(s): empty fields only, no data dropped
            first_trimmed = first_trimmed or lineno
            parts = parts[:n_fields]
        if len(parts) != n_fields:
            raise _bad(
                path,
                lineno,
                f"expected {n_fields} fields separated by {sep!r}{where}; "
                f"got {len(parts)} in {_quote(line)}.",
            )
        user, item, text = parts[0].strip(), parts[1].strip(), parts[2].strip()
        if '"' in line:  # quoted CSV fields
            user, item, text = _unquote(user), _unquote(item), _unquote(text)
        if not user or not item:
            raise _bad(path, lineno, f"empty user or item id in {_quote(line)}.")
        try:
            # _is_number(text) without its call and strip (text is stripped)
            value = float(text) if _NUMBER.fullmatch(text) is not None else float("nan")
        except ValueError:  # pragma: no cover - the pattern only admits floats
            value = float("nan")
        if not math.isfinite(value):  # a Python float: math's test is 10x numpy's
            hint = ""
            if t == 0 and not header:
                hint = " (if this line is a header, pass header=True)"
            raise _bad(path, lineno, f"the rating must be a finite number; got {text!r}{hint}.")
        linenos[t] = lineno
        users.append(user)
        items.append(item)
        ratings[t] = value
    _log_trimmed(path, n_trimmed, first_trimmed)
    return linenos, np.array(users, dtype=object), np.array(items, dtype=object), ratings


def _ratings_from_lines(lines: list[str], path: Path, fmt: str, header: bool | None) -> Ratings:
    linenos, users, items, values = _parse_ratings(lines, path, fmt, header)
    rows, row_ids = _index_ids(users)
    cols, col_ids = _index_ids(items)
    key = rows * len(col_ids) + cols
    order = np.argsort(key, kind="stable")
    same = np.flatnonzero(key[order][1:] == key[order][:-1])
    if same.size:
        pairs = [(int(order[s]), int(order[s + 1])) for s in same]
        a, b = min(pairs, key=lambda ab: linenos[ab[1]])
        raise _bad(
            path,
            int(linenos[b]),
            f"duplicate (user, item) pair: user {users[b]!r}, item {items[b]!r} was "
            f"already rated on line {int(linenos[a])} ({same.size} duplicate pair(s) in "
            "all); aggregate them (e.g. keep the last or the mean) first.",
        )
    return Ratings(
        rows, cols, values, (len(row_ids), len(col_ids)), row_ids=row_ids, col_ids=col_ids
    )


def load_movielens(path: Any, *, format: str = "auto", header: bool | None = None) -> Ratings:
    """Read a ratings text file of any MovieLens release into :class:`~lsqmf.Ratings`.

    Parameters
    ----------
    path : str or path-like
        ``u.data`` (ml-100k), ``ratings.dat`` (ml-1m, ml-10m) or ``ratings.csv`` (ml-latest,
        ml-latest-small, ml-25m), or any file of ``user, item, rating[, timestamp]`` lines in
        one of these layouts, possibly gzip-compressed.
    format : {'auto', 'csv', 'tab', 'dat'}, default='auto'
        The separator layout; ``'auto'`` detects it from the content (:func:`detect_format`).
    header : bool or None, default=None
        Whether the first non-blank line is a header; None decides (see the module docstring)
        and logs the decision.

    Returns
    -------
    Ratings
        Rows are users and columns items, indexed by sorted raw id; ``row_ids`` and
        ``col_ids`` hold the raw ids (int64 where every id of the column is a canonical
        integer that fits, else the exact strings).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        For an empty, binary or corrupt file, or a malformed line (the message names the file
        and line number), or a (user, item) pair rated twice (both lines named).

    Examples
    --------
    >>> from lsqmf.data.readers import builtin_path, load_movielens
    >>> load_movielens(builtin_path())
    Ratings(shape=(610, 9724), nnz=100836, density=0.017, with id maps)
    """
    p = _check_path(path)
    check_choice("format", format, ("auto", *_SEPARATORS))
    if header is not None and not isinstance(header, bool):
        raise TypeError(f"`header` must be True, False or None; got {describe(header)}.")
    lines = _text_lines(p)
    fmt = _detect(lines, p) if format == "auto" else format
    return _ratings_from_lines(lines, p, fmt, header)


# ------------------------------------------------------------------------------- dense text
def _dense_from_lines(lines: list[str], path: Path, header: bool | None) -> np.ndarray:
    """A dense matrix from text: one row per line, fields separated by commas, tabs or
    whitespace; empty fields, ``nan`` and ``NA`` are missing (NaN)."""
    numbered = [(i + 1, line) for i, line in enumerate(lines) if line.strip()]
    if not numbered:
        raise ValueError(f"{str(path)!r} is empty: there is no matrix to read.")
    first = numbered[0][1]
    sep: str | None = "," if "," in first else ("\t" if "\t" in first else None)

    def fields(line: str) -> list[str]:
        return [f.strip() for f in (line.split(sep) if sep else line.split())]

    missing_words = {"", "nan", "na", "null"}
    first_fields = fields(first)
    if header is None:
        header = not all(_is_number(f) or f.lower() in missing_words for f in first_fields)
        if header:
            logger.info("%s: line %d read as a header (not all numbers)", path, numbered[0][0])
    if header:
        numbered = numbered[1:]
    if not numbered:
        raise ValueError(f"{str(path)!r} has no matrix rows.")
    width = len(fields(numbered[0][1]))
    out = np.empty((len(numbered), width), dtype=np.float64)
    for r, (lineno, line) in enumerate(numbered):
        row = fields(line)
        if len(row) != width:
            raise _bad(
                path,
                lineno,
                f"expected {width} fields (as on line {numbered[0][0]}); "
                f"got {len(row)} in {_quote(line)}.",
            )
        for c, f in enumerate(row):
            if f.lower() in missing_words:
                out[r, c] = np.nan
            elif _is_number(f):
                out[r, c] = float(f)
            else:
                raise _bad(
                    path, lineno, f"field {c + 1} must be a number or empty (missing); got {f!r}."
                )
    return out


# ------------------------------------------------------------------------------- binary
def _dense_ratings(arr: Any, path: Path, missing: float | None, what: str) -> Ratings:
    from .ratings import as_ratings

    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "iuf":
        kind = arr.dtype if isinstance(arr, np.ndarray) else type(arr).__name__
        raise ValueError(f"{str(path)!r}: {what} must hold a numeric matrix; got dtype {kind}.")
    if arr.ndim != 2:
        raise ValueError(f"{str(path)!r}: {what} must hold a 2-D matrix; got shape {arr.shape}.")
    try:
        return as_ratings(arr, missing=missing)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{str(path)!r}: {err}") from err


def _refuse_pickle(path: Path, err: ValueError) -> None:
    """Raise the message for an array file that holds pickled objects (``err`` from np.load)."""
    if "allow_pickle" in str(err):
        raise ValueError(
            f"{str(path)!r} holds Python objects (pickled); only numeric "
            "arrays are read, never pickles."
        ) from err


def _read_npy(path: Path, missing: float | None) -> Ratings:
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as err:
        _refuse_pickle(path, err)
        raise ValueError(f"{str(path)!r} is not a readable .npy file ({err}).") from err
    except (OSError, EOFError) as err:
        raise ValueError(f"{str(path)!r} is not a readable .npy file ({err}).") from err
    return _dense_ratings(arr, path, missing, "the .npy file")


#: Largest uncompressed member of an input .npz archive (bytes).
_MAX_NPZ_MEMBER = 8 * 2**30


def _read_npz(path: Path, missing: float | None) -> Ratings:
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise ValueError(f"{str(path)!r} is not a readable .npz (zip) file ({err}).") from err
    names = sorted(i.filename.removesuffix(".npy") for i in infos)
    for info in infos:
        if info.file_size > _MAX_NPZ_MEMBER:
            raise ValueError(
                f"{str(path)!r}: member {info.filename!r} claims "
                f"{info.file_size} bytes, over the {_MAX_NPZ_MEMBER} byte limit."
            )
    if {"P", "Q", "info"} <= set(names):
        raise ValueError(f"{str(path)!r} is an lsqmf model file, not ratings.")
    try:
        if {"format", "shape", "data"} <= set(names):
            import scipy.sparse as sp

            from .ratings import as_ratings

            if missing is not None:
                raise ValueError(
                    "`missing` applies to dense inputs; in a sparse .npz every "
                    "stored entry is observed."
                )
            return as_ratings(sp.load_npz(path))
        if len(names) != 1:
            raise ValueError(
                "not a scipy.sparse .npz matrix (scipy.sparse.save_npz: members format, shape, "
                f"data, ...) nor one dense array; got members {names}."
            )
        with np.load(path, allow_pickle=False) as data:
            arr = data[data.files[0]]
    except ValueError as err:
        if str(err).startswith(f"{str(path)!r}"):
            raise
        _refuse_pickle(path, err)
        raise ValueError(f"{str(path)!r}: {err}") from err
    except (zipfile.BadZipFile, OSError, EOFError, KeyError, zlib.error) as err:
        raise ValueError(f"{str(path)!r} is not a readable .npz file ({err}).") from err
    return _dense_ratings(
        arr, path, missing, "not a scipy.sparse .npz matrix; as one dense array, the .npz file"
    )


# ------------------------------------------------------------------------------- MATLAB
def _mat_variables(path: Path) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, shape, MATLAB class) of every variable of a v5/v7 .mat file; v7.3 refused."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(1024)
    except OSError as err:
        raise ValueError(f"{str(path)!r}: cannot read the file ({err.strerror or err}).") from err
    if b"MATLAB 7.3" in head[:128] or head[512:520] == _HDF5_MAGIC or head.startswith(
            _HDF5_MAGIC):
        raise ValueError(
            f"{str(path)!r} is a MATLAB v7.3 (HDF5) .mat file, which lsqmf does not read; save "
            "it from MATLAB with save(..., '-v7') (or read it with h5py and pass the arrays "
            "to lsqmf.solve(M, rank, mask=W))."
        )
    import scipy.io

    try:
        return [(name, tuple(shape), cls) for name, shape, cls in scipy.io.whosmat(str(path))]
    except (ValueError, TypeError, OSError, EOFError, NotImplementedError) as err:
        raise ValueError(f"{str(path)!r} is not a readable MATLAB .mat file ({err}).") from err


def _mat_listing(variables: list[tuple[str, tuple[int, ...], str]]) -> str:
    if not variables:
        return "it holds no variables"
    return "its variables: " + ", ".join(
        f"{name} ({'x'.join(str(n) for n in shape)} {cls})" for name, shape, cls in variables
    )


def _pick_mat_name(path: Path, variables: list[tuple[str, tuple[int, ...], str]],
                   name: str | None, what: str) -> str:
    """The variable named ``name``, or (None, the matrix only) the only 2-D numeric one."""
    names = [v[0] for v in variables]
    if name is not None:
        if name not in names:
            raise ValueError(
                f"{str(path)!r}: no variable named {name!r} for the {what}; "
                f"{_mat_listing(variables)}."
            )
        return name
    numeric = [v[0] for v in variables
               if len(v[1]) == 2 and min(v[1]) >= 2 and v[2] in _MAT_NUMERIC]
    if len(numeric) != 1:
        why = "no 2-D numeric variable" if not numeric else f"{len(numeric)} candidates"
        raise ValueError(
            f"{str(path)!r}: name the {what} with `matrix=` ({why}); {_mat_listing(variables)}."
        )
    return numeric[0]


_MAT_NUMERIC = ("double", "single", "int8", "uint8", "int16", "uint16", "int32", "uint32",
                "int64", "uint64", "logical", "sparse")


def _read_mat(path: Path, missing: float | None, matrix: str | None,
              mask: str | None) -> Ratings:
    """A named matrix (and visibility mask) of a MATLAB v5/v7 file."""
    import scipy.io
    import scipy.sparse as sp

    from .ratings import as_mask, as_ratings

    variables = _mat_variables(path)
    m_name = _pick_mat_name(path, variables, matrix, "matrix")
    w_name = None if mask is None else _pick_mat_name(path, variables, mask, "mask")
    if w_name == m_name:
        raise ValueError(f"{str(path)!r}: `matrix` and `mask` name the same variable {m_name!r}.")
    wanted = [m_name] if w_name is None else [m_name, w_name]
    try:
        data = scipy.io.loadmat(str(path), variable_names=wanted, squeeze_me=False)
    except (ValueError, TypeError, OSError, EOFError, NotImplementedError) as err:
        raise ValueError(f"{str(path)!r} is not a readable MATLAB .mat file ({err}).") from err
    arr = data[m_name]
    if sp.issparse(arr):
        if w_name is not None or missing is not None:
            raise ValueError(
                f"{str(path)!r}: {m_name!r} is a sparse matrix (its stored entries are "
                "observed); `mask` and `missing` apply to dense matrices."
            )
        return as_ratings(arr)
    if w_name is None:
        return _dense_ratings(arr, path, missing, f"variable {m_name!r}")
    if missing is not None:
        raise ValueError("`missing` and `mask` cannot be combined: with a `mask`, exactly its "
                         f"nonzero entries are observed; got missing={missing!r}.")
    w = data[w_name]
    if sp.issparse(w):
        w = w.toarray()
    w = np.asarray(w)
    if w.dtype.kind == "f":  # MATLAB's default class is double: 0.0/1.0 visibility
        if not np.isin(w, (0.0, 1.0)).all():
            raise ValueError(
                f"{str(path)!r}: mask {w_name!r} must hold only 0 and 1 (1 = visible); got "
                f"other values, e.g. {w[~np.isin(w, (0.0, 1.0))].ravel()[0]!r}."
            )
        w = w.astype(np.uint8)
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "iuf" or arr.ndim != 2:
        return _dense_ratings(arr, path, None, f"variable {m_name!r}")  # raises its message
    if w.shape != arr.shape:
        raise ValueError(
            f"{str(path)!r}: mask {w_name!r} must have the shape of {m_name!r} {arr.shape}; "
            f"got {w.shape}."
        )
    try:
        return as_ratings(arr, mask=as_mask(w, name=f"mask {w_name!r}"))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{str(path)!r}: {err}") from err


# ------------------------------------------------------------------------------- one reader
def _sniff(path: Path) -> str:
    """'npy', 'npz', 'mat' or 'text' from the first bytes (gzip is text, decompressed later)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(128)
    except OSError as err:
        raise ValueError(f"{str(path)!r}: cannot read the file ({err.strerror or err}).") from err
    if head.startswith(_NPY_MAGIC):
        return "npy"
    if head.startswith(_MAT_MAGIC) and b"MAT-file" in head:
        return "mat"
    if head.startswith((_ZIP_MAGIC, _EMPTY_ZIP)):
        return "npz"
    return "text"


def read_input(
    source: Any,
    *,
    format: str = "auto",
    dense: bool = False,
    missing: float | None = None,
    header: bool | None = None,
    matrix: str | None = None,
    mask: str | None = None,
) -> Ratings:
    """Read any input file of lsqmf (the reader behind every ``lsqmf`` subcommand).

    Parameters
    ----------
    source : str or path-like
        A file, or the word ``'builtin'`` for the vendored MovieLens latest-small ratings.
    format : {'auto', 'csv', 'tab', 'dat', 'npy', 'npz', 'mat'}, default='auto'
        ``'auto'`` decides from the content (module docstring table); the others force it.
    dense : bool, default=False
        Read a text file as a dense matrix (one row per line; commas, tabs or whitespace;
        empty, ``nan`` or ``NA`` fields are missing) instead of ratings lines.
    missing : float, optional
        The value marking unobserved entries of a dense input (besides NaN).
    header : bool or None, default=None
        Whether a text file's first non-blank line is a header (None: decide and log).
    matrix : str, optional
        ``.mat`` files: the variable holding the matrix (e.g. ``'M'``; NaN, or ``missing``,
        marks unobserved entries unless ``mask`` is given). Default: the file's only 2-D
        numeric variable; with several, an error lists them.
    mask : str, optional
        ``.mat`` files: the variable holding the visibility mask (e.g. ``'W'``; logical, or
        0/1 of any integer class or double): exactly its 1 entries are observed.

    Returns
    -------
    Ratings

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        For a malformed, truncated, corrupt or binary-where-text-is-expected file (the file,
        and for text the line, is named), or options that do not apply to the file.
    TypeError
        If ``source`` is not a path or an option has the wrong type.

    Examples
    --------
    >>> from lsqmf.data.readers import read_input
    >>> read_input("builtin")
    Ratings(shape=(610, 9724), nnz=100836, density=0.017, with id maps)
    """
    check_choice("format", format, INPUT_FORMATS)
    if not isinstance(dense, bool):
        raise TypeError(f"`dense` must be True or False; got {describe(dense)}.")
    if header is not None and not isinstance(header, bool):
        raise TypeError(f"`header` must be True, False or None; got {describe(header)}.")
    if missing is not None:
        missing = check_float("missing", missing)
    for name, value in (("matrix", matrix), ("mask", mask)):
        if value is not None and not isinstance(value, str):
            raise TypeError(
                f"`{name}` must be a variable name (str) or None; got {describe(value)}."
            )
    if isinstance(source, str) and source == BUILTIN_NAME:
        if dense or missing is not None or format != "auto":
            raise ValueError("the built-in data set takes no `format`, `dense` or `missing`.")
        if matrix is not None or mask is not None:
            raise ValueError("the built-in data set takes no `matrix` or `mask` (.mat only).")
        return load_builtin()
    p = _check_path(source)
    kind = _sniff(p) if format == "auto" else format
    if kind == "mat":
        if dense:
            raise ValueError(f"`dense` applies to text files; {str(p)!r} is read as .mat.")
        return _read_mat(p, missing, matrix, mask)
    if matrix is not None or mask is not None:
        raise ValueError(
            f"`matrix` and `mask` name variables of a MATLAB .mat file; {str(p)!r} is read as "
            f"{kind}."
        )
    if kind in ("npy", "npz"):
        if dense:
            raise ValueError(f"`dense` applies to text files; {str(p)!r} is read as .{kind}.")
        return _read_npy(p, missing) if kind == "npy" else _read_npz(p, missing)
    lines = _text_lines(p)
    if dense:
        return _dense_ratings(_dense_from_lines(lines, p, header), p, missing, "the text file")
    if missing is not None:
        raise ValueError(
            f"`missing` applies to dense inputs (.npy, .npz, or text with dense=True); "
            f"{str(p)!r} is read as ratings lines."
        )
    fmt = _detect(lines, p) if kind == "text" else kind
    return _ratings_from_lines(lines, p, fmt, header)


def load_ratings(source: Any, **options: Any) -> Ratings:
    """A ratings file path or the word ``'builtin'`` -> Ratings (:func:`read_input`)."""
    return read_input(source, **options)


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
        Columns ``item`` (the raw movie id, parsed as ratings ids are: :func:`parse_ids`),
        ``title`` and ``genres`` (``''`` for ``u.item``).

    Raises
    ------
    ValueError
        For an empty or binary file or a line without an id and a title (file and line
        number named).
    """
    import csv

    import pandas as pd

    p = _check_path(path, "movies")
    lines = _text_lines(p)
    first = next((line for line in lines if line.strip()), "")
    if not first:
        raise ValueError(f"{str(p)!r} is empty: there is no movie to read.")
    records: list[tuple[str, str, str]] = []
    if first.lower().startswith("movieid,"):
        reader = csv.reader(lines)
        for row in reader:
            if reader.line_num == 1 or not row:
                continue
            if len(row) < 2 or not row[0].strip():
                raise ValueError(
                    f"{str(p)!r}, line {reader.line_num}: expected movieId,title,genres; "
                    f"got {_quote(','.join(row))}."
                )
            records.append((row[0].strip(), row[1], row[2] if len(row) > 2 else ""))
    else:
        sep = "::" if "::" in first else "|"
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            parts = line.split(sep)
            if len(parts) < 2 or not parts[0].strip():
                raise ValueError(
                    f"{str(p)!r}, line {lineno}: expected id{sep}title{sep}...; got {_quote(line)}."
                )
            genres = parts[2] if sep == "::" and len(parts) > 2 else ""
            records.append((parts[0].strip(), parts[1], genres))
    if not records:
        raise ValueError(f"{str(p)!r} has no movie lines.")
    frame = pd.DataFrame(records, columns=["item", "title", "genres"])
    frame["item"] = pd.Series(parse_ids(frame["item"].to_numpy(dtype=object)), dtype=object)
    if frame["item"].map(type).eq(int).all():
        frame["item"] = frame["item"].astype(np.int64)
    return frame
