"""Compiled (numba) kernels, in one module, behind one lazy lookup.

numba is an optional dependency (``pip install 'lsqmf[fast]'``). Nothing here imports it at
module import time: each kernel is written below as a plain Python function over numpy arrays
and scalars, and :func:`get_kernel` compiles it with ``numba.njit`` on first request (no
fast-math, so floating-point operations run exactly as written, in the written order) and
caches the compiled function for the life of the process. Every request checks that numba is
importable, so a missing numba always produces the same clear :class:`ImportError`.

Design rules shared by every kernel
-----------------------------------
- Kernels take only numpy arrays and scalars, validated and converted by the caller (a public
  entry point elsewhere in lsqmf); they do no checking of their own.
- Arrays are updated in place; kernels return a scalar (a count or a cost) or nothing.
- Index arrays are int64; values float64; layouts are stated in each docstring.
- Randomness (e.g. a visiting order) is drawn by the caller with a ``numpy.random.Generator``
  and passed in as an array, so kernels are deterministic.

Kernels
-------
``tutorial_mf``
    The element-by-element loop of :mod:`lsqmf.reference`, the same operations in the same
    order (used by :func:`lsqmf.reference.matrix_factorization_fast`).
``sgd_epoch``
    One epoch of Funk-style SGD over the observed entries of a sparse matrix (for the ``sgd``
    solver).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["KERNELS", "get_kernel", "require_numba"]

_INSTALL_HINT = (
    "lsqmf's compiled kernels need numba, which is not installed; install lsqmf[fast] "
    "(pip install 'lsqmf[fast]') or pip install numba."
)


def require_numba() -> Any:
    """Import and return the ``numba`` module, or raise ImportError saying how to install it."""
    try:
        import numba
    except ImportError as err:
        raise ImportError(_INSTALL_HINT) from err
    return numba


# --------------------------------------------------------------------------------------------
# tutorial_mf


def _tutorial_mf(
    R: np.ndarray,
    P: np.ndarray,
    Qt: np.ndarray,
    max_steps: int,
    alpha: float,
    beta: float,
    epsilon: float,
) -> int:
    """The reference loop on checked arguments; returns the number of steps run.

    Parameters
    ----------
    R : ndarray of float64, shape (N, M)
        Entries ``> 0`` are observed.
    P : ndarray of float64, shape (N, K)
        Updated in place.
    Qt : ndarray of float64, shape (K, M)
        Updated in place; the transposed view of the caller's ``(M, K)`` array.
    max_steps : int
    alpha, beta, epsilon : float

    Notes
    -----
    The rules are those of :mod:`lsqmf.reference`; this is an independent transcription
    (the oracle's readability is not traded for speed, and this one's layout is not traded
    for readability). Without fast-math, every sum runs in index order, so the results agree
    with the oracle to the last bit.
    """
    N, M = R.shape
    K = P.shape[1]
    half_beta = beta / 2
    for step in range(max_steps):
        for i in range(N):
            for j in range(M):
                r = R[i, j]
                if r > 0:
                    dot = 0.0
                    for k in range(K):
                        dot += P[i, k] * Qt[k, j]
                    eij = 2.0 * (r - dot)
                    for k in range(K):
                        p = P[i, k] + alpha * (eij * Qt[k, j] - beta * P[i, k])
                        P[i, k] = p
                        Qt[k, j] = Qt[k, j] + alpha * (eij * p - beta * Qt[k, j])
        e = 0.0
        for i in range(N):
            for j in range(M):
                r = R[i, j]
                if r > 0:
                    dot = 0.0
                    for k in range(K):
                        dot += P[i, k] * Qt[k, j]
                    e += (r - dot) * (r - dot)
                    for k in range(K):
                        e += half_beta * (P[i, k] * P[i, k] + Qt[k, j] * Qt[k, j])
        if e < epsilon:
            return step + 1
    return max_steps


# --------------------------------------------------------------------------------------------
# lookup table and lazy compilation

#: Kernel name -> (plain Python function, numba signature) that :func:`get_kernel` compiles.
#: Array arguments are typed with layout 'A' (any strides), so each kernel is compiled exactly
#: once, eagerly, whatever the memory layout of the caller's arrays (such as a transposed view).
KERNELS: dict[str, tuple[Callable[..., Any], str]] = {
    "tutorial_mf": (
        _tutorial_mf,
        "int64(float64[:, :], float64[:, :], float64[:, :], int64, float64, float64, float64)",
    ),
}

_compiled: dict[str, Callable[..., Any]] = {}
_lock = threading.Lock()


def get_kernel(name: str) -> Callable[..., Any]:
    """The compiled kernel ``name`` from :data:`KERNELS` (compiled on first request).

    The first request for a kernel compiles it (typically a second or two); later requests
    return the same compiled function.

    Raises
    ------
    ImportError
        If numba is not installed.
    ValueError
        If ``name`` is not in :data:`KERNELS`.
    """
    numba = require_numba()
    if name not in KERNELS:
        allowed = ", ".join(repr(n) for n in KERNELS)
        raise ValueError(f"`name` must be one of {allowed}; got {name!r}.")
    with _lock:
        kernel = _compiled.get(name)
        if kernel is None:
            function, signature = KERNELS[name]
            kernel = numba.njit(signature, cache=False, fastmath=False, nogil=True)(function)
            _compiled[name] = kernel
    return kernel
