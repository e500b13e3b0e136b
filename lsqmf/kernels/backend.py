"""The ``backend`` argument (``'auto'|'compiled'|'numpy'``) and the kernel warm-up.

Kept apart from :mod:`lsqmf.kernels.core` (the kernels themselves, imported on first use only) so
that ``import lsqmf`` -- and the oracles it offers -- never loads the compiled code. See
:mod:`lsqmf.kernels.core` for the backends and the disk cache.

The warm-up loads only what is asked for: :func:`warm_up_solver` the kernels of one solver
(:data:`SOLVER_KERNELS`), so that a process fitting ``als`` reads one kernel from the disk
cache, not all nine. Before the first kernel is loaded,
:func:`lsqmf.runtime.threads.passive_openmp_wait`
sets ``OMP_WAIT_POLICY=passive`` (unless the environment sets it) for numba's OpenMP threads.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from .._validation import check_choice
from ..runtime.threads import passive_openmp_wait

__all__ = [
    "BACKENDS",
    "SOLVER_KERNELS",
    "SolverKernels",
    "resolve_backend",
    "select_kernels",
    "warm_up",
    "warm_up_solver",
]

logger = logging.getLogger("lsqmf.kernels.core")

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
    passive_openmp_wait()
    from .core import get_kernel

    try:
        return tuple(get_kernel(name) for name in names)
    except ImportError:
        if backend == "compiled":
            raise
        logger.warning("numba cannot be imported; lsqmf runs its numpy implementations instead")
        return None


def warm_up(backend: str = "auto", names: Iterable[str] | None = None) -> None:
    """Compile the kernels (or load them from the disk cache) now, before any clock starts.

    Timed entry points call this (``solve`` with the kernels of its plan, the benchmarks) or
    :func:`warm_up_solver` (the solvers, ``fit_and_score`` and so ``lsqmf evaluate``) first, so
    that compile time is never counted as fit time. A no-op for the numpy backend (and for
    ``'auto'`` without numba); later calls return at once.

    Parameters
    ----------
    backend : {'auto', 'compiled', 'numpy'}, default='auto'
    names : iterable of str, optional
        Kernels to prepare (default: all of :data:`lsqmf.kernels.core.KERNELS`).
    """
    if resolve_backend(backend) == "numpy":
        return
    passive_openmp_wait()
    from .core import KERNELS, get_kernel

    for name in KERNELS if names is None else names:
        get_kernel(name)


class SolverKernels(NamedTuple):
    """The compiled kernels one solver can run, by the table that holds them."""

    #: Names in :data:`lsqmf.kernels.core.KERNELS`.
    core: tuple[str, ...] = ()
    #: Names in :data:`lsqmf.kernels.solvers.KERNELS` (the fast solvers' kernels).
    fast: tuple[str, ...] = ()
    #: Names in :data:`lsqmf.kernels.bmf.KERNELS` (the Bayesian MF sampler's).
    bmf: tuple[str, ...] = ()


_OPERATOR = ("jac_matvec", "jac_rmatvec")

#: Solver name (as in :data:`lsqmf.solvers.SOLVER_SPECS`) -> the kernels it can run with the
#: compiled backend, so that :func:`warm_up_solver` loads those and no others (each kernel read
#: from the disk cache costs start-up time; the first one also initializes numba). ``lsq`` runs
#: the Jacobian-product kernels when ``jac='operator'`` or when ``jac='auto'`` picks the operator
#: (large problems); ``gd`` and ``als_gd`` use the same operator. ``tests/test_startup.py``
#: runs every solver after its warm-up and checks that it loads no kernel missing here.
SOLVER_KERNELS: Mapping[str, SolverKernels] = MappingProxyType({
    "lsq": SolverKernels(core=_OPERATOR),
    "als": SolverKernels(core=("als_rows",)),
    "gd": SolverKernels(core=_OPERATOR),
    "als_gd": SolverKernels(core=("als_rows", *_OPERATOR)),
    "als_sgd": SolverKernels(core=("als_rows", "sgd_epoch")),
    "sgd": SolverKernels(core=("sgd_epoch",)),
    "als_cg": SolverKernels(fast=("cg_rows",)),
    "bsgd": SolverKernels(fast=("sgd_epoch",)),
    "bmf": SolverKernels(fast=("cg_rows", "predict_pairs"), bmf=("gibbs_side", "sse_pairs")),
})


def warm_up_solver(solver: str, backend: str = "auto") -> None:
    """Load (or compile) the kernels of ``solver`` now, before its clock starts.

    The solvers call this before their clock, and so does
    :func:`lsqmf.evaluate.search.fit_and_score`
    (``lsqmf evaluate``, ``cv``, grid search) before ``fit_s``, and the command line earlier
    still, before it reads the data (``prepare`` in :mod:`lsqmf.cli`): only the kernels listed in
    :data:`SOLVER_KERNELS` are loaded, so a process that fits one solver does not pay for the
    kernels of the others. A solver outside the table gets every kernel. A no-op for the numpy
    backend (and for ``'auto'`` without numba).

    Parameters
    ----------
    solver : str
        A solver name (a key of :data:`SOLVER_KERNELS`).
    backend : {'auto', 'compiled', 'numpy'}, default='auto'
    """
    if resolve_backend(backend) == "numpy":
        return
    passive_openmp_wait()
    kernels = SOLVER_KERNELS.get(solver)
    warm_up(backend, None if kernels is None else kernels.core)
    if kernels is None or kernels.fast:
        from . import solvers as _kernels  # the fast solvers' own table (imported only if needed)

        _kernels.warm_up(None if kernels is None else kernels.fast)
    if kernels is None or kernels.bmf:
        from . import bmf as _kernels_bmf

        _kernels_bmf.warm_up(None if kernels is None else kernels.bmf)
