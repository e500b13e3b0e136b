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
import importlib.util
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .foldin import fold_in
    from .gradcheck import JacobianCheck, JacobianCheckError, check_jacobian
    from .multistart import MultistartResult, multistart
    from .problem import FORMULATIONS, Problem, build_problem, kron_jacobian
    from .ratings import Ratings, as_ratings
    from .result import (
        ColdStartWarning,
        ConvergenceWarning,
        FitResult,
        History,
        IterationInfo,
        Predictions,
        Status,
    )
    from .solve import LOSSES, METHODS, TR_SOLVERS, NonFiniteResidualError, solve
    from .solvers import SOLVER_DEFAULTS, SOLVERS, get_solver

__version__ = "0.1.0"

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
    "foldin": ("fold_in",),
    "gradcheck": ("JacobianCheck", "JacobianCheckError", "check_jacobian"),
    "multistart": ("MultistartResult", "multistart"),
    "problem": ("FORMULATIONS", "Problem", "build_problem", "kron_jacobian"),
    "ratings": ("Ratings", "as_ratings"),
    "result": ("ColdStartWarning", "ConvergenceWarning", "FitResult", "History",
               "IterationInfo", "Predictions", "Status"),
    "solve": ("LOSSES", "METHODS", "TR_SOLVERS", "NonFiniteResidualError", "solve"),
    "solvers": ("SOLVER_DEFAULTS", "SOLVERS", "get_solver"),
}

#: Exported name -> the submodule that defines it.
_SOURCE = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    """Import an exported name or a submodule on first access (PEP 562)."""
    module = _SOURCE.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    if importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """The package's module type: a submodule named like one of its exported functions
    (``lsqmf.solve``, ``lsqmf.multistart``) never replaces that function as the package's
    attribute when the import system binds the loaded submodule; the module stays in
    ``sys.modules``."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and name in _SOURCE:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
