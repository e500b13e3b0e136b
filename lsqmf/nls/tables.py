"""The lookup tables of :func:`lsqmf.solve`: losses, methods, Jacobian kinds, and the rules
that read them.

Every decision about a method or a Jacobian kind is read from these tables: what a method
supports (:data:`METHODS`), what a Jacobian kind needs and how it is built
(:data:`JAC_KINDS`), whether the Jacobian must be dense (:func:`needs_dense`, the one place
that rule lives), which combinations are refused (:func:`check_jac`) and what ``jac='auto'``
picks (:func:`choose_jac`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from ..model.problem import Problem, kron_jacobian

__all__ = [
    "AUTO_OPERATOR_MIN_NNZ",
    "JAC_KINDS",
    "LOSSES",
    "METHODS",
    "TR_OPTION_KEYS",
    "TR_SOLVERS",
    "JacKind",
    "Method",
    "check_jac",
    "choose_jac",
    "needs_dense",
]

#: The robust losses rho(z) of ``least_squares`` (z = squared residual over f_scale**2).
LOSSES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": lambda z: z,
    "soft_l1": lambda z: 2.0 * (np.sqrt(1.0 + z) - 1.0),
    "huber": lambda z: np.where(z <= 1.0, z, 2.0 * np.sqrt(z) - 1.0),
    "cauchy": np.log1p,
    "arctan": np.arctan,
}

TR_SOLVERS = (None, "exact", "lsmr")

#: ``tr_options`` keys each ``tr_solver`` takes (None: scipy picks lsmr or exact by the
#: Jacobian's type; lsqmf accepts lsmr's keys for it).
TR_OPTION_KEYS: Mapping[str | None, frozenset[str]] = MappingProxyType({
    None: frozenset({"atol", "btol", "conlim", "maxiter", "damp", "show", "regularize"}),
    "lsmr": frozenset({"atol", "btol", "conlim", "maxiter", "damp", "show", "regularize"}),
    "exact": frozenset(),
})


@dataclass(frozen=True)
class Method:
    """What a ``least_squares`` method supports."""

    name: str
    #: needs a dense Jacobian whatever ``tr_solver`` says (MINPACK)
    dense: bool
    bounds: bool
    robust_loss: bool
    #: takes ``tr_solver`` and ``tr_options`` (``lm`` ignores them, as scipy does)
    uses_tr_solver: bool
    #: needs at least as many residuals as unknowns
    overdetermined: bool
    #: needs every one of ftol, xtol, gtol to be a float > machine epsilon
    positive_tolerances: bool


#: Method name -> what it supports.
METHODS: Mapping[str, Method] = MappingProxyType({
    "trf": Method("trf", dense=False, bounds=True, robust_loss=True, uses_tr_solver=True,
                  overdetermined=False, positive_tolerances=False),
    "dogbox": Method("dogbox", dense=False, bounds=True, robust_loss=True, uses_tr_solver=True,
                     overdetermined=False, positive_tolerances=False),
    "lm": Method("lm", dense=True, bounds=False, robust_loss=False, uses_tr_solver=False,
                 overdetermined=True, positive_tolerances=True),
})


def _csr(problem: Problem, backend: str) -> Callable[[np.ndarray], Any]:
    return problem.jacobian


def _operator(problem: Problem, backend: str) -> Callable[[np.ndarray], Any]:
    return lambda x: problem.operator(x, backend=backend)


def _kron(problem: Problem, backend: str) -> Callable[[np.ndarray], Any]:
    return lambda x: kron_jacobian(problem, x)


@dataclass(frozen=True)
class JacKind:
    """A value of ``jac``: what it needs and how its Jacobian is built.

    ``build(problem, backend)`` returns the Jacobian function (a sparse matrix or
    ``LinearOperator`` at ``x``; the plan turns a sparse matrix dense when :func:`needs_dense`
    says so or ``always_dense``), or None for scipy's finite differences (``scipy_name``).
    """

    name: str
    #: can be handed to scipy as a dense array (needed by method='lm' and tr_solver='exact')
    can_be_dense: bool
    #: is always handed over dense (jac='dense')
    always_dense: bool
    build: Callable[[Problem, str], Callable[[np.ndarray], Any]] | None
    #: scipy's own name for a finite-difference scheme
    scipy_name: str | None = None
    #: runs the compiled Jacobian-product kernels with the compiled backend
    kernels: tuple[str, ...] = ()


#: ``jac`` name -> what it needs and how it is built ('auto' is resolved by
#: :func:`choose_jac`).
JAC_KINDS: Mapping[str, JacKind | None] = MappingProxyType({
    "auto": None,
    "sparse": JacKind("sparse", can_be_dense=False, always_dense=False, build=_csr),
    "dense": JacKind("dense", can_be_dense=True, always_dense=True, build=_csr),
    "operator": JacKind("operator", can_be_dense=False, always_dense=False, build=_operator,
                        kernels=("jac_matvec", "jac_rmatvec")),
    "kron": JacKind("kron", can_be_dense=True, always_dense=False, build=_kron),
    "2-point": JacKind("2-point", can_be_dense=True, always_dense=False, build=None,
                       scipy_name="2-point"),
    "3-point": JacKind("3-point", can_be_dense=True, always_dense=False, build=None,
                       scipy_name="3-point"),
})

#: ``jac='auto'`` picks the compiled matrix-free operator (for lsmr) from this many
#: structural Jacobian nonzeros (:meth:`Problem.jacobian_nnz`) on; see :func:`choose_jac` and,
#: for the measurements behind it, the ``jac`` section of :mod:`lsqmf.solve`.
AUTO_OPERATOR_MIN_NNZ = 4_000_000


def needs_dense(method: str, tr_solver: str | None) -> bool:
    """Whether scipy needs the Jacobian as a dense array: ``method='lm'`` (MINPACK) or
    ``tr_solver='exact'`` (an SVD or QR of J). The one place this rule lives."""
    return METHODS[method].dense or tr_solver == "exact"


def check_jac(jac: str, method: str, tr_solver: str | None) -> None:
    """Refuse an unknown ``jac`` or one the method and ``tr_solver`` cannot use.

    Raises
    ------
    ValueError
        Naming the combination and the allowed alternatives.
    """
    from .._validation import check_choice

    check_choice("jac", jac, JAC_KINDS)
    kind = JAC_KINDS[jac]
    if kind is None or kind.can_be_dense or not needs_dense(method, tr_solver):
        return
    who = f"method={method!r}" if METHODS[method].dense else "tr_solver='exact'"
    dense_ok = [name for name, k in JAC_KINDS.items() if k is None or k.can_be_dense]
    raise ValueError(
        f"{who} needs a dense Jacobian, so jac={jac!r} cannot be used with it. Allowed: "
        f"jac in {', '.join(map(repr, dense_ok))} with {who}; or keep jac={jac!r} with "
        "method='trf'/'dogbox' and tr_solver='lsmr'."
    )


def choose_jac(
    jac: str, method: str, tr_solver: str | None, jacobian_nnz: int, backend: str
) -> JacKind:
    """The Jacobian kind to run (``jac='auto'`` resolved; call :func:`check_jac` first).

    ``'auto'`` is ``'dense'`` when :func:`needs_dense`; otherwise (LSMR) the compiled
    matrix-free ``'operator'`` when the backend is compiled and the Jacobian has at least
    :data:`AUTO_OPERATOR_MIN_NNZ` structural nonzeros, else the CSR ``'sparse'``. The rule
    reads only the problem's size, so the same call picks the same kind on every machine.
    """
    if jac != "auto":
        kind = JAC_KINDS[jac]
        assert kind is not None
        return kind
    if needs_dense(method, tr_solver):
        name = "dense"
    elif backend == "compiled" and jacobian_nnz >= AUTO_OPERATOR_MIN_NNZ:
        name = "operator"
    else:
        name = "sparse"
    chosen = JAC_KINDS[name]
    assert chosen is not None
    return chosen
