"""Benchmark figures on tiny inputs: files exist and are non-empty PNG/SVG."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

from lsqmf.bench.plots import (
    _label_order,
    _line_styles,
    _ratio_note,
    config_label,
    convergence_study,
    plot_convergence,
    plot_timings,
)


def _tiny_results() -> pd.DataFrame:
    rows = []
    rng = np.random.default_rng(0)
    for kf in (0.4, 0.8):
        for sp in (0.25, 0.75):
            for n in (5, 10):
                for method, tr in (("trf", "exact"), ("trf", "lsmr"), ("lm", "none")):
                    for loss in (("linear", "huber") if method != "lm" else ("linear",)):
                        rows.append({"sparsity": sp, "k_factor": kf, "n": n, "solver": "solve",
                                     "method": method, "tr_solver": tr, "loss": loss,
                                     "dur": float(rng.random() * n / 100), "error": ""})
    frame = pd.DataFrame(rows)
    frame.loc[0, "dur"] = np.nan  # a failed cell is skipped
    frame.loc[0, "error"] = "LinAlgError: x"
    return frame


def _check(paths: list[Path], stem: str, out: Path) -> None:
    assert paths == [out / f"{stem}.png", out / f"{stem}.svg"]
    png, svg = paths
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    assert svg.stat().st_size > 1000 and b"<svg" in svg.read_bytes()[:2000]


def test_plot_timings_from_a_frame(tmp_path: Path) -> None:
    _check(plot_timings(_tiny_results(), tmp_path), "timings", tmp_path)


def test_plot_timings_from_a_csv_with_style(tmp_path: Path) -> None:
    csv = tmp_path / "results.csv"
    _tiny_results().to_csv(csv, index=False)
    _check(plot_timings(csv, tmp_path / "figs", style="loss", stem="t"), "t", tmp_path / "figs")


def test_plot_timings_facet(tmp_path: Path) -> None:
    _check(plot_timings(_tiny_results(), tmp_path, facet="loss", stem="f"), "f", tmp_path)


def test_every_line_looks_different() -> None:
    frame = _tiny_results()
    frame.loc[len(frame)] = {**frame.iloc[1].to_dict(), "method": "dogbox"}
    frame.loc[len(frame)] = {**frame.iloc[1].to_dict(), "method": "dogbox", "tr_solver": "lsmr"}
    frame["configuration"] = config_label(frame)
    labels = _label_order(frame)
    assert labels == ["trf-lsmr", "dogbox-lsmr", "trf-exact", "dogbox-exact", "lm-none"]
    styles = _line_styles(frame, labels)
    looks = {(s["color"], s["linestyle"], s["marker"]) for s in styles.values()}
    assert len(looks) == len(labels)
    assert len({s["color"] for s in styles.values()}) == len(labels)
    assert styles["trf-lsmr"]["linestyle"] == "-" and styles["dogbox-lsmr"]["linestyle"] == "--"


def test_panel_note_matches_the_report() -> None:
    frame = _tiny_results().dropna(subset=["dur"])
    frame.loc[frame["tr_solver"] == "lsmr", "dur"] = frame["n"] / 1000
    frame.loc[frame["tr_solver"] == "exact", "dur"] = frame["n"] ** 3 / 1000
    sel = frame[(frame["k_factor"] == 0.4) & (frame["sparsity"] == 0.25)]
    # ratio lsmr/exact = 1/n^2: 0.04 at n = 5, 0.01 at n = 10
    assert _ratio_note(sel, "n") == "n = 10: LSMR 100× faster than exact\nLSMR faster at every n"
    frame.loc[(frame["tr_solver"] == "lsmr") & (frame["n"] == 5), "dur"] = 1.0
    sel = frame[(frame["k_factor"] == 0.4) & (frame["sparsity"] == 0.25)]
    assert _ratio_note(sel, "n").endswith("LSMR faster from n = 10; exact below")
    assert _ratio_note(sel[sel["tr_solver"] != "exact"], "n") is None


def test_plot_timings_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no column 'dur'"):
        plot_timings(pd.DataFrame({"n": [1]}), tmp_path)
    with pytest.raises(ValueError, match="`style` column 'colour'"):
        plot_timings(_tiny_results(), tmp_path, style="colour")
    with pytest.raises(ValueError, match="`facet` column 'colour'"):
        plot_timings(_tiny_results(), tmp_path, facet="colour")
    with pytest.raises(ValueError, match="must differ"):
        plot_timings(_tiny_results(), tmp_path, style="loss", facet="loss")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        plot_timings(tmp_path / "nope.csv", tmp_path)


def test_config_label_uses_varying_columns() -> None:
    labels = config_label(_tiny_results())
    assert set(labels) == {"trf-exact", "trf-lsmr", "lm-none"}


def test_convergence_study_and_plot(tmp_path: Path) -> None:
    history = convergence_study(12, 10, 2, 0.5, max_time=None)
    assert set(history["configuration"]) == {"trf-exact", "trf-lsmr", "dogbox-exact",
                                             "dogbox-lsmr", "lm-none"}
    assert (history["error"] == "").all()
    first = history.groupby("configuration")["cost"].first()
    last = history.groupby("configuration")["cost"].min()
    assert (last <= first).all()
    _check(plot_convergence(history, tmp_path), "convergence", tmp_path)


def test_convergence_failure_is_a_row() -> None:
    history = convergence_study(6, 5, 2, 0.5, configs=[{"method": "lm", "loss": "huber"}])
    assert len(history) == 1
    assert history["error"].iloc[0].startswith("ValueError: method='lm' supports only")


def test_convergence_legend_matches_the_lines_and_explains_a_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Legend handles carry the lines' own (hollow or filled) markers; a run that did not
    converge is starred, with the footnote that says what the star means."""
    from matplotlib.figure import Figure

    history = convergence_study(12, 10, 2, 0.5, max_time=None)
    history.loc[history["configuration"] == "lm-none", "success"] = False
    seen: dict[str, object] = {}
    real_save = Figure.savefig

    def spy(fig: Figure, *args: object, **kwargs: object) -> None:
        seen["fig"] = fig
        real_save(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    plot_convergence(history, tmp_path)
    fig = seen["fig"]
    legend = fig.legends[0]  # type: ignore[attr-defined]
    names = [t.get_text() for t in legend.get_texts()]
    assert "lm (MINPACK) *" in names and not any("stopped early" in n for n in names)
    ax = fig.axes[0]  # type: ignore[attr-defined]
    for line, handle in zip(ax.get_lines(), legend.legend_handles, strict=True):
        assert line.get_markerfacecolor() == handle.get_markerfacecolor()
    assert "* not converged" in fig.get_supxlabel()  # type: ignore[attr-defined]


def test_rmse_vs_time_with_a_style_column(tmp_path: Path) -> None:
    from lsqmf.bench.plots_cv import plot_rmse_vs_time

    rows = [{"solver": s, "rank": f"rank {r}", "time": t, "rmse": 1.0 / (1 + t + r / 100)}
            for s in ("als", "lsq") for r in (20, 50) for t in (0.1, 1.0, 10.0)]
    out = plot_rmse_vs_time(pd.DataFrame(rows), tmp_path / "f.png", style="rank",
                            target=0.9, title="t")
    assert out.stat().st_size > 0
    with pytest.raises(ValueError, match="`style` must be a column of `curves`"):
        plot_rmse_vs_time(pd.DataFrame(rows), tmp_path / "g.png", style="nope")
