"""The seed report: numbers computed from the data, verdicts both ways."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from lsqmf.bench.report import lsmr_exact_ratios, lsmr_verdict, panel_summary, render_report


def _results(lsmr_factor: float, repeats: int = 1) -> pd.DataFrame:
    """Synthetic raw rows: exact takes n/100 s, lsmr lsmr_factor times that; lm 2x exact."""
    rows = []
    for rep, kf, sp, n in itertools.product(range(repeats), (0.4, 0.8), (0.25, 0.75), (5, 40)):
        for method, tr, loss in [*itertools.product(("trf", "dogbox"), ("exact", "lsmr"),
                                                    ("linear", "huber")),
                                 ("lm", "none", "linear")]:
            base = n / 100 * (1 + rep)
            dur = base * (lsmr_factor if tr == "lsmr" else 2.0 if method == "lm" else 1.0)
            if method == "dogbox":
                dur *= 1.5
            rows.append({"sparsity": sp, "k_factor": kf, "n": n, "method": method,
                         "tr_solver": tr, "loss": loss, "dur": dur, "cost": 1.0 + rep,
                         "success": True, "error": "", "repeat": rep})
    return pd.DataFrame(rows)


def test_ratios_and_fastest_per_panel() -> None:
    res = _results(0.1)
    pairs = lsmr_exact_ratios(res)
    assert len(pairs) == 4 * 2 * 2 * 2  # panels x n x method x loss
    np.testing.assert_allclose(pairs["time_ratio"], 0.1)
    summary = panel_summary(res)
    assert len(summary) == 4
    assert summary["fastest"].str.startswith("trf-lsmr").all()
    np.testing.assert_allclose(summary["x_slowest"], 20.0)  # lm: 2x exact vs 0.1x exact
    np.testing.assert_allclose(summary["x_runner_up_at_n_max"], 1.0)  # the two trf-lsmr losses


@pytest.mark.parametrize(
    ("factor", "verdict", "ratio"),
    [(0.1, "**Confirmed at every size of this run (n = 5 to 40), in every panel.**",
      "0.1 (LSMR 10× faster)"),
     (0.8, "**Partly confirmed: at n = 40 LSMR is faster, but only 1.25× (median).**", "0.8"),
     (3.0, "**Not confirmed in this run: at the largest size (n = 40) exact is faster, by a "
      "median 3×.**", "3 (exact 3.0× faster)")],
    ids=["confirmed", "partly", "refuted"],
)
def test_verdict_follows_the_data(factor: float, verdict: str, ratio: str) -> None:
    text = render_report(_results(factor), {"command": "lsqmf bench --preset seed"})
    assert verdict in text
    assert f"At n = 40 the median lsmr/exact time ratio is {ratio}" in text
    assert "best of **unknown** repeat(s)" in text  # no `repeats` column in these rows
    assert "timed with `lsqmf bench --preset seed`." in text


def test_costs_compared_within_a_repeat() -> None:
    raw = _results(0.1, repeats=2)
    best = raw[raw["repeat"] == 0].drop(columns="repeat").assign(repeats=2)
    # pretend lsmr's best repeat was repeat 1 (cost 2) and exact's repeat 0 (cost 1)
    best.loc[best["tr_solver"] == "lsmr", "cost"] = 2.0
    naive = render_report(best, {})
    assert "median cost(lsmr)/cost(exact) = 2.000" in naive
    matched = render_report(best, {}, raw=raw)
    assert "median cost(lsmr)/cost(exact) = 1.000" in matched
    assert "best of **2**" in matched


def test_report_needs_seed_columns() -> None:
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['k_factor'"):
        render_report(pd.DataFrame({"n": [1], "dur": [1.0]}), {})


def test_verdict_by_size_when_exact_wins_small_problems() -> None:
    res = _results(1.0)
    lsmr = res["tr_solver"] == "lsmr"
    res.loc[lsmr & (res["n"] == 5), "dur"] *= 3.0   # exact 3x faster at n = 5
    res.loc[lsmr & (res["n"] == 40), "dur"] *= 0.1  # LSMR 10x faster at n = 40
    text = render_report(res, {})
    verdict = ("**Confirmed from n = 40 on (in every panel); below that the dense solvers are "
               "faster.**")
    assert verdict in text
    assert "n = 5: 3 (exact 3.0× faster), n = 40: 0.1 (LSMR 10× faster)" in text
    assert "over all sizes" not in text  # no all-sizes median next to the per-size verdict
    assert lsmr_verdict(res) == verdict.replace("**", "")


def test_report_note_follows_the_conclusion() -> None:
    text = render_report(_results(0.1), {}, note="This run stops at n = 40.")
    assert text.index("## Conclusion") < text.index("This run stops at n = 40.") < text.index(
        "## Fastest configuration per panel")
