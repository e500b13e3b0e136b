"""What a compiled kernel is (:class:`Kernel`) and how numba compiles it, written once.

Every kernel module of :mod:`lsqmf.kernels` (``core``, ``solvers``, ``bmf``, ``varpro``)
writes its kernels as plain Python functions over numpy arrays and scalars, and declares each
one as a :class:`Kernel` in its ``KERNELS`` tuple; :mod:`lsqmf.kernels.registry` gathers them
into the one table. :func:`compiled` turns a declaration into the numba function, once per
process, under one lock:

- the module's stage helpers (:attr:`Kernel.helpers`, names in the module's namespace) are
  rebound to ``numba.njit(inline='always')`` versions first (:func:`jit_helpers`), so the
  compiled kernel runs the operations of one written in a single body, in the same order;
- for a parallel kernel, the module's ``_prange`` (plain ``range`` when the function is called
  from Python) is rebound to ``numba.prange``;
- the kernel is compiled with ``cache=True`` (numba's disk cache, next to the module or in
  ``$NUMBA_CACHE_DIR``), ``nogil=True``, no fast-math unless the kernel lists its flags, and
  eagerly when it states a signature (else on its first call, for the argument types given;
  :attr:`Kernel.example` is a call that makes those types known to a warm-up).

Nothing here imports numba at import time. A future ``kernels/cuda/`` would compile the same
declarations its own way, behind the same table.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["Kernel", "compiled", "jit_helpers", "require_numba"]

_INSTALL_HINT = (
    "lsqmf's compiled kernels need numba (a required dependency), which cannot be imported; "
    "reinstall it (pip install numba, or pip install 'lsqmf[fast]'), or pass backend='numpy'."
)


@dataclass(frozen=True, eq=False)
class Kernel:
    """One compiled kernel: its source, its numpy oracle, and how to compile and warm it up."""

    #: The name in :data:`lsqmf.kernels.registry.KERNELS` (unique across modules).
    name: str
    #: The plain Python function numba compiles (its module's namespace holds the helpers).
    function: Callable[..., Any]
    #: The numpy implementation with the same arguments and outputs (the tests' oracle), or
    #: None when the numpy path lives with the caller, in another form (documented there).
    oracle: Callable[..., Any] | None = None
    #: numba signature for an eager compile, or None to compile on the first call.
    signature: str | None = None
    #: Compiled with ``parallel=True`` (its row loop is the module's ``_prange``).
    parallel: bool = False
    #: numba fast-math flags (only for a kernel with no reference order to reproduce).
    fastmath: frozenset[str] = frozenset()
    #: Names of the stage helpers in the module's namespace, inlined into the kernel.
    helpers: tuple[str, ...] = ()
    #: For a kernel without ``signature``: calls the compiled kernel on a tiny problem with the
    #: argument types its callers use, so that a warm-up compiles (or loads) what they run.
    example: Callable[[Callable[..., Any]], object] | None = None


_compiled: dict[str, Callable[..., Any]] = {}
_lock = threading.Lock()


def require_numba() -> Any:
    """Import and return the ``numba`` module, or raise ImportError saying how to install it."""
    try:
        import numba
    except ImportError as err:
        raise ImportError(_INSTALL_HINT) from err
    return numba


def jit_helpers(namespace: dict[str, Any], names: Iterable[str]) -> None:
    """Rebind each function ``namespace[name]`` to ``numba.njit(inline='always')`` of it.

    numba compiles a call from a kernel only to a compiled function, so :func:`compiled` calls
    this (under its lock) before compiling a kernel. ``inline='always'`` inlines each helper
    into the kernel at numba's IR level: without fast-math the kernel runs the same operations
    in the same order as if the helper's body were written in it (bit-identical results), and
    its disk cache entry holds the whole kernel. Measured against the single-body kernels
    (compiled and loaded from the cache), a split showed no slowdown, except where a helper
    took a runtime scale factor for every entry (``gibbs_rows`` 5-9% slower at rank 10 from the
    cache): the caller scales the weights once instead. A compiled helper is still callable
    from Python. Idempotent.
    """
    numba = require_numba()
    for name in names:
        function = namespace[name]
        if not hasattr(function, "py_func"):  # not compiled yet
            namespace[name] = numba.njit(cache=True, inline="always", nogil=True)(function)


def compiled(kernel: Kernel) -> Callable[..., Any]:
    """The numba function of ``kernel``, compiled (or loaded from the disk cache) on the first
    request in the process; later requests return the same function.

    Raises
    ------
    ImportError
        If numba cannot be imported.
    """
    numba = require_numba()
    with _lock:
        function = _compiled.get(kernel.name)
        if function is None:
            namespace = kernel.function.__globals__
            jit_helpers(namespace, kernel.helpers)
            if kernel.parallel:
                namespace["_prange"] = numba.prange  # plain `range` when called from Python
            options: dict[str, Any] = {"cache": True, "nogil": True, "parallel": kernel.parallel}
            if kernel.fastmath:
                options["fastmath"] = set(kernel.fastmath)
            jit = numba.njit(kernel.signature, **options) if kernel.signature else numba.njit(
                **options
            )
            function = jit(kernel.function)
            _compiled[kernel.name] = function
    return function
