"""Start-up: ``import lsqmf`` stays cheap, its exports still resolve, and each solver's warm-up
loads the kernels that solver runs (and no others).

Correctness checks only; the start-up times are measured in ``benchmarks/bench_startup.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
import warnings

import numpy as np
import pytest

import lsqmf
from lsqmf.cli import COMMANDS
from lsqmf.data.synthetic import make_low_rank
from lsqmf.kernels import jit, registry
from lsqmf.runtime.threads import passive_openmp_wait
from lsqmf.solvers import SOLVER_KERNELS, SOLVER_SPECS, get_solver, warm_up_solver

#: Modules that must not be loaded by ``import lsqmf`` or by building the command line.
HEAVY = ("pandas", "matplotlib", "seaborn", "numba", "llvmlite", "dask", "distributed",
         "joblib", "scipy.optimize")


def _modules_after(code: str) -> set[str]:
    """The module names loaded by ``code`` in a fresh interpreter."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, timeout=120)
    return set(json.loads(out.stdout.splitlines()[-1]))


@pytest.mark.parametrize(
    "code",
    ["import lsqmf", "from lsqmf.cli import build_parser; build_parser()"],
    ids=["import-lsqmf", "cli-parser"],
)
def test_start_up_imports_no_heavy_module(code: str) -> None:
    loaded = _modules_after(code)
    assert sorted(m for m in HEAVY if m in loaded) == []


def test_reading_a_ratings_file_imports_no_pandas(tmp_path) -> None:
    path = tmp_path / "ratings.csv"
    path.write_text("userId,movieId,rating\n1,10,4.0\n2,10,3.5\n2,007,5.0\n")
    loaded = _modules_after(
        f"from lsqmf.data.readers import load_ratings\nload_ratings({str(path)!r})"
    )
    assert "pandas" not in loaded


def test_import_lsqmf_loads_no_submodule_until_used() -> None:
    loaded = _modules_after("import lsqmf")
    assert sorted(m for m in loaded if m.startswith("lsqmf.")) == ["lsqmf._version"]
    assert "numpy" not in loaded


@pytest.mark.parametrize("name", sorted(lsqmf.__all__))
def test_every_export_resolves_to_its_definition(name: str) -> None:
    value = getattr(lsqmf, name)
    source = lsqmf._SOURCE.get(name)
    if source is None:  # __version__, set in the package itself
        assert isinstance(value, str)
    else:
        assert value is getattr(sys.modules[f"lsqmf.{source}"], name)
    assert name in dir(lsqmf)


def test_from_import_of_every_export_in_a_fresh_process() -> None:
    names = ", ".join(n for n in lsqmf.__all__)
    code = (f"from lsqmf import {names}\nimport lsqmf\n"
            "assert all(getattr(lsqmf, n) is not None for n in lsqmf.__all__)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_functions_named_like_their_submodule_stay_functions() -> None:
    # the functions live in lsqmf.nls's modules of the same name; importing those modules (or
    # the flat layout's old paths) must leave the package's attributes the functions
    code = (
        "import types, lsqmf\n"
        "import lsqmf.nls.solve, lsqmf.nls.multistart, lsqmf.solvers.lsq, lsqmf.varpro\n"
        "assert isinstance(lsqmf.solve, types.FunctionType), lsqmf.solve\n"
        "assert isinstance(lsqmf.multistart, types.FunctionType), lsqmf.multistart\n"
        "import sys\n"
        "assert lsqmf.solve is sys.modules['lsqmf.nls.solve'].solve\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert isinstance(lsqmf.solve, types.FunctionType)
    assert isinstance(lsqmf.multistart, types.FunctionType)


def test_submodules_are_attributes_on_first_use() -> None:
    assert lsqmf.data.readers.__name__ == "lsqmf.data.readers"


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        _ = lsqmf.no_such_name


# ------------------------------------------------------------------------------ warm-up
def test_every_solver_names_registered_kernels() -> None:
    for spec in SOLVER_SPECS.values():
        assert set(spec.kernels) <= set(registry.KERNELS), spec.name
    assert set(SOLVER_KERNELS) == {k for spec in SOLVER_SPECS.values() for k in spec.kernels}
    assert "gibbs_side" in SOLVER_KERNELS  # bmf's own kernels are warmed up too
    assert not {"tutorial_mf", "gibbs_rows"} & set(SOLVER_KERNELS)  # only tests use these


@pytest.fixture
def fresh_kernel_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Empty the per-process kernel table (kernels are then read again from the disk cache)."""
    pytest.importorskip("numba")
    monkeypatch.setattr(jit, "_compiled", {})


def _loaded() -> list[str]:
    return sorted(jit._compiled)


def _signatures() -> dict[str, int]:
    return {name: len(getattr(f, "signatures", ())) for name, f in jit._compiled.items()}


@pytest.mark.parametrize("solver", sorted(SOLVER_SPECS))
def test_warm_up_loads_exactly_the_kernels_the_solver_runs(solver: str,
                                                           fresh_kernel_caches: None) -> None:
    warm_up_solver(solver)
    after_warm_up = _signatures()
    assert sorted(after_warm_up) == sorted(SOLVER_SPECS[solver].kernels)
    R, _ = make_low_rank(30, 20, 3, density=0.5, random_state=0)
    extra = {"jac": "operator"} if solver == "lsq" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a 2-iteration run does not converge
        for biases in (False, True):
            get_solver(solver)(R, 3, random_state=0, max_iter=2, biases=biases, **extra)
    # nothing was compiled or loaded inside the clock: no new kernel, no new specialization
    assert _signatures() == after_warm_up


def test_numpy_backend_warms_up_nothing(fresh_kernel_caches: None) -> None:
    for solver in SOLVER_SPECS:
        warm_up_solver(solver, "numpy")
    assert _loaded() == []


def test_warm_up_refuses_unknown_names() -> None:
    with pytest.raises(ValueError, match="`name` must be one of"):
        registry.warm_up(["no_such_kernel"])


def test_lsq_passes_backend_to_solve(fresh_kernel_caches: None) -> None:
    R, _ = make_low_rank(30, 20, 3, density=0.5, random_state=0)
    lsq = get_solver("lsq")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lsq(R, 3, random_state=0, max_iter=5, jac="operator", backend="numpy")
        assert _loaded() == []  # the numpy operator: no kernel
        compiled = lsq(R, 3, random_state=0, max_iter=5, jac="operator", backend="compiled")
    assert fit.options["backend"] == "numpy"
    assert compiled.options["backend"] == "compiled"
    np.testing.assert_allclose(fit.P, compiled.P, rtol=1e-7, atol=1e-9)


# ------------------------------------------------------------------------------ OpenMP
def test_warm_up_asks_openmp_for_passive_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    warm_up_solver("als", "numpy")  # the numpy backend loads no OpenMP
    assert "OMP_WAIT_POLICY" not in os.environ
    warm_up_solver("als")
    assert os.environ["OMP_WAIT_POLICY"] == "passive"


def test_a_wait_policy_set_by_the_user_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_WAIT_POLICY", "active")
    passive_openmp_wait()
    registry.select_kernels(("als_rows",))
    assert os.environ["OMP_WAIT_POLICY"] == "active"


# ------------------------------------------------------------------------------ blas_info
def test_blas_info_counts_blas_libraries_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import threadpoolctl

    from lsqmf.bench.harness import blas_info

    libraries = [
        {"user_api": "blas", "internal_api": "openblas", "version": "0", "num_threads": 1,
         "filepath": "libopenblas.so"},
        {"user_api": "openmp", "internal_api": "openmp", "version": None, "num_threads": 2,
         "filepath": "libgomp.so"},
    ]
    monkeypatch.setattr(threadpoolctl, "threadpool_info", lambda: libraries)
    info = blas_info()
    assert info["max_threads"] == 1
    assert [lib["user_api"] for lib in info["libraries"]] == ["blas", "openmp"]


def test_aligning_test_ids_imports_no_pandas(tmp_path) -> None:
    train = tmp_path / "train.csv"
    test = tmp_path / "test.csv"
    train.write_text("userId,movieId,rating\n1,10,4.0\n2,10,3.5\n2,7,5.0\n")
    test.write_text("userId,movieId,rating\n2,10,4.0\n3,7,1.0\n")
    loaded = _modules_after(
        "from lsqmf.data.readers import load_ratings\n"
        "from lsqmf.evaluate.splits import align_pairs\n"
        f"align_pairs(load_ratings({str(train)!r}), load_ratings({str(test)!r}))"
    )
    assert "pandas" not in loaded


# ------------------------------------------------------------------------------ command line
def _subcommands(parser) -> dict[str, object]:
    return next(a for a in parser._actions if a.dest == "command").choices


def _signature(parser) -> list[tuple[object, ...]]:
    """What a parser accepts: every argument's flags, destination, default and choices."""
    return [(tuple(a.option_strings), a.dest, repr(a.default), repr(a.choices), a.nargs)
            for a in parser._actions]


def test_the_command_table_lists_every_command() -> None:
    from lsqmf import cli

    assert set(cli.COMMANDS) == set(_subcommands(cli.build_parser()))


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_the_parser_of_one_command_is_the_full_parsers(command: str) -> None:
    from lsqmf import cli

    full, partial = _subcommands(cli.build_parser()), _subcommands(cli.build_parser(command))
    assert command in partial
    assert set(partial) <= set(full)
    assert _signature(partial[command]) == _signature(full[command])


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["evaluate", "a", "b"], "evaluate"),
        (["-v", "--blas-threads", "2", "fit", "x"], "fit"),
        (["-vv", "--traceback", "cv", "x"], "cv"),
        (["--blas-threads=2", "cv", "x"], "cv"),
        (["--blas", "3", "solve", "x"], "solve"),  # an abbreviation, as argparse allows
        (["--", "predict"], "predict"),
        (["--version"], None),
        ([], None),
        (["no-such-command"], "no-such-command"),
    ],
    ids=["plain", "value-option", "flags", "equals", "abbreviated", "double-dash", "version",
         "empty", "unknown"],
)
def test_command_name_skips_the_top_level_options(argv: list[str], expected: str | None) -> None:
    from lsqmf.cli import command_name

    assert command_name(argv) == expected


def test_an_unknown_command_gets_the_full_parser_and_its_message(capsys) -> None:
    from lsqmf.cli import main

    with pytest.raises(SystemExit) as err:
        main(["no-such-command"])
    assert err.value.code == 2
    message = capsys.readouterr().err
    assert "invalid choice: 'no-such-command'" in message
    assert "'evaluate'" in message and "'solve'" in message  # every command listed


def test_the_evaluate_command_imports_only_what_it_needs() -> None:
    loaded = _modules_after(
        "from lsqmf.cli import build_parser, command_name\n"
        "argv = ['evaluate', 'train.csv', 'test.csv', '--solver', 'als']\n"
        "build_parser(command_name(argv)).parse_args(argv)\n"
        "import lsqmf.data.readers, lsqmf.evaluate.search, lsqmf.solvers, lsqmf.solvers.als"
    )
    unneeded = ("lsqmf.cli.solve", "lsqmf.cli.bench", "lsqmf.cli.verify", "lsqmf.cli.tune",
                "lsqmf.cli.demo", "lsqmf.bench", "lsqmf.nls.solve", "lsqmf.nls.varpro",
                "scipy.sparse.linalg", *HEAVY)
    assert sorted(m for m in unneeded if m in loaded) == []


def test_startup_gc_pauses_then_freezes_and_restores() -> None:
    import gc

    from lsqmf.cli import startup_gc

    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    try:
        with startup_gc():
            assert not gc.isenabled()
            kept = [[]]  # an object made during the start-up
        assert gc.isenabled()
        assert gc.get_freeze_count() > frozen
        assert gc.is_tracked(kept)
        with startup_gc(active=False):
            assert gc.isenabled()
    finally:
        gc.unfreeze()  # this test process collects as before


def _evaluate_files(tmp_path) -> tuple[str, str]:
    R, _ = make_low_rank(40, 30, 3, density=0.5, random_state=0)
    lines = [f"{u},{i},{v:.6f}" for u, i, v in zip(R.rows, R.cols, R.values, strict=True)]
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    train.write_text("userId,movieId,rating\n" + "\n".join(lines[::2]) + "\n")
    test.write_text("userId,movieId,rating\n" + "\n".join(lines[1::2]) + "\n")
    return str(train), str(test)


@pytest.mark.parametrize("solver", ["als", "bmf"])
def test_the_program_gives_the_results_of_main_in_process(tmp_path, capsys,
                                                          solver: str) -> None:
    """``python -m lsqmf evaluate`` (kernels loaded before the data, the collector paused and
    frozen) prints the numbers ``main([...])`` prints in this process, where the collector is
    left alone."""
    import gc

    from lsqmf.cli import main

    train, test = _evaluate_files(tmp_path)
    argv = ["evaluate", train, test, "--solver", solver, "--seed", "0", "--json",
            "--no-progress", "--max-iter", "3"]
    # the checks run at exit, after the CLI's own handler (registered when main starts)
    code = ("import atexit, gc, sys\n"
            "atexit.register(lambda: print('frozen', gc.get_freeze_count() > 0, "
            "'enabled', gc.isenabled()))\n"
            "from lsqmf.cli import main\n"
            f"sys.argv = ['lsqmf', *{argv!r}]\n"
            "code = main()\n"
            "assert code == 0, code\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=300)
    program = json.loads(proc.stdout.splitlines()[0])
    assert proc.stdout.splitlines()[-1] == "frozen True enabled True"
    frozen = gc.get_freeze_count()
    assert main(argv) == 0
    in_process = json.loads(capsys.readouterr().out)
    assert gc.get_freeze_count() == frozen and gc.isenabled()
    program.pop("fit_s")
    in_process.pop("fit_s")
    assert program == in_process
