"""Start-up time of lsqmf: ``import lsqmf``, loading the kernels, and ``lsqmf evaluate``.

Run from the repository root::

    python benchmarks/bench_startup.py --before REV            # writes reports/startup/
    python benchmarks/bench_startup.py --before REV --after REV --repeats 7
    python benchmarks/bench_startup.py --solvers als --no-cold --repeats 3  # quick

Every measurement is a fresh interpreter (``subprocess``), so nothing is cached in memory;
``wall_s`` is the process's wall time and ``cpu_s`` its user + system CPU time (``os.wait4``),
which a busy machine inflates far less than wall time. The variants, for each code version
(``--before`` and ``--after``: a git revision exported with ``git archive`` into a temporary
directory and put first on ``PYTHONPATH``, or ``worktree`` for the working tree):

``python``
    ``python -c pass``: the interpreter alone (the floor under every other figure).
``import``
    ``import lsqmf``; ``import_s`` is its time inside the process.
``startup``
    What ``lsqmf evaluate --solver SOLVER`` does before it reads its data, in a process that
    then exits: with the command line's start-up stage (``lsqmf.cli.startup_gc``), the steps
    of ``lsqmf.cli.main`` run as the program (the exit handling, the parser of the command's
    module, parsing, the modules the command uses: ``import_s``; then the command's
    ``prepare``, the solver's kernels: ``kernels_s``); for code before it, the whole parser,
    the same imports, and the kernel warm-up that ``fit_and_score`` runs before its clock.
    Kernels come from a filled cache. ``exit_s`` is the time from the end of this work to the
    end of the process (the interpreter's shutdown).
``evaluate_warm``, ``evaluate_cold``
    ``python -m lsqmf evaluate train.csv test.csv --solver SOLVER --seed 0 --json`` on the
    built-in data (MovieLens latest-small split 80/20 by a seeded shuffle of its lines, raw ids
    kept), with the kernel cache filled, and empty. ``fit_s`` is the fit time the command
    reports.

The last three run once per solver of ``--solvers`` (default ``als`` and ``bmf``, the default
solver of ``lsqmf evaluate``).

The kernel cache: numba's ``NUMBA_CACHE_DIR`` is set for every child, so numba reads and writes
there and never in the package's own ``__pycache__`` (a user-provided cache directory comes
first in numba's order of cache locations). The filled cache is one directory per version,
filled by an unrecorded run of each variant; each cold run gets a new empty directory, and
``cache_files`` counts the index files (``*.nbi``) the run wrote there, which shows that it
compiled and where the cache went.

Bytecode: by default every child may write and read compiled modules (``.pyc``), under a
temporary ``PYTHONPYCACHEPREFIX`` filled before the first round, as an installed package has
them; the environment of this project's machine sets ``PYTHONDONTWRITEBYTECODE=1``, under which
every process compiles lsqmf's sources again (``--no-bytecode`` keeps that setting).

Rounds: every round runs every (version, variant) once, in an order shuffled per round (seeded),
so that the machine's load falls on all alike; the report gives medians and ranges over rounds,
and the after/before ratio of each variant within the same round (median and range). The load
average is recorded at the start and end.

Results: ``reports/startup/results.csv`` (one row per run) and ``reports/startup/README.md``.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "reports" / "startup"
VARIANTS = ("python", "import", "startup", "evaluate_warm", "evaluate_cold")
#: Variants run once per solver (``--solvers``); the others once per version.
PER_SOLVER = ("startup", "evaluate_warm", "evaluate_cold")
SOLVERS = ("als", "bmf")
FIELDS = ("round", "version", "variant", "solver", "wall_s", "cpu_s", "import_s",
          "import_cpu_s", "kernels_s", "kernels_cpu_s", "exit_s", "fit_s", "cache_files",
          "returncode")

#: The ``startup`` child: what ``lsqmf evaluate`` does before it reads its data. With the
#: command line's start-up stage (``lsqmf.cli.startup_gc``), the steps of ``lsqmf.cli.main``
#: run as the program: the exit handling, the command's parser, parsing, then the command's
#: ``prepare`` (the solver's kernels); before it, the whole parser, the imports and the warm-up
#: ``fit_and_score`` runs before its clock. ``done`` is the wall clock at the end (``exit_s``).
_STARTUP = """
import json, time
t0, c0 = time.perf_counter(), time.process_time()
from lsqmf import cli
argv = ["evaluate", "TRAIN", "TEST", "--solver", {solver!r}, "--seed", "0", "--json",
        "--no-progress"]
if hasattr(cli, "startup_gc"):
    cli.skip_exit_collection()
    with cli.startup_gc():
        args = cli.build_parser(cli.command_name(argv)).parse_args(argv)
        import lsqmf.data.readers, lsqmf.evaluate.search, lsqmf.solvers
    t1, c1 = time.perf_counter(), time.process_time()
    with cli.startup_gc():
        args.prepare(args)
else:
    cli.build_parser()
    import lsqmf.data.readers, lsqmf.evaluate.search, lsqmf.solvers
    t1, c1 = time.perf_counter(), time.process_time()
    import lsqmf.solvers
    if hasattr(lsqmf.solvers, "warm_up_solver"):
        lsqmf.solvers.warm_up_solver({solver!r})
    else:  # code before the per-solver warm-up: fit_and_score loaded every kernel
        from lsqmf.runtime.parallel import warm_up
        warm_up()
t2, c2 = time.perf_counter(), time.process_time()
print(json.dumps({{"import_s": t1 - t0, "kernels_s": t2 - t1,
                  "import_cpu_s": c1 - c0, "kernels_cpu_s": c2 - c1, "done": time.time()}}),
      flush=True)
"""

_IMPORT = """
import json, time
t0, c0 = time.perf_counter(), time.process_time()
import lsqmf
print(json.dumps({"import_s": time.perf_counter() - t0, "import_cpu_s": time.process_time() - c0}))
"""


def write_data(directory: Path, seed: int = 0) -> tuple[Path, Path]:
    """The built-in ratings split 80/20 into two CSV files (a seeded shuffle of the lines)."""
    import numpy as np

    source = ROOT / "lsqmf" / "data" / "ml-latest-small" / "ratings.csv.gz"
    lines = gzip.decompress(source.read_bytes()).decode().splitlines()
    header, body = lines[0], lines[1:]
    order = np.random.default_rng(seed).permutation(len(body))
    n_train = int(0.8 * len(body))
    paths = []
    for name, part in (("train.csv", order[:n_train]), ("test.csv", order[n_train:])):
        path = directory / name
        path.write_text("\n".join([header, *(body[i] for i in sorted(part))]) + "\n")
        paths.append(path)
    return paths[0], paths[1]


def export(rev: str, directory: Path) -> Path:
    """The package at ``rev`` (``worktree``: the working tree) as a directory for PYTHONPATH."""
    if rev == "worktree":
        return ROOT
    target = directory / rev.replace("/", "_")
    target.mkdir()
    archive = subprocess.run(["git", "archive", rev, "lsqmf"], cwd=ROOT, check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def run_child(args: list[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """Run one child; its wall and CPU time and the JSON object on its last stdout line."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    stdout, stderr = proc.communicate()
    wall, end = time.perf_counter() - t0, time.time()
    out: dict[str, Any] = {"wall_s": wall, "returncode": proc.returncode}
    if proc.returncode != 0:
        sys.stderr.write(stderr[-2000:])
        return out
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if lines:
        out.update(json.loads(lines[-1]))
    if "done" in out:  # the child's end of work -> the end of the process
        out["exit_s"] = end - out.pop("done")
    return out


def timed(args: list[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """:func:`run_child` plus the child's user + system CPU time."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = run_child(args, env, cwd)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return out


class Version:
    """One code version: where its package is, its filled kernel cache, its child commands."""

    def __init__(self, name: str, rev: str, tree: Path, work: Path, data: tuple[Path, Path],
                 bytecode: bool):
        self.name, self.rev, self.tree, self.work, self.data = name, rev, tree, work, data
        self.filled = work / f"cache_{name}"
        self.filled.mkdir()
        self.bytecode = bytecode

    def env(self, cache: Path) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(self.tree)
        env["NUMBA_CACHE_DIR"] = str(cache)
        if self.bytecode:  # compiled modules cached (as after an install), outside the tree
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(self.work / "pycache")
        return env

    def command(self, variant: str, solver: str = SOLVERS[0]) -> list[str]:
        py = sys.executable
        if variant == "python":
            return [py, "-c", "pass"]
        if variant == "import":
            return [py, "-c", _IMPORT]
        if variant == "startup":
            return [py, "-c", _STARTUP.format(solver=solver)]
        train, test = self.data
        return [py, "-m", "lsqmf", "evaluate", str(train), str(test), "--solver", solver,
                "--seed", "0", "--json", "--no-progress"]

    def run(self, variant: str, solver: str = SOLVERS[0]) -> dict[str, Any]:
        cache = self.filled
        if variant == "evaluate_cold":
            cache = Path(tempfile.mkdtemp(prefix="cold_", dir=self.work))
        out = timed(self.command(variant, solver), self.env(cache), self.work)
        if variant == "evaluate_cold":
            out["cache_files"] = sum(1 for _ in cache.rglob("*.nbi"))
            shutil.rmtree(cache)
        return out

    def fill(self, solvers: tuple[str, ...]) -> None:
        """Fill this version's kernel cache (every kernel, and the evaluate path)."""
        fill_all = "from lsqmf.kernels.registry import warm_up\nwarm_up(None, 'compiled')\n"
        commands = [[sys.executable, "-c", fill_all]]
        for solver in solvers:
            commands += [self.command("startup", solver), self.command("evaluate_warm", solver)]
        for args in commands:
            out = run_child(args, self.env(self.filled), self.work)
            if out["returncode"] != 0:
                raise RuntimeError(f"{self.name}: {' '.join(args[:3])} failed")


def cases(solvers: tuple[str, ...]) -> list[tuple[str, str]]:
    """(variant, solver) pairs of a round; solver '' for the variants that run no solver."""
    return [(variant, solver) for variant in VARIANTS
            for solver in (solvers if variant in PER_SOLVER else ("",))]


def summarize(rows: list[dict[str, Any]], versions: list[str],
              solvers: tuple[str, ...]) -> list[dict[str, Any]]:
    """Median and range per (variant, solver, version, measure), and the after/before ratios."""
    measures = ("wall_s", "cpu_s", "import_s", "import_cpu_s", "kernels_s", "kernels_cpu_s",
                "exit_s", "fit_s")
    table = []
    for variant, solver in cases(solvers):
        for measure in measures:
            line: dict[str, Any] = {"variant": variant, "solver": solver, "measure": measure}
            per_round: dict[str, dict[int, float]] = {}
            for version in versions:
                values = {r["round"]: r[measure] for r in rows
                          if r["variant"] == variant and r["version"] == version
                          and r.get("solver", "") == solver
                          and r.get(measure) not in (None, "")}
                per_round[version] = values
                if values:
                    v = list(values.values())
                    line[version] = (statistics.median(v), min(v), max(v))
            if not any(version in line for version in versions):
                continue
            if len(versions) == 2:
                before, after = per_round[versions[0]], per_round[versions[1]]
                ratios = [after[k] / before[k] for k in after if k in before and before[k] > 0]
                if ratios:
                    line["ratio"] = (statistics.median(ratios), min(ratios), max(ratios))
            table.append(line)
    return table


def _fmt(cell: tuple[float, float, float] | None, unit: str = " s") -> str:
    if cell is None:
        return "-"
    median, low, high = cell
    return f"{median:.3f}{unit} ({low:.3f}-{high:.3f})"


def write_report(rows: list[dict[str, Any]], versions: list[Version], meta: dict[str, Any],
                 out: Path = OUT) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v)
                             for k, v in row.items()})
    names = [v.name for v in versions]
    table = summarize(rows, names, meta["solvers"])
    head = ["variant", "solver", "measure", *(f"{v.name} ({v.rev})" for v in versions)]
    if len(names) == 2:
        head.append(f"{names[1]} / {names[0]}, same round")
    lines = [
        "# Start-up time: `import lsqmf`, kernel loading, `lsqmf evaluate`",
        "",
        "Generated by `benchmarks/bench_startup.py` (its docstring describes every variant).",
        "",
        f"- Command: `{meta['command']}`",
        f"- Rounds: {meta['repeats']}, each running every version x variant once in a shuffled "
        "order; cells are median (min-max) over the rounds.",
        f"- Load average (1, 5, 15 min): {meta['load_start']} at the start, {meta['load_end']} "
        f"at the end (1-min load at the rounds' starts: {meta['load_rounds']}); "
        f"{os.cpu_count()} CPUs; Python {platform.python_version()}; "
        f"numba {meta['numba']}.",
        "- Bytecode: " + ("compiled modules cached (`PYTHONDONTWRITEBYTECODE` unset, a "
                          "temporary `PYTHONPYCACHEPREFIX`, filled before the first round), "
                          "as for an installed package."
                          if meta["bytecode"] else
                          "the environment's setting (`PYTHONDONTWRITEBYTECODE="
                          f"{os.environ.get('PYTHONDONTWRITEBYTECODE', '')}`).") ,
        "- Data: `lsqmf evaluate TRAIN TEST --solver SOLVER --seed 0` (solvers: "
        + ", ".join(meta["solvers"]) + ") on the built-in MovieLens latest-small, 80/20 by a "
        "seeded shuffle of its lines.",
        "- `wall_s`, `cpu_s`: the child process (wall; user + system CPU). `import_s`, "
        "`kernels_s`: inside the child (`startup`: the command line's parser and imports, then "
        "the solver's kernels, as the module docstring describes); `exit_s`: from the end of "
        "the `startup` child's work to the end of its process (interpreter shutdown). `fit_s`: "
        "the fit time `lsqmf evaluate` reports.",
        (f"- Cold runs wrote {meta['cold_files']} kernel index files (`*.nbi`) into their "
         "empty `NUMBA_CACHE_DIR` (median per version: "
         + ", ".join(f"{k} {v}" for k, v in meta["cold_by_version"].items()) + ")."
         if meta["cold"] else "- No cold runs (`--no-cold`)."),
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for line in table:
        cells = [line["variant"], line["solver"] or "-", line["measure"],
                 *(_fmt(line.get(n)) for n in names)]
        if len(names) == 2:
            cells.append(_fmt(line.get("ratio"), unit="x"))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    (out / "README.md").write_text("\n".join(lines) + "\n" + meta.get("notes", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=None, metavar="REV",
                        help="git revision to compare against (default: none)")
    parser.add_argument("--after", default="worktree", metavar="REV",
                        help="git revision measured (default: the working tree)")
    parser.add_argument("--repeats", type=int, default=7, help="rounds (default 7)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the per-round order")
    parser.add_argument("--solvers", nargs="+", default=list(SOLVERS), metavar="NAME",
                        help="solvers of the startup and evaluate variants (default: "
                        f"{' '.join(SOLVERS)}; bmf is lsqmf evaluate's default)")
    parser.add_argument("--no-cold", dest="cold", action="store_false",
                        help="skip the evaluate_cold variant")
    parser.add_argument("--no-bytecode", dest="bytecode", action="store_false",
                        help="keep the environment's bytecode setting (by default every child "
                        "may write and read compiled modules, under a temporary "
                        "PYTHONPYCACHEPREFIX, as an installed package has them)")
    parser.add_argument("--out", type=Path, default=OUT,
                        help="output directory (default: reports/startup)")
    parser.add_argument("--notes", type=Path, default=None,
                        help="a Markdown file appended to the README (the discussion)")
    args = parser.parse_args()

    import numba

    meta: dict[str, Any] = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "repeats": args.repeats, "numba": numba.__version__,
        "load_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "bytecode": args.bytecode, "solvers": tuple(args.solvers), "cold": args.cold,
    }
    loads: list[float] = []
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="lsqmf_startup_") as tmp:
        work = Path(tmp)
        data = write_data(work)
        specs = ([("before", args.before)] if args.before else []) + [("after", args.after)]
        versions = [Version(name, rev, export(rev, work), work, data, args.bytecode)
                    for name, rev in specs]
        for version in versions:
            version.fill(meta["solvers"])
        rng = random.Random(args.seed)
        for r in range(args.repeats):
            loads.append(os.getloadavg()[0])
            order = [(v, variant, solver) for v in versions
                     for variant, solver in cases(meta["solvers"])
                     if args.cold or variant != "evaluate_cold"]
            rng.shuffle(order)
            for version, variant, solver in order:
                out = version.run(variant, solver)
                rows.append({"round": r, "version": version.name, "variant": variant,
                             "solver": solver, **out})
                print(f"round {r} {version.name:6s} {variant:14s} {solver:4s} "
                      f"wall {out['wall_s']:.3f} s cpu {out.get('cpu_s', float('nan')):.3f} s",
                      flush=True)
    meta["load_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    meta["load_rounds"] = f"median {statistics.median(loads):.2f}, {min(loads):.2f}-" \
                          f"{max(loads):.2f}"
    cold = [r for r in rows if r["variant"] == "evaluate_cold"] or [{}]
    meta["cold_files"] = f"{min(r.get('cache_files', 0) for r in cold)}-" \
                         f"{max(r.get('cache_files', 0) for r in cold)}"
    meta["cold_by_version"] = {
        f"{v.name} {solver}": statistics.median(
            r.get("cache_files", 0) for r in cold
            if r.get("version") == v.name and r.get("solver") == solver) if args.cold else 0
        for v in versions for solver in meta["solvers"]
    }
    if args.notes is not None:
        meta["notes"] = args.notes.read_text()
    write_report(rows, versions, meta, args.out)
    print(f"wrote {args.out / 'results.csv'} and {args.out / 'README.md'}")


if __name__ == "__main__":
    main()
