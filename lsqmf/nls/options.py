"""Stage 1 of :func:`lsqmf.solve`: validate every argument into one frozen options record.

:func:`validate` checks each argument and combination that does not need the problem's size
(method against loss, bounds, tolerances and ``tr_options``; ``jac`` against ``method`` and
``tr_solver`` through :func:`lsqmf.nls.tables.check_jac`), converts the ratings, checks the
starting factors and settles ``rank``, and draws the run's seed. Checks that need the sizes
(bounds and ``x_scale`` lengths, the dense-Jacobian budget, ``lm``'s residual count) are made
by the plan stage, still before scipy is called.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from .._params import Param
from .._params import validate as validate_params
from .._validation import (
    check_array,
    check_choice,
    check_int,
    describe,
    resolve_seed,
)
from ..data.ratings import Ratings, as_ratings
from ..kernels.backend import BACKENDS
from ..model.problem import FORMULATIONS
from .auto import AUTO, LM_NORMAL_X_SCALE, choose_eliminate, choose_method, start_scale
from .tables import (
    ELIMINATE,
    JAC_KINDS,
    LOSSES,
    METHODS,
    TR_OPTION_KEYS,
    TR_SOLVERS,
    VARPRO_JACOBIANS,
    check_jac,
)

__all__ = ["SOLVE_DEFAULTS", "SOLVE_PARAMS", "SolveOptions", "validate"]


def _loss(value: Any) -> Any:
    """A loss name of :data:`LOSSES`, or a callable ``rho(z) -> (3, m)`` array."""
    if not callable(value):
        check_choice("loss", value, LOSSES)
    return value


def _any(value: Any) -> Any:
    return value


#: :func:`lsqmf.solve`'s options, declared once: their defaults (the signature reads them),
#: constraints (:func:`validate`'s single-value checks) and help (``lsqmf solve``'s flags are
#: generated from this table). Combinations (method x loss, bounds, tolerances, jac,
#: eliminate) are checked by :func:`validate` after these.
SOLVE_PARAMS: tuple[Param, ...] = (
    Param("rank", "int", None, low=1, allow_none=True, cli=False,
          help="number of latent factors (None: from P0 or Q0)"),
    Param("P0", "custom", None, check=_any, cli=False,
          help="starting row factors, shape (n_rows, rank)"),
    Param("Q0", "custom", None, check=_any, cli=False,
          help="starting column factors, shape (rank, n_cols)"),
    Param("missing", "custom", None, check=_any, cli=False,
          help="value that marks an unobserved entry of a dense R (besides NaN)"),
    Param("weights", "custom", None, check=_any, cli=False, help="per-entry weights"),
    Param("mask", "custom", None, check=_any, cli=False,
          help="0/1 or boolean array of the observed entries of a dense R"),
    Param("formulation", "choice", "prior", choices=tuple(FORMULATIONS),
          help="objective: prior (the seed's), l2 (ridge) or none (plain least squares)"),
    Param("alpha", "float", 0.9, low=0.0, low_open=True, help="data weight of 'prior'"),
    Param("beta", "float", 0.1, low=0.0, help="prior weight of 'prior'"),
    Param("reg", "float", 0.0, low=0.0, help="L2 weight of 'l2'"),
    Param("reg_bias", "float", None, low=0.0, allow_none=True,
          help="L2 weight of the biases (None: reg)"),
    Param("count_scaled", "bool", False, help="scale reg by each row's/column's rating count"),
    Param("biases", "bool", False, help="fit a global mean plus row and column biases"),
    Param("method", "choice", AUTO, choices=(AUTO, *METHODS),
          help="least-squares method (auto: lm-normal with variable projection where its "
          "dense reduced system fits, else trf; lm-normal needs eliminate)"),
    Param("tr_solver", "choice", None, choices=TR_SOLVERS,
          help="trust-region solver (None: scipy's choice by the Jacobian's type)"),
    Param("tr_options", "custom", None, check=_any, cli=False,
          help="options of the trust-region solver"),
    Param("loss", "custom", "linear", check=_loss, choices=tuple(LOSSES),
          help="robust loss (the API also takes a callable rho)"),
    Param("f_scale", "float", 1.0, low=0.0, low_open=True,
          help="soft margin between inlier and outlier residuals"),
    Param("bounds", "custom", None, check=_any, cli=False,
          help="(low, high) bounds of every unknown"),
    Param("ftol", "float", 1e-3, low=0.0, high=1.0, high_open=True, allow_none=True,
          help="stop when the relative cost decrease is below this"),
    Param("xtol", "float", 1e-8, low=0.0, high=1.0, high_open=True, allow_none=True,
          help="stop when the relative step is below this"),
    Param("gtol", "float", 1e-8, low=0.0, high=1.0, high_open=True, allow_none=True,
          help="stop when the scaled gradient is below this"),
    Param("x_scale", "custom", None, check=_any, cli=False,
          help="characteristic scale of each unknown, or 'jac' (None: 'jac' for scipy's "
          "methods, 1.0 -- Levenberg's damping -- for lm-normal)"),
    Param("max_nfev", "int", None, low=1, allow_none=True,
          help="residual evaluations (None: scipy's default)"),
    Param("jac", "choice", "auto", choices=tuple(JAC_KINDS), help="how the Jacobian is built"),
    Param("init_scale", "float", None, low=0.0, low_open=True, allow_none=True,
          help="standard deviation of the random start (None: 0.1 under prior and l2, "
          "sqrt(rms(data) / sqrt(rank)) under none)"),
    Param("random_state", "custom", None, check=_any, cli=False,
          help="seed of the start (None: drawn and recorded)"),
    Param("check_jacobian", "float", None, low=0.0, low_open=True, allow_none=True,
          help="compare the Jacobian with finite differences first, to this tolerance"),
    Param("max_time", "float", None, low=0.0, allow_none=True, help="time budget in seconds"),
    Param("callback", "callable", None, allow_none=True, cli=False,
          help="callback(IterationInfo) after each evaluation; True stops"),
    Param("verbose", "int", 0, low=0, high=2, cli=False,
          help="0 silent, 1 a line per iteration and a summary, 2 more"),
    Param("backend", "choice", "auto", choices=BACKENDS,
          help="who runs the kernels: compiled (numba), numpy, or auto"),
    Param("blas_threads", "int", None, low=1, allow_none=True, cli=False,  # lsqmf's global flag
          help="BLAS threads for the run (None: leave the library's setting)"),
    Param("eliminate", "choice", AUTO, choices=(AUTO, *ELIMINATE),
          help="variable projection: the factor solved in closed form (Q or P; auto: the "
          "larger factor under none, and under l2 with a mask; None: the joint problem)"),
    Param("varpro_jacobian", "choice", "kaufman", choices=VARPRO_JACOBIANS,
          help="reduced Jacobian of variable projection"),
)

#: Name -> default, read by :func:`lsqmf.solve`'s signature.
SOLVE_DEFAULTS: Mapping[str, Any] = MappingProxyType({p.name: p.default for p in SOLVE_PARAMS})


@dataclass(frozen=True)
class SolveOptions:
    """Every validated argument of :func:`lsqmf.solve`, read by the later stages.

    Names and meanings are those of :func:`lsqmf.solve`'s parameters. ``jac`` and ``backend``
    are as requested (``'auto'`` is resolved by the plan). ``seed`` is the int that replays
    the run (drawn when ``random_state`` is None; None for a Generator), and ``rng`` the
    generator the random start draws from. ``P0``/``Q0`` are validated copies.
    """

    rank: int
    formulation: str
    alpha: float
    beta: float
    reg: float
    reg_bias: float | None
    count_scaled: bool
    biases: bool
    method: str
    tr_solver: str | None
    tr_options: Mapping[str, Any]
    loss: str | Callable
    f_scale: float
    bounds: Any
    ftol: float | None
    xtol: float | None
    gtol: float | None
    x_scale: Any
    max_nfev: int | None
    jac: str
    init_scale: float
    seed: int | None
    check_jacobian: float | None
    max_time: float | None
    callback: Callable | None
    verbose: int
    backend: str
    blas_threads: int | None
    #: the factor solved in closed form (variable projection), or None for the joint problem
    eliminate: str | None = None
    varpro_jacobian: str = "kaufman"
    P0: np.ndarray | None = field(default=None, repr=False)
    Q0: np.ndarray | None = field(default=None, repr=False)
    rng: np.random.Generator | None = field(default=None, repr=False, compare=False)

    @property
    def loss_name(self) -> str:
        """The loss as recorded in results: its name, or a callable's ``__name__``."""
        if isinstance(self.loss, str):
            return self.loss
        return getattr(self.loss, "__name__", "callable")


def _check_tolerance(name: str, value: Any, method: str) -> float | None:
    """``value`` (range-checked by :data:`SOLVE_PARAMS`), refused as None where the method
    needs every tolerance."""
    if value is None and METHODS[method].positive_tolerances:
        raise ValueError(f"`{name}` must be a float > 0 for method={method!r}; got None.")
    return value  # type: ignore[no-any-return]


def _check_tolerances(
    method: str, ftol: Any, xtol: Any, gtol: Any
) -> tuple[float | None, float | None, float | None]:
    tols = tuple(_check_tolerance(n, v, method) for n, v in
                 (("ftol", ftol), ("xtol", xtol), ("gtol", gtol)))
    eps = np.finfo(float).eps
    if all(t is None or t < eps for t in tols):
        raise ValueError(f"at least one of `ftol`, `xtol`, `gtol` must be > {eps:.2e}.")
    if METHODS[method].positive_tolerances and any(t is not None and t < eps for t in tols):
        raise ValueError(f"method={method!r} needs `ftol`, `xtol` and `gtol` all > {eps:.2e}.")
    return tols  # type: ignore[return-value]


def _check_tr_options(
    tr_options: Any, method: str, tr_solver: str | None
) -> Mapping[str, Any]:
    if tr_options is None:
        tr_options = {}
    if not isinstance(tr_options, Mapping):
        raise TypeError(f"`tr_options` must be a dict; got {describe(tr_options)}.")
    allowed = TR_OPTION_KEYS[tr_solver] if METHODS[method].uses_tr_solver else set()
    unknown = set(tr_options) - allowed
    if unknown:
        raise ValueError(
            f"`tr_options` has key(s) {sorted(unknown)} that method={method!r} with "
            f"tr_solver={tr_solver!r} does not take; allowed: {sorted(allowed)}."
        )
    return MappingProxyType(dict(tr_options))


def _check_model(method: str, loss: Any, bounds: Any) -> None:
    spec = METHODS[method]
    if not callable(loss):
        check_choice("loss", loss, LOSSES)
    if not spec.robust_loss and loss != "linear":
        raise ValueError(
            f"method={method!r} supports only loss='linear'; got loss={loss!r}. Use "
            "method='trf' or 'dogbox' for a robust loss."
        )
    if not spec.bounds and bounds is not None:
        raise ValueError(
            f"method={method!r} does not support `bounds`; use method='trf' or 'dogbox' with "
            "bounds, or drop the bounds."
        )


def _check_eliminate(a: Mapping[str, Any]) -> None:
    """What variable projection (``eliminate``) and the methods that need it refuse."""
    eliminate, method, formulation = a["eliminate"], a["method"], a["formulation"]
    spec = METHODS[method]
    if spec.eliminate_only and eliminate is None:
        raise ValueError(
            f"method={method!r} runs on the reduced problem of variable projection; pass "
            "eliminate='Q' or 'P', or use method='trf', 'dogbox' or 'lm'."
        )
    if spec.own_jac is not None and a["tr_solver"] is not None:
        raise ValueError(
            f"method={method!r} solves the reduced normal equations by Cholesky and takes no "
            f"`tr_solver`; got tr_solver={a['tr_solver']!r}."
        )
    if spec.own_jac is not None and a["varpro_jacobian"] != "kaufman":
        raise ValueError(
            f"method={method!r} implements Kaufman's Jacobian only; got varpro_jacobian="
            f"{a['varpro_jacobian']!r}. Use varpro_jacobian='kaufman', or method='trf' for "
            "'full'."
        )
    if spec.own_jac is not None and a["loss"] != "linear" and formulation != "none":
        raise ValueError(
            f"method={method!r} with a robust loss (loss={a['loss']!r}) solves the eliminated "
            "factor by reweighted least squares and needs formulation='none'; got "
            f"formulation={formulation!r}. Use method='trf' (least-squares inner solves).")
    if eliminate is None:
        return
    if formulation not in ("l2", "none"):
        raise ValueError(
            "`eliminate` needs formulation 'l2' or 'none' (the eliminated factor's closed form "
            f"is a ridge or plain least-squares solve); got formulation={formulation!r}."
        )
    if a["check_jacobian"] is not None:
        raise ValueError(
            "`check_jacobian` checks the joint Jacobian and does not apply with `eliminate`; "
            "the reduced Jacobians are tested in tests/test_varpro.py. Drop it."
        )


def _check_factors(
    ratings: Ratings, rank: Any, P0: Any, Q0: Any
) -> tuple[int, np.ndarray | None, np.ndarray | None]:
    """``rank`` (taken from ``P0``/``Q0`` when None) and checked copies of the factors."""
    n, m = ratings.shape
    P = None if P0 is None else check_array("P0", P0, ndim=2, copy=True)
    Q = None if Q0 is None else check_array("Q0", Q0, ndim=2, copy=True)
    if rank is None:
        if P is not None:
            rank = P.shape[1]
        elif Q is not None:
            rank = Q.shape[0]
        else:
            raise ValueError("`rank` is required when neither `P0` nor `Q0` is given.")
    rank = check_int("rank", rank, min_value=1)
    if P is not None and P.shape != (n, rank):
        raise ValueError(f"`P0` must have shape (n_rows, rank) = ({n}, {rank}); got {P.shape}.")
    if Q is not None and Q.shape != (rank, m):
        raise ValueError(f"`Q0` must have shape (rank, n_cols) = ({rank}, {m}); got {Q.shape}.")
    return rank, P, Q


def _resolve_auto(a: dict[str, Any], ratings: Ratings, rank: int) -> None:
    """``eliminate``, ``method`` and ``init_scale`` as run (:mod:`lsqmf.nls.auto`).

    ``eliminate='auto'`` means the joint problem when the caller chose a scipy method, a
    ``tr_solver``, a Jacobian kind or a Jacobian check (their meaning stays what it was)."""
    explicit = (a["method"] not in (AUTO, "lm-normal") or a["tr_solver"] is not None
                or a["jac"] != "auto" or a["check_jacobian"] is not None)
    if a["eliminate"] == AUTO and explicit:
        a["eliminate"] = None
    a["eliminate"] = choose_eliminate(
        a["eliminate"], formulation=a["formulation"], ratings=ratings, rank=rank,
        biases=a["biases"], reg=a["reg"], has_mask=a.get("mask") is not None)
    a["method"] = choose_method(
        a["method"], eliminate=a["eliminate"], shape=ratings.shape, rank=rank,
        biases=a["biases"], bounds=a["bounds"], loss=a["loss"],
        explicit=(a["tr_solver"] is not None or a["varpro_jacobian"] != "kaufman"
                  or a["jac"] != "auto"), unregularized=a["formulation"] == "none")
    a["init_scale"] = start_scale(a["init_scale"], a["formulation"], ratings, rank)
    if a["x_scale"] is None:
        a["x_scale"] = LM_NORMAL_X_SCALE if a["method"] == "lm-normal" else "jac"


def validate(arguments: Mapping[str, Any]) -> tuple[Ratings, SolveOptions]:
    """Check every argument of :func:`lsqmf.solve`, given by name (``solve`` passes all of
    its parameters; their defaults and single-value constraints are :data:`SOLVE_PARAMS`).

    Returns
    -------
    ratings : Ratings
    options : SolveOptions

    Raises
    ------
    ValueError, TypeError
        Naming the argument, the requirement and the value received.
    """
    a = dict(validate_params(SOLVE_PARAMS, arguments))  # every single-value check, declared
    rng, seed = resolve_seed(a["random_state"])
    ratings = as_ratings(a["R"], missing=a["missing"], weights=a["weights"], mask=a.get("mask"))
    rank, P0, Q0 = _check_factors(ratings, a["rank"], a["P0"], a["Q0"])
    _resolve_auto(a, ratings, rank)
    method, tr_solver = a["method"], a["tr_solver"]
    _check_model(method, a["loss"], a["bounds"])
    _check_eliminate(a)
    ftol, xtol, gtol = _check_tolerances(method, a["ftol"], a["xtol"], a["gtol"])
    tr_options = _check_tr_options(a["tr_options"], method, tr_solver)
    check_jac(a["jac"], method, tr_solver, a["eliminate"])
    numbers = {k: a[k] for k in ("f_scale", "init_scale", "max_nfev", "max_time",
                                 "check_jacobian", "count_scaled", "biases", "verbose",
                                 "blas_threads")}
    options = SolveOptions(
        rank=rank, formulation=a["formulation"], alpha=a["alpha"], beta=a["beta"],
        reg=a["reg"], reg_bias=a["reg_bias"], method=method, tr_solver=tr_solver,
        tr_options=tr_options, loss=a["loss"], bounds=a["bounds"], ftol=ftol, xtol=xtol,
        gtol=gtol, x_scale=a["x_scale"], jac=a["jac"], seed=seed, callback=a["callback"],
        backend=a["backend"], eliminate=a["eliminate"], varpro_jacobian=a["varpro_jacobian"],
        P0=P0, Q0=Q0, rng=rng, **numbers,  # type: ignore[arg-type]
    )
    return ratings, options
