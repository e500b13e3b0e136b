"""The ``backend`` argument (``'auto'|'compiled'|'numpy'``) and the kernel warm-up.

Kept apart from :mod:`lsqmf._compiled` (the kernels themselves, imported on first use only) so
that ``import lsqmf`` -- and the oracles it offers -- never loads the compiled code. See
:mod:`lsqmf._compiled` for the backends and the disk cache.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Iterable
from typing import Any

from ._validation import check_choice

__all__ = ["BACKENDS", "resolve_backend", "select_kernels", "warm_up"]

logger = logging.getLogger("lsqmf._compiled")

#: Values of the ``backend`` argument; see :func:`resolve_backend`.
BACKENDS = ("auto", "compiled", "numpy")


def resolve_backend(backend: str = "auto") -> str:
    """The backend that runs: ``'compiled'`` or ``'numpy'``.

    ``'auto'`` is ``'compiled'`` when numba can be imported, else ``'numpy'`` (with a logged
    warning); ``'compiled'`` and ``'numpy'`` are returned as they are.

    Raises
    ------
    ValueError
        If ``backend`` is not one of :data:`BACKENDS`.
    """
    check_choice("backend", backend, BACKENDS)
    if backend != "auto":
        return backend
    if importlib.util.find_spec("numba") is not None:
        return "compiled"
    logger.warning("numba cannot be imported; lsqmf runs its numpy implementations instead")
    return "numpy"


def select_kernels(
    names: tuple[str, ...], backend: str = "auto"
) -> tuple[Callable[..., Any], ...] | None:
    """The compiled kernels ``names`` for ``backend``, or None for the numpy path.

    ``backend='auto'`` gives the kernels when numba imports (and falls back to numpy when it
    does not, or fails to import); ``'compiled'`` requires numba; ``'numpy'`` gives None.

    Raises
    ------
    ImportError
        If ``backend='compiled'`` and numba is not installed.
    ValueError
        If ``backend`` or a name is unknown.
    """
    check_choice("backend", backend, BACKENDS)
    if backend == "numpy":
        return None
    from ._compiled import get_kernel

    try:
        return tuple(get_kernel(name) for name in names)
    except ImportError:
        if backend == "compiled":
            raise
        logger.warning("numba cannot be imported; lsqmf runs its numpy implementations instead")
        return None


def warm_up(backend: str = "auto", names: Iterable[str] | None = None) -> None:
    """Compile the kernels (or load them from the disk cache) now, before any clock starts.

    Timed entry points (``solve``, the solvers, the benchmarks, ``lsqmf evaluate``) call this
    first, so that compile time is never counted as fit time. A no-op for the numpy backend
    (and for ``'auto'`` without numba); later calls return at once.

    Parameters
    ----------
    backend : {'auto', 'compiled', 'numpy'}, default='auto'
    names : iterable of str, optional
        Kernels to prepare (default: all of :data:`lsqmf._compiled.KERNELS`).
    """
    if resolve_backend(backend) == "numpy":
        return
    from ._compiled import KERNELS, get_kernel

    for name in KERNELS if names is None else names:
        get_kernel(name)
