"""lsqmf: low-rank matrix factorization with missing data as nonlinear least squares."""

from .ratings import Ratings, as_ratings
from .result import ConvergenceWarning, FitResult, History

__version__ = "0.1.0"

__all__ = [
    "ConvergenceWarning",
    "FitResult",
    "History",
    "Ratings",
    "__version__",
    "as_ratings",
]
