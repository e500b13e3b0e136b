"""The one kernel table: every compiled kernel of lsqmf by name, for a backend; one warm-up.

Each kernel module declares its kernels (:class:`~lsqmf.kernels.jit.Kernel`: the Python
source numba compiles, its numpy oracle, how to compile it) in a ``KERNELS`` tuple;
:data:`KERNELS` below is their union, a plain dict built at import of this module:

=====================  ===========================================================
module                 kernels
=====================  ===========================================================
``kernels.core``       ``tutorial_mf``, ``sgd_epoch``, ``als_rows``, ``residual_sse``,
                       ``jac_matvec``, ``jac_rmatvec``
``kernels.solvers``    ``cg_rows``, ``gibbs_rows``, ``bsgd_epoch``, ``bsgd_cells``,
                       ``predict_pairs``
``kernels.bmf``        ``gibbs_side``, ``sse_pairs``
``kernels.varpro``     ``varpro_gram``, ``varpro_matvec``, ``varpro_rmatvec``,
                       ``normal_tri_pairs``, ``normal_scatter``
=====================  ===========================================================

A caller resolves its ``backend`` once (:func:`lsqmf.kernels.backend.resolve_backend`) and
asks here: :func:`get_kernel` for one kernel (the compiled function, or the numpy oracle),
:func:`select_kernels` for several (None for the numpy path). :func:`warm_up` loads the kernels
it is given -- a solver's are :attr:`lsqmf.solvers.SolverSpec.kernels` -- before a clock
starts, so that compile time is never counted as fit time. A backend for another device would
be one more folder (``kernels/cuda/``) whose kernels this table also lists.

Before the first kernel is loaded, :func:`lsqmf.runtime.threads.passive_openmp_wait` sets
``OMP_WAIT_POLICY=passive`` (unless the environment sets it) for numba's OpenMP threads.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

from ..runtime.threads import passive_openmp_wait
from . import bmf, core, solvers, varpro
from .backend import BACKENDS, NUMBA_MISSING, resolve_backend
from .jit import Kernel, compiled

__all__ = ["BACKENDS", "KERNELS", "get_kernel", "resolve_backend", "select_kernels", "warm_up"]

logger = logging.getLogger("lsqmf.kernels")


def _table(*modules: tuple[Kernel, ...]) -> Mapping[str, Kernel]:
    table: dict[str, Kernel] = {}
    for kernels in modules:
        for kernel in kernels:
            if kernel.name in table:  # pragma: no cover - a programming error, caught by import
                raise RuntimeError(f"kernel {kernel.name!r} is declared twice")
            table[kernel.name] = kernel
    return MappingProxyType(table)


#: Kernel name -> its declaration, for every kernel module.
KERNELS: Mapping[str, Kernel] = _table(core.KERNELS, solvers.KERNELS, bmf.KERNELS, varpro.KERNELS)


def _kernel(name: str) -> Kernel:
    if name not in KERNELS:
        allowed = ", ".join(repr(n) for n in KERNELS)
        raise ValueError(f"`name` must be one of {allowed}; got {name!r}.")
    return KERNELS[name]


def get_kernel(name: str, backend: str = "compiled") -> Callable[..., Any]:
    """The kernel ``name`` for ``backend``: numba's function, or the numpy oracle.

    The first request for a compiled kernel in a process loads it from numba's disk cache, or
    compiles it (a second or two) and writes the cache; later requests return the same
    function.

    Parameters
    ----------
    name : str
        A key of :data:`KERNELS`.
    backend : {'compiled', 'numpy', 'auto'}, default='compiled'

    Raises
    ------
    ImportError
        If the backend is ``'compiled'`` and numba cannot be imported.
    ValueError
        If ``name`` or ``backend`` is unknown, or the numpy backend is asked for a kernel whose
        numpy path lives with its caller (its :attr:`~lsqmf.kernels.jit.Kernel.oracle` is None).
    """
    kernel = _kernel(name)
    if resolve_backend(backend) == "numpy":
        if kernel.oracle is None:
            raise ValueError(
                f"kernel {name!r} has no numpy oracle in lsqmf.kernels (its numpy path lives with "
                "its caller); use select_kernels, which gives None for the numpy backend."
            )
        return kernel.oracle
    passive_openmp_wait()
    return compiled(kernel)


def select_kernels(
    names: Iterable[str], backend: str = "auto"
) -> tuple[Callable[..., Any], ...] | None:
    """The compiled kernels ``names`` for ``backend``, or None for the numpy path.

    ``backend='auto'`` gives the kernels when numba imports (and falls back to numpy, with a
    logged warning, when it does not or fails to import); ``'compiled'`` requires numba;
    ``'numpy'`` gives None and imports nothing.

    Raises
    ------
    ImportError
        If ``backend='compiled'`` and numba cannot be imported.
    ValueError
        If ``backend`` or a name is unknown.
    """
    resolved = resolve_backend(backend)
    kernels = [_kernel(name) for name in names]
    if resolved == "numpy":
        return None
    passive_openmp_wait()
    try:
        return tuple(compiled(kernel) for kernel in kernels)
    except ImportError:
        if backend == "compiled":
            raise
        logger.warning(NUMBA_MISSING)
        return None


def warm_up(names: Iterable[str] | None = None, backend: str = "auto") -> float:
    """Load the kernels ``names`` from numba's disk cache (or compile them) now; returns seconds.

    Timed entry points call this before their clock starts -- ``solve`` with the kernels of its
    plan, each solver with :attr:`lsqmf.solvers.SolverSpec.kernels`, ``fit_and_score`` (so
    ``lsqmf evaluate``) once, a Dask worker with the kernels it is handed -- so that compile
    time is never counted as fit time. A kernel compiled on its first call is run once on a
    tiny problem (its ``example``), with the argument types of its callers. Exactly the kernels
    named are loaded. A no-op for the numpy backend (and for ``'auto'`` without numba), which
    imports no numba; later calls return at once.

    Parameters
    ----------
    names : iterable of str, optional
        Keys of :data:`KERNELS` (default: every kernel).
    backend : {'auto', 'compiled', 'numpy'}, default='auto'

    Raises
    ------
    ValueError
        If ``backend`` or a name is unknown.
    """
    t0 = time.perf_counter()
    kernels = [_kernel(name) for name in (KERNELS if names is None else names)]
    if resolve_backend(backend) == "numpy":
        return 0.0
    passive_openmp_wait()
    for kernel in kernels:
        function = compiled(kernel)
        if kernel.example is not None and not _ready(function):
            kernel.example(function)
    return time.perf_counter() - t0


def _ready(function: Any) -> bool:
    """Whether a lazily compiled kernel has been compiled (or loaded) for some types already."""
    return bool(getattr(function, "signatures", ()))

