"""Hostile command lines: every error is one line on stderr and a documented exit code
(2 bad input, 1 failed check, 130 Ctrl-C after saving, 70 a bug), never a traceback unless
``-v`` or ``--traceback``; finished work is not thrown away.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import io
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lsqmf
from lsqmf import FitResult, NonFiniteResidualError
from lsqmf.bench.grid import GridError
from lsqmf.cli import EXIT_CODES, build_parser, main
from lsqmf.model.files import load_model, save_model
from lsqmf.model.gradcheck import JacobianCheckError

RATINGS = b"userId,movieId,rating,timestamp\n" + b"".join(
    f"{u},{i},{(u * i) % 5 + 1},0\n".encode() for u in range(1, 7) for i in (10, 20, 30, 40)
    if (u + i // 10) % 3
)
FAST = ["--max-iter", "3"]  # the default solver, bmf, refuses --tol (it runs its sweeps)


class _Stop(KeyboardInterrupt):
    pass


def _os_error(cls: type[OSError], errno: int, text: str, name: str) -> OSError:
    return cls(errno, text, name)


# (exception raised by the subcommand, exit code, the one stderr line after "lsqmf solve: ")
RAISED = [
    pytest.param(ValueError("`rank` must be an int >= 1; got 0."), 2,
                 "error: `rank` must be an int >= 1; got 0.", id="ValueError"),
    pytest.param(TypeError("`reg` must be a real number; got 'x' (str)."), 2,
                 "error: `reg` must be a real number; got 'x' (str).", id="TypeError"),
    pytest.param(FileNotFoundError("no such ratings file: 'x.csv' (it does not exist)"), 2,
                 "error: no such ratings file: 'x.csv' (it does not exist)",
                 id="FileNotFoundError-lsqmf"),
    pytest.param(_os_error(FileNotFoundError, 2, "No such file or directory", "x.csv"), 2,
                 "error: 'x.csv': No such file or directory", id="FileNotFoundError-os"),
    pytest.param(_os_error(PermissionError, 13, "Permission denied", "/root/m.npz"), 2,
                 "error: '/root/m.npz': Permission denied", id="PermissionError"),
    pytest.param(_os_error(IsADirectoryError, 21, "Is a directory", "out"), 2,
                 "error: 'out': Is a directory", id="IsADirectoryError"),
    pytest.param(FileExistsError("'m.npz' exists; pass force=True (--force on the command "
                                 "line) to overwrite."), 2,
                 "error: 'm.npz' exists; pass force=True (--force on the command line) to "
                 "overwrite.", id="FileExistsError"),
    pytest.param(OSError(28, "No space left on device"), 2,
                 "error: OSError: [Errno 28] No space left on device", id="OSError-disk-full"),
    pytest.param(NonFiniteResidualError("residuals became non-finite at evaluation 7; try a "
                                        "smaller step"), 2,
                 "error: NonFiniteResidualError: residuals became non-finite at evaluation 7; "
                 "try a smaller step", id="NonFiniteResidualError"),
    pytest.param(MemoryError(), 2,
                 "error: out of memory; try a smaller rank, a sparse or matrix-free method "
                 "(--tr-solver lsmr), or a subset of the data", id="MemoryError-bare"),
    pytest.param(MemoryError("Unable to allocate 80.0 GiB for an array"), 2,
                 "error: out of memory (Unable to allocate 80.0 GiB for an array); try a "
                 "smaller rank", id="MemoryError-numpy"),
    pytest.param(GridError("'grid.toml', key 'rank': must be a list"), 2,
                 "error: GridError: 'grid.toml', key 'rank': must be a list", id="GridError"),
    pytest.param(JacobianCheckError("Jacobian differs from finite differences by 3e-2"), 1,
                 "error: JacobianCheckError: Jacobian differs", id="JacobianCheckError"),
    pytest.param(OverflowError("int too large to convert"), 2,
                 "error: OverflowError: int too large to convert", id="OverflowError"),
    pytest.param(ImportError("No module named 'matplotlib'"), 2,
                 "error: ImportError: No module named 'matplotlib'", id="ImportError"),
    pytest.param(ValueError("first line\nsecond line\n  third"), 2,
                 "error: first line second line third", id="multi-line-message"),
    pytest.param(ValueError(), 2, "error: ValueError", id="empty-message"),
    pytest.param(KeyboardInterrupt(), 130, "interrupted", id="KeyboardInterrupt"),
    pytest.param(_Stop("interrupted after 3 of 8 cells"), 130,
                 "interrupted: interrupted after 3 of 8 cells", id="KeyboardInterrupt-subclass"),
    pytest.param(RuntimeError("oops"), 70,
                 "internal error: RuntimeError: oops (a bug; rerun with --traceback and report "
                 "it)", id="RuntimeError-is-a-bug"),
    pytest.param(KeyError("P"), 70, "internal error: KeyError: 'P'", id="KeyError-is-a-bug"),
    pytest.param(IndexError("index 5 is out of bounds"), 70,
                 "internal error: IndexError: index 5 is out of bounds", id="IndexError"),
    pytest.param(AssertionError("x"), 70, "internal error: AssertionError: x",
                 id="AssertionError"),
]


def _patched(monkeypatch: pytest.MonkeyPatch, func: Callable[[Any], int]) -> None:
    original = build_parser

    def patched(command=None):  # main builds the parser of the command it runs
        parser = original(command)
        sub = next(a for a in parser._actions if a.dest == "command")
        sub.choices["solve"].set_defaults(func=func)
        return parser

    monkeypatch.setattr("lsqmf.cli.build_parser", patched)


@pytest.mark.parametrize(("error", "code", "line"), RAISED)
def test_error_is_one_line_and_a_code(monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str],
                                      error: BaseException, code: int, line: str) -> None:
    def fail(args: Any) -> int:
        raise error

    _patched(monkeypatch, fail)
    assert main(["solve", "x", "--rank", "1"]) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"lsqmf solve: {line}")


@pytest.mark.parametrize("flag", [["-v"], ["--traceback"], ["-vv"]], ids=["-v", "--traceback",
                                                                         "-vv"])
def test_traceback_only_on_request(monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str], flag: list[str]) -> None:
    def fail(args: Any) -> int:
        raise RuntimeError("oops")

    _patched(monkeypatch, fail)
    assert main([*flag, "solve", "x", "--rank", "1"]) == 70
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert err.rstrip().splitlines()[-1].startswith("lsqmf solve: internal error")


def test_system_exit_passes_through(monkeypatch: pytest.MonkeyPatch) -> None:
    def leave(args: Any) -> int:
        raise SystemExit(5)

    _patched(monkeypatch, leave)
    with pytest.raises(SystemExit):
        main(["solve", "x", "--rank", "1"])


def test_exit_codes_are_documented(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    for code in (0, 1, 2, 3, 4, 70, 130):
        assert f"{code} " in out
    assert EXIT_CODES == {"ok": 0, "check_failed": 1, "bad_input": 2, "verify_crashed": 3,
                          "verify_timeout": 4, "internal_error": 70, "interrupted": 130}
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "130" in readme and "Exit codes" in readme


# --------------------------------------------------------------------------------------------
# real commands on hostile files

def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


FILES: dict[str, Callable[[], bytes]] = {
    "ratings.csv": lambda: RATINGS,
    "truncated.csv.gz": lambda: gzip.compress(RATINGS)[:-20],
    "corrupt.csv.gz": lambda: gzip.compress(RATINGS)[:10] + b"\x00" * 50,
    "garbage.bin": lambda: bytes(range(256)) * 4,
    "two_col_header.csv": lambda: b"user,item\n1,10,4\n",
    "bom.csv": lambda: b"\xef\xbb\xbf" + RATINGS,
    "dense.csv": lambda: b"1,2,,4,5\n,2,3,4,5\n1,,3,4,5\n1,2,3,,5\n",
    "dense.npy": lambda: _npy(np.array([[1.0, np.nan, 3.0], [4.0, 5.0, np.nan],
                                        [np.nan, 2.0, 1.0]])),
    "empty.csv": lambda: b"",
    "bad_rating_first.csv": lambda: b"1,10,x\n2,10,3\n",
}


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name, make in FILES.items():
        out[name] = tmp_path / name
        out[name].write_bytes(make())
    return out


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        pytest.param(["fit", "{truncated.csv.gz}", "--out", "{tmp}/m.npz"], 2,
                     "is a truncated or corrupt gzip file", id="fit-truncated-gz"),
        pytest.param(["fit", "{corrupt.csv.gz}", "--out", "{tmp}/m.npz"], 2,
                     "is a truncated or corrupt gzip file", id="fit-corrupt-gz"),
        pytest.param(["solve", "{truncated.csv.gz}", "--rank", "1"], 2,
                     "is a truncated or corrupt gzip file", id="solve-truncated-gz"),
        pytest.param(["fit", "{garbage.bin}", "--out", "{tmp}/m.npz"], 2,
                     "is a binary file, not a text file", id="fit-binary"),
        pytest.param(["fit", "{two_col_header.csv}", "--out", "{tmp}/m.npz"], 2,
                     "line 1: expected a header of 3 or 4 fields", id="fit-two-column-header"),
        pytest.param(["solve", "{dense.csv}", "--rank", "1"], 2,
                     "(a dense matrix of numbers? read it with dense=True, --dense on the CLI)",
                     id="solve-dense-csv-without-flag"),
        pytest.param(["fit", "{empty.csv}", "--out", "{tmp}/m.npz"], 2,
                     "is empty: there is no rating to read", id="fit-empty"),
        pytest.param(["fit", "{bad_rating_first.csv}", "--out", "{tmp}/m.npz"], 2,
                     "line 1: the rating must be a finite number; got 'x' (if this line is a "
                     "header, pass header=True)", id="fit-bad-first-rating"),
        pytest.param(["fit", "{tmp}/nope.csv", "--out", "{tmp}/m.npz"], 2,
                     "no such ratings file", id="fit-missing-file"),
        pytest.param(["fit", "{tmp}", "--out", "{tmp}/m.npz"], 2, "is a directory",
                     id="fit-directory"),
        pytest.param(["evaluate", "{ratings.csv}", "{garbage.bin}", "--rank", "1"], 2,
                     "is a binary file", id="evaluate-binary-test-file"),
        pytest.param(["cv", "{truncated.csv.gz}", "--rank", "1", "--folds", "2"], 2,
                     "is a truncated or corrupt gzip file", id="cv-truncated-gz"),
        pytest.param(["solve", "{dense.npy}", "--rank", "1", "--dense"], 2,
                     "`dense` applies to text files", id="solve-npy-with-dense"),
        pytest.param(["solve", "{ratings.csv}", "--rank", "1", "--missing", "0"], 2,
                     "`missing` applies to dense inputs", id="solve-missing-on-ratings"),
    ],
)
def test_bad_file_is_one_line(files: dict[str, Path], tmp_path: Path,
                              capsys: pytest.CaptureFixture[str], argv: list[str], code: int,
                              message: str) -> None:
    subs = {f"{{{k}}}": str(v) for k, v in files.items()} | {"{tmp}": str(tmp_path)}
    args = [subs.get(a, a.replace("{tmp}", str(tmp_path))) for a in argv]
    assert main(args) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert message in err and err.startswith(f"lsqmf {argv[0]}: error: ")
    assert not (tmp_path / "m.npz").exists()


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["fit", "{dense.npy}", "--rank", "1", *FAST], id="fit-npy"),
        pytest.param(["fit", "{bom.csv}", "--rank", "1", *FAST], id="fit-bom-csv"),
        pytest.param(["solve", "{dense.csv}", "--rank", "1", "--dense"], id="solve-dense-csv"),
        pytest.param(["solve", "{dense.npy}", "--rank", "1"], id="solve-npy"),
        pytest.param(["evaluate", "{ratings.csv}", "{bom.csv}", "--rank", "1", *FAST],
                     id="evaluate-bom"),
        pytest.param(["fit", "{bad_rating_first.csv}", "--no-header", "--rank", "1", *FAST],
                     id="fit-no-header-still-refuses"),
    ],
)
def test_one_reader_for_every_subcommand(files: dict[str, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str],
                                         argv: list[str]) -> None:
    args = [str(files[a[1:-1]]) if a.startswith("{") else a for a in argv]
    if args[0] == "fit":
        args += ["--out", str(tmp_path / "m.npz")]
    code = main(args)
    err = capsys.readouterr().err
    if argv[1] == "{bad_rating_first.csv}":
        assert code == 2 and "line 1: the rating must be a finite number" in err
    else:
        assert code == 0, err


def test_fit_never_overwrites_without_force(files: dict[str, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.npz"
    base = ["fit", str(files["ratings.csv"]), "--rank", "1", *FAST, "--out", str(out)]
    assert main(base) == 0
    before = out.read_bytes()
    capsys.readouterr()
    assert main([*base[:-2], "--seed", "5", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "exists; pass force=True (--force on the command line) to overwrite" in err
    assert out.read_bytes() == before
    assert main([*base[:-2], "--seed", "5", "--out", str(out), "--force"]) == 0
    assert out.read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def _model_file(tmp_path: Path, **changes: Any) -> Path:
    model = FitResult(P=np.ones((2, 1)), Q=np.ones((1, 2)), solver="als",
                      row_ids=np.array([1, 2]), col_ids=np.array([10, 20]))
    path = save_model(model, tmp_path / "m.npz", metadata={"ratings": "/etc/shadow"})
    if changes:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        arrays.update(changes)
        np.savez(path, **arrays)
    return path


def _bytes_file(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "m.npz"
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(lambda t: _model_file(t, P=np.full((2, 1), np.nan)),
                     "member 'P': has 2 non-finite entries", id="nan-factors"),
        pytest.param(lambda t: _model_file(t, row_ids=np.array([1])),
                     "member 'row_ids': must have shape (2,)", id="short-id-map"),
        pytest.param(lambda t: _bytes_file(t, b""),
                     "is empty (0 bytes): not an lsqmf model file", id="empty"),
        pytest.param(lambda t: _bytes_file(t, _model_file(t).read_bytes()[:200]),
                     "not a readable zip archive (it starts like a zip archive: truncated?)",
                     id="truncated"),
        pytest.param(lambda t: t, "is a directory, not an lsqmf model file", id="directory"),
    ],
)
def test_predict_refuses_bad_model_files(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         make: Callable[[Path], Path], message: str) -> None:
    path = make(tmp_path)
    assert main(["predict", str(path), "--user", "1", "--item", "10"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no 'nan' printed with exit 0
    assert message in captured.err and captured.err.count("\n") == 1


def test_recommend_opens_no_path_from_the_model(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("first secret line\n")
    model = FitResult(P=np.ones((2, 1)), Q=np.ones((1, 2)), solver="als",
                      row_ids=np.array([1, 2]), col_ids=np.array([10, 20]))
    path = save_model(model, tmp_path / "m.npz", metadata={"ratings": str(secret)})
    assert main(["recommend", str(path), "--user", "1"]) == 2
    err = capsys.readouterr().err
    assert "pass --ratings FILE" in err
    assert "secret" not in err and "first secret line" not in err


def test_solve_interrupted_exits_130_after_printing(files: dict[str, Path],
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    real = lsqmf.solve

    @functools.wraps(real)  # the command line reads solve's defaults from its signature
    def interrupted(*args: Any, **kwargs: Any) -> FitResult:
        fit = real(*args, **{**kwargs, "max_nfev": 2})
        return dataclasses.replace(fit, status=-5, success=False, message="Interrupted.")

    monkeypatch.setattr("lsqmf.nls.solve.solve", interrupted)
    assert main(["solve", str(files["ratings.csv"]), "--rank", "1"]) == 130
    captured = capsys.readouterr()
    assert "train RMSE" in captured.out  # the result is reported before exiting
    assert "lsqmf solve: interrupted" in captured.err


def test_fit_interrupted_saves_then_exits_130(files: dict[str, Path], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    import lsqmf.evaluate.scoring as evaluation

    real = evaluation.resolve_solver

    def resolve(name: str, params: dict) -> tuple:
        resolved, fn, full = real(name, params)

        def stopped(*a: Any, **k: Any) -> FitResult:
            return dataclasses.replace(fn(*a, **k), status=-5, success=False)

        return resolved, stopped, full

    monkeypatch.setattr(evaluation, "resolve_solver", resolve)
    out = tmp_path / "m.npz"
    assert main(["fit", str(files["ratings.csv"]), "--rank", "1", *FAST, "--out",
                 str(out)]) == 130
    assert load_model(out)[0].status == -5  # what was fitted is saved
    assert "lsqmf fit: interrupted" in capsys.readouterr().err


@pytest.mark.slow
def test_real_ctrl_c_on_solve_exits_130(tmp_path: Path) -> None:
    # a solve long enough to be interrupted: SIGINT once it has started iterating
    ratings, _ = lsqmf.data.synthetic.make_low_rank(400, 300, 5, density=0.2, noise=0.1,
                                              random_state=0)
    path = tmp_path / "r.npy"
    dense = np.full(ratings.shape, np.nan)
    dense[ratings.rows, ratings.cols] = ratings.values
    np.save(path, dense)
    proc = subprocess.Popen(
        [sys.executable, "-m", "lsqmf", "-v", "solve", str(path), "--rank", "8", "--ftol",
         "1e-15", "--tr-solver", "lsmr"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    time.sleep(8)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
