"""One set of defaults (issue 21, item 2): the same at every entry point, every option honoured
or refused, predictions clipped to the training scale, the seed used recorded."""

from __future__ import annotations

import argparse
import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lsqmf
from lsqmf import ConvergenceWarning
from lsqmf.cli import build_parser, main
from lsqmf.cli._options import solver_params
from lsqmf.data.synthetic import make_low_rank
from lsqmf.evaluate.scoring import fit_and_score
from lsqmf.evaluate.tuning import DEFAULT_SPACE, full_params
from lsqmf.solvers import (
    DEFAULT_SOLVER,
    SHARED_PARAMS,
    SOLVER_DEFAULTS,
    SOLVER_SPECS,
    resolve_solver,
    solver_by_name,
)
from lsqmf.solvers._common import data_scaled_reg

NAMES = list(SOLVER_SPECS)
#: Small settings every fit here uses (the defaults compared are everything else).
SMALL = {"max_iter": 4}


@pytest.fixture(scope="module")
def ratings() -> lsqmf.Ratings:
    R, _ = make_low_rank(30, 20, 2, density=0.5, noise=0.3, scale=(1.0, 5.0), random_state=0)
    return R


def _fit(name: str, R: Any, *args: Any, **kw: Any) -> lsqmf.FitResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return SOLVER_SPECS[name].function(R, *args, **kw)


def _same_fit(a: lsqmf.FitResult, b: lsqmf.FitResult) -> None:
    np.testing.assert_array_equal(a.P, b.P)
    np.testing.assert_array_equal(a.Q, b.Q)
    assert a.cost == b.cost
    drop = ("backend",)
    assert {k: v for k, v in a.options.items() if k not in drop} == {
        k: v for k, v in b.options.items() if k not in drop}


# ------------------------------------------------------------------ identical everywhere


@pytest.mark.parametrize("name", NAMES)
def test_defaults_identical_across_entry_points(name: str, ratings: lsqmf.Ratings) -> None:
    """Direct call, resolve_solver, solver_by_name, fit_and_score, the CLI's parse and
    tune's configuration: one set of defaults, the registry's."""
    defaults = dict(SOLVER_DEFAULTS[name])
    # resolve_solver (every by-name entry point) and tune's configuration
    assert resolve_solver(name)[2] == defaults
    assert full_params(name, {}) == defaults
    # the command line: nothing given -> nothing but the seed passed on; resolved the same
    for command in ("fit", "evaluate"):
        args = build_parser(command).parse_args(
            [command, "x.csv", *(["y.csv"] if command == "evaluate" else []), "--solver", name]
            + (["--out", "m.npz"] if command == "fit" else []))
        params = solver_params(args)
        assert params == {"random_state": None}
        assert resolve_solver(args.solver, params)[2] == {**defaults, "random_state": None}
    # direct call without rank == by name == fit_and_score's model
    direct = _fit(name, ratings, random_state=0, **SMALL)
    assert direct.rank == defaults["rank"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        by_name = solver_by_name(name)(ratings, random_state=0, **SMALL)
    scored = fit_and_score(name, ratings, ratings, random_state=0, return_model=True, **SMALL)
    _same_fit(direct, by_name)
    _same_fit(direct, scored["model"])
    assert scored["rank"] == defaults["rank"]


def test_help_shows_the_registry_defaults() -> None:
    parser = build_parser("fit")
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    text = sub.choices["fit"].format_help()
    squashed = " ".join(text.split())
    assert f"default: {DEFAULT_SOLVER}" in squashed
    assert "0.15 x std(ratings)" in squashed and "bsgd: 0.05 x std(ratings)" in squashed
    assert "bmf: not used" in squashed
    for spec in SOLVER_SPECS.values():
        assert "Defaults (the registry's" in spec.function.__doc__
        assert f"rank={spec.rank}" in " ".join(spec.function.__doc__.split())


def test_fit_evaluate_cv_tune_share_the_default_solver_and_rank() -> None:
    for command, argv in (("fit", ["fit", "x", "--out", "m"]), ("evaluate", ["evaluate", "x", "y"]),
                          ("cv", ["cv", "x"])):
        args = build_parser(command).parse_args(argv)
        solver_params(args, grid=command == "cv")
        assert args.solver == DEFAULT_SOLVER, command
        assert args.rank is None, command  # the solver's default rank
    first = next(iter(DEFAULT_SPACE))
    assert first == DEFAULT_SOLVER
    assert SOLVER_DEFAULTS[DEFAULT_SOLVER]["rank"] in DEFAULT_SPACE[first]["rank"]
    assert SOLVER_DEFAULTS[DEFAULT_SOLVER]["max_iter"] in DEFAULT_SPACE[first]["max_iter"]


def test_reg_default_follows_the_rating_scale(ratings: lsqmf.Ratings) -> None:
    """reg=None is reg_per_std x std: ratings x 10 give the same fit, x 10 (converged)."""
    converge = dict(rank=2, max_iter=500, tol=1e-13, random_state=0)
    fit = _fit("als", ratings, **converge)
    assert fit.options["reg"] == pytest.approx(0.15 * np.std(ratings.values))
    scaled = dataclasses.replace(ratings, values=ratings.values * 10.0)
    big = _fit("als", scaled, **converge)
    assert big.options["reg"] == pytest.approx(10 * fit.options["reg"])
    grid = np.indices(ratings.shape).reshape(2, -1)
    np.testing.assert_allclose(big.predict(*grid, clip=None), 10 * fit.predict(*grid, clip=None),
                               rtol=1e-6, atol=1e-8)
    assert data_scaled_reg(SOLVER_SPECS["bsgd"], ratings) == pytest.approx(
        0.05 * np.std(ratings.values))


# ------------------------------------------------------------------ honoured or refused


def _alternative(param: Any, default: Any) -> Any:
    """A valid value other than ``default`` for a declared option."""
    special = {"max_iter": 2, "tol": 0.5, "max_time": 0.0, "init_scale": 1.0, "reg": 2.0,
               "reg_bias": 5.0, "rank": 3, "burn_in": 1, "warm_start": 2, "alpha": 2.0,
               "tr_solver": "exact", "method": "dogbox"}
    if param.name in special:
        return special[param.name]
    if param.kind == "bool":
        return not default
    if param.kind == "choice":
        return next(c for c in param.choices if c != default and c is not None)
    if param.kind == "int":
        return default + 1 if param.high is None or default + 1 <= param.high else default - 1
    if param.kind == "float":
        value = default * 0.5 if default else 0.5
        return value if param.high is None or value <= param.high else param.high / 2
    raise AssertionError(param)


#: Options that do not change the fitted model by design (the record of the run, its
#: logging, who computes it), and the reason.
NOT_FIT_OPTIONS = {
    "verbose": "logging only",
    "callback": "observes (a callback returning True stops: tested in test_solvers)",
    "backend": "compiled and numpy agree (tests/test_backends.py)",
    "weights": "custom (tests/test_solvers.py weights tests)",
    "random_state": "custom (tests/test_solvers.py seeds)",
    "P0": "custom (tests/test_solvers.py start tests)",
    "Q0": "custom (tests/test_solvers.py start tests)",
    "validation": "custom (tests/test_early_stopping.py)",
    # als_dask's execution options: where and how the same fit is computed
    "scheduler": "where the blocks run (tests/test_dask_als.py)",
    "n_blocks": "how the rows are blocked; the same fit (tests/test_dask_als.py)",
    "checkpoint": "where the sweeps are saved (tests/test_dask_als.py)",
    "columns": "columns of shard files (tests/test_dask_als.py)",
}


def _declared(name: str) -> list[Any]:
    spec = SOLVER_SPECS[name]
    return [p for p in (*SHARED_PARAMS, *spec.params) if p.name not in NOT_FIT_OPTIONS]


CASES = [(name, p.name) for name in NAMES for p in _declared(name)]


@pytest.mark.parametrize(("name", "option"), CASES, ids=[f"{n}-{o}" for n, o in CASES])
def test_every_option_changes_the_fit_or_is_refused(name: str, option: str,
                                                    ratings: lsqmf.Ratings) -> None:
    spec = SOLVER_SPECS[name]
    param = next(p for p in _declared(name) if p.name == option)
    default = SOLVER_DEFAULTS[name].get(option, param.default)
    if option == "rank":
        default = spec.rank
    value = _alternative(param, default)
    context = dict(SMALL, random_state=0)
    if option == "patience":  # patience acts with validation only (refused without it)
        context.update(max_iter=40, reg=0.0, rank=8)
        if "reg" in spec.unused:
            context.pop("reg")
        if name not in ("lsq", "als_dask"):  # which refuse validation
            context["validation"] = 0.3
        value = 1
    if option in ("max_iter", "max_time", "tol"):
        context.pop("max_iter")
    if name == "bmf" and option == "burn_in":
        context["max_iter"] = 4
    base = _fit(name, ratings, **context)
    if option in spec.unused or (option == "patience" and "validation" not in context):
        with pytest.raises(ValueError, match=rf"`{option}` is not used"):
            _fit(name, ratings, **{**context, option: value})
        return_value = None
    else:
        other = _fit(name, ratings, **{**context, option: value})
        return_value = other
    if return_value is not None:
        changed = (return_value.P.shape != base.P.shape or return_value.nfev != base.nfev
                   or not np.array_equal(return_value.P, base.P)
                   or return_value.cost != base.cost)
        assert changed, f"{name}: {option}={value!r} gave the same fit as {default!r}"


def test_bmf_refuses_a_burn_in_at_or_above_max_iter(ratings: lsqmf.Ratings) -> None:
    with pytest.raises(ValueError, match=r"`burn_in` must be < `max_iter`.*burn_in=5, "
                       r"max_iter=5"):
        _fit("bmf", ratings, burn_in=5, max_iter=5)
    fit = _fit("bmf", ratings, max_iter=5, random_state=0)  # the default adapts, recorded
    assert fit.options["burn_in"] == 4


def test_cli_refuses_reg_and_burn_in_for_bmf(tmp_path: Path, capsys: Any) -> None:
    path = tmp_path / "r.csv"
    path.write_text("".join(f"{u},{i},{(u * i) % 5 + 1}\n" for u in range(8) for i in range(6)))
    assert main(["fit", str(path), "--solver", "bmf", "--reg", "0.5", "--out",
                 str(tmp_path / "m.npz")]) == 2
    assert "`reg` is not used" in capsys.readouterr().err
    assert main(["fit", str(path), "--solver", "bmf", "--max-iter", "5", "--burn-in", "9",
                 "--out", str(tmp_path / "m.npz")]) == 2
    assert "`burn_in` must be < `max_iter`" in capsys.readouterr().err


# ------------------------------------------------------------------ clipping and the seed


def test_predict_clips_to_the_training_scale_by_default(ratings: lsqmf.Ratings,
                                                        tmp_path: Path) -> None:
    fit = _fit("als", ratings, random_state=0, reg=0.0, biases=False, count_scaled=False,
               max_iter=30, rank=8)
    lo, hi = float(ratings.values.min()), float(ratings.values.max())
    assert fit.rating_scale == (lo, hi)
    grid = np.indices(ratings.shape).reshape(2, -1)
    raw = fit.predict(*grid, clip=None)
    assert raw.min() < lo or raw.max() > hi  # an unregularized rank-8 fit overshoots
    clipped = fit.predict(*grid)
    np.testing.assert_array_equal(clipped, np.clip(raw, lo, hi))
    np.testing.assert_array_equal(fit.predict(*grid, clip=(0.0, 1.0)), np.clip(raw, 0.0, 1.0))
    from lsqmf.model.files import load_model, save_model

    save_model(fit, tmp_path / "m.npz")
    loaded, _ = load_model(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.predict(*grid), clipped)


def test_evaluate_json_prints_the_seed_used(tmp_path: Path, capsys: Any) -> None:
    path = tmp_path / "r.csv"
    path.write_text("".join(f"{u},{i},{(u * i) % 5 + 1}\n" for u in range(8) for i in range(6)))
    assert main(["evaluate", str(path), str(path), "--solver", "als", "--max-iter", "2",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert isinstance(out["random_state"], int)
    assert out["reg"] > 0 and out["rank"] == SOLVER_DEFAULTS["als"]["rank"]
    again = fit_and_score("als", lsqmf.data.readers.load_ratings(str(path)),
                          lsqmf.data.readers.load_ratings(str(path)), max_iter=2,
                          random_state=out["random_state"])
    assert again["rmse"] == pytest.approx(out["rmse"], rel=1e-12)
