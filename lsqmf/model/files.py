"""Save and load a fitted model as one ``.npz`` file (no pickle, no training data).

File format, version 2
----------------------
A zip archive (``numpy.savez_compressed``) of ``.npy`` members, each read with
``allow_pickle=False`` (loading a file cannot run code):

============== ================== ========================================================
member         dtype              shape
============== ================== ========================================================
``info``       unicode scalar     JSON: ``format_version``, ``shape`` ``[n_rows, n_cols]``,
                                  ``rank``, ``members``, ``solver``, ``status``,
                                  ``success``, ``message``, ``cost``, ``wall_time``,
                                  ``options``, ``metadata``, ``rms``, ``train_mean``
``P``          float64            ``(n_rows, rank)``, finite
``Q``          float64            ``(rank, n_cols)``, finite
``mu``         float64            ``()``, finite
``row_bias``   float64            ``(n_rows,)``, finite (both biases or neither)
``col_bias``   float64            ``(n_cols,)``, finite
``row_counts`` int64              ``(n_rows,)``, >= 0 (optional)
``col_counts`` int64              ``(n_cols,)``, >= 0 (optional)
``row_ids``    int64 or unicode   ``(n_rows,)``, distinct (optional, both or neither)
``col_ids``    int64 or unicode   ``(n_cols,)``, distinct
============== ================== ========================================================

Version 1 files (the same members, without ``shape``/``rank``/``members`` in ``info``) are
still read, with the same checks.

Loading is defensive. A file with a member the format does not define (renamed, extra or
repeated) is refused. Before a byte of a member is decompressed, its zip entry must be neither
encrypted nor compressed by a method other than stored or deflate, and its declared
uncompressed size (the zip directory's ``file_size``, which bounds what is decompressed) must
fit what its shape in ``info`` allows; then its ``.npy`` header must declare a plain dtype
and exactly as many data bytes as the member holds, so nothing is allocated for a header
that claims more. Each array's dtype, shape and finiteness, and the id-map, bias and count
lengths, are validated; string ids must not contain NUL characters (numpy drops trailing
ones, so such an id would not round-trip; they are refused on save too). Any violation
raises ``ValueError`` naming the file and the member. An empty, truncated or non-zip file
raises one ``ValueError`` saying so.

Writing is atomic: the archive is written to a temporary file in the target directory,
flushed to disk (``fsync``) and moved into place with ``os.replace`` (or ``os.link`` when not
overwriting), so a crash, a kill -9 or a full disk leaves either the old file or the new one,
never half of one, and two processes saving the same path leave one complete file. A reader
opens either the old or the new file. An existing file is never overwritten unless
``force=True`` (``--force`` on the command line). An output path that is a symbolic link
writes its target (atomically, in the target's folder; the link is kept); a dangling link, a
directory, a read-only folder or a full disk is an ``OSError``/``ValueError`` naming the path.

The training ratings are not stored, and nothing inside a model file is ever used as a path
to open: ``metadata`` is information for the user, not instructions for lsqmf.

API: ``model, metadata = load_model(path)`` (a pair, kept for compatibility);
:func:`read_metadata` reads only the metadata.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import math
import os
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from .._validation import check_file, describe
from .result import FitResult

__all__ = ["FORMAT_VERSION", "READABLE_VERSIONS", "load_model", "read_metadata", "save_model"]

logger = logging.getLogger(__name__)

#: Version of the file layout written by :func:`save_model`, stored in every file.
FORMAT_VERSION = 2

#: Versions :func:`load_model` reads.
READABLE_VERSIONS = (1, 2)

_ARRAY_MEMBERS = ("P", "Q", "mu", "row_bias", "col_bias", "row_counts", "col_counts",
                  "row_ids", "col_ids")
_REQUIRED = ("P", "Q", "mu", "info")
#: Largest ``info`` member (JSON metadata), bytes.
_MAX_INFO_BYTES = 16 * 2**20
#: Room for an ``.npy`` header on top of the data, bytes.
_NPY_HEADER_BYTES = 64 * 2**10
#: Largest factor member of a version-1 file (no shapes declared up front), bytes.
_MAX_V1_FACTOR_BYTES = 16 * 2**30
#: Largest member of any model file, bytes.
_MAX_MEMBER_BYTES = 16 * 2**30
#: Widest unicode id (characters) accepted in an id map.
_MAX_ID_CHARS = 256
#: Zip compression methods a model file may use (what numpy.savez/savez_compressed write).
_COMPRESSIONS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)


def _ids_array(name: str, ids: np.ndarray | None) -> np.ndarray | None:
    if ids is None:
        return None
    arr = np.asarray(ids)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    for at, value in enumerate(arr.reshape(-1).tolist()):
        if "\0" in str(value):  # numpy's unicode arrays drop trailing NULs: refuse, not strip
            raise ValueError(f"the model's `{name}` has an id with a NUL character at "
                             f"position {at} ({str(value)!r}); such ids cannot be stored.")
    return arr.astype(str)  # object ids (strings) -> fixed-width unicode, no pickle


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # JSON has no NaN/inf
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)


def _optional_float(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def save_model(
    model: FitResult,
    path: str | os.PathLike[str],
    *,
    metadata: dict[str, Any] | None = None,
    force: bool = False,
) -> Path:
    """Write ``model`` to ``path`` (a ``.npz`` file; the suffix is added if missing).

    Parameters
    ----------
    model : FitResult
    path : str or path-like
    metadata : dict, optional
        JSON-serializable extra information (e.g. the ratings file the model was fitted on,
        the rating scale). Stored for the user; lsqmf never opens a path found in it.
    force : bool, default=False
        Overwrite an existing file.

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    TypeError
        For a wrong argument type.
    ValueError
        If the model has non-finite factors or biases (such a model predicts nothing useful).
    FileExistsError
        If the file exists and ``force`` is False.
    """
    if not isinstance(model, FitResult):
        raise TypeError(f"`model` must be lsqmf.FitResult; got {describe(model)}.")
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"`path` must be a file path; got {describe(path)}.")
    if metadata is not None and not isinstance(metadata, dict):
        raise TypeError(f"`metadata` must be a dict; got {describe(metadata)}.")
    if not isinstance(force, bool):
        raise TypeError(f"`force` must be True or False; got {describe(force)}.")
    out = _target_path(Path(path), force)
    arrays = _model_arrays(model)
    info = _model_info(model, arrays, metadata)
    arrays["info"] = np.asarray(json.dumps(info))
    _check_model_arrays(arrays, info, str(out))  # refuse to write what load would refuse
    out.parent.mkdir(parents=True, exist_ok=True)
    _atomic_savez(out, arrays, force=force)
    return out


def _target_path(out: Path, force: bool) -> Path:
    """``out`` with the ``.npz`` suffix, a symbolic link resolved to its target; refuses a
    directory, a dangling link, and an existing file unless forced."""
    if out.suffix != ".npz":
        out = out.with_name(out.name + ".npz")
    if out.is_symlink():
        target = out.resolve()
        if not target.exists():
            raise FileNotFoundError(
                errno.ENOENT, f"is a symbolic link to {str(target)!r}, which does not exist; "
                "give a file name", str(out))
        out = target  # the link is kept; its target is replaced (atomically, in its folder)
    if out.is_dir():
        raise ValueError(f"`path` {str(out)!r} is a directory; give a file name.")
    if out.exists() and not force:
        raise FileExistsError(
            f"{str(out)!r} exists; pass force=True (--force on the command line) to overwrite."
        )
    return out


def _model_arrays(model: FitResult) -> dict[str, np.ndarray]:
    """The array members of ``model``'s file; ValueError for non-finite factors or biases."""
    arrays: dict[str, np.ndarray] = {
        "P": np.asarray(model.P, dtype=np.float64),
        "Q": np.asarray(model.Q, dtype=np.float64),
        "mu": np.asarray(float(model.mu), dtype=np.float64),
    }
    if model.row_bias is not None and model.col_bias is not None:
        arrays["row_bias"] = np.asarray(model.row_bias, dtype=np.float64)
        arrays["col_bias"] = np.asarray(model.col_bias, dtype=np.float64)
    for name in ("P", "Q", "mu", "row_bias", "col_bias"):
        if name in arrays and not np.all(np.isfinite(arrays[name])):
            raise ValueError(
                f"the model's `{name}` has non-finite entries (NaN or inf); a diverged model is "
                "not saved."
            )
    for name, counts in (("row_counts", model.row_counts), ("col_counts", model.col_counts)):
        if counts is not None:
            arrays[name] = np.asarray(counts, dtype=np.int64)
    for name, ids in (("row_ids", model.row_ids), ("col_ids", model.col_ids)):
        arr = _ids_array(name, ids)
        if arr is not None:
            arrays[name] = arr
    return arrays


def _model_info(
    model: FitResult, arrays: dict[str, np.ndarray], metadata: dict[str, Any] | None
) -> dict[str, Any]:
    """The JSON ``info`` member: format, shape, members, the fit's summary, metadata."""
    P = arrays["P"]
    return {
        "format_version": FORMAT_VERSION,
        "shape": [int(P.shape[0]), int(arrays["Q"].shape[-1])],
        "rank": int(P.shape[1]) if P.ndim == 2 else 0,
        "members": sorted(arrays),
        "solver": model.solver,
        "status": int(model.status),
        "success": bool(model.success),
        "message": str(model.message),
        "cost": _jsonable(float(model.cost)),
        "wall_time": float(model.wall_time),
        "rms": _optional_float(getattr(model, "rms", None)),
        "train_mean": _optional_float(getattr(model, "train_mean", None)),
        "options": _jsonable(dict(model.options)),
        "metadata": _jsonable(metadata or {}),
    }


def _atomic_savez(out: Path, arrays: dict[str, np.ndarray], *, force: bool) -> None:
    """Write the archive to a temporary file beside ``out``, fsync it, move it into place.

    An ``OSError`` (read-only folder, disk full, a file-size limit) is re-raised naming
    ``out``; the temporary file is removed, and an existing ``out`` is left as it was.
    """
    try:
        fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    except OSError as err:
        raise _write_error(err, out) from err
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]
            fh.flush()
            os.fsync(fh.fileno())
        _move_into_place(tmp, out, force=force)
    except FileExistsError:
        raise
    except OSError as err:
        raise _write_error(err, out) from err
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(out.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _move_into_place(tmp: Path, out: Path, *, force: bool) -> None:
    if force:
        os.replace(tmp, out)
        return
    try:
        os.link(tmp, out)  # atomic, and fails if `out` appeared meanwhile
    except FileExistsError:
        raise FileExistsError(
            f"{str(out)!r} exists; pass force=True (--force on the command line) to "
            "overwrite."
        ) from None
    except OSError:  # no hard links on this file system
        if out.exists():
            raise FileExistsError(f"{str(out)!r} exists; pass force=True.") from None
        os.replace(tmp, out)


def _write_error(err: OSError, out: Path) -> OSError:
    """``err`` as the same ``OSError`` subclass naming ``out`` (not the temporary file)."""
    reason = err.strerror or str(err) or type(err).__name__
    new = type(err)(err.errno, f"{reason}; the model was not saved (an existing file is left "
                    "as it was)", str(out)) if err.errno is not None else OSError(
        f"{str(out)!r}: {reason}; the model was not saved (an existing file is left as it was)")
    return new


# ------------------------------------------------------------------------------------ load
def _open_archive(path: str | os.PathLike[str]) -> tuple[Path, zipfile.ZipFile]:
    p = check_file(path, "model", a_file="an lsqmf model file")
    size = p.stat().st_size
    if size == 0:
        raise ValueError(f"{str(p)!r} is empty (0 bytes): not an lsqmf model file.")
    try:
        zf = zipfile.ZipFile(p)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        with open(p, "rb") as fh:
            zip_start = fh.read(4) == b"PK\x03\x04"
        hint = " (it starts like a zip archive: truncated?)" if zip_start else ""
        raise ValueError(
            f"{str(p)!r} is not an lsqmf model file (.npz): not a readable zip archive{hint}."
        ) from err
    return p, zf


def _read_member(
    zf: zipfile.ZipFile, p: Path, name: str, max_bytes: int
) -> np.ndarray:
    info = zf.getinfo(f"{name}.npy")
    max_bytes = min(max_bytes, _MAX_MEMBER_BYTES)
    if info.flag_bits & 0x1:
        raise ValueError(f"{str(p)!r}, member {name!r}: flagged encrypted; lsqmf never writes "
                         "encrypted members (a tampered file?); refusing to read it.")
    if info.compress_type not in _COMPRESSIONS:
        raise ValueError(
            f"{str(p)!r}, member {name!r}: zip compression method {info.compress_type}; lsqmf "
            "writes only 0 (stored) and 8 (deflate); refusing to read it."
        )
    if info.file_size > max_bytes:
        raise ValueError(
            f"{str(p)!r}, member {name!r}: declares {info.file_size} bytes, more than the "
            f"{max_bytes} its shape in the metadata allows; refusing to read it."
        )
    try:
        with zf.open(info) as fh:
            dtype, shape, fortran = _npy_header(fh, p, name, info.file_size)
            arr = np.empty(shape, dtype=dtype, order="F" if fortran else "C")
            _read_into(fh, arr, p, name)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, KeyError, RuntimeError,
            NotImplementedError) as err:
        raise ValueError(
            f"{str(p)!r}, member {name!r}: corrupt or truncated ({type(err).__name__}: {err})."
        ) from err
    return arr


def _npy_header(fh: Any, p: Path, name: str, member_bytes: int
                ) -> tuple[np.dtype[Any], tuple[int, ...], bool]:
    """Read and check an ``.npy`` header: a plain dtype and a size that the member holds.

    The data's size (shape times item size) must be exactly what follows the header in the
    member, so a header claiming 10^12 rows is refused before anything is allocated.
    """
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        read = {(1, 0): fmt.read_array_header_1_0,
                (2, 0): fmt.read_array_header_2_0}.get(version)
        if read is None:
            raise ValueError(f"unsupported .npy version {version}")
        shape, fortran, dtype = read(fh, max_header_size=_NPY_HEADER_BYTES)
    except (ValueError, SyntaxError, TypeError) as err:
        raise ValueError(f"{str(p)!r}, member {name!r}: not a readable array ({err}).") from err
    if dtype.hasobject:
        raise ValueError(f"{str(p)!r}, member {name!r}: holds Python objects (pickle); refused.")
    if dtype.kind not in "fiuU" or dtype.fields is not None or dtype.subdtype is not None:
        raise ValueError(f"{str(p)!r}, member {name!r}: dtype {dtype} is not one a model "
                         "file uses; refused.")
    n_items = math.prod(shape)
    data_bytes = member_bytes - fh.tell()
    if n_items * dtype.itemsize != data_bytes:
        raise ValueError(
            f"{str(p)!r}, member {name!r}: its header declares shape {tuple(shape)} of "
            f"{dtype} ({n_items * dtype.itemsize} bytes) but the member holds {data_bytes} "
            "bytes of data; refusing to read it."
        )
    return dtype, tuple(shape), bool(fortran)


def _read_into(fh: Any, arr: np.ndarray, p: Path, name: str) -> None:
    view = memoryview(arr.reshape(-1, order="A").view(np.uint8))  # type: ignore[arg-type]
    done = 0
    while done < len(view):
        n = fh.readinto(view[done:])
        if not n:
            raise ValueError(f"{str(p)!r}, member {name!r}: truncated data.")
        done += n


def _read_info(zf: zipfile.ZipFile, p: Path) -> dict[str, Any]:
    arr = _read_member(zf, p, "info", _MAX_INFO_BYTES)
    if arr.shape != () or arr.dtype.kind != "U":
        raise ValueError(f"{str(p)!r}, member 'info': expected a JSON string; got "
                         f"{describe(arr)}.")
    try:
        info = json.loads(str(arr))
    except (json.JSONDecodeError, RecursionError) as err:
        raise ValueError(f"{str(p)!r}, member 'info': not valid JSON ({err}).") from err
    if not isinstance(info, dict):
        raise ValueError(f"{str(p)!r}, member 'info': expected a JSON object; got "
                         f"{type(info).__name__}.")
    version = info.get("format_version")
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        raise ValueError(
            f"{str(p)!r} has model format version {version!r}; this lsqmf reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}."
        )
    return info


def _members(zf: zipfile.ZipFile, p: Path) -> set[str]:
    listed = zf.namelist()
    repeated = sorted({n for n in listed if listed.count(n) > 1})
    if repeated:
        raise ValueError(f"{str(p)!r}, member {repeated[0]!r}: appears more than once in the "
                         "archive (a tampered file?); refusing to read it.")
    names = {n.removesuffix(".npy") for n in listed if n.endswith(".npy")}
    missing = set(_REQUIRED) - names
    known = {f"{n}.npy" for n in (*_ARRAY_MEMBERS, "info")}
    unknown = sorted(set(listed) - known)
    if missing:
        extra = f" (and has members it does not define: {unknown})" if unknown else ""
        raise ValueError(f"{str(p)!r} is not an lsqmf model file: missing "
                         f"{sorted(missing)}{extra}.")
    if unknown:
        raise ValueError(
            f"{str(p)!r}, member {unknown[0]!r}: not a member of an lsqmf model file "
            f"(it has {', '.join(map(repr, unknown))}; the format defines "
            f"{', '.join(sorted(known))}); refusing a renamed or extra member."
        )
    return names


def _field(info: dict[str, Any], p: Path, key: str, kind: type | tuple[type, ...],
           default: Any = dataclasses.MISSING) -> Any:
    if key not in info:
        if default is dataclasses.MISSING:
            raise ValueError(f"{str(p)!r}, member 'info': missing the {key!r} field.")
        return default
    value = info[key]
    bad_bool = isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple)
                                                        else (kind,))
    if bad_bool or not isinstance(value, kind):
        raise ValueError(f"{str(p)!r}, member 'info': field {key!r} must be "
                         f"{getattr(kind, '__name__', kind)}; got {describe(value)}.")
    return value


def _declared_shape(info: dict[str, Any], p: Path) -> tuple[int, int, int] | None:
    if info["format_version"] < 2:
        return None
    shape = _field(info, p, "shape", list)
    rank = _field(info, p, "rank", int)
    if (len(shape) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1
                                   for s in shape) or rank < 1):
        raise ValueError(f"{str(p)!r}, member 'info': `shape` must be two ints >= 1 and "
                         f"`rank` an int >= 1; got shape {shape!r}, rank {rank!r}.")
    return int(shape[0]), int(shape[1]), int(rank)


def _budget(name: str, dims: tuple[int, int, int] | None, arrays: dict[str, np.ndarray]) -> int:
    """Largest acceptable declared size of a member, bytes."""
    if dims is None:  # version 1: the factors fix the other sizes
        if name in ("P", "Q"):
            return _MAX_V1_FACTOR_BYTES
        n_rows, n_cols = arrays["P"].shape[0], arrays["Q"].shape[-1]
    else:
        n_rows, n_cols, rank = dims
        if name == "P":
            return 8 * n_rows * rank + _NPY_HEADER_BYTES
        if name == "Q":
            return 8 * rank * n_cols + _NPY_HEADER_BYTES
    if name == "mu":
        return _NPY_HEADER_BYTES
    n = n_rows if name.startswith("row") else n_cols
    item = 4 * _MAX_ID_CHARS if name.endswith("_ids") else 8
    return item * n + _NPY_HEADER_BYTES


def _check_model_arrays(arrays: dict[str, np.ndarray], info: dict[str, Any], where: str) -> None:
    """Shapes, dtypes, finiteness and lengths; ValueError naming ``where`` and the member."""
    fail = partial(_member_error, where)
    n_rows, n_cols = _check_factors(arrays, info, fail)
    if ("row_bias" in arrays) != ("col_bias" in arrays):
        have = "row_bias" if "row_bias" in arrays else "col_bias"
        raise fail(have, "a model has both row and column biases or neither; only one found.")
    if ("row_ids" in arrays) != ("col_ids" in arrays):
        have = "row_ids" if "row_ids" in arrays else "col_ids"
        raise fail(have, "a model has both id maps or neither; only one found.")
    for name, expect in (("row_bias", n_rows), ("col_bias", n_cols), ("row_counts", n_rows),
                         ("col_counts", n_cols), ("row_ids", n_rows), ("col_ids", n_cols)):
        if name in arrays:
            _check_indexed_member(name, arrays[name], expect, fail)
    for name in ("P", "Q", "mu", "row_bias", "col_bias"):
        if name in arrays and not np.all(np.isfinite(arrays[name])):
            bad = int(np.count_nonzero(~np.isfinite(arrays[name])))
            raise fail(name, f"has {bad} non-finite entr{'y' if bad == 1 else 'ies'} (NaN or "
                       "inf); the model cannot predict.")


def _member_error(where: str, name: str, message: str) -> ValueError:
    return ValueError(f"{where!r}, member {name!r}: {message}")


def _check_factors(
    arrays: dict[str, np.ndarray], info: dict[str, Any], fail: Callable[[str, str], ValueError]
) -> tuple[int, int]:
    """Check P, Q and mu (dtype, shapes, agreement with ``info``); return (n_rows, n_cols)."""
    P, Q, mu = arrays["P"], arrays["Q"], arrays["mu"]
    for name, arr in (("P", P), ("Q", Q), ("mu", mu)):
        if arr.dtype.kind != "f":
            raise fail(name, f"must be floating point; got dtype {arr.dtype}.")
    if P.ndim != 2 or Q.ndim != 2:
        raise fail("P" if P.ndim != 2 else "Q",
                   f"must be 2-D; got P of shape {P.shape}, Q of shape {Q.shape}.")
    if P.shape[1] != Q.shape[0]:
        raise fail("Q", f"P is {P.shape} and Q is {Q.shape}: P's columns must equal Q's rows "
                   "(P (n_rows, rank), Q (rank, n_cols)).")
    if P.shape[1] < 1 or P.shape[0] < 1 or Q.shape[1] < 1:
        raise fail("P", f"the factors must be non-empty; got P {P.shape}, Q {Q.shape}.")
    n_rows, n_cols = P.shape[0], Q.shape[1]
    shape = info.get("shape")
    if shape is not None and list(shape) != [n_rows, n_cols]:
        raise fail("P", f"the metadata declares shape {shape}; the factors give "
                   f"{[n_rows, n_cols]}.")
    rank = info.get("rank")
    if rank is not None and rank != P.shape[1]:
        raise fail("P", f"the metadata declares rank {rank}; the factors have {P.shape[1]}.")
    if mu.shape != ():
        raise fail("mu", f"must be a scalar; got shape {mu.shape}.")
    return n_rows, n_cols


def _check_indexed_member(
    name: str, arr: np.ndarray, expect: int, fail: Callable[[str, str], ValueError]
) -> None:
    """Check a one-per-row or one-per-column member (biases, counts, id maps)."""
    if arr.shape != (expect,):
        raise fail(name, f"must have shape ({expect},) (one per "
                   f"{'row' if name.startswith('row') else 'column'}); got {arr.shape}.")
    if name.endswith("_bias") and arr.dtype.kind != "f":
        raise fail(name, f"must be floating point; got dtype {arr.dtype}.")
    if name.endswith("_counts"):
        if arr.dtype.kind not in "iu":
            raise fail(name, f"must be integers; got dtype {arr.dtype}.")
        if arr.size and int(arr.min()) < 0:
            raise fail(name, f"must be >= 0; got {int(arr.min())}.")
    if name.endswith("_ids"):
        if arr.dtype.kind not in "iuU":
            raise fail(name, f"must be int64 or unicode ids; got dtype {arr.dtype}.")
        if arr.dtype.kind == "U" and arr.dtype.itemsize // 4 > _MAX_ID_CHARS:
            raise fail(name, f"ids longer than {_MAX_ID_CHARS} characters are not "
                       "supported.")
        nul = [i for i, v in enumerate(arr.tolist()) if "\0" in v] if arr.dtype.kind == "U" else []
        if nul:
            raise fail(name, f"id at position {nul[0]} ({str(arr[nul[0]])!r}) contains a NUL "
                       "character; ids with NUL cannot be stored.")
        if len(np.unique(arr)) != len(arr):
            raise fail(name, "has repeated ids; each id must name one row/column.")


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``metadata`` dict stored in a model file (reads only the ``info`` member).

    Raises
    ------
    FileNotFoundError, ValueError
        As :func:`load_model`.
    """
    p, zf = _open_archive(path)
    with zf:
        _members(zf, p)
        info = _read_info(zf, p)
    meta = info.get("metadata", {})
    if not isinstance(meta, dict):
        raise ValueError(f"{str(p)!r}, member 'info': `metadata` must be a JSON object.")
    return meta


def load_model(path: str | os.PathLike[str]) -> tuple[FitResult, dict[str, Any]]:
    """Read a model written by :func:`save_model` (format versions 1 and 2).

    Returns
    -------
    model : FitResult
        Factors, biases, ``mu``, id maps, counts, solver name, status, cost and options (no
        history).
    metadata : dict
        The ``metadata`` given to :func:`save_model`, as stored (never used to open files).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file is empty, truncated, not a zip archive, not an lsqmf model file, of an
        unknown format version, or any member is oversized, of the wrong dtype or shape,
        non-finite, or inconsistent with the others (the message names file and member).

    Examples
    --------
    >>> model, metadata = load_model("model.npz")  # doctest: +SKIP
    """
    p, zf = _open_archive(path)
    with zf:
        names = _members(zf, p)
        info = _read_info(zf, p)
        dims = _declared_shape(info, p)
        arrays: dict[str, np.ndarray] = {}
        for name in _ARRAY_MEMBERS:
            if name in names:
                arrays[name] = _read_member(zf, p, name, _budget(name, dims, arrays))
    _check_model_arrays(arrays, info, str(p))
    meta = _field(info, p, "metadata", dict, {})
    options = _field(info, p, "options", dict, {})
    fields = {f.name for f in dataclasses.fields(FitResult)}
    cost = info.get("cost", float("nan"))
    kwargs: dict[str, Any] = {
        "P": arrays["P"].astype(np.float64, copy=False),
        "Q": arrays["Q"].astype(np.float64, copy=False),
        "mu": float(arrays["mu"]),
        "row_bias": arrays.get("row_bias"),
        "col_bias": arrays.get("col_bias"),
        "success": _field(info, p, "success", bool),
        "status": _field(info, p, "status", int),
        "message": _field(info, p, "message", str),
        "cost": float(cost) if isinstance(cost, int | float) else float("nan"),
        "wall_time": float(_field(info, p, "wall_time", (int, float), 0.0)),
        "options": options,
        "solver": _field(info, p, "solver", str),
        "row_ids": _loaded_ids(arrays.get("row_ids")),
        "col_ids": _loaded_ids(arrays.get("col_ids")),
        "row_counts": arrays.get("row_counts"),
        "col_counts": arrays.get("col_counts"),
    }
    for key in ("rms", "train_mean"):
        value = info.get(key)
        if key in fields and isinstance(value, int | float) and not isinstance(value, bool):
            kwargs[key] = float(value)
    try:
        model = FitResult(**kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{str(p)!r}: not a usable model ({err}).") from err
    return model, dict(meta)


def _loaded_ids(arr: np.ndarray | None) -> np.ndarray | None:
    if arr is None or arr.dtype.kind != "U":
        return arr
    return arr.astype(object)  # plain Python str ids, like the loaders give
