"""lsqmf: low-rank matrix factorization with missing data as nonlinear least squares.

The core is :func:`solve`, which writes the factorization as a residual vector with a sparse,
Kronecker-structured Jacobian and hands it to ``scipy.optimize.least_squares``.

``import lsqmf`` is cheap: the names of :data:`__all__` (and the submodules) are imported on
first use (PEP 562), so a command that needs only a solver and the data does not pay for
scipy.optimize, pandas or numba before it uses them. ``from lsqmf import solve`` and
``lsqmf.solve`` work as if everything were imported up front.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .data.ratings import Ratings, as_ratings
    from .model.foldin import fold_in
    from .model.gradcheck import JacobianCheck, JacobianCheckError, check_jacobian
    from .model.problem import FORMULATIONS, Problem, build_problem, kron_jacobian
    from .model.result import (
        ColdStartWarning,
        ConvergenceWarning,
        FitResult,
        History,
        IterationInfo,
        Predictions,
        Status,
    )
    from .nls.multistart import MultistartResult, multistart
    from .nls.solve import LOSSES, METHODS, TR_SOLVERS, NonFiniteResidualError, solve
    from .solvers import SOLVER_DEFAULTS, SOLVERS, get_solver

from ._version import __version__

__all__ = [
    "FORMULATIONS",
    "LOSSES",
    "METHODS",
    "SOLVERS",
    "SOLVER_DEFAULTS",
    "TR_SOLVERS",
    "ColdStartWarning",
    "ConvergenceWarning",
    "FitResult",
    "History",
    "IterationInfo",
    "JacobianCheck",
    "JacobianCheckError",
    "MultistartResult",
    "NonFiniteResidualError",
    "Predictions",
    "Problem",
    "Ratings",
    "Status",
    "__version__",
    "as_ratings",
    "build_problem",
    "check_jacobian",
    "fold_in",
    "get_solver",
    "kron_jacobian",
    "multistart",
    "solve",
]

#: Submodule -> the names of :data:`__all__` it defines (imported on first access).
_EXPORTS: dict[str, tuple[str, ...]] = {
    "model.foldin": ("fold_in",),
    "model.gradcheck": ("JacobianCheck", "JacobianCheckError", "check_jacobian"),
    "nls.multistart": ("MultistartResult", "multistart"),
    "model.problem": ("FORMULATIONS", "Problem", "build_problem", "kron_jacobian"),
    "data.ratings": ("Ratings", "as_ratings"),
    "model.result": ("ColdStartWarning", "ConvergenceWarning", "FitResult", "History",
                     "IterationInfo", "Predictions", "Status"),
    "nls.solve": ("LOSSES", "METHODS", "TR_SOLVERS", "NonFiniteResidualError", "solve"),
    "solvers": ("SOLVER_DEFAULTS", "SOLVERS", "get_solver"),
}

#: Exported name -> the submodule that defines it.
_SOURCE = {name: module for module, names in _EXPORTS.items() for name in names}

#: Modules of the flat layout (lsqmf 0.1) -> their home in the layered one. Importing an old
#: path gives the new module, for one release, so that scripts written against it keep working;
#: lsqmf's own code, tests, benchmarks and examples use the new paths.
_MOVED: dict[str, str] = {
    "ratings": "data.ratings", "datasets": "data.readers", "problem": "model.problem",
    "result": "model.result", "foldin": "model.foldin", "model_io": "model.files",
    "gradcheck": "model.gradcheck", "start": "model.start", "parallel": "runtime.parallel",
    "varpro": "nls.varpro", "evaluation": "evaluate", "tuning": "evaluate.tuning",
    "reference": "oracle.reference", "golden": "oracle.golden", "verify": "oracle.verify",
}


def __getattr__(name: str) -> Any:
    """Import an exported name or a submodule on first access (PEP 562)."""
    module = _SOURCE.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    if name in _MOVED:
        return importlib.import_module(f"{__name__}.{name}")
    if importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``lsqmf.<old name>`` of :data:`_MOVED` and loads it as the module at its new home
    (the same module object, so patches and identity checks agree)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        head, _, old = fullname.partition(".")
        if head != __name__ or old not in _MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: Any) -> types.ModuleType:
        return importlib.import_module(f"{__name__}.{_MOVED[spec.name.partition('.')[2]]}")

    def exec_module(self, module: types.ModuleType) -> None:
        """The module is already executed at its new home."""


if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
    sys.meta_path.append(_MovedModuleFinder())
