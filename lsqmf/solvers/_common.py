r"""The solver contract: shared options, validation, the random start, the iteration loop.

Every solver in :mod:`lsqmf.solvers` minimizes the ``'l2'`` objective of
:func:`lsqmf.build_problem`,

.. math::

    F(P, Q, b, c) = \tfrac12\Big[\sum_{(u,i)\in\Omega} w_{ui}\,(\mu + b_u + c_i + p_u^\top q_i
    - v_{ui})^2 + \lambda\big(\sum_u s_u\|p_u\|^2 + \sum_i t_i\|q_i\|^2\big)
    + \lambda_b\big(\sum_u s_u b_u^2 + \sum_i t_i c_i^2\big)\Big],

with :math:`s_u` (:math:`t_i`) the number of ratings of user ``u`` (item ``i``) when
``count_scaled`` and 1 otherwise, and the bias terms only when ``biases``. Each solver reports
``problem.cost(x)`` -- exactly :math:`F` -- after every iteration (epoch for SGD), so their
histories are comparable point by point.

The contract
------------
The options every solver accepts are declared once, as the fields of :class:`SolverOptions`
(``rank``, ``reg``, ``reg_bias``, ``count_scaled``, ``biases``, ``weights``,
``random_state``, ``max_iter``, ``tol``, ``max_time``, ``callback``, ``P0``, ``Q0``,
``init_scale``, ``verbose``) and validated once, by :meth:`SolverOptions.validated`. A solver
function has the signature ``solver(R, rank, **options)``; it declares only its own options
(``learning_rate``, ``optimizer``, ``inner_steps``, ...) through the defaults of its
:class:`SolverSpec` in the registry :data:`lsqmf.solvers.SOLVER_SPECS`, and validates only
those. :func:`prepare` splits the keywords into the shared record and the solver's own
options (an unknown keyword is a ``TypeError`` that lists the accepted ones), builds the
problem and draws the start with :func:`lsqmf.model.start.random_start` -- the one random start of
every solver, ``lsq`` included -- from :func:`lsqmf._validation.resolve_seed`, whose seed is
recorded in ``result.options['random_state']`` (drawn when ``random_state`` is None), so
any run can be replayed.

Which defaults apply
--------------------
One set, whichever way a solver is reached: called directly (``lsqmf.solvers.als(R)`` or
``als(R, 20)``), by name (:func:`lsqmf.solvers.resolve_solver`: the evaluation helpers, grid
search, ``lsqmf tune``, the benchmark harness, the scikit-learn estimators) or from the command
line, a solver uses the defaults of :data:`SHARED_PARAMS` for the objective (biases,
count-scaled regularization, ``reg=None``: scaled by the data, see :func:`data_scaled_reg`)
and its :class:`SolverSpec` for its rank, iteration settings and own options; what the caller
gives overrides them. :data:`lsqmf.solvers.SOLVER_DEFAULTS` shows them per solver. A shared
option a solver does not use (``bmf``'s ``reg``: its regularization is learned) is refused
when given, never silently ignored (:attr:`SolverSpec.unused`).

Stopping rules (shared)
-----------------------
After iteration ``j`` with cost :math:`F_j`:

- ``Status.FTOL`` when :math:`|F_{j-1} - F_j| \le \mathrm{tol}\cdot F_{j-1}` (relative change
  below ``tol``; ``success=True``);
- ``Status.CALLBACK`` when ``callback(IterationInfo(j, F_j, time))`` returns True;
- ``Status.MAX_TIME`` when the elapsed time exceeds ``max_time``;
- ``Status.MAX_ITER`` after ``max_iter`` iterations (``success=False`` and a
  :class:`~lsqmf.ConvergenceWarning`: the only early stop that is a real non-convergence).

Divergence
----------
A run diverges when the factors become non-finite, or when the cost explodes:
:math:`F_j > 10^6 \max(F_0, F(0))` (:data:`DIVERGENCE_FACTOR` times the larger of the start's
cost and the cost of the all-zero factors, so a start near the optimum cannot trigger it).
Either raises :class:`~lsqmf.nls.solve.NonFiniteResidualError` naming the iteration and what to
try; its ``partial_result`` is the best finite iterate seen (lowest cost), as a
:class:`~lsqmf.FitResult` with status ``Status.NON_FINITE``.

Verbosity
---------
``verbose=0`` is silent; 1 logs one line at the end (status, cost, iterations, time); 2 also
logs a line per iteration (cost, relative change, time). Lines go to the logger of the
solver's module (``logging.getLogger('lsqmf.solvers.als')`` ...) at level INFO.

Extending the loop (validation, best iterate)
---------------------------------------------
:func:`run_iterations` is the only loop. Everything that looks at an iterate after a step
goes through one :class:`Tracker`: ``Tracker.observe(j, x, cost)`` records the history,
keeps the best iterate, and returns a :class:`~lsqmf.Status` when the run must stop (or
None). A per-iteration validation check belongs in that method (score ``x`` on held-out
pairs, keep the best-by-validation iterate in ``tracker.best_x``, return
``Status.VALIDATION`` when it stopped improving); the result is then built from
``tracker.result_x(status)``, which already returns the best iterate for statuses that ask
for it (:data:`BEST_ITERATE_STATUSES`). Nothing else in the loop or in the solvers changes.

Rows (columns) without any observed entry carry only the regularization term, whose minimizer
is 0: their factors and biases start (and stay) at 0 in every solver.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from .._params import Param, validate
from .._validation import resolve_seed
from ..data.ratings import Ratings, as_ratings
from ..kernels.backend import BACKENDS, resolve_backend
from ..kernels.registry import warm_up
from ..model.problem import Problem, build_problem
from ..model.result import (
    STATUS_MESSAGES,
    FitResult,
    History,
    IterationInfo,
    Status,
    warn_not_converged,
)
from ..model.start import random_start
from ..nls.result import NonFiniteResidualError
from ..runtime.interrupts import interrupts_propagate
from ..runtime.memory import check_budget, fit_bytes
from ..runtime.threads import blas_single_thread, numba_available
from ._holdout import Validation, check_validation, split_validation

__all__ = [
    "BEST_ITERATE_STATUSES",
    "DIVERGENCE_FACTOR",
    "OPERATOR_KERNELS",
    "SHARED_OPTIONS",
    "SHARED_PARAMS",
    "Setup",
    "SolverOptions",
    "SolverSpec",
    "Tracker",
    "data_scaled_options",
    "data_scaled_reg",
    "log_result",
    "prepare",
    "run_iterations",
    "split_options",
]

#: A cost above this multiple of ``max(F(x0), F(0))`` counts as divergence.
DIVERGENCE_FACTOR = 1e6

#: Statuses whose result is the best iterate seen rather than the last one.
BEST_ITERATE_STATUSES = frozenset({Status.VALIDATION, Status.NON_FINITE})
#: Statuses whose result is the best iterate when it is better than the last one (a run that
#: oscillates, e.g. ``gd`` with a large step, returns its best, not its last, factors).
UNFINISHED_STATUSES = frozenset({Status.MAX_ITER, Status.MAX_TIME, Status.INTERRUPTED,
                                 Status.CALLBACK})


def _any(value: Any) -> Any:
    return value


#: The options every solver shares, declared once: validation, the command line's flags and
#: the contract test read this table. These are the defaults of every entry point -- a direct
#: call, a by-name call (:func:`lsqmf.solvers.resolve_solver`), the command line and ``lsqmf
#: tune`` -- except ``rank``, ``max_iter`` and ``tol``, whose defaults are per solver (the
#: :class:`SolverSpec`'s ``rank`` and ``settings``). ``reg=None`` is scaled by the data:
#: ``spec.reg_per_std`` times the standard deviation of the training ratings (see
#: :func:`data_scaled_reg`), the value used recorded in ``result.options['reg']``.
SHARED_PARAMS: tuple[Param, ...] = (
    Param("rank", "int", None, low=1, allow_none=True,
          help="number of latent factors (None: the solver's default)"),
    Param("reg", "float", None, low=0.0, allow_none=True,
          help="L2 weight of the factors (None: scaled by the data, the solver's reg_per_std "
          "x the standard deviation of the training ratings)"),
    Param("reg_bias", "float", None, low=0.0, allow_none=True,
          help="L2 weight of the biases (None: reg; with reg=None, the solver's reg_per_std, "
          "which is scale-free for biases)"),
    Param("count_scaled", "bool", True,
          help="scale each user's/item's regularization by its number of ratings"),
    Param("biases", "bool", True, help="fit a global mean plus user and item biases"),
    Param("weights", "custom", None, check=_any, cli=False, help="per-rating weights"),
    Param("random_state", "custom", None, check=_any, cli=False,
          help="seed of the start (None: drawn and recorded)"),
    Param("max_iter", "int", 100, low=1, help="iterations (sweeps, steps, epochs)"),
    Param("tol", "float", 1e-4, low=0.0,
          help="stop when the relative cost change of an iteration is at most this"),
    Param("max_time", "float", None, low=0.0, allow_none=True, help="time budget in seconds"),
    Param("callback", "callable", None, allow_none=True, cli=False,
          help="callback(IterationInfo) after each iteration; True stops"),
    Param("P0", "custom", None, check=_any, cli=False, help="starting row factors"),
    Param("Q0", "custom", None, check=_any, cli=False, help="starting column factors"),
    Param("init_scale", "float", 0.1, low=0.0, low_open=True,
          help="standard deviation of the drawn starting factors"),
    Param("verbose", "int", 0, low=0, high=2, cli=False,
          help="0 silent, 1 a line at the end, 2 a line per iteration"),
    Param("backend", "choice", "auto", choices=BACKENDS,
          help="who runs the kernels: compiled (numba), numpy, or auto"),
    Param("validation", "custom", None, check=_any, cli=False,
          help="held-out Ratings or a fraction to hold out, scored after every iteration"),
    Param("patience", "int", 5, low=1, allow_none=True, cli=False,
          help="with validation: iterations without improvement before stopping"),
)

_SHARED_DEFAULTS = {p.name: p.default for p in SHARED_PARAMS}

#: The Jacobian-product kernels (``lsq`` runs them with ``jac='operator'`` or when
#: ``jac='auto'`` picks the operator; ``gd`` and ``als_gd`` use the same operator).
OPERATOR_KERNELS = ("jac_matvec", "jac_rmatvec")


@dataclass(frozen=True)
class SolverOptions:
    """The options every solver shares, declared once (see the module docstring).

    Attributes
    ----------
    rank : int or None
        Number of latent factors (None: the solver's ``SolverSpec.rank``).
    reg : float or None, default=None
        L2 weight :math:`\\lambda` of the factors; None: scaled by the data,
        ``spec.reg_per_std`` times the standard deviation of the training ratings
        (:func:`data_scaled_reg`; the value used is recorded in ``result.options['reg']``).
    reg_bias : float or None, default=None
        L2 weight of the biases (None: ``reg``; when ``reg`` is None too, the spec's
        ``reg_per_std``: with count scaling a bias is shrunk by ``1 / (1 + reg_bias)``
        whatever the rating scale, see :func:`data_scaled_options`).
    count_scaled : bool, default=True
        Scale each user's/item's regularization by its number of ratings (weighted-lambda).
    biases : bool, default=True
        Fit ``mu + b_u + c_i + p_u q_i`` (``mu`` the training mean, fixed).
    weights : array_like or None
        Per-rating weights (see :func:`lsqmf.as_ratings`).
    random_state : int, numpy.random.Generator or None
        Seeds the start (and SGD's visiting orders). None draws a seed, recorded in
        ``result.options['random_state']``.
    max_iter : int
        Iterations (sweeps, steps, epochs; residual evaluations for ``lsq``); default per
        solver, in the registry.
    tol : float
        Stop when the relative cost change over an iteration is at most ``tol``; default per
        solver, in the registry.
    max_time : float or None, default=None
        Time budget in seconds, checked after each iteration.
    callback : callable or None, default=None
        ``callback(IterationInfo(step, cost, time))`` after each iteration; True stops.
    P0 : array_like, shape (n_rows, rank), optional
    Q0 : array_like, shape (rank, n_cols), optional
        Starting factors (default: :func:`lsqmf.model.start.random_start`).
    init_scale : float, default=0.1
        Standard deviation of the drawn starting factors.
    verbose : {0, 1, 2}, default=0
        0 silent, 1 one line at the end, 2 a line per iteration (through ``logging``).
    backend : {'auto', 'compiled', 'numpy'}, default='auto'
        Who runs the solver's kernels (see :func:`lsqmf.kernels.backend.resolve_backend`): the
        numba kernels, or the numpy implementations (the oracles); ``'auto'``: compiled.
    validation : Ratings, float or None, default=None
        Held-out ratings, or the fraction of the training entries to hold out (split off
        with the run's seed), scored after every iteration; the result is the best iterate
        (see :mod:`lsqmf.solvers._holdout`).
    patience : int or None, default=5
        With ``validation``: stop (``Status.VALIDATION``) after this many iterations without
        a lower validation RMSE; None records the RMSE without stopping.
    """

    # the fields' defaults are SHARED_PARAMS' (written there once)
    rank: Any
    reg: Any = _SHARED_DEFAULTS["reg"]
    reg_bias: Any = _SHARED_DEFAULTS["reg_bias"]
    count_scaled: Any = _SHARED_DEFAULTS["count_scaled"]
    biases: Any = _SHARED_DEFAULTS["biases"]
    weights: Any = _SHARED_DEFAULTS["weights"]
    random_state: Any = _SHARED_DEFAULTS["random_state"]
    max_iter: Any = _SHARED_DEFAULTS["max_iter"]
    tol: Any = _SHARED_DEFAULTS["tol"]
    max_time: Any = _SHARED_DEFAULTS["max_time"]
    callback: Any = _SHARED_DEFAULTS["callback"]
    P0: Any = _SHARED_DEFAULTS["P0"]
    Q0: Any = _SHARED_DEFAULTS["Q0"]
    init_scale: Any = _SHARED_DEFAULTS["init_scale"]
    verbose: Any = _SHARED_DEFAULTS["verbose"]
    backend: Any = _SHARED_DEFAULTS["backend"]
    validation: Any = _SHARED_DEFAULTS["validation"]
    patience: Any = _SHARED_DEFAULTS["patience"]

    def validated(self) -> SolverOptions:
        """A copy with every value checked and normalized by :data:`SHARED_PARAMS` (the one
        validation of the shared options).

        Raises
        ------
        ValueError, TypeError
            Naming the option, the requirement and the value received.
        """
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        checked = validate(SHARED_PARAMS, values)
        checked["validation"], checked["patience"] = check_validation(self.validation,
                                                                      self.patience)
        return dataclasses.replace(self, **checked)


#: Names of the shared options, in declaration order.
SHARED_OPTIONS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(SolverOptions))


@dataclass(frozen=True)
class SolverSpec:
    """One solver: what the registry :data:`lsqmf.solvers.SOLVER_SPECS` knows of it.

    Each solver module defines its ``SPEC`` beside its function; the registry lists them.

    Attributes
    ----------
    name : str
        The registry name (``result.solver``).
    function : callable
        ``function(R, rank, **options) -> FitResult``.
    settings : Mapping
        The solver's defaults of shared options (its iteration settings ``max_iter``,
        ``tol``).
    description : str
        One line for listings (``lsqmf fit --help``).
    params : tuple of Param, default=()
        The solver's own options, declared (default, range or choices, help): validated by
        :func:`split_options`, offered as command-line flags, fed invalid values by the
        contract test. The only place their defaults are written.
    passthrough : bool, default=False
        Options outside the contract and ``params`` are passed on (``lsq`` hands them to
        :func:`lsqmf.solve`, which validates them) instead of being refused.
    kernels : tuple of str, default=()
        The compiled kernels the solver can run (names in
        :data:`lsqmf.kernels.registry.KERNELS`): its warm-up,
        ``warm_up(spec.kernels, backend)``, loads these and no others (each kernel read from
        the disk cache costs start-up time). ``tests/test_startup.py`` runs every solver after
        its warm-up and checks that it loads no kernel missing here.
    tuning : Mapping, default={}
        Parameter name -> values that ``lsqmf tune`` tries for this solver (empty: the solver
        is not in the default search space).
    rank : int, default=20
        The solver's default rank (every entry point's: a direct call without ``rank``, a
        by-name call, the command line, ``lsqmf tune``'s fixed settings).
    reg_per_std : float, default=0.15
        ``reg=None`` (the default) means ``reg_per_std`` times the standard deviation of the
        training ratings (:func:`data_scaled_reg`): the regularization follows the rating
        scale. Measured per family of rating sets in ``reports/defaults/README.md``.
    unused : Mapping, default={}
        Shared option -> why this solver does not use it. Given a value other than its
        default, such an option is refused (``ValueError`` with that reason) rather than
        silently ignored.
    finalize : callable or None, default=None
        ``finalize(opts, own) -> own``: checks across options (raising ``ValueError``) and
        defaults that depend on other options, after each option was validated alone; ``own``
        holds the solver's own options and ``given`` (the names the caller passed).
    """

    name: str
    function: Callable[..., FitResult]
    settings: Mapping[str, Any]
    description: str
    params: tuple[Param, ...] = ()
    passthrough: bool = False
    kernels: tuple[str, ...] = ()
    tuning: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    rank: int = 20
    reg_per_std: float = 0.15
    unused: Mapping[str, str] = field(default_factory=dict)
    finalize: Callable[[SolverOptions, dict[str, Any]], dict[str, Any]] | None = None

    @property
    def defaults(self) -> Mapping[str, Any]:
        """The solver's defaults: its ``settings`` and the default of every own option."""
        return MappingProxyType({**self.settings, **{p.name: p.default for p in self.params}})

    @property
    def own_options(self) -> tuple[str, ...]:
        """The options this solver adds to the contract (its ``params``)."""
        return tuple(p.name for p in self.params)


def split_options(
    spec: SolverSpec, rank: Any, options: Mapping[str, Any]
) -> tuple[SolverOptions, dict[str, Any]]:
    """The validated shared record and the solver's own options (defaults filled in).

    Raises
    ------
    TypeError
        For an option neither shared nor the solver's own (the message lists both sets).
    """
    merged = {**spec.defaults, **options}
    unknown = [k for k in merged if k not in SHARED_OPTIONS and k not in spec.own_options]
    if unknown and not spec.passthrough:
        raise TypeError(
            f"lsqmf.solvers.{spec.name}() got an unexpected option `{unknown[0]}`; its own "
            f"options are {', '.join(spec.own_options) or '(none)'} and the shared ones "
            f"{', '.join(SHARED_OPTIONS[1:])}."
        )
    if "rank" in merged:
        raise TypeError(f"lsqmf.solvers.{spec.name}(): `rank` is the second positional "
                        f"argument, not an option.")
    shared = SolverOptions(rank=spec.rank if rank is None else rank,
                           **{k: v for k, v in merged.items() if k in SHARED_OPTIONS})
    own = validate(spec.params, {k: v for k, v in merged.items() if k not in SHARED_OPTIONS})
    shared = shared.validated()
    _refuse_unused(spec, shared)
    if spec.finalize is not None:
        own = spec.finalize(shared, {**own, "given": frozenset(options)})
        own.pop("given", None)
    return shared, own


def _refuse_unused(spec: SolverSpec, opts: SolverOptions) -> None:
    """``ValueError`` for a shared option this solver does not use, given a non-default value
    (an option either changes the fit or is refused)."""
    unused = dict(spec.unused)
    if opts.validation is None:
        unused.setdefault("patience", "it counts iterations without a better validation "
                          "score: give `validation` too")
    if not opts.biases:
        unused.setdefault("reg_bias", "the model has no biases (biases=False)")
    if opts.P0 is not None and opts.Q0 is not None:
        unused.setdefault("init_scale", "both starting factors P0 and Q0 are given")
    for name, why in unused.items():
        value = getattr(opts, name)
        default = spec.settings.get(name, _SHARED_DEFAULTS[name])
        if value != default:
            raise ValueError(
                f"lsqmf.solvers.{spec.name}: `{name}` is not used ({why}); "
                f"got {name}={value!r}. Leave it at its default ({default!r})."
            )


def data_scaled_options(spec: SolverSpec, opts: SolverOptions,
                        ratings: Ratings) -> SolverOptions:
    """``opts`` with ``reg=None`` resolved: ``reg`` by :func:`data_scaled_reg` and, when
    ``reg_bias`` is None too, ``reg_bias = spec.reg_per_std`` (a bias scales like the ratings,
    so its scale-free weight is the one that leaves the fit unchanged under a change of
    units)."""
    reg_bias = spec.reg_per_std if opts.reg_bias is None else opts.reg_bias
    return dataclasses.replace(opts, reg=data_scaled_reg(spec, ratings),
                               reg_bias=float(reg_bias))


def data_scaled_reg(spec: SolverSpec, ratings: Ratings) -> float:
    """The ``reg`` of ``reg=None``: ``spec.reg_per_std`` times the standard deviation of the
    ratings' values (1 when they are constant or empty).

    With :math:`\\sigma` the standard deviation, multiplying every rating by ``c`` multiplies
    the optimal factors by :math:`\\sqrt c` and the residual term by :math:`c^2`, so only a
    ``reg`` proportional to :math:`\\sigma` leaves the fitted model unchanged: the default
    follows the rating scale (0.5--5 stars, 1--10, 0--100) instead of being tuned to one.
    """
    std = float(np.std(ratings.values)) if ratings.nnz else 0.0
    return float(spec.reg_per_std) * (std if std > 0 and np.isfinite(std) else 1.0)


@dataclass
class Setup:
    """Validated inputs of one solver call."""

    name: str
    ratings: Ratings
    problem: Problem
    x0: np.ndarray
    rng: np.random.Generator
    opts: SolverOptions
    seed: int | None
    t_start: float
    own: dict[str, Any] = field(default_factory=dict)
    validation: Validation | None = None
    #: The backend that runs (``opts.backend`` resolved once: 'compiled' or 'numpy').
    backend: str = "numpy"

    @property
    def max_iter(self) -> int:
        return int(self.opts.max_iter)

    @property
    def tol(self) -> float:
        return float(self.opts.tol)

    @property
    def max_time(self) -> float | None:
        return self.opts.max_time  # type: ignore[no-any-return]

    @property
    def callback(self) -> Callable[[IterationInfo], Any] | None:
        return self.opts.callback  # type: ignore[no-any-return]

    @property
    def logger(self) -> logging.Logger:
        return logging.getLogger(f"lsqmf.solvers.{self.name}")

    @property
    def options(self) -> dict[str, Any]:
        """What ``result.options`` records: the shared options (``weights`` as a flag, the
        seed that replays the run) and the solver's own."""
        o = self.opts
        return {
            "rank": o.rank, "reg": o.reg, "reg_bias": o.reg_bias,
            "count_scaled": o.count_scaled, "biases": o.biases,
            "weights": self.ratings.weights is not None, "max_iter": o.max_iter, "tol": o.tol,
            "max_time": o.max_time, "init_scale": o.init_scale, "random_state": self.seed,
            "verbose": o.verbose,
            "validation": None if self.validation is None else self.validation.source,
            "patience": o.patience, "backend": self.backend,
            "rating_scale": self.rating_scale, **self.own,
        }

    @property
    def rating_scale(self) -> list[float] | None:
        """See :func:`rating_scale`."""
        return rating_scale(self.ratings)

    @property
    def reg_row(self) -> np.ndarray:
        """:math:`\\lambda s_u`, the factor regularization weight of each row, shape (n_rows,)."""
        s = self.problem.P_scale
        assert s is not None
        return s**2

    @property
    def reg_col(self) -> np.ndarray:
        """:math:`\\lambda t_i`, shape (n_cols,)."""
        s = self.problem.Q_scale
        assert s is not None
        return s**2

    @property
    def reg_row_bias(self) -> np.ndarray:
        """:math:`\\lambda_b s_u` (zeros without biases), shape (n_rows,)."""
        s = self.problem.row_bias_scale
        return np.zeros(self.problem.n_rows) if s is None else s**2

    @property
    def reg_col_bias(self) -> np.ndarray:
        """:math:`\\lambda_b t_i` (zeros without biases), shape (n_cols,)."""
        s = self.problem.col_bias_scale
        return np.zeros(self.problem.n_cols) if s is None else s**2


def prepare(
    spec: SolverSpec, R: Any, rank: Any, options: Mapping[str, Any] | None = None, /,
    **keywords: Any,
) -> Setup:
    """Validate the options, build the ``'l2'`` problem and the random start.

    ``spec`` is the solver's own :class:`SolverSpec`; ``options`` (and any ``keywords``) are
    the keywords the solver function received. The solver's own options end up in
    ``setup.own``, checked against ``spec.params`` with their defaults filled in.
    """
    opts, own = split_options(spec, rank, {**(options or {}), **keywords})
    name = spec.name
    backend = resolve_backend(opts.backend)
    # compile the kernels (or load them from numba's disk cache) before the clock starts, so
    # that compile time is never counted as fit time; only the kernels this solver runs
    warm_up(spec.kernels, backend)
    t_start = time.perf_counter()
    rng, seed = resolve_seed(opts.random_state)
    ratings = as_ratings(R, weights=opts.weights)
    check_fit_budget(name, ratings, opts.rank)
    P, Q = random_start(ratings, opts.rank, rng, init_scale=opts.init_scale, P0=opts.P0,
                        Q0=opts.Q0)
    # after the start, so that it is the start the run would use without validation
    ratings, validation = split_validation(ratings, opts.validation, opts.patience, rng)
    if opts.reg is None:  # the data-scaled default, recorded as the value used
        opts = data_scaled_options(spec, opts, ratings)
    P[ratings.row_counts() == 0] = 0.0  # given factors too: those rows are never fitted
    Q[:, ratings.col_counts() == 0] = 0.0
    problem = build_problem(
        ratings, opts.rank, formulation="l2", reg=opts.reg, reg_bias=opts.reg_bias,
        count_scaled=opts.count_scaled, biases=opts.biases,
    )
    return Setup(name=name, ratings=ratings, problem=problem, x0=problem.pack(P, Q), rng=rng,
                 opts=opts, seed=seed, t_start=t_start, own=own,
                 validation=validation, backend=backend)


def rating_scale(ratings: Ratings) -> list[float] | None:
    """``[min, max]`` of the training values: what ``FitResult.predict`` clips to by default
    (recorded in ``result.options['rating_scale']``); None without ratings."""
    v = ratings.values
    return [float(v.min()), float(v.max())] if v.size else None


def check_fit_budget(name: str, ratings: Ratings, rank: int) -> None:
    """Refuse, before allocating, a fit that cannot fit in memory (a rank of 10^6, ids of
    10^11 taken as indices): :class:`~lsqmf.runtime.memory.MemoryBudgetError`."""
    n_rows, n_cols = ratings.shape
    check_budget(
        fit_bytes(n_rows, n_cols, ratings.nnz, rank),
        f"lsqmf.solvers.{name}: a fit of `rank`={rank} on {n_rows} x {n_cols} ratings "
        f"({ratings.nnz} observed)",
        "Use a smaller `rank`" + (" or number the ids consecutively (Ratings.from_frame does)"
                                  if ratings.nnz < 0.01 * max(n_rows, n_cols) else "") + ".",
    )


def log_result(logger: logging.Logger, verbose: int, fit: FitResult) -> None:
    """The ``verbose >= 1`` line at the end of a run."""
    if verbose >= 1:
        logger.info(
            "%s: %s (status %s) after %d iterations, cost %.6g, rms %s, %.3f s",
            fit.solver, fit.message, _status_name(fit.status), fit.nfev, fit.cost,
            "n/a" if fit.rms is None else f"{fit.rms:.6g}", fit.wall_time,
        )


def _status_name(status: int) -> str:
    try:
        return Status(status).name
    except ValueError:
        return str(status)


class Tracker:
    """What the loop knows about the iterates: history, best iterate, stopping decisions.

    The one place that looks at an iterate after a step (see "Extending the loop" in the
    module docstring).
    """

    def __init__(self, setup: Setup, x0: np.ndarray, *, hint: str = "") -> None:
        self.setup = setup
        self.hint = hint
        problem = setup.problem
        cost0 = problem.cost(x0, backend=setup.backend)
        zero_cost = problem.cost(np.zeros_like(x0), backend=setup.backend)
        self.limit = DIVERGENCE_FACTOR * max(cost0, zero_cost, np.finfo(float).tiny)
        self.steps, self.costs = [0], [cost0]
        self.times = [time.perf_counter() - setup.t_start]
        self.best_x, self.best_cost, self.best_step = x0.copy(), cost0, 0
        self.x, self.cost = x0, cost0
        # with validation (lsqmf.solvers._holdout): the best iterate is the best by held-out
        # RMSE, and `stale` counts the iterations since it
        self.validation = setup.validation
        self.val_rmse: list[float] = []
        self.best_val, self.stale = np.inf, 0
        self.verbose = int(setup.opts.verbose)
        self.logger = setup.logger
        if self.verbose >= 2:
            self.logger.info("%s: iteration 0 cost %.6g", setup.name, cost0)

    def observe(self, j: int, x: np.ndarray) -> Status | None:
        """Record iterate ``j``; the status to stop with, or None to go on.

        Raises
        ------
        NonFiniteResidualError
            When the run diverges (see the module docstring), with the best iterate.
        """
        setup = self.setup
        cost = (setup.problem.cost(x, backend=setup.backend) if np.all(np.isfinite(x))
                else float("nan"))
        elapsed = time.perf_counter() - setup.t_start
        if not np.isfinite(cost) or cost > self.limit:
            self._diverged(j, cost)
        previous = self.cost
        self.steps.append(j)
        self.costs.append(cost)
        self.times.append(elapsed)
        self.x, self.cost = x, cost
        if self.validation is None:
            if cost < self.best_cost:
                self.best_x, self.best_cost, self.best_step = x, cost, j
        else:
            score = self.validation.score(setup.problem, x, backend=setup.backend)
            self.val_rmse.append(score)
            if score < self.best_val - self.validation.min_delta:
                self.best_val, self.stale = score, 0
                self.best_x, self.best_cost, self.best_step = x, cost, j
            else:
                self.stale += 1
        change = abs(previous - cost)
        if self.verbose >= 2:
            self.logger.info(
                "%s: iteration %d cost %.6g rel. change %.3g time %.3f s", setup.name, j,
                cost, change / max(abs(previous), np.finfo(float).tiny), elapsed,
            )
        if setup.callback is not None and setup.callback(IterationInfo(j, cost, elapsed)):
            return Status.CALLBACK
        val = self.validation
        if val is not None and val.patience is not None and self.stale >= val.patience:
            return Status.VALIDATION
        if change <= setup.tol * max(abs(previous), np.finfo(float).tiny):
            return Status.FTOL
        if setup.max_time is not None and elapsed > setup.max_time:
            return Status.MAX_TIME
        return None

    def result_x(self, status: Status) -> tuple[np.ndarray, float]:
        """The iterate a result with ``status`` returns (the best or the last) and its cost."""
        if status in BEST_ITERATE_STATUSES or self.validation is not None:
            return self.best_x, self.best_cost
        if status in UNFINISHED_STATUSES and self.best_cost < self.cost:
            return self.best_x, self.best_cost
        return self.x, self.cost

    def result(
        self, status: Status, x: np.ndarray, cost: float, *, nfev: int | None = None
    ) -> FitResult:
        """The :class:`~lsqmf.FitResult` at ``x`` (``nfev``: iterations run, default the
        last recorded)."""
        setup, problem = self.setup, self.setup.problem
        P, Q, b, c = problem.unpack(x)
        return FitResult(
            P=P, Q=Q, mu=problem.mu, row_bias=b, col_bias=c, success=status > 0,
            status=int(status), message=STATUS_MESSAGES[status],
            nfev=self.steps[-1] if nfev is None else nfev,
            njev=None, cost=float(cost), optimality=None,
            history=History.from_lists(self.steps, self.costs, self.times),
            wall_time=time.perf_counter() - setup.t_start, options=self._options(),
            solver=setup.name, row_ids=setup.ratings.row_ids, col_ids=setup.ratings.col_ids,
            row_counts=setup.ratings.row_counts(), col_counts=setup.ratings.col_counts(),
            rms=problem.rms(x, backend=setup.backend), train_mean=setup.ratings.mean(),
        )

    def _options(self) -> dict[str, Any]:
        """``result.options``: the setup's record, plus the validation history."""
        options = self.setup.options
        if self.validation is not None:
            options = {**options, "validation_rmse": list(self.val_rmse),
                       "best_iteration": self.best_step}
        return options

    def _diverged(self, j: int, cost: float) -> None:
        setup = self.setup
        what = (
            "the factors became non-finite (NaN or infinite)" if not np.isfinite(cost)
            else f"the cost exploded to {cost:.3g} (more than {DIVERGENCE_FACTOR:g} x "
            f"the start's scale)"
        )
        partial = self.result(Status.NON_FINITE, self.best_x, self.best_cost, nfev=j)
        message = (
            f"lsqmf.solvers.{setup.name}: {what} at iteration {j} (best finite cost "
            f"{self.best_cost:.6g} at iteration {self.best_step}, kept in `partial_result`); "
            f"{self.hint}"
        )
        log_result(self.logger, self.verbose, partial)
        raise NonFiniteResidualError(message.rstrip("; "), partial_result=partial)


def run_iterations(
    setup: Setup,
    step: Callable[[np.ndarray, int], np.ndarray],
    *,
    hint: str,
    options: dict[str, Any] | None = None,
) -> FitResult:
    """Run ``x = step(x, j)`` for ``j = 1, 2, ...`` under the shared stopping rules.

    ``hint`` completes the message of the error raised on divergence ("what to try");
    ``options`` are the solver's own options as validated (recorded in ``result.options``).
    """
    if options:
        setup.own.update(options)
    tracker = Tracker(setup, setup.x0.copy(), hint=hint)
    status = Status.MAX_ITER
    # the steps alternate numpy work with numba's parallel kernels (ALS half-steps, Jacobian
    # products) when numba is installed: one BLAS thread, see blas_single_thread
    with blas_single_thread(numba_available()):
        try:
            x = tracker.x
            for j in range(1, setup.max_iter + 1):
                x = step(x, j)
                stop = tracker.observe(j, x)
                if stop is not None:
                    status = stop
                    break
        except KeyboardInterrupt:  # Ctrl-C: the best iterate so far, marked, not lost
            if interrupts_propagate():  # inside a job (cv, grid, bench): the job stops
                raise
            status = Status.INTERRUPTED
    result = tracker.result(status, *tracker.result_x(status))
    log_result(setup.logger, tracker.verbose, result)
    _warn_unfinished(setup, tracker, status)
    return result


def _warn_unfinished(setup: Setup, tracker: Tracker, status: Status) -> None:
    """The ConvergenceWarning of a run stopped by ``max_iter`` or an interrupt."""
    which = ("the last factors" if tracker.best_cost >= tracker.cost else
             f"the best factors (iteration {tracker.best_step}, cost {tracker.best_cost:.6g})")
    if status == Status.MAX_ITER:
        warn_not_converged(
            f"lsqmf.solvers.{setup.name}: `max_iter`={setup.max_iter} iterations reached "
            f"before the relative cost change fell below tol={setup.tol:g} (cost "
            f"{tracker.cost:.6g}); returning {which}. Increase `max_iter` or `tol`.",
            stacklevel=5,
        )
    elif status == Status.INTERRUPTED:
        warn_not_converged(
            f"lsqmf.solvers.{setup.name}: interrupted (KeyboardInterrupt) after iteration "
            f"{tracker.steps[-1]}; returning {which}.", stacklevel=5,
        )
