"""The backend is an axis of the solver contract (issue 20): every registered solver with
``backend='numpy'`` and ``backend='compiled'`` agrees, records the backend it ran, and the numpy
backend loads no numba; the kernel package has one table and no import cycle; warm-ups run
before the clocks start."""

from __future__ import annotations

import ast
import dataclasses
import functools
import json
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lsqmf
from lsqmf.data.ratings import Ratings
from lsqmf.data.synthetic import make_low_rank
from lsqmf.kernels import jit, registry
from lsqmf.model.result import FitResult
from lsqmf.solvers import SOLVER_SPECS, get_solver

SOLVERS = sorted(SOLVER_SPECS)
KERNELS_DIR = Path(lsqmf.__file__).parent / "kernels"

#: What lsqmf.kernels may import from lsqmf besides itself: it is the bottom compute layer.
KERNEL_DEPENDENCIES = {"lsqmf._validation", "lsqmf.runtime.threads"}


# ------------------------------------------------------------------------------ structure
def _module_name(path: Path) -> str:
    parts = path.relative_to(KERNELS_DIR.parent.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(path: Path) -> set[str]:
    """Every lsqmf module ``path`` imports, function-level imports included (not those under
    ``if TYPE_CHECKING:``); ``from . import x`` counts as importing the submodule ``x``."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _is_type_checking(node):
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                is_module = (KERNELS_DIR.parent.parent / Path(*sub.split("."))).with_suffix(
                    ".py").exists()
                found.add(sub if is_module else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return {name for name in found if name == "lsqmf" or name.startswith("lsqmf.")}


KERNEL_MODULES = {_module_name(p): _imports(p) for p in sorted(KERNELS_DIR.rglob("*.py"))}


def test_kernels_import_nothing_above_them() -> None:
    for module, imported in KERNEL_MODULES.items():
        outside = {m for m in imported if not m.startswith("lsqmf.kernels")}
        assert outside <= KERNEL_DEPENDENCIES, module


def test_no_import_cycle_inside_kernels() -> None:
    graph = {m: {i for i in imported if i in KERNEL_MODULES and i != m}
             for m, imported in KERNEL_MODULES.items()}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, " -> ".join((*path, module))
        if module not in done:
            for dep in sorted(graph[module]):
                visit(dep, (*path, module))
            done.add(module)

    for module in sorted(graph):
        visit(module, ())


def test_one_table_holds_every_kernel_module() -> None:
    from lsqmf.kernels import bmf, core, solvers, varpro

    declared = [k.name for m in (core, solvers, bmf, varpro) for k in m.KERNELS]
    assert sorted(declared) == sorted(registry.KERNELS)  # names unique across modules
    for kernel in registry.KERNELS.values():  # lazily typed kernels say how to warm them up
        assert kernel.signature is not None or kernel.example is not None, kernel.name


# ------------------------------------------------------------------------------ numba
_OPERATOR = ", jac='operator'"  # lsq then runs the operator (its kernels with 'compiled')
_NO_NUMBA_CASES = {
    **{f"solver-{name}": f"get_solver({name!r})(R, 2, backend='numpy', max_iter=2, "
                         f"random_state=0{_OPERATOR if name == 'lsq' else ''})"
       for name in SOLVERS},
    "solve": "lsqmf.solve(R, 2, backend='numpy', random_state=0, max_nfev=3)",
    "solve-operator": "lsqmf.solve(R, 2, backend='numpy', random_state=0, max_nfev=3, "
                      "tr_solver='lsmr', jac='operator')",
    "solve-eliminate-P": "lsqmf.solve(R, 2, backend='numpy', random_state=0, eliminate='P', "
                         "formulation='l2', reg=0.1, max_nfev=3)",
    "solve-eliminate-Q": "lsqmf.solve(R, 2, backend='numpy', random_state=0, eliminate='Q', "
                         "formulation='l2', reg=0.1, max_nfev=3)",
    "solve-lm-normal": "lsqmf.solve(R, 2, backend='numpy', random_state=0, eliminate='Q', "
                       "formulation='l2', reg=0.1, method='lm-normal', max_nfev=3)",
}


@pytest.mark.parametrize("call", list(_NO_NUMBA_CASES.values()), ids=list(_NO_NUMBA_CASES))
def test_numpy_backend_loads_no_numba(call: str) -> None:
    code = textwrap.dedent(f"""
        import sys, warnings
        import numpy as np
        import lsqmf
        from lsqmf.solvers import get_solver
        warnings.simplefilter("ignore")
        R = np.random.default_rng(0).random((8, 6)) * 4 + 1
        R[np.random.default_rng(1).random(R.shape) < 0.2] = np.nan
        fit = {call}
        assert fit.options["backend"] == "numpy", fit.options.get("backend")
        loaded = sorted(m for m in sys.modules if m == "numba" or m.startswith("numba."))
        assert not loaded, loaded[:5]
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


# ------------------------------------------------------------------------------ contract
def _problem() -> Ratings:
    R, _ = make_low_rank(20, 15, 2, density=0.6, random_state=0)
    return R


@functools.cache
def _fit(solver: str, backend: str, biases: bool) -> FitResult:
    if backend == "compiled":
        pytest.importorskip("numba")
    extra = {"jac": "operator"} if solver == "lsq" else {}  # lsq then runs the kernels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 8 iterations need not converge
        return get_solver(solver)(_problem(), 2, random_state=0, max_iter=8, biases=biases,
                                  backend=backend, **extra)


def _predictions(fit: FitResult) -> np.ndarray:
    M = fit.P @ fit.Q
    if fit.row_bias is not None and fit.col_bias is not None:
        M = M + fit.row_bias[:, None] + fit.col_bias[None, :]
    return M


#: Agreement of the compiled kernels with the numpy oracles after 8 iterations, on predictions
#: of order 1 and on the cost. The kernels run the same arithmetic, but sum in other orders
#: (per-row sums, BLAS in the numpy paths, jac_matvec's fast-math reassociation), so the last
#: bits differ and the iterations carry that on: observed at most 1.2e-14 (als_cg with
#: biases); 1e-10 leaves four orders of margin and still fails for any real difference.
ATOL = 1e-10
#: lsq with the operator runs LSMR, which stops on a relative residual tolerance: last-bit
#: differences in the products move where it stops, and the steps differ by up to that
#: tolerance times the step (observed 3.3e-8 on the predictions).
ATOL_LSMR = 1e-6


@pytest.mark.parametrize("biases", [False, True], ids=["plain", "biases"])
@pytest.mark.parametrize("backend", ["numpy", "compiled"])
@pytest.mark.parametrize("solver", SOLVERS)
def test_every_solver_agrees_with_the_numpy_oracle(solver: str, backend: str,
                                                   biases: bool) -> None:
    fit = _fit(solver, backend, biases)
    oracle = _fit(solver, "numpy", biases)
    assert fit.options["backend"] == backend
    assert np.all(np.isfinite(_predictions(fit)))
    atol = ATOL_LSMR if solver == "lsq" else ATOL
    np.testing.assert_allclose(_predictions(fit), _predictions(oracle), rtol=0, atol=atol)
    np.testing.assert_allclose(fit.cost, oracle.cost, rtol=atol)


@pytest.mark.parametrize("solver", SOLVERS)
def test_auto_records_the_backend_that_ran(solver: str) -> None:
    pytest.importorskip("numba")
    extra = {"jac": "operator"} if solver == "lsq" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = get_solver(solver)(_problem(), 2, random_state=0, max_iter=1, **extra)
    assert fit.options["backend"] == "compiled"


# ------------------------------------------------------------------------------ warm-up
class _SlowFirstCall:
    """A kernel whose first call, before any specialization exists, takes 0.3 s more."""

    def __init__(self, function: Any, name: str, loads: list[str]) -> None:
        self.function, self.name, self.loads = function, name, loads

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.function, attribute)

    def __call__(self, *args: Any) -> Any:
        if not self.function.signatures:
            self.loads.append(self.name)
            time.sleep(0.3)
        return self.function(*args)


@pytest.fixture
def slow_first_load(monkeypatch: pytest.MonkeyPatch) -> Callable[[], list[str]]:
    """Empty the process's kernel table and make loading each kernel take 0.3 s more: when it
    is first requested (an eagerly compiled kernel) or first called (a lazily typed one, which
    numba compiles or reads from its cache then). A clock that starts before the kernels are
    loaded counts those 0.3 s."""
    pytest.importorskip("numba")
    monkeypatch.setattr(jit, "_compiled", {})
    loads: list[str] = []

    def compiled(kernel: jit.Kernel) -> Any:
        if kernel.signature is not None and kernel.name not in jit._compiled:
            loads.append(kernel.name)
            time.sleep(0.3)
        function = jit.compiled(kernel)
        return function if kernel.signature else _SlowFirstCall(function, kernel.name, loads)

    monkeypatch.setattr(registry, "compiled", compiled)
    return lambda: loads


@pytest.mark.parametrize("eliminate", ["P", "Q"])
@pytest.mark.parametrize("method", ["trf", "lm-normal"])
def test_solve_eliminate_warms_up_before_its_clock(
    eliminate: str, method: str, slow_first_load: Callable[[], list[str]]
) -> None:
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lsqmf.solve(_problem(), 2, eliminate=eliminate, formulation="l2", reg=0.1,
                          method=method, random_state=0, max_nfev=3, backend="compiled")
    total = time.perf_counter() - t0
    loads = slow_first_load()
    assert "varpro_gram" in loads
    if method == "lm-normal":
        assert {"normal_tri_pairs", "normal_scatter"} <= set(loads)
    # the loads happened, and none of them inside the clock (a structural bound, not a speed
    # limit: wall_time cannot include 0.3 s per load if the loads ran before the clock)
    assert fit.wall_time <= total - 0.3 * len(loads)


@pytest.mark.parametrize("solver", SOLVERS)
def test_each_solver_warms_up_before_its_clock(
    solver: str, slow_first_load: Callable[[], list[str]]
) -> None:
    t0 = time.perf_counter()
    fit = _fit.__wrapped__(solver, "compiled", False)
    total = time.perf_counter() - t0
    loads = slow_first_load()
    assert sorted(loads) == sorted(SOLVER_SPECS[solver].kernels)
    assert fit.wall_time <= total - 0.3 * len(loads)


def test_evaluate_loads_each_kernel_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """``lsqmf evaluate`` warms up three times (command, fit_and_score, solver): the first
    loads the kernels and runs their warm-up calls, the others find them loaded."""
    pytest.importorskip("numba")
    from lsqmf.cli import main

    monkeypatch.setattr(jit, "_compiled", {})
    examples: list[str] = []

    def counted(kernel: jit.Kernel) -> jit.Kernel:
        if kernel.example is None:
            return kernel
        example = kernel.example

        def run(function: Any) -> object:
            examples.append(kernel.name)
            return example(function)

        return dataclasses.replace(kernel, example=run)

    monkeypatch.setattr(registry, "KERNELS", {n: counted(k) for n, k in registry.KERNELS.items()})
    R, _ = make_low_rank(12, 10, 2, density=0.7, random_state=0)
    lines = [f"{u + 1},{i + 1},{v:.3f},0" for u, i, v in zip(R.rows, R.cols, R.values,
                                                             strict=True)]
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    train.write_text("userId,movieId,rating,timestamp\n" + "\n".join(lines[:-5]) + "\n")
    test.write_text("userId,movieId,rating,timestamp\n" + "\n".join(lines[-5:]) + "\n")
    assert main(["evaluate", str(train), str(test), "--solver", "bmf", "--rank", "2",
                 "--max-iter", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["solver"] == "bmf"
    assert sorted(jit._compiled) == sorted(SOLVER_SPECS["bmf"].kernels)
    assert sorted(examples) == sorted(SOLVER_SPECS["bmf"].kernels)  # each warm-up call once
