"""The README's Python examples run against the installed lsqmf.

Every ```python block is executed in order in one namespace (later blocks may use names of
earlier ones), in a temporary working directory (blocks that save files write there). The
default selection skips blocks that take minutes (those loading the full MovieLens data set
with ``load_builtin``: cross-validation, grid search), which the slow test runs. Blocks that
read a data file the repository does not ship (``np.loadtxt``: the giraffe measurement matrix,
whose multistart takes tens of minutes here) are not run. A block that lists call forms for a Dask
cluster at a placeholder address (``tcp://HOST:...``) is a fragment, not a program, and is
never run.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

pytestmark = pytest.mark.skipif(not README.is_file(), reason="README.md not in this checkout")


def _blocks() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    return [b for b in blocks if "tcp://HOST" not in b]


def _slow(block: str) -> bool:
    return "load_builtin" in block


def _reads_data(block: str) -> bool:
    return "np.loadtxt(" in block


def _run(blocks: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(cwd)
    namespace: dict[str, object] = {}
    for k, code in enumerate(blocks, 1):
        with warnings.catch_warnings():
            # the README shows what a user sees; a ConvergenceWarning there is not an error
            warnings.simplefilter("ignore", UserWarning)
            exec(compile(code, f"README.md python block {k}", "exec"), namespace)


def test_readme_has_python_examples() -> None:
    assert len(_blocks()) >= 2


def test_readme_quick_python_blocks_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = [b for b in _blocks() if not _slow(b) and not _reads_data(b)]
    _run(blocks, tmp_path, monkeypatch)


@pytest.mark.slow
def test_readme_all_python_blocks_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _run([b for b in _blocks() if not _reads_data(b)], tmp_path, monkeypatch)
