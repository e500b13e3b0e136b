"""Benchmarks: grids as data (TOML), the timing harness, plots and reports.

:mod:`lsqmf.bench.grid` parses and validates grid files and enumerates cells,
:mod:`lsqmf.bench.harness` runs them (resumable, CSV + JSON run header),
:mod:`lsqmf.bench.plots` draws the figures (the only modules importing matplotlib/seaborn),
:mod:`lsqmf.bench.report` writes the Markdown report from a results CSV.
"""

from .grid import PRESETS, Grid, GridError, load_grid, parse_grid
from .harness import aggregate, blas_info, read_raw, run_grid

__all__ = [
    "PRESETS",
    "Grid",
    "GridError",
    "aggregate",
    "blas_info",
    "load_grid",
    "parse_grid",
    "read_raw",
    "run_grid",
]
