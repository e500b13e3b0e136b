"""The Markdown report of a seed-style timing study, written from its ``results.csv``.

Every number in the report is computed here from the data: the fastest configuration per
panel (geometric mean of the time over ``n``, and at the largest ``n``) and by what factor, the
LSMR / exact time ratio per panel (median over method x loss x n, and at the largest ``n``),
how the final costs compare, and which cells failed or did not converge. The run header
(``run.json`` next to the CSV) supplies the repeats, BLAS threads and the command line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["lsmr_exact_ratios", "lsmr_verdict", "panel_summary", "render_report", "write_report"]

_PANELS = ("k_factor", "sparsity")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "–" if math.isnan(v) else f"{v:.3g}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def _dur(seconds: float) -> str:
    """A duration with 3 significant digits in s or ms."""
    if math.isnan(seconds):
        return "–"
    return f"{seconds:.3g} s" if seconds >= 1 else f"{seconds * 1e3:.3g} ms"


def _ratio(r: float) -> str:
    """A time ratio, with the speed-up spelled out when it is large."""
    if math.isnan(r):
        return "–"
    if r < 0.5:
        return f"{r:.3g} (LSMR {1 / r:.0f}× faster)"
    if r > 2:
        return f"{r:.3g} (exact {r:.1f}× faster)"
    return f"{r:.3g}"


def _crossover(by_n: pd.Series) -> int | None:
    """The smallest n from which every larger n has a median ratio below 1."""
    ns = list(by_n.index)
    for j, n in enumerate(ns):
        if (by_n.iloc[j:] < 1).all():
            return int(n)
    return None


def _sessions_text(header: dict[str, Any]) -> str:
    sessions = header.get("sessions") or [header]
    done = [x for x in sessions if x.get("n_run", 1)]
    if len(done) <= 1:
        x = done[0] if done else header
        when = f" on {x['start_time']}" if x.get("start_time") else ""
        return f"Cells were timed with `{x.get('command')}`{when}.\n"
    lines = [f"Cells were timed in {len(done)} sessions (a rerun skips finished cells and a "
             "larger `--repeats` tops them up):\n"]
    lines += [f"- `{x.get('command')}` ({x.get('start_time')}, {x.get('n_run')} cell repeats)"
              for x in done]
    return "\n".join(lines) + "\n"


def _gmean(x: pd.Series) -> float:
    x = x[x > 0]
    return float(np.exp(np.log(x).mean())) if len(x) else math.nan


def _prepare(results: pd.DataFrame) -> pd.DataFrame:
    need = {"n", "method", "tr_solver", "loss", "dur", *_PANELS}
    missing = need - set(results.columns)
    if missing:
        raise ValueError(
            f"`results` lacks column(s) {sorted(missing)}; the report needs a seed-style grid."
        )
    frame = results.copy()
    frame["tr_solver"] = frame["tr_solver"].astype(str)
    frame["config"] = frame["method"] + "-" + frame["tr_solver"] + "-" + frame["loss"]
    frame["config"] = frame["config"].str.replace("lm-none-linear", "lm", regex=False)
    return frame


def panel_summary(results: pd.DataFrame) -> pd.DataFrame:
    """Per (k_factor, sparsity) panel: the fastest configuration overall and at the largest n.

    "Overall" ranks configurations by the geometric mean of ``dur`` over the ``n`` values
    (only configurations timed at every ``n`` of the panel). Factors are slowest / fastest
    and runner-up / fastest.
    """
    import pandas as pd

    frame = _prepare(results)
    ok = frame[frame["dur"].notna() & (frame["dur"] > 0)]
    rows = []
    for keys, g in ok.groupby(list(_PANELS), sort=True):
        n_values = g["n"].nunique()
        per = g.groupby("config")["dur"].agg([_gmean, "count"])
        per = per[per["count"] == n_values].sort_values("_gmean")
        n_max = g["n"].max()
        last = g[g["n"] == n_max].sort_values("dur")
        rows.append({
            "k_factor": keys[0], "sparsity": keys[1],
            "fastest": per.index[0], "gmean_s": per["_gmean"].iloc[0],
            "runner_up": per.index[1] if len(per) > 1 else "",
            "x_runner_up": per["_gmean"].iloc[1] / per["_gmean"].iloc[0]
            if len(per) > 1 else math.nan,
            "slowest": per.index[-1], "x_slowest": per["_gmean"].iloc[-1] / per["_gmean"].iloc[0],
            "n_max": int(n_max),
            "fastest_at_n_max": last["config"].iloc[0], "dur_at_n_max": last["dur"].iloc[0],
            "runner_up_at_n_max": last["config"].iloc[1] if len(last) > 1 else "",
            "x_runner_up_at_n_max": last["dur"].iloc[1] / last["dur"].iloc[0]
            if len(last) > 1 else math.nan,
            "x_slowest_at_n_max": last["dur"].iloc[-1] / last["dur"].iloc[0],
        })
    return pd.DataFrame(rows)


def lsmr_exact_ratios(results: pd.DataFrame) -> pd.DataFrame:
    """``dur(lsmr) / dur(exact)`` and ``cost(lsmr) / cost(exact)`` for every matched pair.

    Pairs share the panel, ``n``, ``method`` and ``loss``; a ratio below 1 means LSMR was
    faster. Pairs where either side failed are left out.
    """
    frame = _prepare(results)
    keys = [*_PANELS, "n", "method", "loss"]
    cols = [*keys, "dur", "cost"]
    exact = frame[frame["tr_solver"] == "exact"][cols]
    lsmr = frame[frame["tr_solver"] == "lsmr"][cols]
    pairs = lsmr.merge(exact, on=keys, suffixes=("_lsmr", "_exact"))
    pairs = pairs[pairs["dur_lsmr"].notna() & pairs["dur_exact"].notna()].copy()
    pairs["time_ratio"] = pairs["dur_lsmr"] / pairs["dur_exact"]
    pairs["cost_ratio"] = pairs["cost_lsmr"] / pairs["cost_exact"]
    return pairs


def _panel_name(kf: float, sp: float) -> str:
    return f"k = {kf:g}·n, {sp:.0%} missing"


def lsmr_verdict(results: pd.DataFrame) -> str:
    """One plain sentence: from which ``n`` LSMR beats the exact solver in this run.

    The bold verdict of the report's conclusion, without Markdown (``lsqmf demo`` prints it).
    """
    return _verdict(lsmr_exact_ratios(results)).replace("**", "")


def _verdict(pairs: pd.DataFrame) -> str:
    """The seed's claim (LSMR strongly preferred) judged per size, from matched pairs."""
    if pairs.empty:
        return "No LSMR/exact pairs were timed."
    by_n = pairs.groupby("n")["time_ratio"].median()
    n_min, n_max = int(by_n.index[0]), int(by_n.index[-1])
    at_max = pairs[pairs["n"] == n_max]
    med_max = float(at_max["time_ratio"].median())
    frac_max = float((at_max["time_ratio"] < 1).mean())
    cross = {keys: _crossover(g.groupby("n")["time_ratio"].median())
             for keys, g in pairs.groupby(list(_PANELS))}
    if med_max <= 0.5 and frac_max >= 0.8 and all(c is not None for c in cross.values()):
        c_max = max(c for c in cross.values() if c is not None)
        if c_max == n_min:
            return (f"**Confirmed at every size of this run (n = {n_min} to {n_max}), in every "
                    "panel.**")
        if by_n.iloc[0] > 1:
            return (f"**Confirmed from n = {c_max} on (in every panel); below that the dense "
                    "solvers are faster.**")
        return f"**Confirmed from n = {c_max} on (in every panel).**"
    if med_max < 1:
        why = (f"only {1 / med_max:.3g}× (median)" if med_max > 0.5 else
               f"in only {frac_max:.0%} of the pairs" if frac_max < 0.8 else
               "not from one size on in every panel")
        return (f"**Partly confirmed: at n = {n_max} LSMR is faster, but {why}.**")
    return (f"**Not confirmed in this run: at the largest size (n = {n_max}) exact is faster, "
            f"by a median {med_max:.3g}×.**")


def _conclusion(frame: pd.DataFrame, pairs: pd.DataFrame, summary: pd.DataFrame,
                raw: pd.DataFrame | None) -> str:
    """The conclusion: verdict, ratio by size, per-panel crossover, costs, fastest, lm."""
    n_max = int(pairs["n"].max())
    parts = [_ratio_paragraph(pairs, n_max) + _cost_sentence(pairs, raw) + "\n",
             _fastest_paragraph(summary, n_max)]
    lm = _lm_paragraph(frame)
    if lm is not None:
        parts.append(lm)
    return "\n".join(parts)


def _ratio_paragraph(pairs: pd.DataFrame, n_max: int) -> str:
    """The verdict, the lsmr/exact time ratio by size, method and rank, the crossovers."""
    at_max = pairs[pairs["n"] == n_max]
    med_max = float(at_max["time_ratio"].median())
    frac_max = float((at_max["time_ratio"] < 1).mean())
    by_n = pairs.groupby("n")["time_ratio"].median()
    by_method = at_max.groupby("method")["time_ratio"].median()
    by_rank = at_max.groupby("k_factor")["time_ratio"].median()
    cross = []
    for (kf, sp), g in pairs.groupby(list(_PANELS)):
        c = _crossover(g.groupby("n")["time_ratio"].median())
        cross.append(f"{_panel_name(kf, sp)}: " + (f"n ≥ {c}" if c is not None else "never"))
    return (
        "The seed (the original code lsqmf started from) concluded that `tr_solver='lsmr'` is "
        f"strongly preferred over `'exact'`. {_verdict(pairs)} "
        "Median lsmr/exact time ratio by size (over panels × method × loss; below 1 LSMR is "
        "faster): " + ", ".join(f"n = {int(n)}: {_ratio(float(v))}" for n, v in by_n.items())
        + f". At n = {n_max} the median lsmr/exact time ratio is {_ratio(med_max)} and LSMR is "
        f"faster in {frac_max:.0%} of the method×loss×panel pairs there (median ratio by "
        "method: " + ", ".join(f"{m} {v:.3g}" for m, v in by_method.items())
        + "; by rank: " + ", ".join(f"k = {kf:g}·n {v:.3g}" for kf, v in by_rank.items())
        + "). LSMR is faster (median over method × loss) from: " + "; ".join(cross) + "."
    )


def _cost_sentence(pairs: pd.DataFrame, raw: pd.DataFrame | None) -> str:
    """The lsmr/exact cost ratio on the same problem ("" without finite ratios)."""
    # costs are only comparable on the same problem: with repeats > 1 each repeat draws
    # new data, so match lsmr and exact within a repeat (raw rows) when they are given
    cost_pairs = pairs
    if raw is not None and "repeat" in raw:
        rp = _prepare(raw)
        keys = [*_PANELS, "n", "method", "loss", "repeat"]
        cost_pairs = rp[rp["tr_solver"] == "lsmr"][[*keys, "cost"]].merge(
            rp[rp["tr_solver"] == "exact"][[*keys, "cost"]], on=keys,
            suffixes=("_lsmr", "_exact"))
        cost_pairs["cost_ratio"] = cost_pairs["cost_lsmr"] / cost_pairs["cost_exact"]
    cost = cost_pairs["cost_ratio"].replace([np.inf, -np.inf], np.nan).dropna()
    if not len(cost):
        return ""
    return (
        f" Both reach the same optimum: on the same problem, median cost(lsmr)/"
        f"cost(exact) = {cost.median():.3f} (5th–95th percentile "
        f"{cost.quantile(0.05):.3f}–{cost.quantile(0.95):.3f}, {len(cost)} pairs)."
    )


def _fastest_paragraph(summary: pd.DataFrame, n_max: int) -> str:
    """The fastest configuration of each panel at the largest size."""
    counts = summary["fastest_at_n_max"].value_counts()
    return (
        f"Fastest configuration at n = {n_max}, per panel: "
        + "; ".join(f"{_panel_name(r.k_factor, r.sparsity)}: `{r.fastest_at_n_max}` "
                    f"({r.x_runner_up_at_n_max:.2f}× ahead of `{r.runner_up_at_n_max}`)"
                    for r in summary.itertuples())
        + (f" (`{counts.index[0]}` in {counts.iloc[0]} of {len(summary)} panels)."
           if len(counts) else ".")
        + " Losses of one method-tr_solver differ by little; factors below ~1.3× are noise.\n"
    )


def _lm_paragraph(frame: pd.DataFrame) -> str | None:
    """MINPACK lm's time against the fastest trf/dogbox configuration (None without lm)."""
    if "lm" not in set(frame["method"]):
        return None
    lm = frame[(frame["method"] == "lm") & frame["dur"].notna()]
    rest = frame[(frame["method"] != "lm") & frame["dur"].notna()]
    best_rest = rest.groupby([*_PANELS, "n"])["dur"].min()
    lm_t = lm.set_index([*_PANELS, "n"])["dur"]
    ratio = (lm_t / best_rest).dropna()
    if not len(ratio):
        return None
    lm_by_n = ratio.groupby(level="n").median()
    faster = [int(n) for n, v in lm_by_n.items() if v < 1]
    if len(faster) == len(lm_by_n):
        where = "it is the fastest choice at every size here"
    elif faster:
        where = (f"it is the fastest choice up to n = {max(faster)} and slower than "
                 "the best trf/dogbox configuration above")
    else:
        where = "it is never the fastest choice here"
    return (
        "MINPACK `lm` (dense QR, linear loss only), as a multiple of the time of the "
        "fastest trf/dogbox configuration of the same problem (median by size): "
        + ", ".join(f"n = {int(n)}: {v:.3g}×" for n, v in lm_by_n.items())
        + f"; {where}.\n"
    )


def _repeats_text(frame: pd.DataFrame) -> str:
    """How many repeats each cell had: one number, per-n ranges, or ``"unknown"``."""
    reps = frame["repeats"] if "repeats" in frame else None
    if reps is None:
        return "unknown"
    if reps.min() == reps.max():
        return f"{int(reps.min())}"
    by_n = frame.groupby("n")["repeats"].agg(["min", "max"])
    return ", ".join(
        f"n = {int(n)}: {int(r['min'])}" + (f"–{int(r['max'])}" if r["max"] != r["min"] else "")
        for n, r in by_n.iterrows()
    )


def _intro_lines(frame: pd.DataFrame, header: dict[str, Any], figures: Sequence[str],
                 results_name: str, command: str) -> list[str]:
    """Title, provenance, environment, warnings and figure links."""
    reps_text = _repeats_text(frame)
    n_cells = len(frame)
    blas = header.get("blas", {})
    threads = blas.get("max_threads")
    env = blas.get("env", {})
    cmd = header.get("command", "")
    out: list[str] = []
    out.append(f"# Solver timing study: `{header.get('grid_name', 'seed')}` grid\n")
    out.append(
        f"Generated by `{command}` from `{results_name}` "
        f"({n_cells} cells; best of **{reps_text}** repeat(s) per cell). "
        + _sessions_text(header)
        if cmd else
        f"Generated by `{command}` ({n_cells} cells; best of "
        f"**{reps_text}** repeat(s) per cell).\n"
    )
    versions = header.get("versions", {})
    if versions:
        out.append(
            "Environment: " + ", ".join(f"{k} {v}" for k, v in versions.items())
            + f"; {header.get('cpu_count', '?')} CPUs; {header.get('platform', '')}; "
            f"BLAS threads: {threads if threads is not None else 'unknown'}"
            + (f" ({', '.join(f'{k}={v}' for k, v in env.items())})" if env else "") + ".\n"
        )
    for w in header.get("warnings", []):
        out.append(f"> **Warning:** {w}\n")
    for fig in figures:
        out.append(f"![{Path(fig).stem}]({fig})\n")
    return out


def _fastest_section(summary: pd.DataFrame, n_max: int) -> list[str]:
    """The "Fastest configuration per panel" section."""
    out = ["## Fastest configuration per panel\n"]
    out.append(
        "Configurations are `method-tr_solver-loss` (`lm` = `lm` with the linear loss). "
        "*Overall* ranks by the geometric mean of the time over all n of the panel, which "
        "weighs the small problems (where the dense solvers win) as much as the large ones; "
        "the columns *at n = max* show the large problems. Factors are how many times slower "
        "the runner-up and the slowest configuration are.\n"
    )
    rows: list[list[Any]] = [
        [_panel_name(r.k_factor, r.sparsity), f"`{r.fastest}`", _dur(r.gmean_s),
         f"{r.x_runner_up:.2f}× (`{r.runner_up}`)", f"{r.x_slowest:.1f}× (`{r.slowest}`)",
         f"`{r.fastest_at_n_max}` {_dur(r.dur_at_n_max)}",
         f"{r.x_runner_up_at_n_max:.2f}× (`{r.runner_up_at_n_max}`)",
         f"{r.x_slowest_at_n_max:.1f}×"]
        for r in summary.itertuples()
    ]
    out.append(_table(
        ["panel", "fastest overall", "geo-mean time", "runner-up", "slowest",
         f"fastest at n = {n_max}", "runner-up", "slowest"], rows) + "\n")
    return out


def _lsmr_section(pairs: pd.DataFrame, n_max: int) -> list[str]:
    """The "LSMR vs exact" section (empty when there are no pairs)."""
    if not len(pairs):
        return []
    out = ["## LSMR vs exact\n"]
    out.append(
        "Ratio dur(lsmr) / dur(exact) for the same problem, method and loss (< 1: LSMR "
        "faster); medians over method × loss (× n for the first column).\n"
    )
    rows: list[list[Any]] = []
    for (kf, sp), g in pairs.groupby(list(_PANELS)):
        gm = g[g["n"] == n_max]
        by_n = g.groupby("n")["time_ratio"].median()
        rows.append([
            _panel_name(kf, sp), _ratio(float(g["time_ratio"].median())),
            _ratio(float(gm["time_ratio"].median())) if len(gm) else "–",
            f"{(gm['time_ratio'] < 1).mean():.0%}" if len(gm) else "–",
            ", ".join(f"{int(n)}: {v:.3g}" for n, v in by_n.items()),
        ])
    out.append(_table(
        ["panel", "median ratio (all n)", f"median ratio at n = {n_max}",
         f"LSMR faster at n = {n_max}", "median ratio by n"], rows) + "\n")
    by_method = pairs[pairs["n"] == n_max].groupby("method")["time_ratio"].median()
    if len(by_method):
        out.append(f"At n = {n_max} by method: " + ", ".join(
            f"{m} {_ratio(v)}" for m, v in by_method.items()) + ".\n")
    return out


def _method_section(frame: pd.DataFrame, n_max: int) -> list[str]:
    """Median time at the largest n by method-tr_solver, per panel."""
    out = [f"## Median time at n = {n_max} by method-tr_solver (over losses)\n"]
    last = frame[(frame["n"] == n_max) & frame["dur"].notna()]
    last = last.assign(mt=last["method"] + "-" + last["tr_solver"])
    piv = last.groupby([*_PANELS, "mt"])["dur"].median().unstack("mt")
    rows = [[_panel_name(kf, sp), *[_dur(v) for v in piv.loc[(kf, sp)]]]
            for kf, sp in piv.index]
    out.append(_table(["panel", *piv.columns], rows) + "\n")
    return out


def _failures_section(frame: pd.DataFrame) -> list[str]:
    """Counts of errors and non-converged cells, and the table of errors."""
    err = frame["error"].fillna("").astype(str) if "error" in frame else None
    n_err = int((err.str.len() > 0).sum()) if err is not None else 0
    success = frame["success"] if "success" in frame else None
    n_nc = int((~success.astype(bool)).sum()) - n_err if success is not None else 0
    out = ["## Failures and non-converged cells\n"]
    out.append(
        f"{n_err} cell(s) raised an error and {max(n_nc, 0)} returned without success "
        "(ConvergenceWarning, recorded in the `success` and `warning` columns).\n"
    )
    if n_err and err is not None:
        bad = frame[err.str.len() > 0]
        err_rows: list[list[Any]] = [
            [_panel_name(r.k_factor, r.sparsity), int(r.n), f"`{r.config}`", str(r.error)[:120]]
            for r in bad.itertuples()
        ]
        out.append(_table(["panel", "n", "configuration", "error"], err_rows) + "\n")
    return out


def render_report(results: pd.DataFrame, header: dict[str, Any] | None = None, *,
                  figures: Sequence[str] = (), results_name: str = "results.csv",
                  command: str | None = None,
                  convergence: pd.DataFrame | None = None,
                  raw: pd.DataFrame | None = None, note: str | None = None) -> str:
    """The report as Markdown (see the module docstring); ``note`` follows the conclusion."""
    header = header or {}
    frame = _prepare(results)
    command = command or f"lsqmf report {results_name}"
    summary = panel_summary(frame)
    pairs = lsmr_exact_ratios(frame)
    n_max = int(frame["n"].max())

    out = _intro_lines(frame, header, figures, results_name, command)
    out.append("## Conclusion\n")  # the conclusion comes first
    if len(pairs):
        out.append(_conclusion(frame, pairs, summary, raw).rstrip("\n") + "\n")
    if note:
        out.append(note + "\n")
    out += _fastest_section(summary, n_max)
    out += _lsmr_section(pairs, n_max)
    out += _method_section(frame, n_max)
    out += _failures_section(frame)
    if convergence is not None and len(convergence):
        out.append(_convergence_section(convergence))
    out.append(
        "Timings are wall-clock (`time.perf_counter`) of the whole `lsqmf.solve` call on a "
        "shared machine; treat factors below ~1.3× as noise.\n"
    )
    return "\n".join(out)


def _convergence_section(conv: pd.DataFrame) -> str:
    """Time and evaluations each configuration needs to get within 1% of the best cost."""
    conv = conv[conv["cost"].notna()]
    best = float(conv["cost"].min())
    target = best * 1.01
    title = "## Convergence on a larger problem"
    if {"n", "m", "rank", "density"} <= set(conv.columns):
        r = conv.iloc[0]
        title += (f" (n = {int(r['n'])}, m = {int(r['m'])}, rank {int(r['rank'])}, "
                  f"{float(r['density']):.0%} observed)")
    rows: list[list[Any]] = []
    for name, g in conv.groupby("configuration", sort=True):
        hit = g[g["cost"] <= target]
        success = str(g["success"].iloc[0]).lower() == "true"
        rows.append([
            f"`{name}`", int(g["step"].max()) + 1, f"{float(g['cost'].min()):.6g}",
            _dur(float(hit["time"].iloc[0])) if len(hit) else "never",
            int(hit["step"].iloc[0]) if len(hit) else "–",
            _dur(float(g["time"].max())),
            "yes" if success else "no (stopped by the time budget)",
        ])
    return "\n".join([
        title + "\n",
        "From `convergence.csv` (`lsqmf.bench.plots.convergence_study`, linear loss, the seed "
        "formulation, time budget `max_time` per configuration, 120 s by default); *to 1%* is "
        "the first evaluation whose "
        "cost is within 1% of the best cost of any configuration.\n",
        _table(["configuration", "evaluations", "final cost", "time to 1%", "evaluation",
                "total time", "converged"], rows) + "\n",
    ])


def write_report(results: str | Path, out: str | Path | None = None, *,
                 note: str | None = None) -> Path:
    """Write the Markdown report of ``results`` (a results CSV) and return its path.

    ``out`` defaults to ``README.md`` next to the CSV; ``note`` (Markdown) is printed after
    the conclusion. ``run.json`` and the figures
    (``timings.png``, ``convergence.png``) and ``convergence.csv`` next to the CSV are used
    when present.
    """
    from .harness import RUN_JSON, read_raw

    results = Path(results)
    if not results.is_file():
        raise FileNotFoundError(f"`results` file {str(results)!r} does not exist.")
    out = results.parent / "README.md" if out is None else Path(out)
    header_path = results.parent / RUN_JSON
    header = json.loads(header_path.read_text(encoding="utf-8")) if header_path.exists() else {}
    figures = []
    for name in ("timings.png", "convergence.png"):
        if (results.parent / name).exists():
            rel = Path(_relpath(results.parent / name, out.parent))
            figures.append(rel.as_posix())
    raw_path = results.parent / "raw.csv"
    raw = read_raw(raw_path) if raw_path.exists() and raw_path != results else None
    conv_path = results.parent / "convergence.csv"
    conv = None
    if conv_path.exists():
        import pandas as pd

        conv = pd.read_csv(conv_path, keep_default_na=False, na_values={"cost": [""]})
        conv["cost"] = pd.to_numeric(conv["cost"], errors="coerce")
        conv["time"] = pd.to_numeric(conv["time"], errors="coerce")
    text = render_report(read_raw(results), header, figures=figures,
                         results_name=_relpath(results, out.parent),
                         command=f"lsqmf report {results}", convergence=conv, raw=raw,
                         note=note)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out


def _relpath(path: Path, start: Path) -> str:
    import os

    return os.path.relpath(path.resolve(), start.resolve())
