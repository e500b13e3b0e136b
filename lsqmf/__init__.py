"""lsqmf: low-rank matrix factorization with missing data as nonlinear least squares.

The core is :func:`solve`, which writes the factorization as a residual vector with a sparse,
Kronecker-structured Jacobian and hands it to ``scipy.optimize.least_squares``.
"""

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
