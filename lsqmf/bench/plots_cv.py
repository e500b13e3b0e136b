"""Cross-validation and real-data figures (matplotlib/seaborn imported lazily, here only).

Figures are drawn on a :class:`matplotlib.figure.Figure` with the Agg canvas, never through
pyplot's global state, and written to a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["best_or_tie", "plot_cv_heatmap", "plot_rmse_vs_time"]


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def best_or_tie(results: pd.DataFrame, row: str, col: str, value: str = "rmse"
                ) -> tuple[list[tuple[Any, Any]], float]:
    """The cells that share the lowest mean ``value``, and the fold spread that decides it.

    The spread is the largest standard deviation over the folds among the (``row``, ``col``)
    cells. The lowest cell is "best" only when every other cell's mean is higher by more than
    that spread; otherwise every cell within the spread of the lowest mean ties with it.

    Returns
    -------
    cells : list of (row value, col value)
        One cell: the best; more: a tie.
    spread : float
        NaN with one fold (then the lowest cell alone is returned).
    """
    stats = results.groupby([row, col])[value].agg(["mean", "std"]).dropna(subset=["mean"])
    lowest = float(stats["mean"].min())
    spread = float(stats["std"].max()) if stats["std"].notna().any() else float("nan")
    if spread != spread:  # NaN: one fold, nothing to compare with
        return [stats["mean"].idxmin()], spread
    within = stats.index[stats["mean"] - lowest <= spread]
    return list(within), spread


def plot_cv_heatmap(
    results: pd.DataFrame,
    out_path: str | Path,
    *,
    row: str = "rank",
    col: str = "reg",
    value: str = "rmse",
    title: str | None = None,
    incomplete: str | None = None,
) -> Path:
    """Heatmap of mean validation ``value`` (default RMSE) over ``row`` x ``col``.

    The lowest cell is outlined and called "best" only when it beats every other cell by more
    than the fold spread (:func:`best_or_tie`); otherwise the cells that tie are outlined and
    the title says "tie". Sized to read at 100% (at least 6.4 x 4 inches at 150 dpi); the
    title wraps instead of being clipped.

    Parameters
    ----------
    results : pandas.DataFrame
        Per-fold rows with columns ``row``, ``col`` and ``value`` (e.g.
        :attr:`lsqmf.evaluate.search.GridSearchResult.results`); folds are averaged, and any
        other grid parameter is averaged over too.
    out_path : str or Path
        Image file to write (format from the suffix).
    incomplete : str, optional
        The results come from a partial run: stamped "INCOMPLETE" with this note.

    Returns
    -------
    Path
        ``out_path``.
    """
    import textwrap

    import seaborn as sns
    from matplotlib.patches import Rectangle

    for name in (row, col, value):
        if name not in results.columns:
            raise ValueError(
                f"`results` has no column {name!r}; columns are {list(results.columns)}."
            )
    table = results.pivot_table(index=row, columns=col, values=value, aggfunc="mean")
    fig = _figure(max(6.4, 1.8 + 1.2 * table.shape[1]), max(4.0, 1.6 + 0.6 * table.shape[0]))
    ax = fig.add_subplot()
    sns.heatmap(table, annot=True, fmt=".4f", cmap="viridis_r", ax=ax,
                cbar_kws={"label": f"mean validation {value.upper()}"})
    cells, spread = best_or_tie(results, row, col, value)
    rows, cols = list(table.index), list(table.columns)
    for r, c in cells:
        ax.add_patch(Rectangle((cols.index(c), rows.index(r)), 1, 1, fill=False,
                               ec="#d62728", lw=2.5))
    if len(cells) == 1:
        (r, c), = cells
        verdict = f"best: {row} = {r}, {col} = {c} (outlined)"
        if spread == spread:
            verdict += f"; ahead by more than the fold spread {spread:.2g}"
    else:
        verdict = (f"tie: {len(cells)} cells (outlined) within the fold spread {spread:.2g} "
                   "of the lowest")
    head = title or f"mean validation {value.upper()} over folds"
    ax.set_title(textwrap.fill(head, 60) + "\n" + textwrap.fill(verdict, 70), fontsize=10)
    if incomplete:
        fig.text(0.995, 0.005, f"INCOMPLETE: {incomplete.removeprefix('incomplete: ')}",
                 color="#b2182b", fontsize=9, fontweight="bold", ha="right", va="bottom")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150, bbox_inches="tight")
    return out


def plot_rmse_vs_time(
    curves: pd.DataFrame,
    out_path: str | Path,
    *,
    title: str | None = None,
    target: float | None = None,
    style: str | None = None,
) -> Path:
    """Validation RMSE against wall time, one line per solver.

    One color per solver, in a qualitative palette; with ``style`` (e.g. ``"rank"``) one line
    style per value of that column, so the same solver at two settings keeps its color. The
    legend sits outside the axes (it never hides a line); the title wraps instead of being
    clipped; sized to read at 100% (7.5 x 4.5 inches at 150 dpi).

    Parameters
    ----------
    curves : pandas.DataFrame
        Columns ``solver``, ``time`` (seconds) and ``rmse``; optional ``fold`` (one line per
        solver and fold, same color per solver) and the ``style`` column.
    out_path : str or Path
    title : str, optional
    target : float, optional
        Draw a horizontal reference line at this RMSE.
    style : str, optional
        A column of ``curves`` whose values get their own line style.
    """
    import textwrap

    import seaborn as sns

    if style is not None and style not in curves.columns:
        raise ValueError(f"`style` must be a column of `curves`; got {style!r} "
                         f"(columns {list(curves.columns)}).")
    fig = _figure(7.5, 4.5)
    ax = fig.add_subplot()
    units = "fold" if "fold" in curves.columns else None
    solvers = list(dict.fromkeys(curves["solver"]))
    sns.lineplot(data=curves, x="time", y="rmse", hue="solver", style=style, units=units,
                 estimator=None if units else "mean", marker="o", markersize=3, ax=ax,
                 hue_order=solvers, palette=sns.color_palette("colorblind", len(solvers)),
                 dashes=style is not None)
    if target is not None:
        ax.axhline(target, color="grey", linestyle=(0, (1, 2)), linewidth=1,
                   label=f"target RMSE {target:g}")
    ax.set_xscale("log")
    ax.set_xlabel("wall time [s] (log scale)")
    ax.set_ylabel("validation RMSE")
    ax.set_title(textwrap.fill(title or "validation RMSE against wall time", 70), fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9, frameon=False)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150, bbox_inches="tight")
    return out
