"""Stored outputs of the reference loop, and the one command that rewrites them.

Each case is a file ``<name>.npz`` in this directory holding

- the inputs ``R`` (N, M), ``P0`` (N, K) and ``Q0`` (M, K);
- the parameters ``K``, ``max_steps``, ``alpha``, ``beta``, ``epsilon`` as 0-d arrays;
- the outputs ``P`` (N, K) and ``Q`` (M, K) of
  :func:`lsqmf.oracle.reference.matrix_factorization` -- which are also what the reference leaves in
  the caller's ``P`` and ``Q``, since it updates them in place;
- ``n_steps``, the number of steps the reference ran (``< max_steps`` when it stopped on
  ``epsilon``).

``manifest.json`` lists the cases with a description, their parameters and ``n_steps``, and
the environment that generated each one (python, numpy, scipy, platform, lsqmf) and the
generation command. The files are rewritten only by :func:`generate_golden` (``lsqmf golden``),
which refuses to overwrite existing files unless told to (``force=True`` / ``--force``).

The case inputs are built from fixed seeds with ``numpy.random.default_rng``; the stored inputs
are authoritative, the recipes in :data:`CASES` are how they were made.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from importlib import metadata
from pathlib import Path
from types import MappingProxyType
from typing import Any, BinaryIO

import numpy as np

from ..._validation import describe
from ..reference import _check_arguments, _tutorial_loop

__all__ = [
    "CASES",
    "GOLDEN_DIR",
    "GoldenCase",
    "GoldenData",
    "case_names",
    "generate_golden",
    "load_case",
    "make_inputs",
]

#: The directory holding the stored golden outputs shipped with lsqmf.
GOLDEN_DIR = Path(__file__).resolve().parent

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1

#: The reference's parameters after ``R, P, Q``, in its signature's order.
PARAM_NAMES = ("K", "max_steps", "alpha", "beta", "epsilon")

#: The standard tutorial example.
STANDARD_R = (
    (5, 3, 0, 1),
    (4, 0, 0, 1),
    (1, 1, 0, 5),
    (1, 0, 0, 4),
    (0, 1, 5, 4),
)


@dataclass(frozen=True)
class GoldenCase:
    """The recipe of one golden case.

    Attributes
    ----------
    name : str
        File stem and the name used by ``lsqmf verify --case``.
    description : str
        What the case exercises.
    kind : {'standard', 'ratings', 'low_rank', 'signed'}
        How ``R`` is built: the tutorial matrix; integer ratings 1..5 with zeros for missing
        entries; an exactly rank-``K`` positive matrix with zeros for missing entries; or real
        values of both signs (the non-positive ones are ignored by the loop).
    shape : (int, int)
        ``(N, M)``.
    K, max_steps, alpha, beta, epsilon
        The reference's parameters.
    seed : int
        Seed of ``numpy.random.default_rng``.
    density : float
        Fraction of entries kept (kinds ``ratings`` and ``low_rank``).
    """

    name: str
    description: str
    kind: str
    shape: tuple[int, int]
    K: int
    seed: int
    max_steps: int = 5000
    alpha: float = 2e-4
    beta: float = 0.02
    epsilon: float = 1e-3
    density: float = 1.0

    def params(self) -> dict[str, int | float]:
        """The reference's parameters (:data:`PARAM_NAMES`) as a dict."""
        return {name: getattr(self, name) for name in PARAM_NAMES}


# duplicates: a table of golden cases, one entry each
_CASE_LIST = (
    GoldenCase(
        "standard",
        "the tutorial example: 5x4 R, K=2, rng = default_rng(seed=0), P = rng.random((5, 2)) "
        "then Q = rng.random((4, 2)), default parameters (runs all 5000 steps)",
        "standard", (5, 4), K=2, seed=0,
    ),
    GoldenCase(
        "rank1_tiny",
        "3x3 ratings, K=1, 50 steps, larger learning rate",
        "ratings", (3, 3), K=1, seed=1, max_steps=50, alpha=1e-2, beta=0.05, density=0.7,
    ),
    GoldenCase(
        "one_step",
        "a single step on 4x3 ratings with K=2 (checks the order of updates within a step)",
        "ratings", (4, 3), K=2, seed=2, max_steps=1, alpha=0.05, beta=0.1, density=0.75,
    ),
    GoldenCase(
        "zero_steps",
        "max_steps=0: the outputs are the inputs",
        "ratings", (4, 3), K=2, seed=3, max_steps=0,
    ),
    GoldenCase(
        "tall_k3",
        "12x6 ratings, K=3, 300 steps",
        "ratings", (12, 6), K=3, seed=4, max_steps=300, alpha=2e-3, beta=0.02, density=0.6,
    ),
    GoldenCase(
        "wide_k4",
        "6x15 ratings, K=4, 200 steps, stronger regularization",
        "ratings", (6, 15), K=4, seed=5, max_steps=200, alpha=1e-3, beta=0.1, density=0.7,
    ),
    GoldenCase(
        "signed_k3",
        "8x7 real values of both signs, K=3, 400 steps: zero and negative entries are ignored",
        "signed", (8, 7), K=3, seed=6, max_steps=400, alpha=2e-3, beta=0.02,
    ),
    GoldenCase(
        "epsilon_stop",
        "exactly rank-2 positive 6x5 matrix with 20% missing, beta=0, alpha=0.01, "
        "epsilon=0.01: stops on epsilon well before max_steps=5000",
        "low_rank", (6, 5), K=2, seed=7, max_steps=5000, alpha=1e-2, beta=0.0, epsilon=1e-2,
        density=0.8,
    ),
    GoldenCase(
        "sparse_40x30_k3",
        "40x30 ratings with 10% observed, K=3, 100 steps",
        "ratings", (40, 30), K=3, seed=8, max_steps=100, alpha=5e-3, beta=0.02, density=0.1,
    ),
    GoldenCase(
        "block_50x40_k5",
        "50x40 ratings with 20% observed, K=5, 40 steps",
        "ratings", (50, 40), K=5, seed=9, max_steps=40, alpha=2e-3, beta=0.05, density=0.2,
    ),
)

#: The golden cases by name, in the order they are generated and verified.
CASES: Mapping[str, GoldenCase] = MappingProxyType({c.name: c for c in _CASE_LIST})


@dataclass(frozen=True, eq=False)
class GoldenData:
    """One stored golden case: inputs, parameters and the reference's outputs.

    Attributes
    ----------
    name : str
    R : ndarray, shape (N, M)
    P0 : ndarray, shape (N, K)
        Initial ``P``.
    Q0 : ndarray, shape (M, K)
        Initial ``Q``.
    K, max_steps : int
    alpha, beta, epsilon : float
    P : ndarray, shape (N, K)
        The reference's output (and the final content of the caller's ``P``).
    Q : ndarray, shape (M, K)
        The reference's output (and the final content of the caller's ``Q``).
    n_steps : int
        Steps the reference ran.
    """

    name: str
    R: np.ndarray
    P0: np.ndarray
    Q0: np.ndarray
    K: int
    max_steps: int
    alpha: float
    beta: float
    epsilon: float
    P: np.ndarray
    Q: np.ndarray
    n_steps: int

    def params(self) -> dict[str, int | float]:
        """The reference's parameters (:data:`PARAM_NAMES`) as a dict."""
        return {name: getattr(self, name) for name in PARAM_NAMES}


def make_inputs(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Build ``(R, P0, Q0)`` of case ``name`` from its recipe in :data:`CASES`."""
    case = _get_case(name)
    N, M = case.shape
    rng = np.random.default_rng(seed=case.seed)
    if case.kind == "standard":
        R = np.array(STANDARD_R, dtype=np.float64)
    elif case.kind == "ratings":
        values = rng.integers(1, 6, size=(N, M)).astype(np.float64)
        R = np.where(rng.random((N, M)) < case.density, values, 0.0)
    elif case.kind == "low_rank":
        A = rng.random((N, case.K)) + 0.5
        B = rng.random((M, case.K)) + 0.5
        R = np.where(rng.random((N, M)) < case.density, A @ B.T, 0.0)
    elif case.kind == "signed":
        R = np.round(rng.normal(1.0, 2.0, size=(N, M)), 1)
    else:  # pragma: no cover - the table above is fixed
        raise ValueError(f"unknown case kind {case.kind!r}")
    P0 = rng.random((N, case.K))
    Q0 = rng.random((M, case.K))
    return R, P0, Q0


def run_case(name: str) -> GoldenData:
    """Run the reference on case ``name`` (from its recipe) and return inputs and outputs."""
    case = _get_case(name)
    R, P0, Q0 = make_inputs(name)
    P, Q = P0.copy(), Q0.copy()
    args = _check_arguments(R, P, Q, case.K, case.max_steps, case.alpha, case.beta, case.epsilon)
    n_steps = _tutorial_loop(*args)
    return GoldenData(
        name=name, R=R, P0=P0, Q0=Q0, P=P, Q=Q, n_steps=n_steps, **case.params()  # type: ignore[arg-type]
    )


def case_names(directory: str | os.PathLike[str] | None = None) -> tuple[str, ...]:
    """Names of the cases stored in ``directory`` (default: :data:`GOLDEN_DIR`), in order."""
    manifest = _read_manifest(_golden_dir(directory))
    if manifest is None:
        raise FileNotFoundError(
            f"no golden manifest {MANIFEST_NAME!r} in {_golden_dir(directory)}; "
            "generate the golden outputs with `lsqmf golden`."
        )
    return tuple(manifest["cases"])


def load_case(name: str, directory: str | os.PathLike[str] | None = None) -> GoldenData:
    """Load stored case ``name`` from ``directory`` (default: :data:`GOLDEN_DIR`)."""
    if not isinstance(name, str):
        raise TypeError(f"`name` must be a case name (str); got {describe(name)}.")
    path = _golden_dir(directory) / f"{name}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"no golden file for case {name!r}: {path} does not exist.")
    with np.load(path, allow_pickle=False) as data:
        golden = GoldenData(
            name=name,
            R=data["R"],
            P0=data["P0"],
            Q0=data["Q0"],
            K=int(data["K"]),
            max_steps=int(data["max_steps"]),
            alpha=float(data["alpha"]),
            beta=float(data["beta"]),
            epsilon=float(data["epsilon"]),
            P=data["P"],
            Q=data["Q"],
            n_steps=int(data["n_steps"]),
        )
    N, M = golden.R.shape
    expected = {"P0": (N, golden.K), "Q0": (M, golden.K), "P": (N, golden.K), "Q": (M, golden.K)}
    for key, shape in expected.items():
        if getattr(golden, key).shape != shape:
            raise ValueError(
                f"golden file {path} is inconsistent: {key} has shape "
                f"{getattr(golden, key).shape}, expected {shape}."
            )
    return golden


def generate_golden(
    out_dir: str | os.PathLike[str] | None = None,
    *,
    force: bool = False,
    cases: Iterable[str] | None = None,
    command: str | None = None,
    callback: Callable[[GoldenData, Path], None] | None = None,
) -> list[Path]:
    """Run the reference on every case and write the golden files.

    Parameters
    ----------
    out_dir : path, optional
        Target directory (created if missing). Default: :data:`GOLDEN_DIR`, the files shipped
        with lsqmf.
    force : bool, default=False
        Overwrite existing files. Without it, nothing is written if any target file (a case
        file or the manifest) already exists.
    cases : iterable of str, optional
        Names from :data:`CASES` to generate; default all. Entries of other cases already in the
        manifest of ``out_dir`` are kept.
    command : str, optional
        The command recorded in the manifest; default describes this function call.
    callback : callable, optional
        Called as ``callback(data, path)`` after each case file is written.

    Returns
    -------
    list of Path
        The files written, the manifest last.

    Raises
    ------
    FileExistsError
        If a target file exists and ``force`` is False.
    ValueError
        If a name in ``cases`` is unknown.
    """
    out = _golden_dir(out_dir)
    names = list(CASES) if cases is None else [_get_case(n, "cases").name for n in _as_names(cases)]
    if not isinstance(force, bool):
        raise TypeError(f"`force` must be True or False; got {describe(force)}.")
    _refuse_overwrite(out, names, force)
    out.mkdir(parents=True, exist_ok=True)
    if command is None:
        command = f"lsqmf.oracle.golden.generate_golden(out_dir={str(out)!r}, force={force})"
    environment = _environment()
    manifest = _read_manifest(out) or {}
    entries: dict[str, dict[str, object]] = dict(manifest.get("cases", {}))
    written: list[Path] = []
    for name in names:
        data = run_case(name)
        path = out / f"{name}.npz"
        _atomic_write(path, partial(_save_npz, data=data))
        entries[name] = _manifest_entry(data, environment, command)
        written.append(path)
        if callback is not None:
            callback(data, path)
    written.append(_write_manifest(out, entries))
    return written


def _refuse_overwrite(out: Path, names: list[str], force: bool) -> None:
    """Raise FileExistsError if a target file of ``names`` exists in ``out`` and not ``force``."""
    targets = [out / f"{n}.npz" for n in names] + [out / MANIFEST_NAME]
    existing = [p for p in targets if p.exists()]
    if existing and not force:
        shown = ", ".join(p.name for p in existing[:5]) + (" ..." if len(existing) > 5 else "")
        raise FileExistsError(
            f"refusing to overwrite {len(existing)} existing golden file(s) in {out} ({shown}); "
            "pass force=True (lsqmf golden --force) to regenerate them."
        )


def _manifest_entry(
    data: GoldenData, environment: dict[str, str], command: str
) -> dict[str, object]:
    """The manifest's record of one generated case."""
    return {
        "description": CASES[data.name].description,
        "shape": list(data.R.shape),
        **data.params(),
        "seed": CASES[data.name].seed,
        "n_steps": data.n_steps,
        "stopped_on_epsilon": data.n_steps < data.max_steps,
        "environment": environment,
        "command": command,
    }


def _write_manifest(out: Path, entries: dict[str, dict[str, object]]) -> Path:
    """Write the manifest of ``entries`` (cases in :data:`CASES` order, others after)."""
    ordered = {n: entries[n] for n in CASES if n in entries}
    ordered.update({n: e for n, e in entries.items() if n not in ordered})
    text = json.dumps(
        {
            "format": FORMAT_VERSION,
            "reference": "lsqmf.oracle.reference.matrix_factorization",
            "cases": ordered,
        },
        indent=2,
    )
    manifest_path = out / MANIFEST_NAME
    _atomic_write(manifest_path, lambda f: f.write(text.encode() + b"\n"))
    return manifest_path


def _save_npz(f: BinaryIO, data: GoldenData) -> None:
    np.savez(
        f,
        R=data.R,
        P0=data.P0,
        Q0=data.Q0,
        K=np.int64(data.K),
        max_steps=np.int64(data.max_steps),
        alpha=np.float64(data.alpha),
        beta=np.float64(data.beta),
        epsilon=np.float64(data.epsilon),
        P=data.P,
        Q=data.Q,
        n_steps=np.int64(data.n_steps),
    )


def _atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` through a temporary file in the same directory, then rename it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o644)  # mkstemp creates 0o600; these are shipped data files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _environment() -> dict[str, str]:
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "numpy": np.__version__,
        "scipy": version("scipy"),
        "lsqmf": version("lsqmf"),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }


def _read_manifest(directory: Path) -> dict[str, Any] | None:
    path = directory / MANIFEST_NAME
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as f:
        manifest = json.load(f)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("cases"), dict):
        raise ValueError(f"{path} is not a golden manifest (no 'cases' mapping).")
    return manifest


def _golden_dir(directory: str | os.PathLike[str] | None) -> Path:
    if directory is None:
        return GOLDEN_DIR
    if not isinstance(directory, str | os.PathLike):
        raise TypeError(f"`directory` must be a path; got {describe(directory)}.")
    return Path(directory)


def _as_names(cases: Iterable[str]) -> Sequence[str]:
    if isinstance(cases, str):
        return [cases]
    return list(cases)


def _get_case(name: str, argname: str = "name") -> GoldenCase:
    try:
        return CASES[name]
    except (KeyError, TypeError):
        allowed = ", ".join(repr(n) for n in CASES)
        raise ValueError(
            f"`{argname}` must name golden cases among {allowed}; got {describe(name)}."
        ) from None
