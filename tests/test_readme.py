"""The README's Python examples run against the installed lsqmf.

Every ```python block is executed in order in one namespace (later blocks may use names of
earlier ones). Blocks that load the full MovieLens data set (``load_builtin``) take minutes
(cross-validation, grid search) and run only in the slow selection.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

pytestmark = pytest.mark.skipif(not README.is_file(), reason="README.md not in this checkout")


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def _run(blocks: list[str]) -> None:
    namespace: dict[str, object] = {}
    for k, code in enumerate(blocks, 1):
        with warnings.catch_warnings():
            # the README shows what a user sees; a ConvergenceWarning there is not an error
            warnings.simplefilter("ignore", UserWarning)
            exec(compile(code, f"README.md python block {k}", "exec"), namespace)


def test_readme_has_python_examples() -> None:
    assert len(_blocks()) >= 2


def test_readme_quick_python_blocks_run() -> None:
    _run([b for b in _blocks() if "load_builtin" not in b])


@pytest.mark.slow
def test_readme_all_python_blocks_run() -> None:
    _run(_blocks())
