"""Every choice and default of the command line comes from the library's tables."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pytest

from lsqmf.cli import build_parser, main
from lsqmf.cli._options import LSQ_OPTIONS, own_option_flags, solve_defaults
from lsqmf.model.problem import FORMULATIONS
from lsqmf.nls.solve import JAC_KINDS, LOSSES, METHODS, TR_SOLVERS
from lsqmf.solvers import SOLVER_SPECS

#: CLI destination -> lsqmf.solve keyword, where the names differ.
_SOLVE_NAMES = {"seed": "random_state"}
_CHOICES = {"method": list(METHODS), "tr_solver": list(TR_SOLVERS), "loss": list(LOSSES),
            "formulation": list(FORMULATIONS), "jac": list(JAC_KINDS)}


def _actions(command: str) -> dict[str, argparse.Action]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a for a in sub.choices[command]._actions if a.dest != "help"}


def test_solve_defaults_and_choices_are_lsqmf_solve_s() -> None:
    defaults = solve_defaults()
    actions = _actions("solve")
    checked = 0
    for dest, action in actions.items():
        name = _SOLVE_NAMES.get(dest, dest)
        if name in defaults:
            value = action.default
            assert value == defaults[name], (dest, value, defaults[name])
            checked += 1
        if dest in _CHOICES:  # lsqmf.solve's method also takes 'auto' (its default)
            expected = ["auto", *METHODS] if dest == "method" else _CHOICES[dest]
            assert list(action.choices) == expected, dest
    assert checked >= 18  # method ... seed: every lsqmf.solve option the command exposes
    assert actions["seed"].default is None and actions["reg"].default == 0.0
    assert actions["formulation"].default == defaults["formulation"]


@pytest.mark.parametrize("command", ["fit", "evaluate", "cv"])
def test_solver_options_come_from_the_registry(command: str) -> None:
    actions = _actions(command)
    assert list(actions["solver"].choices) == list(SOLVER_SPECS)
    own = {p.name for spec in SOLVER_SPECS.values() for p in spec.params if p.cli}
    flags = set(own_option_flags())
    assert flags == own - {"method", "tr_solver"}
    for option in (*flags, *LSQ_OPTIONS, "method", "tr_solver", "biases", "count_scaled",
                   "max_iter", "tol", "max_time", "init_scale", "seed"):
        # None: the registry's by-name default (lsqmf.solvers.resolve_solver) applies
        assert actions[option].default is None, option
    for dest, choices in _CHOICES.items():
        if dest in actions:
            assert list(actions[dest].choices) == choices, dest
    assert list(actions["optimizer"].choices) == ["adam", "fixed"]


RATINGS = "userId,movieId,rating,timestamp\n" + "".join(
    f"{u},{i},{(u * 7 + i * 3) % 9 / 2 + 0.5},0\n" for u in range(8) for i in range(6)
    if (u + i) % 3
)


@pytest.fixture
def ratings_file(tmp_path: Path) -> Path:
    path = tmp_path / "ratings.csv"
    path.write_text(RATINGS)
    return path


def test_option_for_another_solver_is_refused(ratings_file: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["fit", str(ratings_file), "--solver", "als", "--loss", "soft_l1",
                 "--out", str(ratings_file.with_suffix(".npz"))])
    assert code == 2
    assert "--loss applies to the lsq solver; got --solver als" in capsys.readouterr().err


def test_fit_accepts_the_lsq_options_of_solve(ratings_file: Path) -> None:
    from lsqmf.model.files import load_model

    out = ratings_file.with_suffix(".npz")
    with pytest.warns(Warning):  # few evaluations: not converged
        code = main(["fit", str(ratings_file), "--solver", "lsq", "--rank", "2",
                     "--loss", "soft_l1", "--method", "dogbox", "--tr-solver", "lsmr",
                     "--bounds", "-3", "3", "--max-iter", "5", "--seed", "1", "--out",
                     str(out)])
    assert code == 0
    model, _ = load_model(out)
    assert model.options["loss"] == "soft_l1" and model.options["method"] == "dogbox"
    assert np.all(np.abs(model.P) <= 3)


def test_diverging_fit_saves_nothing_and_exits_non_zero(
    ratings_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = ratings_file.with_suffix(".npz")
    code = main(["fit", str(ratings_file), "--solver", "gd", "--rank", "2", "--reg", "0",
                 "--no-biases", "--optimizer", "adam", "--learning-rate", "1e5",
                 "--max-iter", "50", "--seed", "0", "--out", str(out)])
    err = capsys.readouterr().err
    assert code != 0
    assert not out.exists()
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "NonFiniteResidualError" in lines[0]
    assert "partial_result" in lines[0] or "diverg" in lines[0] or "exploded" in lines[0]


def test_verbose_prints_a_line_per_iteration(ratings_file: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    from lsqmf import ConvergenceWarning

    with (
        caplog.at_level(logging.INFO, logger="lsqmf.solvers.als"),
        pytest.warns(ConvergenceWarning),
    ):
        code = main(["-v", "fit", str(ratings_file), "--solver", "als", "--rank", "2",
                     "--max-iter", "4",
                     "--tol", "1e-15", "--out", str(ratings_file.with_suffix(".npz"))])
    assert code == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "lsqmf.solvers.als"]
    assert sum(line.startswith("als: iteration") for line in lines) == 5  # start + 4 sweeps
    assert "status MAX_ITER" in lines[-1]  # and the final line


def test_progress_bar_on_stderr_and_switchable(ratings_file: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    base = ["fit", str(ratings_file), "--solver", "als", "--rank", "2", "--tol", "0.5",
            "--force"]
    out = str(ratings_file.with_suffix(".npz"))
    assert main([*base, "--progress", "--out", out]) == 0
    assert "lsqmf fit als" in capsys.readouterr().err
    assert main([*base, "--no-progress", "--out", out]) == 0
    assert "lsqmf fit als" not in capsys.readouterr().err


def test_cv_accepts_the_lsq_options(ratings_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["cv", str(ratings_file), "--solver", "lsq", "--rank", "2", "--reg", "0.1",
                 "--loss", "soft_l1", "--max-iter", "3", "--folds", "2", "--seed", "0",
                 "--no-progress"])
    assert code == 0
    assert "best: rank=2 reg=0.1" in capsys.readouterr().out
