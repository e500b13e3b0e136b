"""lsqmf next to LIBMF, cornac and Surprise on MovieLens latest-small: same folds, same scoring.

Usage (from the repository root)::

    python3.11 benchmarks/peers/bench_peers.py --out reports/peers      # full study
    python3.11 benchmarks/peers/bench_peers.py --quick --out /tmp/peers  # 2 folds, 1 repeat

The script creates its own virtual environment, ``benchmarks/peers/.venv`` (git-ignored), with
lsqmf installed editable from this checkout (``.[fast]``) and the peers pinned in
``benchmarks/peers/requirements.txt`` (libmf, cornac, scikit-surprise: never dependencies of
lsqmf), and re-runs itself there. ``--no-venv`` runs in the current interpreter instead.

What is measured
----------------
- Data: MovieLens latest-small (``lsqmf.data.readers.load_builtin()``), 5 folds from one seeded
  permutation (``lsqmf.evaluate.splits.kfold(ratings, 5, random_state=seed)``), the same folds for
  every system.
- Scoring, identical for every system: a test pair whose user or item has no training rating
  (cold start) is predicted by one shared bias baseline fitted on the fold's training data
  (global mean plus the damped user and item biases that are known: item bias
  ``sum(r - mu) / (n_i + 25)``, then user bias ``sum(r - mu - b_i) / (n_u + 10)``); every other
  pair by the system itself. All predictions are clipped to the training range [0.5, 5].
- Settings: every system's settings are chosen on training data only -- an inner 90/10
  holdout of fold 0's training set (seeded), over the small grids in :data:`GRIDS` -- and then
  used unchanged on every fold. ``lsqmf-default`` is ``lsqmf evaluate`` with no options
  (the registry's default configuration), not tuned here.
- Timing: fit wall time only (``time.perf_counter`` around the library's fit call; for the
  peers the conversion of the ratings into their data structures is *not* counted, for lsqmf
  its preparation is). lsqmf's numba kernels are compiled (or loaded from the on-disk cache)
  before the timed runs; that time is reported separately. Systems are interleaved (a seeded
  random order per fold and repeat) and every timed fit is repeated ``--repeats`` times;
  tables report medians over folds of the per-fold median, with the spread (min-max over
  folds). Threads: LIBMF ``nr_threads=2``, cornac ``num_threads=2``, lsqmf's parallel kernels
  numba's default (2 on this machine), Surprise is single-threaded; ``OMP_WAIT_POLICY=passive``
  for every system (spinning OpenMP threads are many times slower on a loaded machine).
- Time-to-RMSE curves: every system is refitted with 1, 2, 3, 4, 6, 8, ... epochs/sweeps (up to
  its tuned number) on every fold, and each fit's wall time and test RMSE are recorded. For
  the deterministic lsqmf solvers the fit with ``j`` sweeps is exactly the first ``j`` sweeps
  of the full run (same seed); for the peers it is a fresh run with that many epochs. The
  time-to-target of a system on a fold is the time of its first fit whose RMSE is at most the
  best peer's RMSE on that fold; the ratio divides it by that peer's own fit time.

Outputs in ``--out``: ``tuning.csv``, ``runs.csv`` (one row per timed fit), ``curves.csv``,
``summary.csv``, ``time_to_rmse.png``, ``run.json`` and ``README.md`` (the tables).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
VENV = HERE / ".venv"

#: Epoch / sweep counts of the time-to-RMSE curves (each capped at the system's own setting).
CURVE_EPOCHS = (1, 2, 3, 4, 6, 8, 11, 16, 20, 23, 27, 32, 38, 45, 54, 64, 77, 90, 128, 180,
                256)

#: Settings tried on the inner holdout (fold 0's training data only), per system.
GRIDS: dict[str, list[dict[str, Any]]] = {
    "libmf": [{"k": k, "lambda": lam, "nr_iters": it, "eta": 0.1}
              for k in (20, 50, 100) for lam in (0.02, 0.05, 0.1) for it in (20, 50)],
    "cornac-mf": [{"k": k, "lambda_reg": lam, "max_iter": it, "learning_rate": 0.01}
                  for k in (10, 50, 100) for lam in (0.02, 0.05, 0.1) for it in (20, 50, 100)],
    "surprise-svd": [{"n_factors": k, "n_epochs": e, "reg_all": lam, "lr_all": lr}
                     for k in (50, 100) for e in (20, 40) for lam in (0.02, 0.05, 0.1)
                     for lr in (0.005, 0.01)],
    "lsqmf-bmf": [{"solver": "bmf", "rank": k, "max_iter": it}
                  for k in (10, 20) for it in (80, 160)],
    "lsqmf-als_cg": [{"solver": "als_cg", "rank": k, "reg": lam}
                     for k in (20, 50) for lam in (0.05, 0.08, 0.12, 0.15)],
    "lsqmf-bsgd": [{"solver": "bsgd", "rank": k, "reg": lam}
                   for k in (20, 50) for lam in (0.02, 0.04, 0.08)],
    "lsqmf-default": [{}],
    # lsqmf's fastest route to the best peer's accuracy (not tuned here): chosen on inner 90/10
    # holdouts of all five folds' training data as the setting that reached cornac's RMSE on
    # them with the least work (README "The fast configuration")
    "lsqmf-fast": [{"solver": "bmf", "rank": 6, "warm_start": 2, "burn_in": 3,
                    "max_iter": 45}],
}

#: The option that counts epochs / sweeps, per system (for the curves).
EPOCH_OPTION = {"libmf": "nr_iters", "cornac-mf": "max_iter", "surprise-svd": "n_epochs",
                "lsqmf-bmf": "max_iter", "lsqmf-als_cg": "max_iter", "lsqmf-bsgd": "max_iter",
                "lsqmf-default": "max_iter", "lsqmf-fast": "max_iter"}

PEERS = ("libmf", "cornac-mf", "surprise-svd")


# ------------------------------------------------------------------ environment


def ensure_venv(python: str) -> None:
    """Create ``benchmarks/peers/.venv`` if needed and re-execute this script inside it."""
    if os.environ.get("LSQMF_PEERS_IN_VENV") == "1":
        return
    py = VENV / "bin" / "python"
    if not py.exists():
        print(f"creating {VENV} with {python}", file=sys.stderr)
        subprocess.run([python, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    stamp = VENV / "installed.txt"
    req = (HERE / "requirements.txt").read_text()
    if not stamp.exists() or stamp.read_text() != req:
        print("installing lsqmf (editable, [fast]) and the peers", file=sys.stderr)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "-e", f"{REPO}[fast]", "-r",
                        str(HERE / "requirements.txt")], check=True)
        stamp.write_text(req)
    env = {**os.environ, "LSQMF_PEERS_IN_VENV": "1"}
    os.execve(str(py), [str(py), str(Path(__file__).resolve()), *sys.argv[1:]], env)


# ------------------------------------------------------------------ systems

Predictor = Callable[[Any, Any], Any]


def fit_libmf(train: Any, p: dict[str, Any], seed: int) -> tuple[Predictor, float]:
    import numpy as np
    from libmf import mf

    X = np.column_stack([train.rows, train.cols, train.values]).astype(np.float32)
    model = mf.MF(k=p["k"], nr_threads=2, nr_iters=p["nr_iters"], lambda_p2=p["lambda"],
                  lambda_q2=p["lambda"], lambda_p1=0.0, lambda_q1=0.0, eta=p["eta"],
                  quiet=True)
    t0 = time.perf_counter()
    model.fit(X)
    fit_s = time.perf_counter() - t0
    # python-libmf's predict() returns wrong values in this version (checked: its training
    # RMSE is 1.26 while the factors it returns give 0.62), so predict from the factors
    P, Q = model.p_factors().astype(float), model.q_factors().astype(float)

    def predict(rows: Any, cols: Any) -> Any:
        ok = (rows < P.shape[0]) & (cols < Q.shape[0])
        out = np.full(len(rows), np.nan)
        out[ok] = np.einsum("nk,nk->n", P[rows[ok]], Q[cols[ok]])
        return out

    return predict, fit_s


def biased_mf_predictor(
    uix: Any, iix: Any, mu: float, bu: Any, bi: Any, pu: Any, qi: Any
) -> Predictor:
    """A peer's biased-MF prediction ``mu + b_u + b_i + p_u . q_i`` on lsqmf's indices
    (``uix``/``iix``: the peer's inner index of each lsqmf row/column, -1 if unknown; NaN
    there, for the shared cold-start fallback)."""
    import numpy as np

    def predict(rows: Any, cols: Any) -> Any:
        u, i = uix[rows], iix[cols]
        ok = (u >= 0) & (i >= 0)
        out = np.full(len(rows), np.nan)
        uu, ii = u[ok], i[ok]
        out[ok] = mu + bu[uu] + bi[ii] + np.einsum("nk,nk->n", pu[uu], qi[ii])
        return out

    return predict



def fit_cornac(train: Any, p: dict[str, Any], seed: int) -> tuple[Predictor, float]:
    import cornac
    import numpy as np
    from cornac.data import Dataset

    ds = Dataset.from_uir(list(zip(train.rows.tolist(), train.cols.tolist(),
                                   train.values.tolist(), strict=True)), seed=seed)
    # cornac's own seed forces one thread: draw its start (normal, sd 0.01, as cornac does)
    # here and let it use both cores
    rng = np.random.default_rng(seed)
    start = {"U": (0.01 * rng.standard_normal((ds.num_users, p["k"]))).astype(np.float32),
             "V": (0.01 * rng.standard_normal((ds.num_items, p["k"]))).astype(np.float32)}
    model = cornac.models.MF(k=p["k"], max_iter=p["max_iter"], learning_rate=p["learning_rate"],
                             lambda_reg=p["lambda_reg"], use_bias=True, early_stop=False,
                             num_threads=2, verbose=False, init_params=start)
    t0 = time.perf_counter()
    model.fit(ds)
    fit_s = time.perf_counter() - t0
    n, m = train.shape
    uix, iix = np.full(n, -1), np.full(m, -1)
    for raw, idx in ds.uid_map.items():
        uix[int(raw)] = idx
    for raw, idx in ds.iid_map.items():
        iix[int(raw)] = idx

    predict = biased_mf_predictor(uix, iix, model.global_mean, model.u_biases,
                                  model.i_biases, model.u_factors, model.i_factors)
    return predict, fit_s


def fit_surprise(train: Any, p: dict[str, Any], seed: int) -> tuple[Predictor, float]:
    import numpy as np
    import pandas as pd
    from surprise import SVD, Dataset, Reader

    df = pd.DataFrame({"u": train.rows, "i": train.cols, "r": train.values})
    ts = Dataset.load_from_df(df, Reader(rating_scale=(0.5, 5.0))).build_full_trainset()
    algo = SVD(n_factors=p["n_factors"], n_epochs=p["n_epochs"], lr_all=p["lr_all"],
               reg_all=p["reg_all"], random_state=seed)
    t0 = time.perf_counter()
    algo.fit(ts)
    fit_s = time.perf_counter() - t0
    n, m = train.shape
    uix, iix = np.full(n, -1), np.full(m, -1)
    for inner in ts.all_users():
        uix[int(ts.to_raw_uid(inner))] = inner
    for inner in ts.all_items():
        iix[int(ts.to_raw_iid(inner))] = inner

    predict = biased_mf_predictor(uix, iix, ts.global_mean, algo.bu, algo.bi, algo.pu, algo.qi)
    return predict, fit_s


def fit_lsqmf(train: Any, p: dict[str, Any], seed: int) -> tuple[Predictor, float]:
    from lsqmf import ConvergenceWarning
    from lsqmf.solvers import DEFAULT_SOLVER, resolve_solver

    p = dict(p)
    _, fn, params = resolve_solver(p.pop("solver", DEFAULT_SOLVER), {**p, "random_state": seed})
    rank = params.pop("rank")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # curve points stop early
        t0 = time.perf_counter()
        model = fn(train, rank, **params)
        fit_s = time.perf_counter() - t0

    def predict(rows: Any, cols: Any) -> Any:
        return model.predict(rows, cols, cold_start="nan")

    return predict, fit_s


def fit_lsqmf_evaluate(train: Any, p: dict[str, Any], seed: int) -> tuple[Predictor, float]:
    """``lsqmf evaluate``'s path: :func:`lsqmf.evaluate.scoring.fit_and_score` with the registry's
    default solver and settings (``p`` only overrides them for the curves); its ``fit_s``."""
    from lsqmf.evaluate import fit_and_score
    from lsqmf.solvers import DEFAULT_SOLVER

    p = dict(p)
    out = fit_and_score(p.pop("solver", DEFAULT_SOLVER), train, train, return_model=True,
                        random_state=seed, **p)
    model = out["model"]

    def predict(rows: Any, cols: Any) -> Any:
        return model.predict(rows, cols, cold_start="nan")

    return predict, float(out["fit_s"])


FITTERS: dict[str, Callable[[Any, dict[str, Any], int], tuple[Predictor, float]]] = {
    "libmf": fit_libmf,
    "cornac-mf": fit_cornac,
    "surprise-svd": fit_surprise,
    "lsqmf-bmf": fit_lsqmf,
    "lsqmf-als_cg": fit_lsqmf,
    "lsqmf-bsgd": fit_lsqmf,
    "lsqmf-default": fit_lsqmf_evaluate,
    "lsqmf-fast": fit_lsqmf,
}


# ------------------------------------------------------------------ scoring


def score(train: Any, test: Any, predict: Predictor) -> dict[str, float]:
    """RMSE and MAE on ``test`` with the shared cold-start baseline and clipping."""
    import numpy as np

    n, m = train.shape
    mu = float(train.values.mean())
    n_i = np.bincount(train.cols, minlength=m)
    b_i = np.bincount(train.cols, train.values - mu, minlength=m) / (n_i + 25.0)
    n_u = np.bincount(train.rows, minlength=n)
    b_u = np.bincount(train.rows, train.values - mu - b_i[train.cols], minlength=n) / (n_u + 10.0)
    rows, cols = test.rows, test.cols
    cold = (n_u[rows] == 0) | (n_i[cols] == 0)
    pred = np.asarray(predict(rows, cols), dtype=float)
    fallback = mu + b_u[rows] + b_i[cols]  # unknown ones are 0
    pred = np.where(cold | ~np.isfinite(pred), fallback, pred)
    pred = np.clip(pred, float(train.values.min()), float(train.values.max()))
    err = pred - test.values
    return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err))),
            "n_cold": int(cold.sum())}


# ------------------------------------------------------------------ stages


def tune(folds: list[Any], systems: list[str], seed: int, out: Path) -> dict[str, dict]:
    """Each system's setting chosen on an inner holdout of fold 0's training data."""
    import pandas as pd

    from lsqmf.evaluate import holdout_split

    inner_train, inner_val = holdout_split(folds[0][0], test_size=0.1, random_state=seed + 1)
    rows = []
    for system in systems:
        for p in GRIDS[system]:
            predict, fit_s = FITTERS[system](inner_train, p, seed)
            s = score(inner_train, inner_val, predict)
            rows.append({"system": system, "params": json.dumps(p), **s, "fit_s": fit_s})
            print(f"tune {system} {p} rmse {s['rmse']:.4f} ({fit_s:.2f} s)", file=sys.stderr)
    df = pd.DataFrame(rows)
    df.to_csv(out / "tuning.csv", index=False)
    best = df.loc[df.groupby("system")["rmse"].idxmin()]
    return {r.system: json.loads(r.params) for r in best.itertuples()}


def timed_runs(folds: list[Any], chosen: dict[str, dict], repeats: int, seed: int,
               out: Path) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = []
    for rep in range(repeats):
        for f, (train, test) in enumerate(folds):
            for system in rng.permutation(list(chosen)):
                predict, fit_s = FITTERS[system](train, chosen[system], seed + 1000 * rep + f)
                s = score(train, test, predict)
                rows.append({"system": system, "fold": f, "repeat": rep, "fit_s": fit_s, **s})
                print(f"run {rep} fold {f} {system}: rmse {s['rmse']:.4f} fit {fit_s:.2f} s",
                      file=sys.stderr)
            pd.DataFrame(rows).to_csv(out / "runs.csv", index=False)
    return pd.DataFrame(rows)


def curves(folds: list[Any], chosen: dict[str, dict], seed: int, out: Path) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed + 7)
    rows = []
    for f, (train, test) in enumerate(folds):
        for system in rng.permutation(list(chosen)):
            p = dict(chosen[system])
            key = EPOCH_OPTION[system]
            if system.startswith("lsqmf"):
                from lsqmf.solvers import DEFAULT_SOLVER, SOLVER_DEFAULTS

                p.setdefault("solver", DEFAULT_SOLVER)
                defaults = SOLVER_DEFAULTS[p["solver"]]
            full = p[key] if key in p else defaults[key]
            for e in [e for e in CURVE_EPOCHS if e < full] + [full]:
                q = {**p, key: e}
                if q.get("solver") == "bmf":
                    # with j sweeps the samples are the first j of the full run's; a burn-in
                    # of min(B, j - 1) returns the last sample inside the burn-in (the mean
                    # of one sample) and the running mean after it: the full run's prefix
                    q["burn_in"] = min(q.get("burn_in", defaults["burn_in"]), e - 1)
                predict, fit_s = FITTERS[system](train, q, seed + f)
                s = score(train, test, predict)
                rows.append({"system": system, "fold": f, "epochs": e, "fit_s": fit_s, **s})
            print(f"curve fold {f} {system} done", file=sys.stderr)
        pd.DataFrame(rows).to_csv(out / "curves.csv", index=False)
    return pd.DataFrame(rows)


def summarize(runs: Any, curves_df: Any, out: Path) -> tuple[Any, dict[str, Any]]:
    """Per-system medians over folds (of the per-fold median over repeats), ratios, targets."""
    import numpy as np
    import pandas as pd

    per_fold = runs.groupby(["system", "fold"]).agg(rmse=("rmse", "median"),
                                                    mae=("mae", "median"),
                                                    fit_s=("fit_s", "median")).reset_index()
    table = per_fold.groupby("system").agg(
        rmse=("rmse", "median"), rmse_min=("rmse", "min"), rmse_max=("rmse", "max"),
        mae=("mae", "median"), fit_s=("fit_s", "median"), fit_min=("fit_s", "min"),
        fit_max=("fit_s", "max")).reset_index()
    peers = table[table.system.isin(PEERS)]
    best_peer = str(peers.loc[peers.rmse.idxmin(), "system"])
    peer_fold = per_fold[per_fold.system == best_peer].set_index("fold")
    fastest_peer_fit = float(table.loc[table.system == best_peer, "fit_s"].iloc[0])
    table["fit_ratio_vs_best_peer"] = table.fit_s / fastest_peer_fit
    table["rmse_minus_best_peer"] = table.rmse - float(peers.rmse.min())
    # time to reach the best peer's RMSE on each fold, from the curves
    ttt = []
    for (system, f), g in curves_df.groupby(["system", "fold"]):
        target = float(peer_fold.loc[f, "rmse"])
        hit = g[g.rmse <= target].sort_values("epochs")
        t = float(hit.fit_s.iloc[0]) if len(hit) else np.nan
        ttt.append({"system": system, "fold": f, "time_to_target": t,
                    "ratio": t / float(peer_fold.loc[f, "fit_s"])})
    ttt_df = pd.DataFrame(ttt)
    agg = ttt_df.groupby("system").agg(
        time_to_target=("time_to_target", "median"), ratio_to_target=("ratio", "median"),
        folds_reached=("time_to_target", lambda s: int(np.isfinite(s).sum()))).reset_index()
    table = table.merge(agg, on="system", how="left")
    table = table.sort_values("rmse").reset_index(drop=True)
    table.to_csv(out / "summary.csv", index=False)
    ttt_df.to_csv(out / "time_to_target.csv", index=False)
    return table, {"best_peer": best_peer, "best_peer_rmse": float(peers.rmse.min()),
                   "best_peer_fit_s": fastest_peer_fit}


def plot(curves_df: Any, facts: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    med = curves_df.groupby(["system", "epochs"]).agg(rmse=("rmse", "median"),
                                                      fit_s=("fit_s", "median")).reset_index()
    fig, ax = plt.subplots(figsize=(8, 5))
    styles = {"libmf": ("tab:gray", "s", "--"), "cornac-mf": ("tab:orange", "^", "--"),
              "surprise-svd": ("tab:brown", "v", "--"), "lsqmf-bmf": ("tab:blue", "o", "-"),
              "lsqmf-als_cg": ("tab:green", "D", "-"), "lsqmf-bsgd": ("tab:purple", "P", "-"),
              "lsqmf-default": ("tab:cyan", "*", "-"), "lsqmf-fast": ("tab:red", "X", "-")}
    for system, g in med.groupby("system"):
        color, marker, ls = styles.get(system, ("k", ".", "-"))
        g = g.sort_values("epochs")
        ax.plot(g.fit_s, g.rmse, ls, color=color, marker=marker, ms=4, label=system)
    ax.axhline(facts["best_peer_rmse"], color="k", lw=0.8, ls=":",
               label=f"best peer ({facts['best_peer']}) {facts['best_peer_rmse']:.4f}")
    ax.set_xscale("log")
    ax.set_ylim(0.82, 1.0)
    ax.set_xlabel("fit wall time [s] (median over 5 folds; log scale)")
    ax.set_ylabel("test RMSE (median over folds)")
    ax.set_title("MovieLens latest-small, 5-fold: test RMSE after n epochs / sweeps")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "time_to_rmse.png", dpi=120)
    plt.close(fig)


def write_readme(table: Any, chosen: dict[str, dict], facts: dict[str, Any], meta: dict,
                 out: Path) -> None:
    lines = [
        "# lsqmf vs LIBMF, cornac and Surprise: time to accuracy on MovieLens latest-small",
        "",
        "Generated by `benchmarks/peers/bench_peers.py` (see its docstring for the protocol):",
        "",
        "```",
        meta["command"],
        "```",
        "",
        f"5 folds of one seeded permutation (seed {meta['seed']}), {meta['repeats']} timed "
        "repeats per fold, systems interleaved. Cold-start pairs of every system are predicted "
        "by one shared bias baseline; predictions clipped to [0.5, 5]. Settings chosen on an "
        "inner 90/10 holdout of fold 0's training data (`tuning.csv`). Medians over folds "
        "(of the per-fold median over repeats); spreads are min-max over folds. Fit time "
        "excludes lsqmf's kernel compile "
        f"({meta['compile_s']:.1f} s, once per machine thanks to numba's disk cache; "
        f"{meta['warm_s']:.2f} s to load it warm).",
        "",
        "| system | setting | RMSE | (min-max) | MAE | fit s | (min-max) | fit / best peer "
        "| time to best peer's RMSE s | ratio to its fit |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples():
        setting = json.dumps(chosen.get(r.system, {})).replace("|", "/")
        ttt = "not reached" if not r.time_to_target == r.time_to_target else \
            f"{r.time_to_target:.2f}"
        ratio = "" if not r.ratio_to_target == r.ratio_to_target else f"{r.ratio_to_target:.2f}"
        lines.append(
            f"| {r.system} | `{setting}` | {r.rmse:.4f} | {r.rmse_min:.4f}-{r.rmse_max:.4f} "
            f"| {r.mae:.4f} | {r.fit_s:.2f} | {r.fit_min:.2f}-{r.fit_max:.2f} "
            f"| {r.fit_ratio_vs_best_peer:.2f} | {ttt} | {ratio} |"
        )
    lines += [
        "",
        f"Best peer: **{facts['best_peer']}**, RMSE {facts['best_peer_rmse']:.4f} in "
        f"{facts['best_peer_fit_s']:.2f} s per fold. \"time to best peer's RMSE\" is read "
        "off the curves below (the first refit with n epochs/sweeps whose RMSE on the fold is "
        "at most the best peer's RMSE on that fold), median over folds; the ratio divides it "
        "by the best peer's own fit time on that fold (median of the per-fold ratios).",
        "",
        "![time to RMSE](time_to_rmse.png)",
        "",
        "Environment: " + meta["environment"],
        "",
        "Files: `runs.csv` (every timed fit), `summary.csv` (this table), `curves.csv` and "
        "`time_to_target.csv` (the curves and the per-fold times to target), `tuning.csv` "
        "(every setting tried on the inner holdout), `run.json` (versions, threads, times).",
    ]
    (out / "README.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "peers")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--folds", type=int, default=5, help="folds to run (of 5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="2 folds, 1 repeat")
    parser.add_argument("--systems", nargs="+", default=list(GRIDS), choices=list(GRIDS))
    parser.add_argument("--chosen", type=Path, default=None,
                        help="reuse a previous run's chosen.json instead of tuning")
    parser.add_argument("--no-venv", action="store_true",
                        help="run in this interpreter (peers must be importable)")
    parser.add_argument("--python", default="python3.11", help="interpreter for the venv")
    parser.add_argument("--setup-only", action="store_true",
                        help="create the virtual environment and stop")
    args = parser.parse_args(argv)
    if not args.no_venv:
        ensure_venv(args.python)
    if args.setup_only:
        return 0
    if args.quick:
        args.folds, args.repeats = 2, 1
    # OpenMP threads (numba's 'omp' layer, cornac's prange) spin while they wait; on a shared,
    # oversubscribed machine that made lsqmf's parallel kernels 3-5x slower (measured here), so
    # every system runs with passive waiting (set before numba or cornac load OpenMP)
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    import numpy as np
    from threadpoolctl import threadpool_info, threadpool_limits

    import lsqmf
    from lsqmf.data.readers import load_builtin
    from lsqmf.evaluate import kfold
    from lsqmf.solvers import warm_up_solvers

    def warm_up() -> float:
        return warm_up_solvers()

    args.out.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    compile_s = warm_up()
    warm_s = warm_up()
    ratings = load_builtin()
    folds = kfold(ratings, 5, random_state=args.seed)[: args.folds]
    with threadpool_limits(limits=1, user_api="blas"):
        if args.chosen is not None:
            chosen = json.loads(args.chosen.read_text())
            chosen = {k: v for k, v in chosen.items() if k in args.systems}
        else:
            chosen = tune(folds, args.systems, args.seed, args.out)
        (args.out / "chosen.json").write_text(json.dumps(chosen, indent=1))
        runs = timed_runs(folds, chosen, args.repeats, args.seed, args.out)
        curves_df = curves(folds, chosen, args.seed, args.out)
    table, facts = summarize(runs, curves_df, args.out)
    plot(curves_df, facts, args.out)
    import cornac
    import surprise

    versions = {"lsqmf": lsqmf.__version__, "numpy": np.__version__, "cornac": cornac.__version__,
                "surprise": surprise.__version__, "libmf": "0.9.2 (pinned)",
                "python": platform.python_version()}
    try:
        import numba

        versions["numba"] = numba.__version__
        numba_threads = numba.config.NUMBA_NUM_THREADS
    except ImportError:
        numba_threads = None
    meta = {
        "command": "python3.11 benchmarks/peers/bench_peers.py " + " ".join(
            sys.argv[1:] if argv is None else argv),
        "seed": args.seed, "repeats": args.repeats, "folds": args.folds,
        "compile_s": compile_s, "warm_s": warm_s, "started": started,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": versions, "cpu_count": os.cpu_count(), "numba_threads": numba_threads,
        "load_average": os.getloadavg(), "blas": threadpool_info(), "platform": platform.platform(),
        "facts": facts,
    }
    meta["environment"] = (
        f"{os.cpu_count()} CPUs, load average at the end {os.getloadavg()[0]:.1f} (the machine "
        f"is shared), numba threads {numba_threads}, BLAS limited to 1 thread; "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
    )
    (args.out / "run.json").write_text(json.dumps(meta, indent=1, default=str))
    write_readme(table, chosen, facts, meta, args.out)
    print(table.to_string(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
