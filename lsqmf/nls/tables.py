r"""The lookup tables of :func:`lsqmf.solve`: losses, methods, Jacobian kinds, and the rules
that read them.

Every decision about a loss, a method or a Jacobian kind is read from these tables: each
loss's :math:`\rho, \rho', \rho''` (:data:`LOSSES`), what a method supports and which runner
runs it (:data:`METHODS`), what a Jacobian kind needs and how it is built, for the joint and
for VarPro's reduced problem (:data:`JAC_KINDS`), whether the Jacobian must be dense
(:func:`needs_dense`, the one place that rule lives), which combinations are refused
(:func:`check_jac`) and what ``jac='auto'`` picks (:func:`choose_jac`).

Losses
------
``least_squares`` minimizes :math:`\tfrac12 f^2 \sum_j \rho(r_j^2 / f^2)` (:math:`f` =
``f_scale``) and needs :math:`\rho` with its first two derivatives in :math:`z = r^2/f^2`
(the ``(3, m)`` array of a callable ``loss``). A row of :data:`LOSSES` holds that function;
scipy's own losses are passed to scipy by name (its code runs, the numbers are scipy's), any
other row as the callable. The recorded costs (history, best point; VarPro and lm-normal)
come from the same row (:meth:`Loss.cost`). To add a loss, add a row.
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
    "ELIMINATE",
    "JAC_KINDS",
    "LOSSES",
    "METHODS",
    "NORMAL",
    "REDUCED_KERNELS",
    "TR_OPTION_KEYS",
    "TR_SOLVERS",
    "VARPRO_JACOBIANS",
    "JacKind",
    "Loss",
    "Method",
    "check_jac",
    "choose_jac",
    "loss_row",
    "needs_dense",
    "scipy_loss",
]

def _rows(*rows: np.ndarray) -> np.ndarray:
    return np.stack(np.broadcast_arrays(*rows))


def _linear(z: np.ndarray) -> np.ndarray:
    return _rows(z, np.ones_like(z), np.zeros_like(z))


def _soft_l1(z: np.ndarray) -> np.ndarray:
    t = 1.0 + z
    return _rows(2.0 * (np.sqrt(t) - 1.0), t**-0.5, -0.5 * t**-1.5)


def _huber(z: np.ndarray) -> np.ndarray:
    inner = z <= 1.0
    s = np.sqrt(np.where(inner, 1.0, z))  # sqrt(z) where it is used, 1 elsewhere
    return _rows(np.where(inner, z, 2.0 * s - 1.0), np.where(inner, 1.0, 1.0 / s),
                 np.where(inner, 0.0, -0.5 / s**3))


def _cauchy(z: np.ndarray) -> np.ndarray:
    t = 1.0 + z
    return _rows(np.log1p(z), 1.0 / t, -1.0 / t**2)


def _arctan(z: np.ndarray) -> np.ndarray:
    t = 1.0 + z**2
    return _rows(np.arctan(z), 1.0 / t, -2.0 * z / t**2)


@dataclass(frozen=True)
class Loss:
    r"""A robust loss: ``rho(z)`` of the squared scaled residual ``z = (r / f_scale)**2``.

    ``rho(z)`` returns scipy's ``(3, m)`` array: :math:`\rho(z)`, :math:`\rho'(z)`,
    :math:`\rho''(z)`, with :math:`\rho(0) = 0`, :math:`\rho'(0) = 1` (the shape of a callable
    ``loss`` of ``least_squares``). ``scipy`` says ``least_squares`` knows the loss by this
    name (passed as the string, so scipy's own code runs); otherwise ``rho`` is passed as a
    callable. The cost of a residual vector is :func:`cost`.
    """

    name: str
    rho: Callable[[np.ndarray], np.ndarray]
    scipy: bool = False

    def cost(self, r: np.ndarray, f_scale: float) -> float:
        """``0.5 * f_scale**2 * sum(rho(r**2 / f_scale**2))`` (scipy's cost)."""
        if self.rho is _linear:
            return 0.5 * float(r @ r)
        c2 = f_scale**2
        return 0.5 * c2 * float(np.sum(self.rho(r**2 / c2)[0]))


#: Loss name -> :class:`Loss`: the one loss table (``solve``, VarPro, lm-normal, the CLI's
#: choices). Adding a loss is one row; a row scipy lacks runs through its callable.
LOSSES: dict[str, Loss] = {
    "linear": Loss("linear", _linear, scipy=True),
    "soft_l1": Loss("soft_l1", _soft_l1, scipy=True),
    "huber": Loss("huber", _huber, scipy=True),
    "cauchy": Loss("cauchy", _cauchy, scipy=True),
    "arctan": Loss("arctan", _arctan, scipy=True),
}


def loss_row(loss: str | Callable) -> Loss:
    """The table row of a loss name, or a row wrapping a callable ``loss`` (scipy's contract:
    ``loss(z)`` returns the ``(3, m)`` array)."""
    if isinstance(loss, str):
        return LOSSES[loss]
    return Loss(getattr(loss, "__name__", "callable"), lambda z: np.asarray(loss(z)))


def scipy_loss(loss: str | Callable) -> str | Callable:
    """What ``least_squares`` gets as ``loss``: scipy's name for its own losses, else the
    ``rho`` callable."""
    row = loss_row(loss)
    return row.name if row.scipy else row.rho


TR_SOLVERS = (None, "exact", "lsmr")

#: Largest ``n_theta`` for which lm-normal forms the dense normal matrix (8000**2 doubles:
#: 512 MB); :func:`lsqmf.nls.auto.choose_method` picks the matrix-free path above it.
MAX_NORMAL_PARAMS = 8000

#: ``tr_options`` keys each ``tr_solver`` takes (None: scipy picks lsmr or exact by the
#: Jacobian's type; lsqmf accepts lsmr's keys for it).
TR_OPTION_KEYS: Mapping[str | None, frozenset[str]] = MappingProxyType({
    None: frozenset({"atol", "btol", "conlim", "maxiter", "damp", "show", "regularize"}),
    "lsmr": frozenset({"atol", "btol", "conlim", "maxiter", "damp", "show", "regularize"}),
    "exact": frozenset(),
})


@dataclass(frozen=True)
class Method:
    """What a method supports, and which runner of :data:`lsqmf.nls.run.RUNNERS` runs it."""

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
    #: key of :data:`lsqmf.nls.run.RUNNERS`
    runner: str = "least_squares"
    #: runs only on the reduced problem of variable projection (``eliminate=``)
    eliminate_only: bool = False
    #: forms its own Jacobian product (lm-normal's ``J^T J``): takes ``jac='auto'`` only,
    #: Kaufman's Jacobian only and no ``tr_solver``; the name recorded as ``jac``
    own_jac: str | None = None
    #: runs its linear algebra on one BLAS thread (unless ``blas_threads`` says otherwise)
    single_thread: bool = False
    #: compiled kernels it runs with the compiled backend (besides the Jacobian kind's)
    kernels: tuple[str, ...] = ()


#: Method name -> what it supports. ``'lm-normal'`` is lsqmf's own Levenberg-Marquardt on the
#: reduced normal equations (:mod:`lsqmf.nls.lm_normal`), the others scipy's.
METHODS: Mapping[str, Method] = MappingProxyType({
    "trf": Method("trf", dense=False, bounds=True, robust_loss=True, uses_tr_solver=True,
                  overdetermined=False, positive_tolerances=False),
    "dogbox": Method("dogbox", dense=False, bounds=True, robust_loss=True, uses_tr_solver=True,
                     overdetermined=False, positive_tolerances=False),
    "lm": Method("lm", dense=True, bounds=False, robust_loss=False, uses_tr_solver=False,
                 overdetermined=True, positive_tolerances=True),
    "lm-normal": Method("lm-normal", dense=False, bounds=False, robust_loss=True,
                        uses_tr_solver=False, overdetermined=False, positive_tolerances=False,
                        runner="lm_normal", eliminate_only=True, own_jac="normal",
                        single_thread=True, kernels=("normal_tri_pairs", "normal_scatter")),
})

#: Which factor ``eliminate`` solves in closed form (None: the joint problem).
ELIMINATE = (None, "Q", "P")
#: Jacobians of VarPro's reduced residual: Kaufman's approximation and the full Golub-Pereyra
#: one (``varpro_jacobian``; :mod:`lsqmf.nls.varpro`).
VARPRO_JACOBIANS = ("kaufman", "full")
#: Compiled kernels every VarPro run calls with the compiled backend (the inner solve's Gram
#: matrices); a Jacobian kind adds its ``reduced_kernels``, a method its ``kernels``.
REDUCED_KERNELS = ("varpro_gram",)


def _csr(problem: Problem, backend: str) -> Callable[[np.ndarray], Any]:
    return problem.jacobian


def _operator(problem: Problem, backend: str) -> Callable[[np.ndarray], Any]:
    return lambda x: problem.operator(x, backend=backend)


def _kron(problem: Problem, backend: str) -> Callable[[np.ndarray], Any]:
    return lambda x: kron_jacobian(problem, x)


def _reduced_operator(red: Any, kind: str) -> Callable[[np.ndarray], Any]:
    return lambda x: red.operator(x, kind)


def _reduced_sparse(red: Any, kind: str) -> Callable[[np.ndarray], Any]:
    return lambda x: red.jacobian(x, kind)


def _reduced_dense(red: Any, kind: str) -> Callable[[np.ndarray], Any]:
    return lambda x: red.dense_jacobian(x, kind)


@dataclass(frozen=True)
class JacKind:
    """A value of ``jac``: what it needs and how its Jacobian is built.

    ``build(problem, backend)`` returns the Jacobian function (a sparse matrix or
    ``LinearOperator`` at ``x``; the plan turns a sparse matrix dense when :func:`needs_dense`
    says so or ``always_dense``), or None for scipy's finite differences (``scipy_name``).
    ``reduced(red, varpro_jacobian)`` does the same for VarPro's reduced problem
    (:class:`~lsqmf.nls.varpro.ReducedProblem`; None: the kind cannot be used with
    ``eliminate``), already dense for ``'dense'``.
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
    reduced: Callable[[Any, str], Callable[[np.ndarray], Any]] | None = None
    #: the compiled kernels of the reduced Jacobian's products
    reduced_kernels: tuple[str, ...] = ()


#: ``jac`` name -> what it needs and how it is built ('auto' is resolved by
#: :func:`choose_jac`).
JAC_KINDS: Mapping[str, JacKind | None] = MappingProxyType({
    "auto": None,
    "sparse": JacKind("sparse", can_be_dense=False, always_dense=False, build=_csr,
                      reduced=_reduced_sparse),
    "dense": JacKind("dense", can_be_dense=True, always_dense=True, build=_csr,
                     reduced=_reduced_dense),
    "operator": JacKind("operator", can_be_dense=False, always_dense=False, build=_operator,
                        kernels=("jac_matvec", "jac_rmatvec"), reduced=_reduced_operator,
                        reduced_kernels=("varpro_matvec", "varpro_rmatvec")),
    "kron": JacKind("kron", can_be_dense=True, always_dense=False, build=_kron),
    "2-point": JacKind("2-point", can_be_dense=True, always_dense=False, build=None,
                       scipy_name="2-point"),
    "3-point": JacKind("3-point", can_be_dense=True, always_dense=False, build=None,
                       scipy_name="3-point"),
})

#: The Jacobian of a method with its own product (:attr:`Method.own_jac`): lm-normal forms the
#: reduced normal matrix ``J^T J`` itself; nothing is handed to scipy.
NORMAL = JacKind("normal", can_be_dense=False, always_dense=False, build=None)


#: ``jac='auto'`` picks the compiled matrix-free operator (for lsmr) from this many
#: structural Jacobian nonzeros (:meth:`Problem.jacobian_nnz`) on; see :func:`choose_jac` and,
#: for the measurements behind it, the ``jac`` section of :mod:`lsqmf.solve`.
AUTO_OPERATOR_MIN_NNZ = 4_000_000


def needs_dense(method: str, tr_solver: str | None) -> bool:
    """Whether scipy needs the Jacobian as a dense array: ``method='lm'`` (MINPACK) or
    ``tr_solver='exact'`` (an SVD or QR of J). The one place this rule lives."""
    return METHODS[method].dense or tr_solver == "exact"


def check_jac(jac: str, method: str, tr_solver: str | None, eliminate: str | None = None
              ) -> None:
    """Refuse an unknown ``jac`` or one the method, ``tr_solver`` and ``eliminate`` cannot use.

    Raises
    ------
    ValueError
        Naming the combination and the allowed alternatives.
    """
    from .._validation import check_choice

    check_choice("jac", jac, JAC_KINDS)
    kind = JAC_KINDS[jac]
    own = METHODS[method].own_jac
    if own is not None and jac != "auto":
        raise ValueError(
            f"method={method!r} forms {own} equations itself and takes jac='auto' only; got "
            f"jac={jac!r}."
        )
    if eliminate is not None and kind is not None and kind.reduced is None:
        allowed = [n for n, k in JAC_KINDS.items() if k is None or k.reduced is not None]
        raise ValueError(
            f"with `eliminate`, `jac` must be one of {', '.join(map(repr, allowed))} (the "
            f"reduced Jacobian has no {jac!r} form); got jac={jac!r}."
        )
    if kind is None or kind.can_be_dense or not needs_dense(method, tr_solver):
        return
    who = f"method={method!r}" if METHODS[method].dense else "tr_solver='exact'"
    dense_ok = [name for name, k in JAC_KINDS.items() if (k is None or k.can_be_dense) and (
        eliminate is None or k is None or k.reduced is not None)]
    raise ValueError(
        f"{who} needs a dense Jacobian, so jac={jac!r} cannot be used with it. Allowed: "
        f"jac in {', '.join(map(repr, dense_ok))} with {who}; or keep jac={jac!r} with "
        "method='trf'/'dogbox' and tr_solver='lsmr'."
    )


def choose_jac(
    jac: str, method: str, tr_solver: str | None, jacobian_nnz: int, backend: str,
    eliminate: str | None = None,
) -> JacKind:
    """The Jacobian kind to run (``jac='auto'`` resolved; call :func:`check_jac` first).

    ``'auto'`` is the method's own (:data:`NORMAL` for lm-normal), or ``'dense'`` when
    :func:`needs_dense`; otherwise (LSMR) with ``eliminate`` the matrix-free ``'operator'``
    (the reduced Jacobian has about sum_i n_i^2 rank nonzeros as a matrix), and for
    the joint problem the compiled matrix-free ``'operator'`` when the backend is compiled
    and the Jacobian has at least :data:`AUTO_OPERATOR_MIN_NNZ` structural nonzeros, else the
    CSR ``'sparse'``. The rule reads only the problem's size, so the same call picks the same
    kind on every machine.
    """
    if METHODS[method].own_jac is not None:
        return NORMAL
    if jac != "auto":
        kind = JAC_KINDS[jac]
        assert kind is not None
        return kind
    if needs_dense(method, tr_solver):
        name = "dense"
    elif eliminate is not None or (
        backend == "compiled" and jacobian_nnz >= AUTO_OPERATOR_MIN_NNZ
    ):
        name = "operator"
    else:
        name = "sparse"
    chosen = JAC_KINDS[name]
    assert chosen is not None
    return chosen
