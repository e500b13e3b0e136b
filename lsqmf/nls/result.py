"""Stage 4 of :func:`lsqmf.solve`: turn the run's outcome into a ``FitResult``.

A converged or capped run returns scipy's point; a requested stop (callback, time budget)
returns the best point evaluated, logged; an interrupt returns it with a
``ConvergenceWarning``; non-finite residuals raise :class:`NonFiniteResidualError` carrying
the best finite point. ``result.options`` records the options as run, with the seed that
replays the run and the decisions the plan made (Jacobian kind, backend, BLAS threads).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from ..model.result import STATUS_MESSAGES, FitResult, Status, warn_not_converged

if TYPE_CHECKING:  # solvers/ import NonFiniteResidualError from here: keep this module light
    from .options import SolveOptions
    from .plan import Plan
    from .run import RunOutcome

__all__ = ["NonFiniteResidualError", "data_cost", "decrement", "options_record", "result"]

logger = logging.getLogger("lsqmf.solve")

#: A least_squares run that claims convergence where a Gauss-Newton step would still remove
#: more than this fraction of the cost (:func:`decrement`) is reported with success=False.
#: Loose on purpose: ``ftol=1e-3`` (the rating default) legitimately stops at fractions up to
#: about 1e-2; next to the zero saddle the fraction is close to 1.
JOINT_DECREMENT_TOL = 0.1
#: LSMR iterations spent estimating that fraction (a lower bound: LSMR's explained part grows
#: with the iterations).
_DECREMENT_ITERATIONS = 30

#: Statuses of stops the caller asked for (callback, time budget): no ConvergenceWarning.
_REQUESTED_STOPS = (Status.CALLBACK, Status.MAX_TIME)


class NonFiniteResidualError(FloatingPointError):
    """Residuals became NaN or infinite; ``partial_result`` holds the best finite point."""

    def __init__(self, message: str, partial_result: FitResult | None = None) -> None:
        super().__init__(message)
        self.partial_result = partial_result


def options_record(plan: Plan, options: SolveOptions, restarts: int) -> dict[str, Any]:
    """``result.options``: the options as run (``random_state`` is the seed that replays the
    run: the drawn one when None was passed; None for a Generator). One key layout for every
    runner; ``jac`` is the kind that ran (``'normal'`` for lm-normal)."""
    return {
        "rank": options.rank, "formulation": options.formulation, "alpha": options.alpha,
        "beta": options.beta, "reg": options.reg, "reg_bias": options.reg_bias,
        "count_scaled": options.count_scaled, "biases": options.biases,
        "method": options.method, "tr_solver": options.tr_solver,
        "tr_options": dict(options.tr_options), "loss": options.loss_name,
        "f_scale": options.f_scale, "ftol": options.ftol, "xtol": options.xtol,
        "gtol": options.gtol,
        "x_scale": options.x_scale if isinstance(options.x_scale, str) else "array",
        "max_nfev": options.max_nfev, "jac": plan.jac.name, "init_scale": options.init_scale,
        "random_state": options.seed, "bounds": options.bounds is not None,
        "max_time": options.max_time, "backend": plan.backend,
        "blas_threads": plan.blas_threads, "x_scale_restarts": restarts,
        "eliminate": options.eliminate, "varpro_jacobian": options.varpro_jacobian,
    }


def _non_finite(plan: Plan, options: SolveOptions, outcome: RunOutcome, partial: FitResult | None
                ) -> NonFiniteResidualError:
    return NonFiniteResidualError(
        f"the residuals became non-finite at evaluation {outcome.nonfinite_step} "
        f"({outcome.nonfinite_count} of {plan.problem.n_residuals} NaN or infinite; method="
        f"{options.method!r}, loss={options.loss_name!r}): the factors diverged. Try "
        "method='trf', stronger regularization (larger `beta` or `reg`), bounds, a smaller "
        "`init_scale`, x_scale='jac', or scaling the ratings. The best finite point evaluated "
        "is in the error's `partial_result`.",
        partial,
    )


def data_cost(problem: Any) -> float:
    """``0.5 * sum(w * v**2)`` over the observed values: the cost of the zero factorization,
    the scale of "next to nothing" for zero-residual fits."""
    values = np.asarray(problem.ratings.values, dtype=np.float64)
    return 0.5 * float(np.sum(np.asarray(problem.data_scale) ** 2 * values**2))


def decrement(plan: Plan, x: np.ndarray, cost0: float = 0.0) -> float:
    """The fraction of the cost a Gauss-Newton step from ``x`` would remove in the linear
    model, ``(||r||^2 - min_y ||r - J y||^2) / (||r||^2 + 2e-12 cost0)`` (``cost0``: the
    cost of the zero factorization, so a zero-residual fit at rounding level is not
    "large"), estimated
    from below by :data:`_DECREMENT_ITERATIONS` LSMR iterations."""
    from scipy.sparse.linalg import lsmr

    r = plan.residual(x)
    rr = float(r @ r)
    if rr == 0.0:
        return 0.0
    J = plan.problem.jacobian(x) if plan.reduced is None else plan.reduced.operator(
        x, plan.varpro_jacobian)
    y = lsmr(J, r, maxiter=_DECREMENT_ITERATIONS)[0]
    fit = r - J @ y
    return max(0.0, (rr - float(fit @ fit)) / (rr + 2e-12 * cost0))


def _saddle(plan: Plan, options: SolveOptions, x: np.ndarray, cost0: float) -> str | None:
    """Why a least_squares run that claims convergence did not reach a minimum, or None:
    under ``'none'`` a rank-deficient factor (a saddle, e.g. the all-zero factorization), and
    for the linear loss a Gauss-Newton decrement above :data:`JOINT_DECREMENT_TOL`."""
    P, Q, _, _, _ = plan.factors(x)
    if options.formulation == "none":
        for name, F in (("P", P), ("Q", Q)):
            sv = np.linalg.svd(np.asarray(F), compute_uv=False)
            if sv.size and sv[-1] <= 1e-10 * max(float(sv[0]), 1e-300):
                return (f"the factor {name} is rank-deficient: a saddle of the cost (e.g. "
                        "next to the all-zero factorization), not a minimum")
    if options.loss_name != "linear" or options.bounds is not None:
        return None  # the unconstrained Gauss-Newton step means nothing at an active bound
    dec = decrement(plan, x, cost0)
    if dec > JOINT_DECREMENT_TOL:
        return (f"a Gauss-Newton step from the returned point would still remove {dec:.3g} of "
                f"the cost (more than {JOINT_DECREMENT_TOL:g}): the run stopped on a small "
                "decrease or step while the gradient is large (e.g. a start next to the zero "
                "saddle). Tighten `ftol`, start at the data's scale (init_scale), or use "
                "formulation='none' with method='auto'")
    return None


def result(plan: Plan, options: SolveOptions, outcome: RunOutcome, t_start: float) -> FitResult:
    """The ``FitResult`` of the outcome (``t_start``: when the fit's clock started).

    Raises
    ------
    NonFiniteResidualError
        If the run met non-finite residuals.
    """
    ev, opt = outcome.evaluations, outcome.opt
    ratings = plan.caller_ratings
    common = dict(
        mu=plan.problem.mu, history=ev.history(), wall_time=time.perf_counter() - t_start,
        options=options_record(plan, options, outcome.restarts), solver="lsq",
        row_ids=ratings.row_ids, col_ids=ratings.col_ids, row_counts=ratings.row_counts(),
        col_counts=ratings.col_counts(), train_mean=ratings.mean(),
    )

    def at(x: np.ndarray, **kw: Any) -> FitResult:
        P, Q, b, c, rms = plan.factors(x)
        return FitResult(P=P, Q=Q, row_bias=b, col_bias=c, rms=rms, **common, **kw)  # type: ignore[arg-type]

    if opt is None:  # stopped early: the best point evaluated
        status = Status.NON_FINITE if outcome.stop_status is None else outcome.stop_status
        best = None if ev.best_x is None else at(
            ev.best_x, success=False, status=status, message=STATUS_MESSAGES[status],
            nfev=ev.nfev, njev=ev.njev, cost=ev.best_cost,
        )
        if outcome.nonfinite_step is not None:
            raise _non_finite(plan, options, outcome, best)
        assert best is not None  # x0 was evaluated and is finite
        text = (
            f"lsqmf.solve stopped early (status {status}: {STATUS_MESSAGES[status]}) after "
            f"{ev.nfev} evaluations; returning the best point evaluated (cost "
            f"{ev.best_cost:.6g})."
        )
        if status in _REQUESTED_STOPS:
            logger.info(text)
        else:
            warn_not_converged(text, stacklevel=4)
        return best
    if opt.success and plan.runner == "least_squares":
        why = _saddle(plan, options, opt.x, data_cost(plan.problem))
        if why is not None:
            opt.success, opt.message = False, f"{opt.message} But {why}."
    nfev, njev = opt.nfev, opt.njev if opt.njev is not None else ev.njev
    if outcome.restarts:  # scipy's counts cover the last stage only
        nfev, njev = ev.nfev, ev.njev
    fit = at(
        opt.x, success=bool(opt.success), status=int(opt.status), message=str(opt.message),
        nfev=int(nfev), njev=None if njev is None else int(njev), cost=float(opt.cost),
        optimality=float(opt.optimality), optimize_result=opt,
    )
    if not opt.success:
        warn_not_converged(
            f"lsqmf.solve did not converge (status {opt.status}: {opt.message}); returning "
            f"the factors reached after {opt.nfev} evaluations (cost {opt.cost:.6g}).",
            stacklevel=4,
        )
    return fit
