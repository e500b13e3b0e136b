"""Declared options: every invalid value of every declared option is refused by every solver.

The values come from the declarations themselves (:meth:`lsqmf._params.Param.invalid`), so a
new solver or a new option is covered without touching this file. Each refusal must be a
``TypeError`` or ``ValueError`` that names the option, raised before any fitting.
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest

import lsqmf
from lsqmf._params import Param, validate
from lsqmf.cli._options import add_solve_options, add_solver_options
from lsqmf.nls.options import SOLVE_PARAMS
from lsqmf.solvers import SHARED_PARAMS, SOLVER_DEFAULTS, SOLVER_SPECS

R = np.array([[5.0, 3.0, np.nan], [4.0, np.nan, 1.0], [1.0, 1.0, 5.0]])


def _cases() -> list[tuple[str, Param, object]]:
    cases = []
    for name, spec in SOLVER_SPECS.items():
        for param in (*SHARED_PARAMS, *spec.params):
            if param.kind == "custom":  # checked by their own functions, tested elsewhere
                continue
            cases += [(name, param, value) for value in param.invalid()]
    return cases


CASES = _cases()


@pytest.mark.parametrize(
    ("solver", "param", "value"), CASES,
    ids=[f"{s}-{p.name}-{v!r:.20}" for s, p, v in CASES],
)
def test_every_solver_refuses_every_invalid_value(solver: str, param: Param,
                                                  value: object) -> None:
    fn = SOLVER_SPECS[solver].function
    with pytest.raises((TypeError, ValueError), match=f"`{param.name}`"):
        if param.name == "rank":
            fn(R, value, max_iter=1)
        else:
            fn(R, 1, **{param.name: value})


@pytest.mark.parametrize("solver", sorted(SOLVER_SPECS))
def test_every_declared_default_is_valid(solver: str) -> None:
    spec = SOLVER_SPECS[solver]
    for param in (*SHARED_PARAMS, *spec.params):
        if param.name != "rank":
            assert param.validate(spec.defaults.get(param.name, param.default)) is not None \
                or param.allow_none or param.default is None


def test_validate_checks_declared_names_and_passes_others_through() -> None:
    table = (Param("n", "int", 1, low=1), Param("x", "float", 0.5, low=0.0, high=1.0))
    assert validate(table, {"n": np.int64(3), "x": 1, "other": "kept"}) == {
        "n": 3, "x": 1.0, "other": "kept"}
    with pytest.raises(ValueError, match=r"`x` must be <= 1.0; got 2.0"):
        validate(table, {"x": 2.0})


@pytest.mark.parametrize(
    ("param", "text"),
    [
        (Param("a", "int", 1, low=1), "an int >= 1"),
        (Param("a", "float", 0.5, low=0.0, high=1.0, low_open=True), "a float in (0, 1]"),
        (Param("a", "float", None, low=0.0, allow_none=True), "a float >= 0 or None"),
        (Param("a", "choice", "x", choices=("x", "y")), "one of x, y"),
        (Param("a", "bool", False), "True or False"),
    ],
)
def test_requirement_in_words(param: Param, text: str) -> None:
    assert param.requirement() == text


def test_the_command_line_offers_every_declared_option_with_its_real_default() -> None:
    parser = argparse.ArgumentParser()
    add_solver_options(parser)
    flags = {a.dest: a for a in parser._actions}
    for spec in SOLVER_SPECS.values():
        for param in (*SHARED_PARAMS, *spec.params):
            if not param.cli:
                continue
            assert param.name in flags, param.name
            if param.name not in ("method", "tr_solver"):  # the lsq group: lsqmf.solve's
                default = SOLVER_DEFAULTS[spec.name].get(param.name, param.default)
                assert repr(default) in flags[param.name].help, (param.name, spec.name)


SOLVE_CASES = [(param, value) for param in SOLVE_PARAMS if param.kind != "custom"
               for value in param.invalid()]


@pytest.mark.parametrize(("param", "value"), SOLVE_CASES,
                         ids=[f"{p.name}-{v!r:.20}" for p, v in SOLVE_CASES])
def test_solve_refuses_every_invalid_value(param: Param, value: object) -> None:
    with pytest.raises((TypeError, ValueError), match=f"`{param.name}`"):
        if param.name == "rank":
            lsqmf.solve(R, value)
        else:
            lsqmf.solve(R, 1, **{param.name: value})


def test_solve_refuses_an_unknown_loss_name_and_takes_a_callable() -> None:
    with pytest.raises(ValueError, match="`loss` must be one of"):
        lsqmf.solve(R, 1, loss="tukey")
    assert lsqmf.solve(R, 1, loss=lambda z: np.vstack([z, np.ones_like(z), 0 * z]),
                       random_state=0).success in (True, False)


def test_the_signature_of_solve_is_the_declaration() -> None:
    import inspect

    signature = inspect.signature(lsqmf.solve).parameters
    assert {p.name for p in SOLVE_PARAMS} == set(signature) - {"R"}
    for param in SOLVE_PARAMS:
        assert signature[param.name].default == param.default, param.name


def test_lsqmf_solve_offers_every_declared_flag_with_its_default() -> None:
    parser = argparse.ArgumentParser()
    add_solve_options(parser)
    flags = {a.dest: a for a in parser._actions}
    for param in SOLVE_PARAMS:
        if param.cli and param.name != "rank":
            assert flags[param.name].default == param.default, param.name
            assert repr(param.default) in flags[param.name].help, param.name
