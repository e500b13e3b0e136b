"""Stage 3 of :func:`lsqmf.solve`: run the plan and report what happened.

:func:`run` picks the runner named by :attr:`Plan.runner` from :data:`RUNNERS`, runs it with
the plan's BLAS thread limit and the verbosity the caller asked for, and returns an
:class:`RunOutcome` -- the evaluations recorded, and the optimizer's result or the reason the
run stopped early. It raises nothing for an early stop; the result stage turns the outcome
into a ``FitResult`` (or a ``NonFiniteResidualError``).

The runners:

``'least_squares'``
    ``scipy.optimize.least_squares`` on the plan's residual: the joint problem, or VarPro's
    reduced one (``eliminate=``, :mod:`lsqmf.nls.varpro`) with its Jacobian kinds.
``'lm_normal'``
    lsqmf's Levenberg-Marquardt on VarPro's reduced normal equations
    (``method='lm-normal'``, :mod:`lsqmf.nls.lm_normal`).

Every runner evaluates through one :class:`Evaluations` (the history, the best point, the
callback, the time budget, the stop at the first non-finite residual, the log lines: one per
iteration at ``verbose >= 1``, one per evaluation at ``verbose=2``) and reports through one
:class:`RunOutcome`.

Extension point: a runner is a function ``(plan, options) -> RunOutcome``; add it to
:data:`RUNNERS` and name it in the method's row of :data:`lsqmf.nls.tables.METHODS`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..model.result import History, IterationInfo, Status
from ..runtime.threads import blas_limit
from .options import SolveOptions
from .plan import Plan, column_scale
from .tables import METHODS, loss_row, scipy_loss

if TYPE_CHECKING:
    from scipy.optimize import OptimizeResult

__all__ = ["RESCALE_FACTOR", "RUNNERS", "Evaluations", "RunOutcome", "loss_cost", "run"]

logger = logging.getLogger("lsqmf.solve")

#: With ``jac='operator'`` and ``x_scale='jac'``, restart ``least_squares`` with fresh column
#: scales once a Jacobian column norm exceeds this multiple of its current scale.
RESCALE_FACTOR = 2.0


class _Stop(Exception):
    """Raised inside the residual wrapper to end a run early (callback, time budget)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Rescale(Exception):
    """Raised inside the Jacobian wrapper when the operator path's column scaling is stale;
    carries the accepted iterate and the column scale there."""

    def __init__(self, x: np.ndarray, scale: np.ndarray) -> None:
        super().__init__()
        self.x = x
        self.scale = scale


class _NonFinite(Exception):
    """Raised inside the residual wrapper at the first non-finite residual vector."""

    def __init__(self, step: int, n_bad: int) -> None:
        super().__init__(step)
        self.step = step
        self.n_bad = n_bad


def loss_cost(loss: str | Callable, f_scale: float) -> Callable[[np.ndarray], float]:
    """scipy's cost ``0.5 * f_scale**2 * sum(rho(r**2 / f_scale**2))`` for the given loss
    (its row of :data:`lsqmf.nls.tables.LOSSES`, or a callable ``loss``)."""
    row = loss_row(loss)
    return lambda r: row.cost(r, f_scale)


class Evaluations:
    """The residual and Jacobian as the optimizer sees them: counts every evaluation, records
    the cost history and the best point, calls the callback, enforces the time budget, stops
    at the first non-finite residual, logs a line per iteration (a new linearization point)
    at ``verbose >= 1`` and per evaluation at ``verbose=2``, and (with
    ``plan.emulate_jac_scale``) signals a stale column scaling."""

    def __init__(self, plan: Plan, options: SolveOptions) -> None:
        self.plan, self.options = plan, options
        self.cost_of = loss_cost(options.loss, options.f_scale)
        self.start = time.perf_counter()
        self.steps: list[int] = []
        self.costs: list[float] = []
        self.times: list[float] = []
        self.nfev = self.njev = 0
        self.best_x: np.ndarray | None = None
        self.best_cost = np.inf
        self.last_x: np.ndarray | None = None
        self.first_jac = True
        self.scale_inv: np.ndarray | None = None
        self.jac_function = plan.jacobian_function()

    def fun(self, x: np.ndarray) -> np.ndarray:
        r = self.plan.residual(x)
        step = self.nfev
        self.nfev += 1
        elapsed = time.perf_counter() - self.start
        finite = np.isfinite(r)
        if not finite.all():
            # scipy's solvers do not recover reliably (trf can fail inside its own code,
            # dogbox loops to max_nfev, lm may report success): stop here, keep the best point.
            raise _NonFinite(step, int(np.count_nonzero(~finite)))
        cost = self.cost_of(r)
        if cost < self.best_cost:
            self.best_cost, self.best_x = cost, np.array(x, copy=True)
        self.steps.append(step)
        self.costs.append(cost)
        self.times.append(elapsed)
        if self.options.verbose >= 2:
            self._log_evaluation(step, cost, x, elapsed)
        callback, max_time = self.options.callback, self.options.max_time
        if callback is not None and callback(IterationInfo(step, cost, elapsed)):
            raise _Stop(Status.CALLBACK)
        if max_time is not None and elapsed > max_time:
            raise _Stop(Status.MAX_TIME)
        return r

    def _log_evaluation(self, step: int, cost: float, x: np.ndarray, elapsed: float) -> None:
        step_norm = (
            "n/a" if self.last_x is None else f"{float(np.linalg.norm(x - self.last_x)):.3e}"
        )
        self.last_x = np.array(x, copy=True)
        logger.info("evaluation %d: cost %.6e, step norm %s, %.3f s", step, cost, step_norm,
                    elapsed)

    def jac(self, x: np.ndarray) -> Any:
        max_nfev = self.options.max_nfev
        # a restart needs room for at least two more evaluations under max_nfev
        budget_left = max_nfev is None or max_nfev - self.nfev >= 2
        if self.plan.emulate_jac_scale and not self.first_jac and budget_left:
            assert self.scale_inv is not None
            scale = column_scale(self.plan.problem, x)
            if np.any(scale > RESCALE_FACTOR * self.scale_inv):
                raise _Rescale(np.array(x, copy=True), scale)
        self.first_jac = False
        self.linearized(x)
        return self.jac_function(x)

    def linearized(self, x: np.ndarray) -> None:
        """Count a Jacobian (or normal-matrix) evaluation at ``x``, an iterate: its log line
        at ``verbose >= 1`` (the best cost so far: every runner's iterates descend)."""
        if self.options.verbose >= 1:
            logger.info("iteration %d: cost %.6e, %d evaluations, %.3f s", self.njev,
                        self.best_cost, self.nfev, time.perf_counter() - self.start)
        self.njev += 1

    def history(self) -> History:
        return History.from_lists(self.steps, self.costs, self.times)


@dataclass(frozen=True)
class RunOutcome:
    """What a runner did: scipy's result (None after an early stop), the status of an early
    stop, or the non-finite evaluation; the evaluations recorded; the ``x_scale`` restarts."""

    evaluations: Evaluations
    opt: OptimizeResult | None = None
    stop_status: int | None = None
    nonfinite_step: int | None = None
    nonfinite_count: int = 0
    restarts: int = 0


def least_squares(*args: Any, **kwargs: Any) -> OptimizeResult:
    """``scipy.optimize.least_squares``, imported on the first call (so that importing lsqmf,
    and the command line, do not load scipy.optimize)."""
    from scipy.optimize import least_squares as scipy_least_squares

    return scipy_least_squares(*args, **kwargs)


def _least_squares(plan: Plan, options: SolveOptions, ev: Evaluations, x_start: np.ndarray,
                   x_scale: Any) -> OptimizeResult:
    jac = ev.jac if callable(ev.jac_function) else ev.jac_function
    uses_tr = METHODS[options.method].uses_tr_solver
    return least_squares(
        ev.fun, x_start, jac=jac, bounds=(plan.lb, plan.ub), method=options.method,
        ftol=options.ftol, xtol=options.xtol, gtol=options.gtol, x_scale=x_scale,
        loss=scipy_loss(options.loss), f_scale=options.f_scale,
        max_nfev=None if options.max_nfev is None else options.max_nfev - ev.nfev,
        jac_sparsity=plan.jac_sparsity, tr_solver=options.tr_solver if uses_tr else None,
        tr_options=dict(options.tr_options),
    )


def _linalg_error(options: SolveOptions, ev: Evaluations, err: Exception) -> Exception:
    return np.linalg.LinAlgError(
        f"the linear algebra of method={options.method!r}, tr_solver={options.tr_solver!r} "
        f"failed after {ev.nfev} evaluations ({err}); try tr_solver='lsmr', a regularized "
        "formulation, or another method."
    )


def _guarded(ev: Evaluations, options: SolveOptions, call: Callable[[], Any]) -> RunOutcome:
    """Run ``call`` (one optimizer run) and turn its ending into an :class:`RunOutcome`:
    scipy's (or lm-normal's) result, or the reason it stopped early."""
    try:
        return RunOutcome(ev, opt=call())
    except _Stop as stop:
        return RunOutcome(ev, stop_status=stop.status)
    except _NonFinite as err:
        return RunOutcome(ev, nonfinite_step=err.step, nonfinite_count=err.n_bad)
    except KeyboardInterrupt:
        return RunOutcome(ev, stop_status=Status.INTERRUPTED)
    except np.linalg.LinAlgError as err:
        raise _linalg_error(options, ev, err) from err


def run_least_squares(plan: Plan, options: SolveOptions) -> RunOutcome:
    """``scipy.optimize.least_squares`` on the plan, restarted with fresh column scales when
    the operator's emulated ``x_scale='jac'`` goes stale (see :mod:`lsqmf.solve`)."""
    ev = Evaluations(plan, options)
    x_start, x_scale, restarts = plan.x0, plan.x_scale, 0
    if plan.emulate_jac_scale:
        ev.scale_inv = 1.0 / np.asarray(plan.x_scale)
    while True:
        ev.first_jac = True
        try:
            outcome = _guarded(
                ev, options, functools.partial(_least_squares, plan, options, ev, x_start, x_scale)
            )
        except _Rescale as rescale:
            # continue from the accepted iterate with the running maximum of the column
            # norms, as scipy's 'jac' keeps
            restarts += 1
            assert ev.scale_inv is not None
            ev.scale_inv = np.maximum(ev.scale_inv, rescale.scale)
            x_scale, x_start = 1.0 / ev.scale_inv, rescale.x
            logger.info("x_scale restart %d after %d evaluations", restarts, ev.nfev)
            continue
        return dataclasses.replace(outcome, restarts=restarts)


def run_lm_normal(plan: Plan, options: SolveOptions) -> RunOutcome:
    """lm-normal (:func:`lsqmf.nls.lm_normal.lm_normal`) on VarPro's reduced problem."""
    from .lm_normal import lm_normal

    assert plan.reduced is not None
    ev = Evaluations(plan, options)
    return _guarded(ev, options, functools.partial(
        lm_normal, ev.fun, plan.reduced, plan.x0, options, x_scale=plan.x_scale,
        linearized=ev.linearized,
    ))


#: Runner name -> function ``(plan, options) -> RunOutcome``; :attr:`Plan.runner` names one
#: (from the method's row of :data:`lsqmf.nls.tables.METHODS`).
RUNNERS: dict[str, Callable[[Plan, SolveOptions], RunOutcome]] = {
    "least_squares": run_least_squares,
    "lm_normal": run_lm_normal,
}


@contextlib.contextmanager
def verbose_logging(verbose: int) -> Iterator[None]:
    """With ``verbose >= 1``, let the ``lsqmf.solve`` logger's INFO lines through for the
    call, to stderr when logging is not configured; the previous setting is restored."""
    if not verbose:
        yield
        return
    level = logger.level
    handler = None
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    if not logger.hasHandlers():
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        logger.addHandler(handler)
    try:
        yield
    finally:
        logger.setLevel(level)
        if handler is not None:
            logger.removeHandler(handler)


def _log_summary(outcome: RunOutcome) -> None:
    ev, opt = outcome.evaluations, outcome.opt
    if opt is not None:
        status, cost = int(opt.status), float(opt.cost)
    else:
        status = Status.NON_FINITE if outcome.stop_status is None else outcome.stop_status
        cost = ev.best_cost
    elapsed = time.perf_counter() - ev.start
    logger.info(
        "finished: status %d, cost %.6e, %d evaluations, %d Jacobian evaluations, "
        "%d x_scale restarts, %.3f s", status, cost, ev.nfev, ev.njev, outcome.restarts, elapsed,
    )


def run(plan: Plan, options: SolveOptions) -> RunOutcome:
    """Run the plan's runner under its BLAS thread limit; log the summary at ``verbose>=1``."""
    with verbose_logging(options.verbose), blas_limit(plan.blas_threads):
        outcome = RUNNERS[plan.runner](plan, options)
        if options.verbose >= 1:
            _log_summary(outcome)
    return outcome
