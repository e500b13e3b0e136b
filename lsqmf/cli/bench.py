"""``lsqmf bench``, ``lsqmf plot`` and ``lsqmf report``: run a benchmark grid, draw, report.

``lsqmf bench (--preset NAME | --grid FILE) [--repeats N] --out DIR [--where QUERY]
[--jobs N] [--no-progress] [--no-plots] [--convergence]`` runs (or resumes) the grid, writes
``raw.csv``, ``results.csv`` and ``run.json`` into DIR, then the figures.

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


def _register_bench(subparsers: Any) -> None:
    """The ``bench`` subcommand: the grid, how its cells run, what is drawn after."""
    b = subparsers.add_parser(
        "bench",
        help="run a benchmark grid (resumable) and draw its figures",
        description=(
            "Time every cell (problem x solver configuration) of a grid, best of --repeats. "
            "Each finished cell is appended to DIR/raw.csv at once; rerunning with the same "
            "--out skips finished cells, so an interrupted run loses nothing. A failing cell "
            "is recorded with its error and the run goes on. Writes DIR/results.csv (best of "
            "the repeats), DIR/run.json (versions, BLAS threads, command line) and figures."
        ),
    )
    _add_grid_options(b)
    _add_execution_options(b)
    _add_after_run_options(b)
    b.set_defaults(func=run_bench)


def _add_grid_options(b: argparse.ArgumentParser) -> None:
    """Which grid (preset or file), where its results go, which cells, how many repeats."""
    from ..bench.grid import PRESETS

    src = b.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", choices=sorted(PRESETS), help="a grid from benchmarks/")
    src.add_argument("--grid", type=Path, metavar="FILE", help="a grid TOML file")
    b.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory")
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
    b.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar")


def _add_after_run_options(b: argparse.ArgumentParser) -> None:
    """What is drawn after the run: the figures, the convergence study."""
    b.add_argument("--no-plots", dest="plots", action="store_false",
                   help="do not draw figures after the run")
    b.add_argument("--convergence", action="store_true",
                   help="also run and draw the convergence study (cost vs evaluations and "
                   "time, n=200, m=160, rank 10, 10%% observed)")


def _register_plot(subparsers: Any) -> None:
    """The ``plot`` subcommand: the results CSV, the figures' layout, the convergence figure."""
    from ._options import add_progress_options

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
    add_progress_options(p)
    p.set_defaults(func=run_plot)


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
          progress: bool, facet: str | None = None) -> list[Path]:
    """Draw the figures; with ``progress`` a tqdm bar on stderr names the step being drawn."""
    from ..bench import plots

    steps = [f"timings ({len(results)} cells)"]
    if convergence is True:
        steps.append("convergence study")
    if convergence:
        steps.append("convergence figure")
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(steps), desc="lsqmf plot", unit="step", file=sys.stderr,
                   leave=False)

    def step(index: int) -> None:
        if bar is not None:
            bar.n = index
            bar.set_postfix_str(steps[index] if index < len(steps) else "done", refresh=False)
            bar.refresh()

    try:
        step(0)
        files = plots.plot_timings(results, out, style=style, facet=facet)
        if convergence is True:
            step(1)
            frame = plots.convergence_study(progress=progress)
            frame.to_csv(out / "convergence.csv", index=False)
            step(2)
            files += plots.plot_convergence(frame, out)
        elif convergence:
            step(1)
            files += plots.plot_convergence(Path(convergence), out)
        step(len(steps))
    finally:
        if bar is not None:
            bar.close()
    return files


def _command_line(args: argparse.Namespace) -> str:
    """The ``lsqmf bench`` command equivalent to ``args`` (for the run header)."""
    parts = ["lsqmf", "bench"]
    parts += ["--preset", args.preset] if args.preset else ["--grid", str(args.grid)]
    if args.repeats is not None:
        parts += ["--repeats", str(args.repeats)]
    parts += ["--out", str(args.out)]
    if args.where:
        parts += ["--where", args.where]
    if args.jobs != 1:
        parts += ["--jobs", str(args.jobs)]
    if getattr(args, "scheduler", None):
        parts += ["--scheduler", args.scheduler]
    for flag, on in (("--no-progress", not args.progress), ("--no-plots", not args.plots),
                     ("--convergence", args.convergence)):
        if on:
            parts.append(flag)
    return shlex.join(parts)


def run_bench(args: argparse.Namespace) -> int:
    from ..bench.grid import load_grid
    from ..bench.harness import RESULTS_CSV, run_grid

    grid = load_grid(args.grid, preset=args.preset)
    command = _command_line(args)
    try:
        result = run_grid(grid, args.out, repeats=args.repeats, where=args.where,
                          jobs=args.jobs, scheduler=args.scheduler, progress=args.progress,
                          command=command,
                          preset=args.preset)
    except KeyboardInterrupt:
        print(f"interrupted; finished cells are in {args.out / 'raw.csv'}; rerun the same "
              "command to resume", file=sys.stderr)
        return 130
    n_err = int((result["error"].astype(str).str.len() > 0).sum()) if len(result) else 0
    print(f"{len(result)} cells in {args.out / RESULTS_CSV} ({n_err} with errors)")
    if args.plots and len(result) and grid.problems != "movielens":
        for path in _draw(result, args.out, style=None, convergence=args.convergence,
                          progress=args.progress):
            print(f"wrote {path}")
    return 0


def run_plot(args: argparse.Namespace) -> int:
    from ..bench.harness import read_raw
    from ._options import show_bar

    if not args.results.is_file():
        raise FileNotFoundError(f"results file {str(args.results)!r} does not exist.")
    out = args.out if args.out is not None else args.results.parent
    out.mkdir(parents=True, exist_ok=True)
    for path in _draw(read_raw(args.results), out, style=args.style, facet=args.facet,
                      convergence=args.convergence, progress=show_bar(args)):
        print(f"wrote {path}")
    return 0


def run_report(args: argparse.Namespace) -> int:
    from ..bench.report import write_report

    path = write_report(args.results, args.out)
    print(f"wrote {path}")
    return 0
