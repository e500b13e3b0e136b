"""The child process of an isolated ``lsqmf verify`` run, and :func:`load_candidate`.

Stand-alone on purpose: numpy and the standard library only, no import of lsqmf, so that the
child starts quickly and holds nothing of lsqmf's unless the candidate imports it. The parent
(:mod:`lsqmf.oracle.verify`) runs this file as a script with a work directory holding
``config.json`` (the spec and the number of cases) and ``input<i>.npz`` (each case's stored
inputs). The child imports the candidate, calls it on fresh copies of each case's inputs, and
writes what came back -- arrays only -- to ``case<i>.npz`` (``load.npz`` if the import failed,
``done.npz`` at the end). It compares nothing: the verdict is the parent's.

Before importing the candidate the child arranges to die with its parent (Linux
``PR_SET_PDEATHSIG``, also in every process it forks with ``os.fork``). After the import it
tells the parent so over the socket it was given (``config['fd']``) and receives the run's
token, which every result file carries (see :mod:`lsqmf.oracle._isolation` for the threat
model). At the end it leaves with ``os._exit(0)``: a thread the candidate left running does
not keep the process alive.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import json
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["load_candidate", "main"]

#: Exit code of the child after it reported everything it was asked for.
_CHILD_DONE = 0


# duplicates: the verify child must not import lsqmf (copy of describe)
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


_TOKEN: dict[str, str] = {}
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Be killed when the parent thread that started this process ends (Linux)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no prctl
            pass


def _write_npz(path: Path, **arrays: Any) -> None:
    """Write ``arrays`` and the run's token to ``path`` all at once (the parent never sees half
    a file)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, token=np.asarray(_TOKEN.get("value", "")), **arrays)
    os.replace(tmp, path)


def _receive_token(fd: int) -> None:
    """Tell the parent the candidate is imported; receive the run's token."""
    with socket.socket(fileno=fd) as sock:
        sock.sendall(b"loaded\n")
        data = b""
        while len(data) < 64:
            chunk = sock.recv(64 - len(data))
            if not chunk:
                break
            data += chunk
    _TOKEN["value"] = data.decode("ascii", "replace")


def _load(config: dict[str, Any], work: Path) -> Callable[..., Any] | None:
    """Import the candidate (then receive the token); None after writing ``load.npz``."""
    try:
        candidate = load_candidate(config["spec"])
    except SystemExit as err:
        _receive_token(config["fd"])
        _write_npz(work / "load.npz", kind=_scalar_text("exit"),
                   message=_scalar_text(f"the candidate called sys.exit({err.code!r}) while "
                                        "being imported"))
        return None
    except BaseException as err:
        reason = f"{type(err).__name__}: {err}"
        if err.__cause__ is not None:
            reason += f" (caused by {type(err.__cause__).__name__}: {err.__cause__})"
        _receive_token(config["fd"])
        _write_npz(work / "load.npz", kind=_scalar_text("load_error"),
                   message=_scalar_text(reason))
        return None
    _receive_token(config["fd"])
    return candidate


def main(workdir: str) -> int:
    """Body of the child process: import the candidate, run it on each case's inputs, write
    what it returned. Compares nothing."""
    work = Path(workdir)
    config = json.loads((work / "config.json").read_text())
    _die_with_parent()
    os.register_at_fork(after_in_child=_die_with_parent)
    if os.getppid() != config["parent"]:  # the parent died before the line above
        return _CHILD_DONE
    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:
        sys.path.insert(0, cwd)  # like `python -m`: modules in the current directory import
    candidate = _load(config, work)
    if candidate is None:
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
    code = main(sys.argv[1])
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)  # not sys.exit: a thread the candidate left must not keep us alive
