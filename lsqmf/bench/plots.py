"""Benchmark figures: the timing grid and the convergence study.

The only place (with the other modules of :mod:`lsqmf.bench`) that imports matplotlib and
seaborn, always lazily inside the functions. Figures are built on
:class:`matplotlib.figure.Figure` with the Agg canvas, so drawing never touches pyplot's global
state or needs a display.

:func:`plot_timings`
    One panel per (k_factor, sparsity) (or per density for ``synthetic`` grids): x = ``n``,
    y = ``dur``, both log scale, one line per method-tr_solver: the median over the losses,
    the band their min-max range; LSMR blue, exact red, ``lm`` black, ``trf`` solid and
    ``dogbox`` dashed; each seed panel states its LSMR/exact ratio at the largest ``n``.
    ``facet='loss'`` draws one row of panels per loss instead of medians. PNG and SVG.
:func:`convergence_study` and :func:`plot_convergence`
    Cost against evaluations and against time (from :attr:`FitResult.history`) of each solver
    configuration on one larger seed-style problem (default n=200, m=160, rank 10, 10%
    observed).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DEFAULT_CONVERGENCE_CONFIGS",
    "INCOMPLETE",
    "config_label",
    "convergence_study",
    "display_label",
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


#: Words of a configuration label as a reader should see them (``lm-none`` is "lm (MINPACK)").
_WORDS = {"lsmr": "LSMR", "exact": "exact (dense SVD)", "none": "", "solve": "",
          "operator": "operator", "kron": "Kronecker"}

#: The mark of a figure drawn from a partial run.
INCOMPLETE = "INCOMPLETE"


def display_label(label: str) -> str:
    """A configuration label for a legend: ``trf-lsmr`` -> ``trf + LSMR``, ``lm-none`` ->
    ``lm (MINPACK)``; a suffix in parentheses is kept."""
    head, sep, tail = label.partition(" (")
    tokens = [t for t in head.split("-") if t]
    if tokens and tokens[0] == "lm" and all(t in ("none", "linear") for t in tokens[1:]):
        text = "lm (MINPACK)"
    else:
        text = " + ".join(w for w in (_WORDS.get(t, t) for t in tokens) if w) or head
    return text + (f" ({tail}" if sep else "")


def _mark_incomplete(fig: Any, note: str | None) -> None:
    """A red "INCOMPLETE" stamp with ``note`` in the figure's bottom right corner."""
    if note:
        fig.text(0.995, 0.005, f"{INCOMPLETE}: {note.removeprefix('incomplete: ')}",
                 color="#b2182b", fontsize=10, fontweight="bold", ha="right", va="bottom",
                 bbox={"boxstyle": "round,pad=0.3", "fc": "#fde0dd", "ec": "#b2182b"})


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


#: Colour families by ``tr_solver`` (dark to light), line style and marker by ``method``: the
#: LSMR lines are blue, the dense (exact) ones red, MINPACK ``lm`` black, and ``trf`` and
#: ``dogbox`` of one family differ in shade, dash and marker, so no two lines look alike.
_FAMILY_COLOURS = {
    "lsmr": ("#08519c", "#4292c6", "#9ecae1"),
    "exact": ("#a50f15", "#fb6a4a", "#fcae91"),
    "none": ("#252525", "#737373", "#bdbdbd"),
}
_OTHER_COLOURS = ("#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")
_METHOD_STYLE = {"trf": ("-", "o"), "dogbox": ("--", "s"), "lm": (":", "^")}
_DASHES: tuple[Any, ...] = ("-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3)),
                            (0, (8, 2)))
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _line_styles(frame: pd.DataFrame, labels: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Colour, line style and marker of each configuration label (see ``_FAMILY_COLOURS``)."""
    styles: dict[str, dict[str, Any]] = {}
    used: dict[str, int] = {}
    other = 0
    for k, label in enumerate(labels):
        first = frame[frame["configuration"] == label].iloc[0]
        tr = str(first["tr_solver"]) if "tr_solver" in frame else ""
        method = str(first["method"]) if "method" in frame else ""
        tr = "none" if tr in ("nan", "None", "") else tr
        if tr in _FAMILY_COLOURS and used.get(tr, 0) < len(_FAMILY_COLOURS[tr]):
            colour = _FAMILY_COLOURS[tr][used.get(tr, 0)]
            used[tr] = used.get(tr, 0) + 1
        else:
            colour = _OTHER_COLOURS[other % len(_OTHER_COLOURS)]
            other += 1
        dash, marker = _METHOD_STYLE.get(method, (_DASHES[k % len(_DASHES)],
                                                  _MARKERS[k % len(_MARKERS)]))
        styles[label] = {"color": colour, "linestyle": dash, "marker": marker}
    return styles


def _label_order(frame: pd.DataFrame) -> list[str]:
    """Labels grouped by tr_solver family (lsmr, exact, none, others), trf before dogbox."""
    family = {"lsmr": 0, "exact": 1, "none": 2}
    method = {"trf": 0, "dogbox": 1, "lm": 2}

    def key(label: str) -> tuple[int, int, str]:
        first = frame[frame["configuration"] == label].iloc[0]
        tr = str(first["tr_solver"]) if "tr_solver" in frame else ""
        tr = "none" if tr in ("nan", "None", "") else tr
        m = str(first["method"]) if "method" in frame else ""
        return family.get(tr, 3), method.get(m, 3), label

    return sorted(frame["configuration"].unique(), key=key)


def _ratio_note(sel: pd.DataFrame, x: str) -> str | None:
    """The panel's LSMR/exact verdict, computed as the report computes it (matched pairs)."""
    from .report import _crossover, lsmr_exact_ratios

    if x != "n" or not {"tr_solver", "method", "loss", "k_factor", "sparsity"} <= set(sel):
        return None
    trs = set(sel["tr_solver"].astype(str))
    if not {"lsmr", "exact"} <= trs:
        return None
    pairs = lsmr_exact_ratios(sel if "cost" in sel else sel.assign(cost=np.nan))
    if pairs.empty:
        return None
    by_n = pairs.groupby("n")["time_ratio"].median()
    n_max, r = int(by_n.index[-1]), float(by_n.iloc[-1])
    if r < 1:
        head = f"n = {n_max}: LSMR {1 / r:.3g}× faster than exact"
    else:
        head = f"n = {n_max}: exact {r:.3g}× faster than LSMR"
    cross = _crossover(by_n)
    if cross is None:
        tail = "LSMR not faster at the largest n"
    elif cross == int(by_n.index[0]):
        tail = "LSMR faster at every n"
    else:
        tail = f"LSMR faster from n = {cross}; exact below"
    return f"{head}\n{tail}"


@dataclass(frozen=True)
class _Lines:
    """What tells the lines of a timing panel apart: colour by label, dash by ``style``."""

    labels: list[str]
    line_style: dict[str, dict[str, Any]]
    style: str | None
    style_vals: list[Any]
    style_marks: dict[Any, tuple[Any, str]]


def _timing_frame(results: Any, x: str, y: str, style: str | None,
                  facet: str | None) -> pd.DataFrame:
    """The rows to plot (positive ``y``), with a ``configuration`` label; checks the columns."""
    frame = _as_frame(results)
    for col in (x, y):
        if col not in frame:
            raise ValueError(f"`results` has no column {col!r}; columns: {list(frame.columns)}.")
    for name, column in (("style", style), ("facet", facet)):
        if column is not None and column not in frame:
            raise ValueError(f"`{name}` column {column!r} is not in `results`.")
    if style is not None and style == facet:
        raise ValueError(f"`style` and `facet` must differ; both are {style!r}.")
    frame = frame[frame[y].notna() & (frame[y] > 0)].copy()
    if frame.empty:
        raise ValueError("`results` has no row with a positive duration to plot.")
    frame["configuration"] = config_label(frame)
    return frame


def _timing_panels(frame: pd.DataFrame) -> tuple[list[str], list[dict[str, Any]]]:
    """The panel columns (k_factor x sparsity, else density) and one key dict per panel."""
    panel_cols = [c for c in ("k_factor", "sparsity") if c in frame]
    if not panel_cols:
        panel_cols = [c for c in ("density",) if c in frame]
    panels: list[dict[str, Any]] = [{}]
    for col in panel_cols:
        panels = [{**p, col: v} for p in panels for v in sorted(frame[col].unique())]
    return panel_cols, panels


def _timing_lines(frame: pd.DataFrame, style: str | None) -> _Lines:
    labels = _label_order(frame)
    style_vals = list(dict.fromkeys(frame[style])) if style is not None else [None]
    style_marks = {v: (_DASHES[k % len(_DASHES)], _MARKERS[k % len(_MARKERS)])
                   for k, v in enumerate(style_vals)}
    return _Lines(labels, _line_styles(frame, labels), style, style_vals, style_marks)


def _panel_rows(frame: pd.DataFrame, keys: dict[str, Any], facet: str | None,
                fv: Any) -> tuple[pd.DataFrame, str]:
    """The rows of one panel and its title."""
    sel = frame
    for col, val in keys.items():
        sel = sel[sel[col] == val]
    if facet is not None:
        sel = sel[sel[facet] == fv]
    title = _panel_title(keys) if keys else ""
    if facet is not None:
        title = f"{facet} = {fv}" + (f"\n{title}" if title else "")
    return sel, title


def _draw_lines(ax: Any, sel: pd.DataFrame, lines: _Lines, x: str, y: str) -> None:
    """One median line (and min-max band) per configuration (and ``style`` value)."""
    style = lines.style
    for label in lines.labels:
        for sv in lines.style_vals:
            g = sel[sel["configuration"] == label]
            if style is not None:
                g = g[g[style] == sv]
            if g.empty:
                continue
            stats = g.groupby(x)[y].agg(["median", "min", "max"]).sort_index()
            kw = dict(lines.line_style[label])
            if style is not None:
                kw["linestyle"], kw["marker"] = lines.style_marks[sv]
            ax.plot(stats.index, stats["median"], lw=1.8, ms=5, **kw)
            if (stats["max"] > stats["min"]).any():
                ax.fill_between(stats.index, stats["min"], stats["max"],
                                color=kw["color"], alpha=0.15, lw=0)


def _draw_panel(ax: Any, sel: pd.DataFrame, title: str, lines: _Lines, ns: list[Any],
                x: str, y: str) -> None:
    """Title, lines, LSMR/exact note, log axes and ticks of one panel."""
    from matplotlib.ticker import NullFormatter

    ax.set_title(title + (" (no data)" if sel.empty else ""), fontsize=10)
    _draw_lines(ax, sel, lines, x, y)
    note = _ratio_note(sel, x) if not sel.empty and lines.style is None else None
    if note:
        ax.text(0.03, 0.97, note, transform=ax.transAxes, va="top", ha="left",
                fontsize=8.5, bbox={"boxstyle": "round,pad=0.3", "fc": "white",
                                    "ec": "0.7", "alpha": 0.9})
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.grid(True, which="major", alpha=0.3)
    if len(ns) > 1:
        ax.set_xticks(ns, [str(v) for v in ns])
        ax.xaxis.set_minor_formatter(NullFormatter())


def _timing_legends(fig: Any, lines: _Lines) -> None:
    """The configuration legend and, with ``style``, a second one for its values."""
    from matplotlib.lines import Line2D

    labels, line_style, style = lines.labels, lines.line_style, lines.style
    if style is None:
        handles = [Line2D([], [], lw=1.8, ms=5, **line_style[lab]) for lab in labels]
    else:  # line style and marker tell the `style` values apart: colour only here
        handles = [Line2D([], [], lw=3, color=line_style[lab]["color"]) for lab in labels]
    legend = fig.legend(handles, [display_label(lab) for lab in labels],
                        loc="outside right center", fontsize=9,
                        title="method + trust-region solver")
    if style is not None:
        style_handles = [Line2D([], [], color="0.3", lw=1.5, linestyle=lines.style_marks[v][0],
                                marker=lines.style_marks[v][1]) for v in lines.style_vals]
        fig.legend(style_handles, [str(v) for v in lines.style_vals],
                   loc="outside right lower", fontsize=9, title=str(style))
    legend.set_in_layout(True)


def _timings_suptitle(frame: pd.DataFrame, style: str | None, facet: str | None) -> str:
    """The figure title: repeats, and what a line and a band stand for."""
    reps = ""
    if "repeats" in frame and frame["repeats"].notna().any():
        lo, hi = int(frame["repeats"].min()), int(frame["repeats"].max())
        reps = f"best of {lo} repeat{'s' if lo > 1 else ''}" if lo == hi else \
            f"best of {lo}–{hi} repeats"
    spread = [c for c in ("loss", "jac", "solver") if c in frame and frame[c].nunique() > 1
              and c not in (style, facet)]
    if style is None and facet is None:
        names = {"loss": "losses", "jac": "Jacobians", "solver": "solvers"}
        over = " and ".join(f"the {frame[c].nunique()} {names[c]}" for c in spread)
        what = f"line = median over {over or 'repeated rows'}, band = min–max"
    elif facet is not None:
        what = f"one row of panels per {facet}"
    else:
        what = f"line style = {style}"
    return "Solve time vs problem size" + (f" ({reps})" if reps else "") + f"; {what}"


def plot_timings(
    results: Any,
    out: str | Path,
    *,
    style: str | None = None,
    facet: str | None = None,
    x: str = "n",
    y: str = "dur",
    stem: str = "timings",
    incomplete: str | None = None,
) -> list[Path]:
    """Draw the timing grid of a results table and save it as PNG and SVG.

    One panel per (k_factor, sparsity) (or per density); one line per method-tr_solver, the
    median over the other configuration columns (the losses of the seed grid), with a band from
    their minimum to their maximum. LSMR lines are blue, exact red, ``lm`` black; ``trf`` is
    solid with circles, ``dogbox`` dashed with squares. Seed-style panels carry the LSMR/exact
    time ratio at the largest ``n`` and the size from which LSMR is faster, computed as in the
    report (:func:`lsqmf.bench.report.lsmr_exact_ratios`).

    Parameters
    ----------
    results : pandas.DataFrame or path
        Rows of :func:`~lsqmf.bench.harness.run_grid` (``results.csv``). Rows without a
        ``dur`` (failed cells) are left out.
    out : str or Path
        Directory for ``{stem}.png`` and ``{stem}.svg``.
    style : str, optional
        Column drawn as separate lines, told apart by line style and marker (colour stays the
        configuration's), instead of the median over it. With the five losses of the seed grid
        this draws 21 lines per panel; ``facet`` is usually more readable.
    facet : str, optional
        Column with one row of panels per value (e.g. ``'loss'``): the lines are then the
        single cells of that value, not medians.
    x, y : str, default='n', 'dur'
        Columns on the axes (both log scale).
    stem : str, default='timings'
        File name without extension.
    incomplete : str, optional
        The figure comes from a partial run: stamped "INCOMPLETE" with this note (e.g.
        "the run was interrupted").

    Returns
    -------
    list of Path
        The files written.
    """
    from matplotlib.figure import Figure

    frame = _timing_frame(results, x, y, style, facet)
    panel_cols, panels = _timing_panels(frame)
    lines = _timing_lines(frame, style)
    facet_vals = list(dict.fromkeys(frame[facet])) if facet is not None else [None]
    if facet is None and len(panel_cols) == 2:
        n_rows = frame[panel_cols[0]].nunique()
        n_cols = frame[panel_cols[1]].nunique()
    else:
        n_rows, n_cols = len(facet_vals), len(panels)
    fig = Figure(figsize=(4.6 * n_cols + 2.4, 3.6 * n_rows + 0.4), layout="constrained")
    axes = np.array(fig.subplots(n_rows, n_cols, sharex=True, sharey=True, squeeze=False))
    ns = sorted(frame[x].unique())
    for f_idx, fv in enumerate(facet_vals):
        for p_idx, keys in enumerate(panels):
            ax = axes.flat[p_idx] if facet is None else axes[f_idx, p_idx]
            sel, title = _panel_rows(frame, keys, facet, fv)
            _draw_panel(ax, sel, title, lines, ns, x, y)
    for ax in axes[-1, :]:
        ax.set_xlabel("n (rows)" if x == "n" else x)
    for ax in axes[:, 0]:
        ax.set_ylabel("solve time [s]" if y == "dur" else y)
    _timing_legends(fig, lines)
    fig.suptitle(_timings_suptitle(frame, style, facet), fontsize=11)
    _mark_incomplete(fig, incomplete)
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
    progress: bool | None = False,
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

    n = check_int("n", n, min_value=2)
    m = check_int("m", m, min_value=2)
    rank = check_int("rank", rank, min_value=1)
    density = check_float("density", density, min_value=0.0, max_value=1.0,  # type: ignore[assignment]
                          min_inclusive=False)
    P, Q, R = _seed_problem(n, m, rank, density, random_state)
    from ..runtime.progress import Progress

    frames = []
    with Progress("convergence study", len(configs), progress=progress,
                  unit="configurations") as bar:
        for cfg in configs:
            bar.begin("-".join(str(cfg.get(k)) for k in ("method", "tr_solver")))
            frames.append(_convergence_run(R, P.round(1), Q.round(1), cfg, max_time))
            bar.advance()
    out = pd.concat(frames, ignore_index=True)
    out["n"], out["m"], out["rank"], out["density"] = n, m, rank, density
    cols = ["configuration", "method", "tr_solver", "step", "cost", "time", "success", "error",
            "n", "m", "rank", "density"]
    return out[cols]


def _seed_problem(n: int, m: int, rank: int, density: float,
                  random_state: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The hidden ``P``, ``Q`` and the observed ``R`` of a seed-style problem."""
    rng = np.random.default_rng(random_state)
    P = rng.random((n, rank))
    Q = rng.random((rank, m))
    R = (P @ Q).round(2) * (rng.random((n, m)) < density)
    return P, Q, R


def _convergence_run(R: np.ndarray, P0: np.ndarray, Q0: np.ndarray, cfg: dict[str, Any],
                     max_time: float | None) -> pd.DataFrame:
    """One configuration's cost history (one row with the error if it raises)."""
    import pandas as pd

    from ..nls.solve import solve

    label = "-".join(str(cfg.get(k)).lower() for k in ("method", "tr_solver"))
    if cfg.get("loss", "linear") != "linear":
        label += f"-{cfg['loss']}"
    base = {"configuration": label, "method": cfg.get("method"),
            "tr_solver": "none" if cfg.get("tr_solver") is None else cfg["tr_solver"]}
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        try:
            res = solve(R, P0=P0, Q0=Q0, missing=0, max_time=max_time, **cfg)
        except Exception as err:
            return pd.DataFrame([{**base, "step": 0, "cost": math.nan, "time": math.nan,
                                  "success": False, "error": f"{type(err).__name__}: {err}"}])
        h = res.history.to_frame()
        for k, v in base.items():
            h[k] = v
        h["success"] = bool(res.success)
        h["error"] = ""
        return h


def _convergence_style(k: int, style: dict[str, Any]) -> dict[str, Any]:
    """The line of the ``k``-th configuration: later lines thinner, their markers smaller and
    every other one hollow, so coinciding lines stay visible (the legend shows the same)."""
    return {**style, "lw": 2.6 - 0.35 * k, "ms": 8 - k,
            "mfc": "none" if k % 2 else style["color"]}


def _convergence_lines(ax1: Any, ax2: Any, frame: pd.DataFrame, order: list[str],
                       styles: dict[str, dict[str, Any]]) -> None:
    """Cost by evaluation (``ax1``) and by time (``ax2``) per configuration; a note when the
    lines by evaluation overlap."""
    curves = {}
    for k, label in enumerate(order):
        g = frame[frame["configuration"] == label].sort_values("step")
        kw = _convergence_style(k, styles[label])
        ax1.plot(g["step"], g["cost"], **kw)
        timed = g[g["time"] > 0]
        ax2.plot(timed["time"], timed["cost"], **kw)
        curves[label] = g["cost"].to_numpy()
    first = next(iter(curves.values()))
    if len(curves) > 1 and all(len(c) == len(first) and np.allclose(c, first, rtol=0.05)
                               for c in curves.values()):
        ax1.text(0.97, 0.97, f"all {len(curves)} configurations take nearly\nthe "
                 "same steps (costs within 5%):\ntheir lines overlap",
                 transform=ax1.transAxes, ha="right", va="top",
                 fontsize=9, bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": "0.7"})


def plot_convergence(history: Any, out: str | Path, *, stem: str = "convergence",
                     title: str | None = None, incomplete: str | None = None) -> list[Path]:
    """Draw cost vs evaluations and cost vs time per configuration; save PNG and SVG.

    ``history`` is the frame of :func:`convergence_study` (or its CSV). Lines have the timing
    figure's styles (LSMR blue, exact red, ``lm`` black; trf solid with circles, dogbox
    dashed with squares), evaluations are integer ticks, and when every configuration took
    the same steps (the costs by evaluation coincide) the left panel says so.
    """
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    frame = _as_frame(history)
    missing = {"configuration", "step", "cost", "time"} - set(frame.columns)
    if missing:
        raise ValueError(f"`history` lacks column(s) {sorted(missing)}.")
    frame = frame[frame["cost"].notna()].copy()
    if frame.empty:
        raise ValueError("`history` has no finite cost to plot.")
    for col in ("method", "tr_solver"):
        if col not in frame:
            frame[col] = frame["configuration"].str.split("-").str[0 if col == "method" else 1]
    stopped: set[str] = set()
    if "success" in frame:
        ok = frame.groupby("configuration")["success"].agg(
            lambda v: v.astype(str).str.lower().eq("true").all())
        stopped = set(ok.index[~ok])
    order = _label_order(frame)
    styles = _line_styles(frame, order)
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2, sharey=True)
    _convergence_lines(ax1, ax2, frame, order, styles)
    for ax in (ax1, ax2):
        ax.set_yscale("log")
        ax.grid(True, which="major", alpha=0.3)
    ax1.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax1.set_xlabel("residual evaluations")
    ax1.set_ylabel("cost")
    ax2.set_xscale("log")
    ax2.set_xlabel("time since start [s]")
    handles = [Line2D([], [], **_convergence_style(k, styles[lab]))
               for k, lab in enumerate(order)]
    names = [display_label(lab) + (" *" if lab in stopped else "") for lab in order]
    fig.legend(handles, names, loc="outside right center", fontsize=9,
               title="method + trust-region solver")
    if stopped:
        fig.supxlabel("* not converged: stopped before its tolerance was met (the study "
                      "stops each run after max_time, 120 s by default)", fontsize=9,
                      color="0.3")
    if title is None:
        title = "Convergence"
        if {"n", "m", "rank", "density"} <= set(frame.columns):
            r = frame.iloc[0]
            title += (f" (n={int(r['n'])}, m={int(r['m'])}, rank {int(r['rank'])}, "
                      f"{float(r['density']):.0%} observed)")
    fig.suptitle(title, fontsize=11)
    _mark_incomplete(fig, incomplete)
    return _save(fig, Path(out), stem)
