"""Benchmark figures: the timing grid and the convergence study.

The only place (with the other modules of :mod:`lsqmf.bench`) that imports matplotlib and
seaborn, always lazily inside the functions. Figures are built on
:class:`matplotlib.figure.Figure` with the Agg canvas, so drawing never touches pyplot's global
state or needs a display.

:func:`plot_timings`
    One panel per (k_factor, sparsity) (or per density for ``synthetic`` grids): x = ``n``,
    y = ``dur``, both log scale, hue = method-tr_solver; without ``style`` the line is the
    median over the losses and the band their min-max range. PNG and SVG.
:func:`convergence_study` and :func:`plot_convergence`
    Cost against evaluations and against time (from :attr:`FitResult.history`) of each solver
    configuration on one larger seed-style problem (default n=200, m=160, rank 10, 10%
    observed).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DEFAULT_CONVERGENCE_CONFIGS",
    "config_label",
    "convergence_study",
    "plot_convergence",
    "plot_timings",
]

_HUE_COLUMNS = ("solver", "method", "tr_solver", "jac")

#: Configurations of the convergence study: the linear-loss ones of the seed grid.
DEFAULT_CONVERGENCE_CONFIGS: tuple[dict[str, Any], ...] = (
    {"method": "trf", "tr_solver": "exact"},
    {"method": "trf", "tr_solver": "lsmr"},
    {"method": "dogbox", "tr_solver": "exact"},
    {"method": "dogbox", "tr_solver": "lsmr"},
    {"method": "lm", "tr_solver": None},
)


def _as_frame(results: Any) -> pd.DataFrame:
    import pandas as pd

    if isinstance(results, pd.DataFrame):
        return results.copy()
    from .harness import read_raw

    path = Path(results)
    if not path.is_file():
        raise FileNotFoundError(f"`results` file {str(path)!r} does not exist.")
    return read_raw(path)


def config_label(frame: pd.DataFrame, columns: Sequence[str] = _HUE_COLUMNS) -> pd.Series:
    """``method-tr_solver`` style labels from the configuration columns that vary."""
    cols = [c for c in columns if c in frame and frame[c].astype(str).nunique() > 1]
    if not cols:
        cols = [c for c in columns if c in frame][:1]
    parts = frame[cols].astype(str).replace({"nan": "", "None": "", "<NA>": ""})
    return parts.apply(lambda r: "-".join(v for v in r if v), axis=1)


def _save(fig: Any, out: Path, stem: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "svg"):
        path = out / f"{stem}.{ext}"
        fig.savefig(path, dpi=150 if ext == "png" else None, bbox_inches="tight")
        paths.append(path)
    return paths


def _panel_title(keys: dict[str, Any]) -> str:
    parts = []
    for col, val in keys.items():
        if col == "k_factor":
            parts.append(f"rank k = {val:g}·n")
        elif col == "sparsity":
            parts.append(f"{val:.0%} of entries missing")
        elif col == "density":
            parts.append(f"{val:.1%} observed")
        else:
            parts.append(f"{col} = {val}")
    return ", ".join(parts)


def plot_timings(
    results: Any,
    out: str | Path,
    *,
    style: str | None = None,
    x: str = "n",
    y: str = "dur",
    stem: str = "timings",
) -> list[Path]:
    """Draw the timing grid of a results table and save it as PNG and SVG.

    Parameters
    ----------
    results : pandas.DataFrame or path
        Rows of :func:`~lsqmf.bench.harness.run_grid` (``results.csv``). Rows without a
        ``dur`` (failed cells) are left out.
    out : str or Path
        Directory for ``{stem}.png`` and ``{stem}.svg``.
    style : str, optional
        Column for the line style (e.g. ``'loss'``); without it each line is the median over
        the other configuration columns (the band spans their min to max).
    x, y : str, default='n', 'dur'
        Columns on the axes (both log scale).
    stem : str, default='timings'
        File name without extension.

    Returns
    -------
    list of Path
        The files written.
    """
    import seaborn as sns
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    frame = _as_frame(results)
    for col in (x, y):
        if col not in frame:
            raise ValueError(f"`results` has no column {col!r}; columns: {list(frame.columns)}.")
    if style is not None and style not in frame:
        raise ValueError(f"`style` column {style!r} is not in `results`.")
    frame = frame[frame[y].notna() & (frame[y] > 0)].copy()
    if frame.empty:
        raise ValueError("`results` has no row with a positive duration to plot.")
    frame["configuration"] = config_label(frame)
    panel_cols = [c for c in ("k_factor", "sparsity") if c in frame]
    if not panel_cols:
        panel_cols = [c for c in ("density",) if c in frame]
    row_vals = sorted(frame[panel_cols[0]].unique()) if panel_cols else [None]
    col_vals = sorted(frame[panel_cols[1]].unique()) if len(panel_cols) > 1 else [None]
    hue_order = sorted(frame["configuration"].unique())
    palette = dict(zip(hue_order, sns.color_palette("tab10", len(hue_order)), strict=True))

    nr, nc = len(row_vals), len(col_vals)
    fig = Figure(figsize=(5.2 * nc + 2.2, 3.9 * nr), layout="constrained")
    axes = np.atleast_2d(np.array(fig.subplots(nr, nc, sharex=True, sharey=True, squeeze=False)))
    handles_ax = None
    for i, rv in enumerate(row_vals):
        for j, cv in enumerate(col_vals):
            ax = axes[i, j]
            sel = frame
            keys: dict[str, Any] = {}
            if rv is not None:
                sel = sel[sel[panel_cols[0]] == rv]
                keys[panel_cols[0]] = rv
            if cv is not None:
                sel = sel[sel[panel_cols[1]] == cv]
                keys[panel_cols[1]] = cv
            if sel.empty:
                ax.set_title(_panel_title(keys) + " (no data)", fontsize=10)
                continue
            kwargs: dict[str, Any] = {}
            if style is None:
                kwargs.update(estimator="median", errorbar=("pi", 100))
            else:
                kwargs.update(style=style, estimator=None, units=None)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", (FutureWarning, UserWarning))
                sns.lineplot(data=sel, x=x, y=y, hue="configuration", hue_order=hue_order,
                             palette=palette, marker="o", ax=ax, legend=handles_ax is None,
                             **kwargs)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(_panel_title(keys), fontsize=10)
            ax.set_xlabel("n (rows)" if x == "n" else x)
            ax.set_ylabel("solve time [s]" if y == "dur" else y)
            ax.grid(True, which="major", alpha=0.3)
            if handles_ax is None:
                handles_ax = ax
    if handles_ax is not None and handles_ax.get_legend() is not None:
        handles, labels = handles_ax.get_legend_handles_labels()
        handles_ax.get_legend().remove()
        fig.legend(handles, labels, loc="outside right center", fontsize=9,
                   title="method-tr_solver" if style is None else None)
    ns = sorted(frame[x].unique())
    if len(ns) > 1:
        for ax in axes.flat:
            ax.set_xticks(ns, [str(v) for v in ns])
            ax.xaxis.set_minor_formatter(NullFormatter())
    subtitle = "median over losses, band = min..max" if style is None else f"style = {style}"
    fig.suptitle(f"Solve time (best of repeats) vs problem size; {subtitle}", fontsize=11)
    return _save(fig, Path(out), stem)


# ---------------------------------------------------------------------------- convergence
def convergence_study(
    n: int = 200,
    m: int = 160,
    rank: int = 10,
    density: float = 0.1,
    *,
    configs: Sequence[dict[str, Any]] = DEFAULT_CONVERGENCE_CONFIGS,
    random_state: int = 0,
    max_time: float | None = 120.0,
    progress: bool = False,
) -> pd.DataFrame:
    """Record the cost history of each configuration on one seed-style problem.

    The problem is drawn as in the seed study: hidden ``P`` (n, rank) and ``Q`` (rank, m) from
    ``rng.random``, ``R = round(P @ Q, 2)`` with a fraction ``density`` of entries observed,
    priors ``P.round(1)``, ``Q.round(1)``; each configuration runs
    ``lsqmf.solve(R, P0=..., Q0=..., missing=0, max_time=max_time, **config)``.

    Returns
    -------
    pandas.DataFrame
        Columns ``configuration, method, tr_solver, step, cost, time, success, error`` and the
        problem's ``n, m, rank, density``; one row per residual evaluation (a failed
        configuration has one row with its error). A run stopped by ``max_time`` has
        ``success=False``.
    """
    import pandas as pd

    from .._validation import check_float, check_int
    from ..solve import solve

    n = check_int("n", n, min_value=2)
    m = check_int("m", m, min_value=2)
    rank = check_int("rank", rank, min_value=1)
    density = check_float("density", density, min_value=0.0, max_value=1.0,  # type: ignore[assignment]
                          min_inclusive=False)
    rng = np.random.default_rng(random_state)
    P = rng.random((n, rank))
    Q = rng.random((rank, m))
    R = (P @ Q).round(2) * (rng.random((n, m)) < density)
    frames = []
    bar = None
    if progress:
        import sys

        from tqdm.auto import tqdm

        bar = tqdm(total=len(configs), desc="convergence", unit="config", file=sys.stderr)
    for cfg in configs:
        label = "-".join(str(cfg.get(k)).lower() for k in ("method", "tr_solver"))
        if cfg.get("loss", "linear") != "linear":
            label += f"-{cfg['loss']}"
        base = {"configuration": label, "method": cfg.get("method"),
                "tr_solver": "none" if cfg.get("tr_solver") is None else cfg["tr_solver"]}
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            try:
                res = solve(R, P0=P.round(1), Q0=Q.round(1), missing=0, max_time=max_time,
                            **cfg)
            except Exception as err:
                frames.append(pd.DataFrame([{**base, "step": 0, "cost": math.nan,
                                             "time": math.nan, "success": False,
                                             "error": f"{type(err).__name__}: {err}"}]))
            else:
                h = res.history.to_frame()
                for k, v in base.items():
                    h[k] = v
                h["success"] = bool(res.success)
                h["error"] = ""
                frames.append(h)
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    out = pd.concat(frames, ignore_index=True)
    out["n"], out["m"], out["rank"], out["density"] = n, m, rank, density
    cols = ["configuration", "method", "tr_solver", "step", "cost", "time", "success", "error",
            "n", "m", "rank", "density"]
    return out[cols]


def plot_convergence(history: Any, out: str | Path, *, stem: str = "convergence",
                     title: str | None = None) -> list[Path]:
    """Draw cost vs evaluations and cost vs time per configuration; save PNG and SVG.

    ``history`` is the frame of :func:`convergence_study` (or its CSV).
    """
    import seaborn as sns
    from matplotlib.figure import Figure

    frame = _as_frame(history)
    missing = {"configuration", "step", "cost", "time"} - set(frame.columns)
    if missing:
        raise ValueError(f"`history` lacks column(s) {sorted(missing)}.")
    frame = frame[frame["cost"].notna()].copy()
    if frame.empty:
        raise ValueError("`history` has no finite cost to plot.")
    if "success" in frame:
        ok = frame.groupby("configuration")["success"].transform(
            lambda v: v.astype(str).str.lower().eq("true").all())
        frame.loc[~ok, "configuration"] = frame.loc[~ok, "configuration"] + " (stopped early)"
    fig = Figure(figsize=(12, 4.2), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2, sharey=True)
    order = sorted(frame["configuration"].unique())
    timed = frame[frame["time"] > 0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (FutureWarning, UserWarning))
        sns.lineplot(data=frame, x="step", y="cost", hue="configuration", hue_order=order,
                     marker="o", ax=ax1, estimator=None, legend=False)
        sns.lineplot(data=timed, x="time", y="cost", hue="configuration", hue_order=order,
                     marker="o", ax=ax2, estimator=None)
    for ax in (ax1, ax2):
        ax.set_yscale("log")
        ax.grid(True, which="major", alpha=0.3)
    ax1.set_xlabel("residual evaluations")
    ax1.set_ylabel("cost")
    ax2.set_xscale("log")
    ax2.set_xlabel("time since start [s]")
    if ax2.get_legend() is not None:
        ax2.get_legend().set_title("method-tr_solver")
    if title is None:
        title = "Convergence"
        if {"n", "m", "rank", "density"} <= set(frame.columns):
            r = frame.iloc[0]
            title += (f" (n={int(r['n'])}, m={int(r['m'])}, rank {int(r['rank'])}, "
                      f"{float(r['density']):.0%} observed)")
    fig.suptitle(title, fontsize=11)
    return _save(fig, Path(out), stem)
