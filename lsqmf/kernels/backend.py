"""The ``backend`` argument (``'auto'|'compiled'|'numpy'``): the one backend switch.

Every entry point that runs a kernel takes ``backend`` and resolves it here, once;
:mod:`lsqmf.kernels.registry` then gives the kernels for the resolved backend. Kept apart from
the registry (which imports the kernel modules) so that validating ``backend`` -- which
``import lsqmf`` does -- loads no kernel code.
"""

from __future__ import annotations

import logging

from .._validation import check_choice
from ..runtime.threads import numba_available

__all__ = ["BACKENDS", "NUMBA_MISSING", "resolve_backend"]

logger = logging.getLogger("lsqmf.kernels")

#: Values of the ``backend`` argument; see :func:`resolve_backend`.
BACKENDS = ("auto", "compiled", "numpy")

#: The warning logged when ``backend='auto'`` falls back to numpy.
NUMBA_MISSING = "numba cannot be imported; lsqmf runs its numpy implementations instead"


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
    if numba_available():
        return "compiled"
    logger.warning(NUMBA_MISSING)
    return "numpy"
