"""Declared parameters: one record per option, one validator, and what the CLI is built from.

An option of a public entry point is declared once, as a :class:`Param`: its name, kind,
default, range or choices, and one line of help. From that one declaration come

- the check at the entry point (:func:`validate`, through the messages of
  :mod:`lsqmf._validation`: the argument, the requirement, the value received);
- the command line's flag, type, choices and help text with the real default
  (:mod:`lsqmf.cli._options` reads the same records);
- the invalid values the contract test feeds to every entry point (:meth:`Param.invalid`).

This follows scikit-learn's ``_parameter_constraints``: the constraint is data, the code that
enforces it is written once. The solvers' shared options are :data:`lsqmf.solvers.SHARED_PARAMS`,
each solver's own ones the ``params`` of its :class:`~lsqmf.solvers.SolverSpec`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ._validation import check_bool, check_choice, check_float, check_int, describe

__all__ = ["KINDS", "Param", "validate"]

#: Kinds of a :class:`Param`: how a value is checked (and typed on the command line).
KINDS = ("int", "float", "bool", "choice", "callable", "custom")


@dataclass(frozen=True)
class Param:
    """One declared option.

    Attributes
    ----------
    name : str
        The keyword (``learning_rate``); the command-line flag is ``--learning-rate``.
    kind : {'int', 'float', 'bool', 'choice', 'callable', 'custom'}
        How values are checked: an int or a finite float in ``[low, high]`` (``low_open`` /
        ``high_open`` exclude the ends), a bool, one of ``choices``, a callable, or ``check``.
    default : object
        The default (the one place it is written).
    low, high : float or None
        Range of an ``int`` or ``float``.
    low_open, high_open : bool, default=False
        Exclude ``low`` (``high``) from the range.
    allow_none : bool, default=False
        None is a valid value (meaning what ``help`` says).
    choices : tuple, default=()
        The values of a ``choice``.
    help : str
        One line for docs and ``--help``.
    check : callable or None
        ``check(value) -> value`` for a ``custom`` kind (raises ValueError/TypeError itself).
    cli : bool, default=True
        Whether the command line offers it as a flag.
    """

    name: str
    kind: str
    default: Any = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    allow_none: bool = False
    choices: tuple[Any, ...] = ()
    help: str = ""
    check: Callable[[Any], Any] | None = None
    cli: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Param {self.name!r}: kind must be one of {KINDS}; got "
                             f"{self.kind!r}.")
        if self.kind == "custom" and self.check is None:
            raise ValueError(f"Param {self.name!r}: a 'custom' kind needs `check`.")

    def validate(self, value: Any) -> Any:
        """``value`` checked and normalized (an int as ``int``, a float as ``float``).

        Raises
        ------
        ValueError, TypeError
            Naming the option, the requirement and the value received.
        """
        if value is None and self.allow_none:
            return None
        if self.kind == "int":
            if self.low_open or self.high_open:
                raise AssertionError("open ranges are for floats")
            low = None if self.low is None else int(self.low)
            high = None if self.high is None else int(self.high)
            return check_int(self.name, value, min_value=low, max_value=high)
        if self.kind == "float":
            return check_float(self.name, value, min_value=self.low, max_value=self.high,
                               min_inclusive=not self.low_open,
                               max_inclusive=not self.high_open)
        if self.kind == "bool":
            return check_bool(self.name, value)
        if self.kind == "choice":
            return check_choice(self.name, value, self.choices)
        if self.kind == "callable":
            if not callable(value):
                raise TypeError(f"`{self.name}` must be callable; got {describe(value)}.")
            return value
        assert self.check is not None
        return self.check(value)

    def requirement(self) -> str:
        """The constraint in words (``'an int >= 1'``, ``'a float in (0, 1]'``)."""
        if self.kind in ("int", "float"):
            noun = "an int" if self.kind == "int" else "a float"
            if self.low is not None and self.high is not None:
                lo = "(" if self.low_open else "["
                hi = ")" if self.high_open else "]"
                text = f"{noun} in {lo}{_num(self.low)}, {_num(self.high)}{hi}"
            elif self.low is not None:
                text = f"{noun} {'>' if self.low_open else '>='} {_num(self.low)}"
            elif self.high is not None:
                text = f"{noun} {'<' if self.high_open else '<='} {_num(self.high)}"
            else:
                text = noun
        elif self.kind == "choice" or self.choices:
            text = "one of " + ", ".join(str(c) for c in self.choices)
        else:
            text = {"bool": "True or False", "callable": "a callable",
                    "custom": "see the docs"}[self.kind]
        return text + (" or None" if self.allow_none else "")

    def invalid(self) -> list[Any]:
        """Values this option must refuse (what the contract test feeds every entry point)."""
        bad: list[Any] = ["not-a-value", [1, 2]]
        if not self.allow_none and self.kind != "custom" and None not in self.choices:
            bad.append(None)
        if self.kind in ("int", "float"):
            bad += [True, complex(1, 1)]
            if self.kind == "int":
                bad.append(1.5)
            else:
                bad += [math.nan, math.inf]
            if self.low is not None:
                bad.append(self.low if self.low_open else _below(self.low, self.kind))
            if self.high is not None:
                bad.append(self.high if self.high_open else _above(self.high, self.kind))
        elif self.kind == "bool":
            bad += [1, "yes"]
        elif self.kind == "choice":
            bad += [object()]
        elif self.kind == "callable":
            bad = [1, "not-callable"]
        return bad


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _below(x: float, kind: str) -> float:
    return int(x) - 1 if kind == "int" else x - max(1.0, abs(x))


def _above(x: float, kind: str) -> float:
    return int(x) + 1 if kind == "int" else x + max(1.0, abs(x))


def validate(params: Iterable[Param], values: Mapping[str, Any]) -> dict[str, Any]:
    """Every value of ``values`` that ``params`` declares, checked (others passed through).

    Missing declared names are not filled in: defaults are the caller's business (a solver's
    registry entry, a function's signature).
    """
    table = {p.name: p for p in params}
    return {k: table[k].validate(v) if k in table else v for k, v in values.items()}
