"""``lsqmf bench``, ``lsqmf plot`` and ``lsqmf report``: run a benchmark grid, draw, report.

``lsqmf bench (--preset NAME | --grid FILE | --reproduce DIR) [--repeats N] --out DIR
[--where QUERY] [--resume] [--jobs N] [--progress/--no-progress] [--no-plots]
[--convergence]`` runs the grid into a new DIR (``--resume`` continues one's own interrupted
run there), writes ``raw.csv``, ``results.csv`` and ``run.json``, then the figures. With
``--reproduce DIR`` (a committed run, e.g. ``reports/seed``) it re-times that run's grid,
``--where`` subset and repeats (unless given) into ``--out`` and compares the two per panel
(:mod:`lsqmf.bench.compare`): ``compare.md`` and ``compare.csv`` in ``--out``, the table on
stdout.

``lsqmf plot RESULTS.csv [--out DIR] [--style loss | --facet loss] [--convergence [CSV]]
[--progress/--no-progress]`` draws the timing grid (and the convergence figure: from a saved
``convergence.csv``, or after running the study) from a results CSV, with a progress bar on
stderr (by default when stderr is a terminal).

``lsqmf report RESULTS.csv [--out FILE]`` writes the Markdown report of a seed-style results
CSV (default: README.md next to the CSV).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``bench``, ``plot`` and ``report`` subcommands to ``subparsers``."""
    _register_bench(subparsers)
    _register_plot(subparsers)
    _register_report(subparsers)


# duplicates: argparse subcommands are declared in one shape, one function each
def _register_bench(subparsers: Any) -> None:
    """The ``bench`` subcommand: the grid, how its cells run, what is drawn after."""
    b = subparsers.add_parser(
        "bench",
        help="run a benchmark grid (resumable) and draw its figures",
        description=(
            "Time every cell (problem x solver configuration) of a grid, best of --repeats, "
            "with every BLAS/OpenMP/numba thread pool limited to --blas-threads (default 1) "
            "and measured inside the cells. Each finished cell is appended to DIR/raw.csv at "
            "once; an interrupted run is continued with the same command and --resume. A DIR "
            "holding another run (other grid, machine, versions or threads) or a finished one "
            "is refused and left as it is. A failing cell is recorded with its error and the "
            "run goes on. Writes DIR/results.csv (best of the repeats), DIR/run.json "
            "(versions, the measured threads, the history of the runs) and figures. "
            "--reproduce DIR re-times a committed run into --out and compares the two."
        ),
    )
    _add_grid_options(b)
    _add_execution_options(b)
    _add_after_run_options(b)
    b.set_defaults(func=run_bench, bench_parser=b)


def _add_grid_options(b: argparse.ArgumentParser) -> None:
    """Which grid (preset, file or committed run), where its results go, which cells, how
    many repeats, resuming."""
    from ..bench.grid import PRESETS

    src = b.add_mutually_exclusive_group()
    src.add_argument("--preset", choices=sorted(PRESETS), help="a grid from benchmarks/")
    src.add_argument("--grid", type=Path, metavar="FILE", help="a grid TOML file")
    src.add_argument("--reproduce", type=Path, metavar="DIR", default=None,
                     help="re-time the committed run in DIR (e.g. reports/seed: its grid, "
                     "subset and repeats; --where narrows the subset, --repeats overrides) into "
                     "--out and compare the two per "
                     "panel (LSMR/exact ratio, crossover, verdict)")
    b.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="output directory: new, or one's own interrupted run with --resume")
    b.add_argument("--resume", action="store_true",
                   help="continue the run in --out (same grid, machine, versions, threads): "
                   "says how many cell repeats it reuses and how many it times")
    b.add_argument("--repeats", type=int, default=None, metavar="N",
                   help="best-of count (default: the grid's `repeats`)")
    b.add_argument("--where", default=None, metavar="QUERY",
                   help="pandas query over the cell columns selecting a subset, e.g. "
                   "\"tr_solver == 'lsmr' and n <= 10\"")


def _add_execution_options(b: argparse.ArgumentParser) -> None:
    """Where the cells run (serially, local processes, a Dask cluster) and the progress bar."""
    b.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="cells run in parallel with joblib (default 1: serial, for timing "
                   "fidelity)")
    b.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run the cells on a Dask cluster, e.g. tcp://host:8786 (needs "
                   "lsqmf[cluster]); --jobs is then ignored; resuming works the same")
    from ..runtime.progress import PROGRESS_HELP

    b.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help=PROGRESS_HELP)


def _add_after_run_options(b: argparse.ArgumentParser) -> None:
    """What is drawn after the run: the figures, the convergence study."""
    b.add_argument("--no-plots", dest="plots", action="store_false",
                   help="do not draw figures after the run")
    b.add_argument("--convergence", action="store_true",
                   help="also run and draw the convergence study (cost vs evaluations and "
                   "time, n=200, m=160, rank 10, 10%% observed)")


# duplicates: argparse subcommands are declared in one shape, one function each
def _register_plot(subparsers: Any) -> None:
    """The ``plot`` subcommand: the results CSV, the figures' layout, the convergence figure."""
    from ..runtime.progress import PROGRESS_HELP

    p = subparsers.add_parser(
        "plot",
        help="draw the timing figures of a results CSV",
        description="Draw the 2x2 timing grid (PNG and SVG) from a results CSV.",
    )
    p.add_argument("results", type=Path, metavar="RESULTS.csv")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="output directory (default: the CSV's directory)")
    p.add_argument("--style", default=None, metavar="COLUMN",
                   help="column for the line style, e.g. loss (default: none)")
    p.add_argument("--facet", default=None, metavar="COLUMN",
                   help="column with one row of panels per value, e.g. loss (default: none; "
                   "more readable than --style for the seed grid's five losses)")
    p.add_argument("--convergence", nargs="?", const=True, default=False, metavar="CSV",
                   help="also draw the convergence figure: from CSV (a convergence.csv) when "
                   "given, else run the convergence study first")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help=PROGRESS_HELP)
    p.set_defaults(func=run_plot)


# duplicates: argparse subcommands are declared in one shape, one function each
def _register_report(subparsers: Any) -> None:
    """The ``report`` subcommand: the results CSV and the Markdown file."""
    r = subparsers.add_parser(
        "report",
        help="write the Markdown report of a seed-style results CSV",
        description="Summarize a results CSV: fastest configuration per panel, LSMR vs exact.",
    )
    r.add_argument("results", type=Path, metavar="RESULTS.csv")
    r.add_argument("--out", type=Path, default=None, metavar="FILE",
                   help="Markdown file (default: README.md next to the CSV)")
    r.set_defaults(func=run_report)


def _draw(results: Any, out: Path, *, style: str | None, convergence: bool | str,
          progress: bool | None, facet: str | None = None,
          incomplete: str | None = None) -> list[Path]:
    """Draw the figures, with progress by :mod:`lsqmf.runtime.progress`'s policy."""
    from ..bench import plots
    from ..runtime.progress import Progress

    steps = [f"timings ({len(results)} cells)"]
    if convergence is True:
        steps.append("convergence study")
    if convergence:
        steps.append("convergence figure")
    with Progress("lsqmf plot", len(steps), progress=progress, unit="steps") as bar:
        bar.begin(steps[0])
        files = plots.plot_timings(results, out, style=style, facet=facet,
                                   incomplete=incomplete)
        bar.advance()
        if convergence is True:
            bar.begin(steps[1])
            frame = plots.convergence_study(progress=progress)
            frame.to_csv(out / "convergence.csv", index=False)
            bar.advance()
            bar.begin(steps[2])
            files += plots.plot_convergence(frame, out)
            bar.advance()
        elif convergence:
            bar.begin(steps[1])
            files += plots.plot_convergence(Path(convergence), out)
            bar.advance()
    return files


def incomplete_note(results_csv: Path) -> str | None:
    """"incomplete: ..." when the run next to ``results_csv`` (its run.json) did not finish
    or timed only part of its cells; None otherwise (or without a run.json)."""
    import json

    header_path = results_csv.parent / "run.json"
    try:
        header = json.loads(header_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    status = header.get("status")
    if status not in (None, "complete"):
        return f"incomplete: the run was {status}"
    return None


def _command_line(args: argparse.Namespace) -> str:
    """The ``lsqmf bench`` command equivalent to ``args`` (for the run header)."""
    parts = ["lsqmf", "bench"]
    if getattr(args, "reproduce", None) is not None:
        parts += ["--reproduce", str(args.reproduce)]
    parts += (["--preset", args.preset] if args.preset else
              ["--grid", str(args.grid)] if args.grid else [])
    if getattr(args, "resume", False):
        parts.append("--resume")
    if args.repeats is not None:
        parts += ["--repeats", str(args.repeats)]
    parts += ["--out", str(args.out)]
    if args.where:
        parts += ["--where", args.where]
    if args.jobs != 1:
        parts += ["--jobs", str(args.jobs)]
    if getattr(args, "scheduler", None):
        parts += ["--scheduler", args.scheduler]
    for flag, on in (("--progress", args.progress is True),
                     ("--no-progress", args.progress is False), ("--no-plots", not args.plots),
                     ("--convergence", args.convergence)):
        if on:
            parts.append(flag)
    return shlex.join(parts)


def _bench_grid(args: argparse.Namespace) -> tuple[Any, str | None, int | None, str | None]:
    """``(grid, where, repeats, preset)`` of ``lsqmf bench``: from --preset/--grid, or from
    the committed run of --reproduce (checked against --preset/--grid when given)."""
    from ..bench.grid import load_grid

    if args.reproduce is None:
        if args.preset is None and args.grid is None:
            args.bench_parser.error("one of --preset, --grid or --reproduce is required")
        return load_grid(args.grid, preset=args.preset), args.where, args.repeats, args.preset
    from ..bench.compare import committed_run

    header = committed_run(args.reproduce)
    if args.out.resolve() == args.reproduce.resolve():
        raise ValueError(f"--out {str(args.out)!r} is the committed run; reproduce into a new "
                         "directory.")
    preset = header.get("preset")
    grid = load_grid(header.get("grid_file") if not preset else None, preset=preset)
    if header.get("grid_fingerprint") not in (None, grid.fingerprint()):
        raise ValueError(
            f"--reproduce {str(args.reproduce)!r}: its grid ({header.get('grid_file')}, "
            f"fingerprint {header.get('grid_fingerprint')}) is not the current "
            f"{grid.source} ({grid.fingerprint()}); the committed run cannot be re-timed.")
    where = header.get("where")  # a --where narrows the committed subset
    if args.where is not None:
        where = args.where if where is None else f"({where}) and ({args.where})"
    repeats = args.repeats if args.repeats is not None else header.get("repeats")
    return grid, where, repeats, preset


def run_bench(args: argparse.Namespace) -> int:
    from ..bench.harness import RAW_CSV, RESULTS_CSV, run_grid

    grid, where, repeats, preset = _bench_grid(args)
    command = _command_line(args)
    threads = getattr(args, "blas_threads", None) or 1

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        result = run_grid(grid, args.out, repeats=repeats, where=where, jobs=args.jobs,
                          scheduler=args.scheduler, progress=args.progress, command=command,
                          preset=preset, threads=threads, resume=args.resume, notify=say)
    except KeyboardInterrupt:
        print(f"interrupted; finished cells are in {args.out / RAW_CSV}; continue with the "
              "same command and --resume", file=sys.stderr)
        return 130
    n_err = int((result["error"].astype(str).str.len() > 0).sum()) if len(result) else 0
    print(f"{len(result)} cells in {args.out / RESULTS_CSV} ({n_err} with errors)")
    if args.plots and len(result) and grid.problems != "movielens":
        for path in _draw(result, args.out, style=None, convergence=args.convergence,
                          progress=args.progress):
            print(f"wrote {path}")
    if args.reproduce is not None:
        _compare(args.reproduce, args.out)
    return 0


def _compare(committed: Path, out: Path) -> None:
    """Write and print the comparison of ``out`` with the committed run."""
    from ..bench.compare import compare_runs, render_comparison

    table = compare_runs(committed, out)
    text = render_comparison(table, committed, out)
    table.to_csv(out / "compare.csv", index=False)
    (out / "compare.md").write_text(text, encoding="utf-8")
    print(text, end="")
    print(f"wrote {out / 'compare.md'} and {out / 'compare.csv'}")


def run_plot(args: argparse.Namespace) -> int:
    from ..bench.harness import read_raw

    if not args.results.is_file():
        raise FileNotFoundError(f"results file {str(args.results)!r} does not exist.")
    out = args.out if args.out is not None else args.results.parent
    out.mkdir(parents=True, exist_ok=True)
    for path in _draw(read_raw(args.results), out, style=args.style, facet=args.facet,
                      convergence=args.convergence, progress=args.progress,
                      incomplete=incomplete_note(args.results)):
        print(f"wrote {path}")
    return 0


def run_report(args: argparse.Namespace) -> int:
    from ..bench.report import write_report

    path = write_report(args.results, args.out)
    print(f"wrote {path}")
    return 0
