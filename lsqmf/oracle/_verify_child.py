"""The child process of an isolated ``lsqmf verify`` run, and :func:`load_candidate`.

Stand-alone on purpose: numpy and the standard library only, no import of lsqmf, so that the
child starts quickly and holds nothing of lsqmf's unless the candidate imports it. The parent
(:mod:`lsqmf.oracle.verify`) runs this file as a script with a work directory holding
``config.json`` (the spec and the number of cases) and ``input<i>.npz`` (each case's stored
inputs). The child imports the candidate, calls it on fresh copies of each case's inputs, and
writes what came back -- arrays only -- to ``case<i>.npz`` (``load.npz`` if the import failed,
``done.npz`` at the end). It compares nothing: the verdict is the parent's.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["load_candidate", "main"]

#: Exit code of the child after it reported everything it was asked for.
_CHILD_DONE = 0


def describe(value: Any) -> str:
    """Short, safe description of a received value (as ``lsqmf._validation.describe``)."""
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape} and dtype {value.dtype}"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def load_candidate(spec: str) -> Callable[..., Any]:
    """Import the callable named by ``spec``.

    Parameters
    ----------
    spec : str
        ``"MODULE:FUNCTION"`` (an importable module, e.g. ``"mypkg.fast:factorize"``) or
        ``"path/to/file.py:FUNCTION"`` (a Python file, loaded as a fresh module).
        ``FUNCTION`` may be dotted (``"Class.method"``).

    Returns
    -------
    callable

    Raises
    ------
    ValueError
        If ``spec`` is not of the form ``MODULE:FUNCTION``.
    ImportError
        If the module or file cannot be imported (whatever the module raised is chained) or
        has no such attribute.
    TypeError
        If ``spec`` is not a str or the attribute is not callable.
    """
    if not isinstance(spec, str):
        raise TypeError(f"`spec` must be a str 'MODULE:FUNCTION'; got {describe(spec)}.")
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        raise ValueError(
            f"`spec` must be 'MODULE:FUNCTION' or 'path/to/file.py:FUNCTION'; got {spec!r}."
        )
    is_file = target.endswith(".py") or os.sep in target or "/" in target
    try:
        module = _import_file(target) if is_file else importlib.import_module(target)
    except ImportError:
        raise
    except Exception as err:  # a module that fails at import time
        raise ImportError(
            f"could not import {target!r}: {type(err).__name__}: {err}"
        ) from err
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ImportError(f"{target!r} has no attribute {attr!r}.") from None
    if not callable(obj):
        raise TypeError(f"{spec!r} is not callable; got {describe(obj)}.")
    return obj  # type: ignore[no-any-return]


def _import_file(target: str) -> Any:
    path = Path(target)
    if not path.is_file():
        raise ImportError(f"could not import {target!r}: no such file.")
    name = f"_lsqmf_candidate_{path.stem}_{abs(hash(str(path.resolve()))):x}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"could not import {target!r}: not a Python source file.")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # so that dataclasses, pickling and numba can find it
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module



def _scalar_text(value: str) -> np.ndarray:
    return np.asarray(str(value))


def _write_npz(path: Path, **arrays: Any) -> None:
    """Write ``arrays`` to ``path`` all at once (the parent never sees half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    os.replace(tmp, path)


def main(workdir: str) -> int:
    """Body of the child process: import the candidate, run it on each case's inputs, write
    what it returned. Compares nothing."""
    work = Path(workdir)
    config = json.loads((work / "config.json").read_text())
    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:
        sys.path.insert(0, cwd)  # like `python -m`: modules in the current directory import
    try:
        candidate = load_candidate(config["spec"])
    except SystemExit as err:
        _write_npz(work / "load.npz", kind=_scalar_text("exit"),
                   message=_scalar_text(f"the candidate called sys.exit({err.code!r}) while "
                                        "being imported"))
        return _CHILD_DONE
    except BaseException as err:
        reason = f"{type(err).__name__}: {err}"
        if err.__cause__ is not None:
            reason += f" (caused by {type(err.__cause__).__name__}: {err.__cause__})"
        _write_npz(work / "load.npz", kind=_scalar_text("load_error"),
                   message=_scalar_text(reason))
        return _CHILD_DONE
    for index in range(config["n_cases"]):
        with np.load(work / f"input{index}.npz", allow_pickle=False) as data:
            R = np.array(data["R"], dtype=np.float64, order="C")
            P = np.array(data["P0"], dtype=np.float64, order="C")
            Q = np.array(data["Q0"], dtype=np.float64, order="C")
            args = (int(data["K"]), int(data["max_steps"]), float(data["alpha"]),
                    float(data["beta"]), float(data["epsilon"]))
        arrays: dict[str, Any] = {}
        try:
            out = candidate(R, P, Q, *args)
        except SystemExit as err:
            _write_npz(work / f"case{index}.npz", status=_scalar_text("exited"),
                       message=_scalar_text(f"the candidate called sys.exit({err.code!r})"))
            return _CHILD_DONE
        except BaseException as err:
            arrays = {"status": _scalar_text("raised"),
                      "message": _scalar_text(f"{type(err).__name__}: {err}")}
        else:
            arrays = _returned_arrays(out)
            arrays.update(P_after=P, Q_after=Q, R_after=R)
        _write_npz(work / f"case{index}.npz", **arrays)
    _write_npz(work / "done.npz", n_cases=np.asarray(config["n_cases"]))
    return _CHILD_DONE


def _returned_arrays(out: Any) -> dict[str, Any]:
    """What the candidate returned, as float64 arrays or a description of why not."""
    try:
        P_out, Q_out = out
    except (TypeError, ValueError):
        return {"status": _scalar_text("bad_return"),
                "message": _scalar_text(f"expected a pair (P, Q) to be returned; got "
                                        f"{describe(out)}")}
    arrays: dict[str, Any] = {"status": _scalar_text("returned")}
    for key, value in (("P_out", P_out), ("Q_out", Q_out)):
        try:
            arrays[key] = np.array(value, dtype=np.float64)
        except (TypeError, ValueError):
            arrays[f"{key}_what"] = _scalar_text(describe(value))
    return arrays


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
