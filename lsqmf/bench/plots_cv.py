"""Cross-validation and real-data figures (matplotlib/seaborn imported lazily, here only).

Figures are drawn on a :class:`matplotlib.figure.Figure` with the Agg canvas, never through
pyplot's global state, and written to a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["plot_cv_heatmap", "plot_rmse_vs_time"]


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plot_cv_heatmap(
    results: pd.DataFrame,
    out_path: str | Path,
    *,
    row: str = "rank",
    col: str = "reg",
    value: str = "rmse",
    title: str | None = None,
) -> Path:
    """Heatmap of mean validation ``value`` (default RMSE) over ``row`` x ``col``.

    Parameters
    ----------
    results : pandas.DataFrame
        Per-fold rows with columns ``row``, ``col`` and ``value`` (e.g.
        :attr:`lsqmf.evaluate.search.GridSearchResult.results`); folds are averaged, and any
        other grid parameter is averaged over too.
    out_path : str or Path
        Image file to write (format from the suffix).

    Returns
    -------
    Path
        ``out_path``.
    """
    import seaborn as sns

    for name in (row, col, value):
        if name not in results.columns:
            raise ValueError(
                f"`results` has no column {name!r}; columns are {list(results.columns)}."
            )
    table = results.pivot_table(index=row, columns=col, values=value, aggfunc="mean")
    fig = _figure(1.2 + 1.1 * table.shape[1], 1.0 + 0.6 * table.shape[0])
    ax = fig.add_subplot()
    sns.heatmap(table, annot=True, fmt=".4f", cmap="viridis_r", ax=ax,
                cbar_kws={"label": f"validation {value.upper()}"})
    ax.set_title(title or f"mean validation {value.upper()} over folds")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    return out


def plot_rmse_vs_time(
    curves: pd.DataFrame,
    out_path: str | Path,
    *,
    title: str | None = None,
    target: float | None = None,
) -> Path:
    """Validation RMSE against wall time, one line per solver.

    Parameters
    ----------
    curves : pandas.DataFrame
        Columns ``solver``, ``time`` (seconds) and ``rmse``; optional ``fold`` (one line per
        solver and fold, same color per solver).
    out_path : str or Path
    target : float, optional
        Draw a horizontal reference line at this RMSE.
    """
    import seaborn as sns

    fig = _figure(7.0, 4.5)
    ax = fig.add_subplot()
    units = "fold" if "fold" in curves.columns else None
    sns.lineplot(data=curves, x="time", y="rmse", hue="solver", units=units,
                 estimator=None if units else "mean", marker="o", markersize=3, ax=ax)
    if target is not None:
        ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"RMSE {target}")
    ax.set_xscale("log")
    ax.set_xlabel("wall time (s, log scale)")
    ax.set_ylabel("validation RMSE")
    ax.set_title(title or "validation RMSE against wall time")
    ax.legend()
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    return out
