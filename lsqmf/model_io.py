"""Save and load a fitted model as one ``.npz`` file (no pickle, no training data).

The file holds the factors ``P`` (n_rows, rank) and ``Q`` (rank, n_cols), ``mu``, the biases
when the model has them, the raw id maps (as plain numeric or unicode arrays), and the
solver name, status, cost and options (as a JSON string). It is written with
``numpy.savez_compressed`` and read with ``allow_pickle=False``, so loading a file cannot run
code. The training ratings are not stored: tools that need them (``lsqmf recommend``) read them
again, from the path recorded in ``metadata['ratings']`` when the model was fitted from a
file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ._validation import describe
from .result import FitResult

__all__ = ["FORMAT_VERSION", "load_model", "save_model"]

#: Version of the file layout, stored in every file.
FORMAT_VERSION = 1


def _ids_array(ids: np.ndarray | None) -> np.ndarray | None:
    if ids is None:
        return None
    arr = np.asarray(ids)
    if arr.dtype.kind in "iuf":
        return arr
    return arr.astype(str)  # object ids (strings) -> fixed-width unicode, no pickle


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)


def save_model(
    model: FitResult, path: str | os.PathLike, *, metadata: dict[str, Any] | None = None
) -> Path:
    """Write ``model`` to ``path`` (a ``.npz`` file; the suffix is added if missing).

    Parameters
    ----------
    model : FitResult
    path : str or path-like
    metadata : dict, optional
        JSON-serializable extra information (e.g. the ratings file the model was fitted on).

    Returns
    -------
    Path
        The file written.
    """
    if not isinstance(model, FitResult):
        raise TypeError(f"`model` must be lsqmf.FitResult; got {describe(model)}.")
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"`path` must be a file path; got {describe(path)}.")
    if metadata is not None and not isinstance(metadata, dict):
        raise TypeError(f"`metadata` must be a dict; got {describe(metadata)}.")
    out = Path(path)
    if out.suffix != ".npz":
        out = out.with_name(out.name + ".npz")
    info = {
        "format_version": FORMAT_VERSION,
        "solver": model.solver,
        "status": int(model.status),
        "success": bool(model.success),
        "message": model.message,
        "cost": float(model.cost),
        "wall_time": float(model.wall_time),
        "options": _jsonable(dict(model.options)),
        "metadata": _jsonable(metadata or {}),
    }
    arrays: dict[str, np.ndarray] = {
        "P": np.asarray(model.P, dtype=np.float64),
        "Q": np.asarray(model.Q, dtype=np.float64),
        "mu": np.asarray(float(model.mu)),
        "info": np.asarray(json.dumps(info)),
    }
    if model.row_bias is not None and model.col_bias is not None:
        arrays["row_bias"] = np.asarray(model.row_bias, dtype=np.float64)
        arrays["col_bias"] = np.asarray(model.col_bias, dtype=np.float64)
    for name, counts in (("row_counts", model.row_counts), ("col_counts", model.col_counts)):
        if counts is not None:
            arrays[name] = np.asarray(counts, dtype=np.int64)
    for name, ids in (("row_ids", model.row_ids), ("col_ids", model.col_ids)):
        arr = _ids_array(ids)
        if arr is not None:
            arrays[name] = arr
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)  # type: ignore[arg-type]
    return out


def load_model(path: str | os.PathLike) -> tuple[FitResult, dict[str, Any]]:
    """Read a model written by :func:`save_model`.

    Returns
    -------
    model : FitResult
        Factors, biases, ``mu``, id maps, solver name, status, cost and options (no history).
    metadata : dict
        The ``metadata`` given to :func:`save_model`.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file is not an lsqmf model file.
    """
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"`path` must be a file path; got {describe(path)}.")
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such model file: {str(p)!r}")
    try:
        with np.load(p, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as err:
        raise ValueError(f"{str(p)!r} is not an lsqmf model file (.npz): {err}") from err
    missing = {"P", "Q", "mu", "info"} - set(arrays)
    if missing:
        raise ValueError(f"{str(p)!r} is not an lsqmf model file: missing {sorted(missing)}.")
    info = json.loads(str(arrays["info"]))
    if info.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{str(p)!r} has model format version {info.get('format_version')!r}; this lsqmf "
            f"reads version {FORMAT_VERSION}."
        )
    model = FitResult(
        P=arrays["P"],
        Q=arrays["Q"],
        mu=float(arrays["mu"]),
        row_bias=arrays.get("row_bias"),
        col_bias=arrays.get("col_bias"),
        success=bool(info["success"]),
        status=int(info["status"]),
        message=str(info["message"]),
        cost=float(info["cost"]),
        wall_time=float(info["wall_time"]),
        options=info["options"],
        solver=str(info["solver"]),
        row_ids=arrays.get("row_ids"),
        row_counts=arrays.get("row_counts"),
        col_counts=arrays.get("col_counts"),
        col_ids=arrays.get("col_ids"),
    )
    return model, dict(info.get("metadata", {}))
