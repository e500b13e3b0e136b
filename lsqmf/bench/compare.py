"""Reproduce a committed timing study: compare a new run with the committed one, per panel.

``lsqmf bench --reproduce reports/seed --out NEW`` re-times the committed study (its grid,
``--where`` subset and repeats, unless given) into a new directory and then calls
:func:`compare_runs`. For each (k_factor, sparsity) panel it puts side by side:

- the LSMR/exact time ratio at the largest ``n`` both runs timed (median over method x loss
  of the matched pairs, as :func:`lsqmf.bench.report.lsmr_exact_ratios` pairs them; best of
  the repeats), with the committed *run-to-run spread*: the range of the same ratio computed
  from each committed repeat alone (``raw.csv``);
- the crossover size: the smallest ``n`` from which LSMR is faster at every larger ``n``.

Verdict per panel:

``holds``
    same side (LSMR faster at the largest ``n`` in both, or exact in both), same crossover, and
    the new ratio inside the committed spread (or no spread is known: one repeat).
``differs by more than the committed run-to-run spread``
    same side and crossover, but the new ratio outside the committed spread.
``does not hold``
    the side at the largest ``n`` or the crossover differs.

Only the cells both runs timed are compared, so a subset (``--where``) compares like with like.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["VERDICTS", "compare_runs", "panel_ratios", "render_comparison"]

HOLDS = "holds"
DIFFERS = "differs by more than the committed run-to-run spread"
FAILS = "does not hold"

#: The verdicts of :func:`compare_runs`, best first.
VERDICTS = (HOLDS, DIFFERS, FAILS)

_PANELS = ("k_factor", "sparsity")


def _read(path: Path, name: str) -> pd.DataFrame | None:
    from .harness import read_raw

    file = path / name
    return read_raw(file) if file.is_file() else None


def _at(pairs: pd.DataFrame, n: int) -> float:
    sel = pairs[pairs["n"] == n]["time_ratio"]
    return float(sel.median()) if len(sel) else math.nan


def panel_ratios(results: pd.DataFrame, raw: pd.DataFrame | None = None,
                 n_values: list[int] | None = None) -> pd.DataFrame:
    """Per panel: the LSMR/exact ratio at the largest ``n``, its crossover and spread.

    Parameters
    ----------
    results : pandas.DataFrame
        Best-of rows (``results.csv``) of a seed-style grid.
    raw : pandas.DataFrame, optional
        The rows of every repeat (``raw.csv``): gives ``spread_lo``/``spread_hi``, the range
        of the ratio over the repeats (NaN with fewer than 2 repeats).
    n_values : list of int, optional
        The sizes to use (default: all of ``results``).

    Returns
    -------
    pandas.DataFrame
        ``k_factor, sparsity, n_max, ratio, crossover, spread_lo, spread_hi, repeats``.
    """
    import pandas as pd

    from .report import _crossover, lsmr_exact_ratios

    if n_values is not None:
        results = results[results["n"].isin(n_values)]
        raw = raw[raw["n"].isin(n_values)] if raw is not None else None
    pairs = lsmr_exact_ratios(results)
    rows = []
    for keys, g in pairs.groupby(list(_PANELS), sort=True):
        by_n = g.groupby("n")["time_ratio"].median().sort_index()
        n_max = int(by_n.index[-1])
        row: dict[str, Any] = {"k_factor": keys[0], "sparsity": keys[1], "n_max": n_max,
                               "ratio": float(by_n.iloc[-1]), "crossover": _crossover(by_n),
                               "spread_lo": math.nan, "spread_hi": math.nan, "repeats": 1}
        if raw is not None and "repeat" in raw:
            sel = raw
            for col, val in zip(_PANELS, keys, strict=True):
                sel = sel[sel[col] == val]
            per = [_at(lsmr_exact_ratios(r), n_max) for _, r in sel.groupby("repeat")]
            per = [v for v in per if math.isfinite(v)]
            row["repeats"] = len(per)
            if len(per) >= 2:
                row["spread_lo"], row["spread_hi"] = min(per), max(per)
        rows.append(row)
    return pd.DataFrame(rows)


def _side(ratio: float) -> str:
    return "LSMR" if ratio < 1 else "exact"


def compare_runs(committed: str | Path, new: str | Path) -> pd.DataFrame:
    """Compare the run in ``new`` with the committed run in ``committed``, per panel.

    Both are benchmark output directories (``results.csv``, and ``raw.csv`` for the
    committed spread). Only the cells both timed are compared.

    Returns
    -------
    pandas.DataFrame
        Per panel: ``k_factor, sparsity, n_max``, ``committed_ratio``, ``spread_lo``,
        ``spread_hi``, ``new_ratio``, ``committed_crossover``, ``new_crossover``, ``verdict``
        (one of :data:`VERDICTS`) and ``why``.

    Raises
    ------
    ValueError
        If a directory has no ``results.csv`` or the runs share no LSMR/exact pair.
    """
    import pandas as pd

    committed, new = Path(committed), Path(new)
    old_res, new_res = _read(committed, "results.csv"), _read(new, "results.csv")
    for path, frame in ((committed, old_res), (new, new_res)):
        if frame is None:
            raise ValueError(f"{str(path)!r} has no results.csv to compare.")
    assert old_res is not None and new_res is not None
    common = set(old_res["cell_id"]) & set(new_res["cell_id"])
    old_res = old_res[old_res["cell_id"].isin(common)]
    new_res = new_res[new_res["cell_id"].isin(common)]
    old_raw = _read(committed, "raw.csv")
    if old_raw is not None:
        old_raw = old_raw[old_raw["cell_id"].isin(common)]
    ns = sorted(int(n) for n in set(old_res["n"]) & set(new_res["n"]))
    old = panel_ratios(old_res, old_raw, ns)
    fresh = panel_ratios(new_res, None, ns)
    if old.empty or fresh.empty:
        raise ValueError(f"{str(committed)!r} and {str(new)!r} share no LSMR/exact pair of "
                         "cells to compare.")
    merged = old.merge(fresh[[*_PANELS, "ratio", "crossover"]], on=list(_PANELS),
                       suffixes=("", "_new"))
    rows = []
    for r in merged.itertuples(index=False):
        c_old = None if pd.isna(r.crossover) else int(r.crossover)
        c_new = None if pd.isna(r.crossover_new) else int(r.crossover_new)
        spread = math.isfinite(r.spread_lo)
        if _side(r.ratio) != _side(r.ratio_new):
            verdict, why = FAILS, (f"at n = {r.n_max} {_side(r.ratio)} was faster, now "
                                   f"{_side(r.ratio_new)}")
        elif c_old != c_new:
            verdict, why = FAILS, f"crossover n = {c_old} then, {c_new} now"
        elif spread and not r.spread_lo <= r.ratio_new <= r.spread_hi:
            verdict, why = DIFFERS, (f"ratio {r.ratio_new:.3g} outside the committed "
                                     f"{r.spread_lo:.3g}-{r.spread_hi:.3g}")
        else:
            verdict = HOLDS
            why = "within the committed spread" if spread else "same side and crossover " \
                "(no committed spread: one repeat)"
        rows.append({"k_factor": r.k_factor, "sparsity": r.sparsity, "n_max": r.n_max,
                     "committed_ratio": r.ratio, "spread_lo": r.spread_lo,
                     "spread_hi": r.spread_hi, "new_ratio": r.ratio_new,
                     "committed_crossover": c_old, "new_crossover": c_new,
                     "verdict": verdict, "why": why})
    return pd.DataFrame(rows)


def _x(ratio: float) -> str:
    """``0.008 (LSMR 125x)`` style."""
    if not math.isfinite(ratio):
        return "–"
    return f"{ratio:.3g} (LSMR {1 / ratio:.3g}×)" if ratio < 1 else \
        f"{ratio:.3g} (exact {ratio:.3g}×)"


def render_comparison(table: pd.DataFrame, committed: str | Path, new: str | Path) -> str:
    """The comparison as Markdown: a table per panel and a one-line overall verdict."""
    header = ["panel", "n", "committed LSMR/exact", "committed spread", "new LSMR/exact",
              "crossover committed", "crossover new", "verdict"]
    lines = [f"# Reproduction of `{committed}` in `{new}`", "",
             "LSMR/exact: median time ratio of the matched pairs (method x loss) at the "
             "largest n both runs timed; below 1 LSMR is faster. Spread: the ratio from each "
             "committed repeat alone. Crossover: the smallest n from which LSMR is faster at "
             "every larger n.", "",
             "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in table.itertuples(index=False):
        spread = (f"{r.spread_lo:.3g}–{r.spread_hi:.3g}" if math.isfinite(r.spread_lo)
                  else "– (one repeat)")
        cells = [f"k = {r.k_factor:g}·n, {r.sparsity:.0%} missing", str(r.n_max),
                 _x(r.committed_ratio), spread, _x(r.new_ratio),
                 str(r.committed_crossover), str(r.new_crossover), f"{r.verdict}: {r.why}"]
        lines.append("| " + " | ".join(cells) + " |")
    counts = table["verdict"].value_counts()
    lines += ["", "Overall: " + "; ".join(f"{v} in {int(counts.get(v, 0))} of {len(table)} "
                                          "panels" for v in VERDICTS if counts.get(v, 0))
              + "."]
    return "\n".join(lines) + "\n"


def committed_run(path: str | Path) -> dict[str, Any]:
    """The ``run.json`` of a committed run (its grid, where and repeats).

    Raises
    ------
    ValueError
        If ``path`` has no readable ``run.json``.
    """
    file = Path(path) / "run.json"
    try:
        return dict(json.loads(file.read_text(encoding="utf-8")))
    except (OSError, ValueError) as err:
        raise ValueError(f"--reproduce {str(path)!r}: no readable run.json ({err}).") from None
