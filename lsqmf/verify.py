"""Check a candidate rewrite of the reference loop against the stored golden outputs.

A *candidate* is any callable with the reference's signature,
``candidate(R, P, Q, K, max_steps, alpha, beta, epsilon) -> (P, Q)`` (called with positional
arguments, so the parameter names do not matter), where ``P`` is ``(N, K)`` and ``Q`` is
``(M, K)``. For every golden case (see :mod:`lsqmf.golden`) :func:`verify` calls the candidate
on fresh copies of the stored inputs and checks

1. the returned ``P`` and ``Q`` against the stored outputs:
   ``|actual - expected| <= atol + rtol * |expected|`` elementwise, all finite, same shapes;
2. with ``check_mutation=True`` (default), the in-place behaviour of the reference: after the
   call the caller's ``P`` and ``Q`` must hold the stored outputs (same tolerance) and ``R``
   must be unchanged.

A candidate that raises gets a row with the exception in ``error``; :func:`verify` itself
raises only for its own bad arguments.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from ._validation import check_bool, check_float, describe
from .golden import GoldenData, case_names, load_case

__all__ = ["CaseResult", "VerifyReport", "load_candidate", "verify"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaseResult:
    """The outcome of one golden case.

    Attributes
    ----------
    case : str
        Golden case name.
    max_abs_diff_P, max_abs_diff_Q : float
        Largest ``|returned - expected|`` over the entries of ``P`` and ``Q``; NaN when the
        candidate raised or returned something that cannot be compared (wrong shape), inf when
        it returned a non-finite value.
    mutation_ok : bool or None
        Whether the caller's ``P`` and ``Q`` ended up holding the expected outputs and ``R``
        was left unchanged; None when not checked (``check_mutation=False`` or the candidate
        raised).
    passed : bool
        The case passed every check.
    error : str or None
        ``"ExceptionType: message"`` when the candidate raised, else None.
    reason : str
        Why the case failed (empty when it passed).
    """

    case: str
    max_abs_diff_P: float
    max_abs_diff_Q: float
    mutation_ok: bool | None
    passed: bool
    error: str | None = None
    reason: str = ""


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of :func:`verify`: one :class:`CaseResult` per golden case.

    Attributes
    ----------
    candidate : str
        Name of the candidate checked.
    atol, rtol : float
        Tolerances used.
    check_mutation : bool
        Whether in-place behaviour was checked.
    results : tuple of CaseResult
        Per-case rows, in golden-case order.
    """

    candidate: str
    atol: float
    rtol: float
    check_mutation: bool
    results: tuple[CaseResult, ...]

    @property
    def passed(self) -> bool:
        """Every case passed."""
        return all(r.passed for r in self.results)

    @property
    def errored(self) -> bool:
        """The candidate raised on at least one case."""
        return any(r.error is not None for r in self.results)

    @property
    def n_failed(self) -> int:
        return sum(not r.passed for r in self.results)

    def to_records(self) -> list[dict[str, Any]]:
        """The per-case rows as a list of dicts (e.g. for ``pandas.DataFrame``)."""
        return [
            {
                "case": r.case,
                "max_abs_diff_P": r.max_abs_diff_P,
                "max_abs_diff_Q": r.max_abs_diff_Q,
                "mutation_ok": r.mutation_ok,
                "passed": r.passed,
                "error": r.error,
                "reason": r.reason,
            }
            for r in self.results
        ]


def verify(
    candidate: Callable[..., Any],
    *,
    atol: float = 1e-8,
    rtol: float = 0.0,
    check_mutation: bool = True,
    cases: Iterable[str] | None = None,
    golden_dir: str | os.PathLike[str] | None = None,
) -> VerifyReport:
    """Run ``candidate`` on every golden case and compare with the stored outputs.

    Parameters
    ----------
    candidate : callable
        Called as ``candidate(R, P, Q, K, max_steps, alpha, beta, epsilon)`` on copies of the
        stored inputs (``R`` (N, M), ``P`` (N, K), ``Q`` (M, K), float64, C-contiguous,
        writable; ``K`` and ``max_steps`` int; the others float); must return ``(P, Q)`` with
        ``P`` (N, K) and ``Q`` (M, K).
    atol : float, default=1e-8
        Absolute tolerance (>= 0).
    rtol : float, default=0.0
        Relative tolerance (>= 0), relative to the stored value.
    check_mutation : bool, default=True
        Also require the reference's in-place behaviour: after the call the caller's ``P`` and
        ``Q`` equal the stored outputs (within the tolerances) and ``R`` is unchanged.
    cases : iterable of str, optional
        Golden case names to run; default all, in stored order.
    golden_dir : path, optional
        Directory of golden files; default the ones shipped with lsqmf.

    Returns
    -------
    VerifyReport

    Raises
    ------
    TypeError
        If ``candidate`` is not callable or an option has the wrong type.
    ValueError
        If a tolerance is negative or not finite, or a case name is unknown.
    FileNotFoundError
        If the golden files are missing.

    Examples
    --------
    >>> from lsqmf.reference import matrix_factorization
    >>> from lsqmf.verify import verify
    >>> report = verify(matrix_factorization, cases=["one_step", "rank1_tiny"])
    >>> report.passed
    True
    """
    if not callable(candidate):
        raise TypeError(f"`candidate` must be callable; got {describe(candidate)}.")
    atol = cast(float, check_float("atol", atol, min_value=0.0))
    rtol = cast(float, check_float("rtol", rtol, min_value=0.0))
    check_mutation = check_bool("check_mutation", check_mutation)
    available = case_names(golden_dir)
    if cases is None:
        names: Sequence[str] = available
    else:
        names = [cases] if isinstance(cases, str) else list(cases)
        unknown = [n for n in names if n not in available]
        if unknown:
            raise ValueError(
                f"`cases` must name golden cases among {', '.join(available)}; got unknown "
                f"{', '.join(repr(n) for n in unknown)}."
            )
        if not names:
            raise ValueError("`cases` must name at least one golden case; got none.")
    results = tuple(
        _run_case(candidate, load_case(name, golden_dir), atol, rtol, check_mutation)
        for name in names
    )
    return VerifyReport(
        candidate=_callable_name(candidate),
        atol=atol,
        rtol=rtol,
        check_mutation=check_mutation,
        results=results,
    )


def _run_case(
    candidate: Callable[..., Any],
    golden: GoldenData,
    atol: float,
    rtol: float,
    check_mutation: bool,
) -> CaseResult:
    R = np.array(golden.R, dtype=np.float64, order="C")
    P = np.array(golden.P0, dtype=np.float64, order="C")
    Q = np.array(golden.Q0, dtype=np.float64, order="C")
    nan = float("nan")
    logger.info("verify: running case %s", golden.name)
    try:
        out = candidate(
            R, P, Q, golden.K, golden.max_steps, golden.alpha, golden.beta, golden.epsilon
        )
    except Exception as err:  # the candidate's failure is the result, not ours
        logger.debug("candidate raised on %s:\n%s", golden.name, traceback.format_exc())
        return CaseResult(
            golden.name, nan, nan, None, False,
            error=f"{type(err).__name__}: {err}", reason="the candidate raised",
        )
    try:
        P_out, Q_out = out
    except (TypeError, ValueError):
        return CaseResult(
            golden.name, nan, nan, None, False,
            reason=f"expected a pair (P, Q) to be returned; got {describe(out)}",
        )
    reasons: list[str] = []
    diff_P, ok_P = _compare("P", P_out, golden.P, atol, rtol, reasons)
    diff_Q, ok_Q = _compare("Q", Q_out, golden.Q, atol, rtol, reasons)
    mutation_ok: bool | None = None
    if check_mutation:
        mutation_reasons: list[str] = []
        _compare("P (caller's array)", P, golden.P, atol, rtol, mutation_reasons)
        _compare("Q (caller's array)", Q, golden.Q, atol, rtol, mutation_reasons)
        if not np.array_equal(R, golden.R):
            mutation_reasons.append("R was modified")
        mutation_ok = not mutation_reasons
        if mutation_reasons:
            reasons.append(
                "in-place check: " + "; ".join(mutation_reasons)
                + " (the reference updates the caller's P and Q in place)"
            )
    passed = ok_P and ok_Q and mutation_ok is not False
    return CaseResult(golden.name, diff_P, diff_Q, mutation_ok, passed, reason="; ".join(reasons))


def _compare(
    name: str, actual: Any, expected: np.ndarray, atol: float, rtol: float, reasons: list[str]
) -> tuple[float, bool]:
    """Max abs difference and whether ``actual`` is within tolerance of ``expected``."""
    try:
        arr = np.asarray(actual, dtype=np.float64)
    except (TypeError, ValueError):
        reasons.append(f"{name} is not a numeric array: {describe(actual)}")
        return float("nan"), False
    if arr.shape != expected.shape:
        reasons.append(f"{name} has shape {arr.shape}, expected {expected.shape}")
        return float("nan"), False
    if arr.size == 0:
        return 0.0, True
    if not np.all(np.isfinite(arr)):
        reasons.append(f"{name} has non-finite entries")
        return float("inf"), False
    diff = np.abs(arr - expected)
    ok = bool(np.all(diff <= atol + rtol * np.abs(expected)))
    if not ok:
        reasons.append(f"{name} outside tolerance")
    return float(diff.max()), ok


def _callable_name(candidate: Callable[..., Any]) -> str:
    module = getattr(candidate, "__module__", None)
    qualname = getattr(candidate, "__qualname__", None) or repr(candidate)
    return f"{module}:{qualname}" if module else qualname


def load_candidate(spec: str) -> Callable[..., Any]:
    """Import the callable named by ``spec``.

    Parameters
    ----------
    spec : str
        ``"MODULE:FUNCTION"`` (an importable module, e.g. ``"mypkg.fast:factorize"``) or
        ``"path/to/file.py:FUNCTION"`` (a Python file, loaded as a fresh module).
        ``FUNCTION`` may be dotted (``"Class.method"``).

    Returns
    -------
    callable

    Raises
    ------
    ValueError
        If ``spec`` is not of the form ``MODULE:FUNCTION``.
    ImportError
        If the module or file cannot be imported (whatever the module raised is chained) or
        has no such attribute.
    TypeError
        If ``spec`` is not a str or the attribute is not callable.
    """
    if not isinstance(spec, str):
        raise TypeError(f"`spec` must be a str 'MODULE:FUNCTION'; got {describe(spec)}.")
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        raise ValueError(
            f"`spec` must be 'MODULE:FUNCTION' or 'path/to/file.py:FUNCTION'; got {spec!r}."
        )
    is_file = target.endswith(".py") or os.sep in target or "/" in target
    try:
        module = _import_file(target) if is_file else importlib.import_module(target)
    except ImportError:
        raise
    except Exception as err:  # a module that fails at import time
        raise ImportError(
            f"could not import {target!r}: {type(err).__name__}: {err}"
        ) from err
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ImportError(f"{target!r} has no attribute {attr!r}.") from None
    if not callable(obj):
        raise TypeError(f"{spec!r} is not callable; got {describe(obj)}.")
    return obj  # type: ignore[no-any-return]


def _import_file(target: str) -> Any:
    path = Path(target)
    if not path.is_file():
        raise ImportError(f"could not import {target!r}: no such file.")
    name = f"_lsqmf_candidate_{path.stem}_{abs(hash(str(path.resolve()))):x}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"could not import {target!r}: not a Python source file.")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # so that dataclasses, pickling and numba can find it
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module
