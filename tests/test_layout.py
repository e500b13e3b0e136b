"""The package's architecture, checked: layers, import direction, no cycles, short functions.

The layers and their order are those of ARCHITECTURE.md. Every import of an lsqmf module is
counted, at module level or inside a function (a lazy import is still an import); only imports
under ``if TYPE_CHECKING:`` are left out.
"""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lsqmf"

#: Layer -> rank: a module may import its own layer and layers of lower rank only.
#: ``kernels`` is the compute layer under the model (numba kernels and their numpy oracles,
#: which import no other layer); ``runtime`` (threads, parallel map, checkpoints, progress) and
#: the top-level ``_version``/``_validation``/``_params`` are shared by everything above them;
#: ``oracle`` (the reference loop, golden outputs, verify) offers the compiled equivalent of the
#: reference loop from ``kernels`` beside it, and shares no code with the paths it checks.
LAYERS: dict[str, int] = {
    "lsqmf._version": 0, "lsqmf._validation": 0, "lsqmf._params": 1, "lsqmf.runtime": 1,
    "lsqmf.kernels": 2, "lsqmf.data": 2, "lsqmf.oracle": 3,
    "lsqmf.model": 3, "lsqmf.nls": 4, "lsqmf.solvers": 5, "lsqmf.evaluate": 6,
    "lsqmf.estimators": 7, "lsqmf.bench": 7, "lsqmf.cli": 8, "lsqmf.__main__": 9,
}
MAX_TOP_LEVEL_MODULES = 12
MAX_CODE_LINES = 60


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skip


def _imports(name: str) -> set[str]:
    """The lsqmf modules that module ``name`` imports (at any level of its code)."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    skip = _type_checking_nodes(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in MODULES and t != name)
    return found


GRAPH = {name: _imports(name) for name in MODULES}


def _layer(name: str) -> str | None:
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        head = ".".join(parts[:i])
        if head in LAYERS:
            return head
    return None


def test_every_module_belongs_to_a_layer() -> None:
    loose = [m for m in MODULES if m != "lsqmf" and _layer(m) is None]
    assert not loose, f"modules outside the layers of ARCHITECTURE.md: {loose}"


def test_at_most_twelve_modules_at_the_top_level() -> None:
    top = [p.name for p in PACKAGE.glob("*.py")]
    assert len(top) <= MAX_TOP_LEVEL_MODULES, sorted(top)


def test_imports_flow_one_way() -> None:
    upward = []
    for name, deps in GRAPH.items():
        if name == "lsqmf":
            continue
        for dep in deps:
            if dep == "lsqmf":
                upward.append(f"{name} -> lsqmf (the package's lazy exports)")
                continue
            a, b = _layer(name), _layer(dep)
            if a != b and LAYERS[b] >= LAYERS[a]:  # type: ignore[index]
                upward.append(f"{name} -> {dep}")
    assert not upward, "imports against the layer order:\n" + "\n".join(sorted(upward))


def _cycles() -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle() -> None:
    assert _cycles() == []


def _code_lines(source: str) -> int:
    """Lines holding code: not blank, not only a comment, not part of a docstring."""
    tree = ast.parse(source)
    doc_lines: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            doc_lines.update(range(body[0].lineno, body[0].end_lineno + 1))  # type: ignore[operator]
    code: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT,
                        tokenize.DEDENT, tokenize.ENDMARKER):
            continue
        code.update(range(tok.start[0], tok.end[0] + 1))
    return len(code - doc_lines)


def _long_functions() -> list[str]:
    out = []
    for name, path in MODULES.items():
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines(keepends=True)
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                text = "".join(lines[node.lineno - 1:node.end_lineno])
                n = _code_lines(_dedent(text))
                if n > MAX_CODE_LINES:
                    out.append(f"{name}.{node.name}: {n} code lines")
    return out


def _dedent(text: str) -> str:
    import textwrap

    return textwrap.dedent(text)


def test_no_function_over_sixty_code_lines() -> None:
    assert _long_functions() == []


#: Layers that may import pandas, matplotlib or seaborn at module level.
_PRESENTATION = ("lsqmf.bench", "lsqmf.cli", "lsqmf.estimators")


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) not in _PRESENTATION))
def test_the_core_imports_no_plotting_or_pandas_at_module_level(module: str) -> None:
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    names = {a.name.split(".")[0] for n in top if isinstance(n, ast.Import) for a in n.names}
    names |= {(n.module or "").split(".")[0] for n in top if isinstance(n, ast.ImportFrom)}
    assert not names & {"matplotlib", "seaborn", "pandas"}
