"""User-facing argument checks and their messages.

Every public entry point validates its arguments here before doing any work, so that a bad
argument produces a ``ValueError`` (wrong value) or ``TypeError`` (wrong type) that names the
argument, states the requirement and shows what was received, instead of a traceback from deep
inside numpy or scipy.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "check_array",
    "check_bool",
    "check_choice",
    "check_file",
    "check_float",
    "check_int",
    "check_random_state",
    "describe",
]


# duplicates: the verify child must not import lsqmf, so it copies this
def describe(value: Any) -> str:
    """Short, safe description of a received value for error messages."""
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape} and dtype {value.dtype}"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def check_int(
    name: str, value: Any, *, min_value: int | None = None, max_value: int | None = None
) -> int:
    """Return ``value`` as ``int`` after checking type and range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an int; got {describe(value)}.")
    value = int(value)
    if min_value is not None and value < min_value:
        raise ValueError(f"`{name}` must be an int >= {min_value}; got {value}.")
    if max_value is not None and value > max_value:
        raise ValueError(f"`{name}` must be an int <= {max_value}; got {value}.")
    return value


# duplicates: every check_* has one calling convention (name, value, *, limits)
def check_float(
    name: str,
    value: Any,
    *,
    min_value: float | None = None,
    max_value: float | None = None,
    min_inclusive: bool = True,
    max_inclusive: bool = True,
    allow_none: bool = False,
) -> float | None:
    """Return ``value`` as a finite ``float`` after checking type and range."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a real number; got {describe(value)}.")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"`{name}` must be finite; got {value}.")
    if min_value is not None:
        bad = value < min_value if min_inclusive else value <= min_value
        if bad:
            op = ">=" if min_inclusive else ">"
            raise ValueError(f"`{name}` must be {op} {min_value}; got {value}.")
    if max_value is not None:
        bad = value > max_value if max_inclusive else value >= max_value
        if bad:
            op = "<=" if max_inclusive else "<"
            raise ValueError(f"`{name}` must be {op} {max_value}; got {value}.")
    return value


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` after checking that it is a bool."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"`{name}` must be True or False; got {describe(value)}.")
    return bool(value)


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Return ``value`` after checking that it is one of ``choices``."""
    choices = list(choices)
    try:
        ok = value in choices
    except TypeError:  # unhashable or incomparable value
        ok = False
    if not ok:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"`{name}` must be one of {allowed}; got {describe(value)}.")
    return value


# duplicates: every check_* has one calling convention (name, value, *, limits)
def check_array(
    name: str,
    value: Any,
    *,
    ndim: int | None = None,
    shape: tuple[int | None, ...] | None = None,
    finite: bool = True,
    dtype: type | np.dtype = np.float64,
    copy: bool = False,
) -> np.ndarray:
    """Convert ``value`` to a numeric array and check its dimensions, shape and finiteness."""
    if value is None:
        raise TypeError(f"`{name}` must be an array; got None.")
    try:
        arr = np.array(value, dtype=dtype, copy=True) if copy else np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"`{name}` must be array-like of real numbers; got {describe(value)}."
        ) from err
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"`{name}` must be {ndim}-dimensional; got shape {arr.shape}.")
    if shape is not None:
        expected = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        if arr.ndim != len(shape) or any(
            s is not None and s != a for s, a in zip(shape, arr.shape, strict=True)
        ):
            raise ValueError(
                f"`{name}` must have shape {expected}; got shape {arr.shape}."
            )
    if finite and arr.size and not np.all(np.isfinite(arr)):
        n_bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ValueError(f"`{name}` must be finite; it has {n_bad} NaN or infinite value(s).")
    return arr


def check_file(path: Any, what: str, *, a_file: str | None = None) -> Path:
    """``path`` as a :class:`~pathlib.Path` to an existing regular file; ``what`` names the kind
    of file in the messages (``'ratings'``), ``a_file`` overrides ``f'a {what} file'``."""
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"`path` must be a file path; got {describe(path)}.")
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{str(p)!r} is a directory, not {a_file or f'a {what} file'}.")
    if p.exists() and not p.is_file():  # a FIFO or a device: reading it could block forever
        raise ValueError(f"{str(p)!r} is not a regular file (a pipe or a device); give a file.")
    if not p.is_file():
        raise FileNotFoundError(f"no such {what} file: {str(p)!r} (it does not exist)")
    return p


def check_random_state(random_state: Any, name: str = "random_state") -> np.random.Generator:
    """Turn ``None``, an int seed or a ``Generator`` into a fresh ``Generator``.

    Global numpy random state is never used.
    """
    if random_state is None or (
        isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool)
    ):
        if random_state is not None and int(random_state) < 0:
            raise ValueError(f"`{name}` must be a non-negative int seed; got {random_state}.")
        return np.random.default_rng(None if random_state is None else int(random_state))
    if isinstance(random_state, np.random.Generator):
        return random_state
    raise TypeError(
        f"`{name}` must be None, an int seed or a numpy.random.Generator; "
        f"got {describe(random_state)}."
    )


def resolve_seed(
    random_state: Any, name: str = "random_state"
) -> tuple[np.random.Generator, int | None]:
    """A fresh ``Generator`` and the int seed that replays it.

    ``None`` draws a seed from the operating system's entropy and returns it, so that the
    caller can record it and any run can be replayed; an int is its own seed; a ``Generator``
    is used as it is and has no seed to record (``None``).
    """
    if random_state is None:
        seed = int(np.random.SeedSequence().generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
        return np.random.default_rng(seed), seed
    rng = check_random_state(random_state, name)
    if isinstance(random_state, np.random.Generator):
        return rng, None
    return rng, int(random_state)


def bound_arrays(
    bounds: Any,
    n_par: int,
    n_factor: int,
    *,
    pair_error: str,
    shape_error: Callable[[str, tuple[int, ...]], str],
) -> tuple[np.ndarray, np.ndarray]:
    """``bounds`` (a ``scipy.optimize.Bounds`` or a pair ``(lb, ub)``) as two float arrays of
    length ``n_par``: a scalar bounds the first ``n_factor`` entries (the factors) and leaves
    the rest (the biases) free. ``pair_error`` is the message for anything that is not a pair;
    ``shape_error(name, shape)`` the one for an array of the wrong length."""
    if hasattr(bounds, "lb") and hasattr(bounds, "ub"):
        bounds = (bounds.lb, bounds.ub)
    if not isinstance(bounds, tuple | list) or len(bounds) != 2:
        raise TypeError(f"{pair_error}; got {describe(bounds)}.")
    out = []
    for name, b, fill in (("lower bound", bounds[0], -np.inf), ("upper bound", bounds[1], np.inf)):
        arr = np.asarray(b, dtype=np.float64)
        if arr.ndim == 0:
            full = np.full(n_par, fill)
            full[:n_factor] = arr
            arr = full
        elif arr.shape != (n_par,):
            raise ValueError(shape_error(name, arr.shape))
        if np.isnan(arr).any():
            raise ValueError(f"`bounds` {name} must not contain NaN.")
        out.append(arr)
    return out[0], out[1]
