"""Fit time, peak memory and held-out RMSE of lsqmf's solvers at 100k-20M synthetic ratings.

Usage (from the repository root, lsqmf's venv active)::

    python benchmarks/bench_scale.py --sizes 100000 1000000 --repeats 3 \
        --before /tmp/lsqmf_before --out reports/scale

What is measured
----------------
- Data: :func:`lsqmf.data.synthetic.make_low_rank` with power-law activity (``activity=0.8``:
  a few users and items hold many ratings, most hold few), truth rank 10, noise 0.1 (the
  signal's standard deviation is 1/sqrt(10)), values mapped onto [1, 5];
  ``n_rows = nnz / 50``, ``n_cols = nnz / 200``. 2% of the ratings are held out (seeded);
  test RMSE of the predictions clipped to the training range, a pair whose user or item has
  no training rating predicted by what the model knows (its biases, or the mean). Generated
  once per size into ``--data`` (``.npz``), so every cell reads the same data.
- One process per cell (system x size x repeat): the child loads the data, loads lsqmf's
  kernels (numba's disk cache; not timed), then times the fit alone (``time.perf_counter``).
  Peak memory is the child's peak resident set size (``ru_maxrss``), reported with its
  resident size just before the fit (data loaded, kernels ready); ``fit_mb`` is the
  difference, what the fit itself added.
- ``before:<solver>`` runs the same script with ``PYTHONPATH=<--before>`` (a git worktree of
  the commit the work started from), ``after:<solver>`` the working tree; the peers (LIBMF,
  cornac, Surprise, myfm) run in ``benchmarks/peers/.venv`` (see ``benchmarks/peers``), never
  as lsqmf dependencies. Cells are interleaved: a seeded random order per size and repeat.
  Fixed work per system (sweeps/epochs fixed, ``tol=0``), so before and after do the same
  arithmetic and the time ratio is the speed-up.
- ``OMP_WAIT_POLICY=passive`` for every system; numba's default threads (2 here), LIBMF and
  cornac 2 threads, Surprise and myfm one.

Outputs in ``--out``: ``runs.csv`` (one row per cell, appended as cells finish: ``--resume``
skips cells already there), ``summary.csv`` (median and min-max per system and size) and
``scaling.png`` (fit time and peak memory against the number of ratings).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PEERS_PY = HERE / "peers" / ".venv" / "bin" / "python"

#: The lsqmf settings (the same for before and after: fixed sweeps, so the same work).
LSQMF = {
    "als": {"rank": 10, "reg": 0.05, "biases": True, "count_scaled": True, "max_iter": 8,
            "tol": 0.0},
    "als_cg": {"rank": 10, "reg": 0.05, "biases": True, "count_scaled": True, "max_iter": 15,
               "tol": 0.0},
    "bmf": {"rank": 10, "biases": True, "max_iter": 20, "burn_in": 10},
    "bsgd": {"rank": 10, "reg": 0.05, "biases": True, "count_scaled": True, "max_iter": 15,
             "tol": 0.0},
    "sgd": {"rank": 10, "reg": 0.05, "biases": True, "count_scaled": True, "max_iter": 10,
            "tol": 0.0, "learning_rate": 0.01},
    # bsgd's blocked parallel epochs (LIBMF's schedule; after only: new in round 2)
    "bsgd_b8": {"solver": "bsgd", "rank": 10, "reg": 0.05, "biases": True,
                "count_scaled": True, "max_iter": 15, "tol": 0.0, "blocks": 8},
}
#: Systems that exist only in the working tree (no before: cell).
AFTER_ONLY = {"bsgd_b8"}
#: Held-out ratings of the cell (set by run_cell): with ``--curve``, lsqmf cells record the
#: validation RMSE after every iteration (unclipped) and its time, for time-to-RMSE.
_HELD: list[Any] = []
_CURVE: list[Any] = []
PEERS = {
    "libmf": {"k": 10, "nr_iters": 20, "lambda": 0.05, "eta": 0.1},
    "cornac": {"k": 10, "max_iter": 20, "learning_rate": 0.01, "lambda_reg": 0.01},
    "surprise": {"n_factors": 10, "n_epochs": 20, "lr_all": 0.005, "reg_all": 0.02},
    "myfm": {"rank": 10, "n_iter": 20, "n_kept_samples": 10},
}
#: Largest size each peer is run at (Surprise and myfm are single-threaded and slow).
PEER_MAX = {"libmf": 10**9, "cornac": 10**9, "surprise": 1_000_000, "myfm": 1_000_000}
FIELDS = ["system", "code", "size", "repeat", "nnz", "fit_s", "rmse", "peak_mb", "start_mb",
          "fit_mb", "train_rmse", "lsqmf_path", "curve"]


# ------------------------------------------------------------------ data
def data_path(data_dir: Path, size: int) -> Path:
    return data_dir / f"scale_{size}.npz"


def make_data(size: int, path: Path, seed: int = 0) -> None:
    """The ratings of one size, split 98/2 (seeded), saved as ``.npz``."""
    import numpy as np

    from lsqmf.data.synthetic import make_low_rank

    n, m = max(50, size // 50), max(20, size // 200)
    R, _ = make_low_rank(n, m, 10, density=size / (n * m), noise=0.1, activity=0.8,
                         random_state=seed, scale=(1.0, 5.0))
    test = np.random.default_rng(seed + 1).random(R.nnz) < 0.02
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, rows=R.rows, cols=R.cols, values=R.values, test=test,
             shape=np.array(R.shape))


def load(path: Path) -> tuple[Any, Any]:
    import numpy as np

    from lsqmf.data.ratings import Ratings

    z = np.load(path)
    test = z["test"]
    shape = tuple(int(s) for s in z["shape"])
    train = Ratings(z["rows"][~test], z["cols"][~test], z["values"][~test], shape)
    held = Ratings(z["rows"][test], z["cols"][test], z["values"][test], shape)
    return train, held


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# ------------------------------------------------------------------ one cell (child process)
def run_cell(system: str, path: Path) -> dict[str, Any]:
    import numpy as np

    train, held = load(path)
    if os.environ.get("LSQMF_BENCH_CURVE"):
        _HELD.append(held)
    lo, hi = float(train.values.min()), float(train.values.max())
    code, _, name = system.partition(":")
    fit = _fit_lsqmf if code in ("before", "after") else PEER_FITS[code]
    predict, fit_s, start_mb, train_pred = fit(name, train)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def rmse(r: Any, pred: Any) -> float:
        return float(np.sqrt(np.mean((np.clip(pred, lo, hi) - r.values) ** 2)))

    sub = np.random.default_rng(0).random(train.nnz) < min(1.0, 200_000 / train.nnz)
    out = {"fit_s": fit_s, "rmse": rmse(held, predict(held.rows, held.cols)),
           "peak_mb": peak_mb, "start_mb": start_mb, "fit_mb": peak_mb - start_mb,
           "nnz": train.nnz, "lsqmf_path": _lsqmf_path()}
    if _CURVE:
        out["curve"] = json.dumps(_CURVE)
    if train_pred:
        tr = train.subset(sub)
        out["train_rmse"] = rmse(tr, predict(tr.rows, tr.cols))
    return out


def _lsqmf_path() -> str:
    import lsqmf

    return str(Path(lsqmf.__file__).parent.parent)


def _biased(mu: float, b: Any, c: Any, P: Any, Q: Any) -> Any:
    """``predict(rows, cols)`` of ``mu + b[u] + c[i] + P[u] . Q[i]`` (``Q`` item-major)."""
    import numpy as np

    def predict(rows: Any, cols: Any) -> Any:
        out = np.empty(len(rows))
        for s in range(0, len(rows), 65536):
            u, i = rows[s:s + 65536], cols[s:s + 65536]
            out[s:s + 65536] = mu + b[u] + c[i] + np.einsum("nk,nk->n", P[u], Q[i])
        return out

    return predict


def _fit_lsqmf(name: str, train: Any) -> tuple[Any, float, float, bool]:
    import numpy as np

    from lsqmf import ConvergenceWarning
    from lsqmf.kernels.registry import warm_up
    from lsqmf.solvers import SOLVER_SPECS

    params = dict(LSQMF[name])
    spec = SOLVER_SPECS[params.pop("solver", name)]
    warm_up(spec.kernels, "auto")
    rank = params.pop("rank")
    if _HELD:
        params.update(validation=_HELD[0], patience=None)
    start = rss_mb()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        fit = spec.function(train, rank, random_state=0, **params)
        fit_s = time.perf_counter() - t0
    if _HELD:
        curve = zip(fit.history.time[1:], fit.options["validation_rmse"], strict=False)
        _CURVE[:] = [[round(float(t), 4), round(float(r), 5)] for t, r in curve]
    n, m = train.shape
    b = np.zeros(n) if fit.row_bias is None else fit.row_bias
    c = np.zeros(m) if fit.col_bias is None else fit.col_bias
    return _biased(float(fit.mu or 0.0), b, c, fit.P, np.ascontiguousarray(fit.Q.T)), fit_s, \
        start, True


def _fit_libmf(_: str, train: Any) -> tuple[Any, float, float, bool]:
    import numpy as np
    from libmf import mf

    p = PEERS["libmf"]
    X = np.column_stack([train.rows, train.cols, train.values]).astype(np.float32)
    model = mf.MF(k=p["k"], nr_threads=2, nr_iters=p["nr_iters"], lambda_p2=p["lambda"],
                  lambda_q2=p["lambda"], lambda_p1=0.0, lambda_q1=0.0, eta=p["eta"],
                  quiet=True)
    start = rss_mb()
    t0 = time.perf_counter()
    model.fit(X)
    fit_s = time.perf_counter() - t0
    # python-libmf's predict() is wrong in this version (benchmarks/peers): use the factors
    P, Q = model.p_factors().astype(float), model.q_factors().astype(float)
    n, m = train.shape
    P = np.vstack([P, np.zeros((max(0, n - len(P)), P.shape[1]))])
    Q = np.vstack([Q, np.zeros((max(0, m - len(Q)), Q.shape[1]))])
    return _biased(0.0, np.zeros(n), np.zeros(m), P, Q), fit_s, start, True


def _fit_cornac(_: str, train: Any) -> tuple[Any, float, float, bool]:
    import cornac
    import numpy as np
    from cornac.data import Dataset

    p = PEERS["cornac"]
    ds = Dataset.from_uir(list(zip(train.rows.tolist(), train.cols.tolist(),
                                   train.values.tolist(), strict=True)), seed=0)
    rng = np.random.default_rng(0)  # cornac's own seed forces one thread (benchmarks/peers)
    init = {"U": (0.01 * rng.standard_normal((ds.num_users, p["k"]))).astype(np.float32),
            "V": (0.01 * rng.standard_normal((ds.num_items, p["k"]))).astype(np.float32)}
    model = cornac.models.MF(k=p["k"], max_iter=p["max_iter"], learning_rate=p["learning_rate"],
                             lambda_reg=p["lambda_reg"], use_bias=True, early_stop=False,
                             num_threads=2, verbose=False, init_params=init)
    start = rss_mb()
    t0 = time.perf_counter()
    model.fit(ds)
    fit_s = time.perf_counter() - t0
    n, m = train.shape
    uix, iix = np.full(n, -1), np.full(m, -1)
    for raw, idx in ds.uid_map.items():
        uix[int(raw)] = idx
    for raw, idx in ds.iid_map.items():
        iix[int(raw)] = idx
    k = p["k"]
    P = np.vstack([model.u_factors, np.zeros((1, k))])[uix]  # -1 -> the zero row
    Q = np.vstack([model.i_factors, np.zeros((1, k))])[iix]
    b = np.append(model.u_biases, 0.0)[uix]
    c = np.append(model.i_biases, 0.0)[iix]
    return _biased(float(model.global_mean), b, c, P, Q), fit_s, start, True


def _fit_surprise(_: str, train: Any) -> tuple[Any, float, float, bool]:
    import numpy as np
    import pandas as pd
    from surprise import SVD, Dataset, Reader

    p = PEERS["surprise"]
    df = pd.DataFrame({"u": train.rows, "i": train.cols, "r": train.values})
    ts = Dataset.load_from_df(df, Reader(rating_scale=(1.0, 5.0))).build_full_trainset()
    algo = SVD(random_state=0, **p)
    start = rss_mb()
    t0 = time.perf_counter()
    algo.fit(ts)
    fit_s = time.perf_counter() - t0
    n, m = train.shape
    uix, iix = np.full(n, -1), np.full(m, -1)
    for inner in ts.all_users():
        uix[int(ts.to_raw_uid(inner))] = inner
    for inner in ts.all_items():
        iix[int(ts.to_raw_iid(inner))] = inner
    k = p["n_factors"]
    P = np.vstack([algo.pu, np.zeros((1, k))])[uix]
    Q = np.vstack([algo.qi, np.zeros((1, k))])[iix]
    return (_biased(ts.global_mean, np.append(algo.bu, 0.0)[uix],
                    np.append(algo.bi, 0.0)[iix], P, Q), fit_s, start, True)


def _fit_myfm(_: str, train: Any) -> tuple[Any, float, float, bool]:
    import myfm
    import numpy as np
    import scipy.sparse as sps

    p = PEERS["myfm"]
    n, m = train.shape

    def onehot(rows: Any, cols: Any) -> Any:
        N = len(rows)
        idx = np.column_stack([rows, n + np.asarray(cols)]).ravel()
        return sps.csr_matrix((np.ones(2 * N), idx, np.arange(0, 2 * N + 1, 2)),
                              shape=(N, n + m))

    X = onehot(train.rows, train.cols)
    model = myfm.MyFMRegressor(rank=p["rank"], random_seed=0)
    start = rss_mb()
    t0 = time.perf_counter()
    model.fit(X, train.values, n_iter=p["n_iter"], n_kept_samples=p["n_kept_samples"])
    fit_s = time.perf_counter() - t0

    def predict(rows: Any, cols: Any) -> Any:
        return model.predict(onehot(rows, cols))

    return predict, fit_s, start, True


PEER_FITS = {"libmf": _fit_libmf, "cornac": _fit_cornac, "surprise": _fit_surprise,
             "myfm": _fit_myfm}


# ------------------------------------------------------------------ report
def report(out: Path) -> None:
    """``summary.csv`` (median, min and max over repeats per system and size; before/after
    ratios of the medians) and ``scaling.png`` from ``runs.csv``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    runs = pd.read_csv(out / "runs.csv")
    stats = runs.groupby(["system", "size"]).agg(
        n=("fit_s", "size"), fit_s=("fit_s", "median"), fit_min=("fit_s", "min"),
        fit_max=("fit_s", "max"), peak_mb=("peak_mb", "median"),
        peak_min=("peak_mb", "min"), peak_max=("peak_mb", "max"),
        fit_mb=("fit_mb", "median"), rmse=("rmse", "median"), rmse_min=("rmse", "min"),
        rmse_max=("rmse", "max"), nnz=("nnz", "first")).reset_index()
    # per-repeat ratios before/after (the same repeat ran interleaved), median and range
    wide = runs.pivot_table(index=["size", "repeat"], columns="system", values="fit_s")
    rows = []
    for solver in LSQMF:
        b, a = f"before:{solver}", f"after:{solver}"
        if b in wide and a in wide:
            r = (wide[b] / wide[a]).dropna().groupby(level="size")
            rows += [{"system": a, "size": size, "speedup": g.median(), "speedup_min": g.min(),
                      "speedup_max": g.max()} for size, g in r]
    stats = stats.merge(pd.DataFrame(rows), on=["system", "size"], how="left") if rows \
        else stats
    stats.to_csv(out / "summary.csv", index=False, float_format="%.4g")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for system, g in stats.groupby("system"):
        style = "--" if system.startswith("before:") else "-"
        if ":" not in system:
            style = ":"
        for ax, col, lo, hi in ((axes[0], "fit_s", "fit_min", "fit_max"),
                                (axes[1], "peak_mb", "peak_min", "peak_max")):
            ax.errorbar(g["nnz"], g[col], yerr=[g[col] - g[lo], g[hi] - g[col]], ls=style,
                        marker="o", ms=3, label=system, capsize=2)
    for ax, label in ((axes[0], "fit time, s (median, min-max)"),
                      (axes[1], "peak RSS of the process, MB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training ratings")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "scaling.png", dpi=120)


# ------------------------------------------------------------------ parent
def systems_for(size: int, solvers: list[str], peers: list[str], before: bool) -> list[str]:
    out = [f"after:{s}" for s in solvers]
    if before:
        out += [f"before:{s}" for s in solvers if s not in AFTER_ONLY]
    out += [p for p in peers if size <= PEER_MAX[p]]
    return out


def launch(system: str, path: Path, before: Path | None, curve: bool = False) -> dict[str, Any]:
    code = system.partition(":")[0]
    env = {**os.environ, "OMP_WAIT_POLICY": "passive"}
    if curve:
        env["LSQMF_BENCH_CURVE"] = "1"
    python = sys.executable
    if code == "before":
        assert before is not None
        env["PYTHONPATH"] = str(before)
    elif code not in ("after",):
        python = str(PEERS_PY)
    cmd = [python, str(Path(__file__).resolve()), "--cell", system, "--cell-data", str(path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1:] or ["?"]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def done_cells(runs: Path) -> set[tuple[str, int, int]]:
    if not runs.exists():
        return set()
    with runs.open() as f:
        return {(r["system"], int(r["size"]), int(r["repeat"])) for r in csv.DictReader(f)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--solvers", nargs="+", default=list(LSQMF))
    parser.add_argument("--peers", nargs="*", default=list(PEERS))
    parser.add_argument("--before", type=Path, default=None,
                        help="a checkout of the baseline commit (PYTHONPATH of before: cells)")
    parser.add_argument("--data", type=Path, default=Path("/tmp/lsqmf_scale_data"))
    parser.add_argument("--out", type=Path, default=Path("reports/scale"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--curve", action="store_true",
                        help="lsqmf cells also score the held-out ratings after every "
                             "iteration (validation=, no early stop): time-to-RMSE")
    parser.add_argument("--report", action="store_true",
                        help="only write summary.csv and scaling.png from runs.csv")
    parser.add_argument("--cell", help=argparse.SUPPRESS)
    parser.add_argument("--cell-data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cell:
        print(json.dumps(run_cell(args.cell, args.cell_data)))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    if args.report:
        report(args.out)
        return
    runs = args.out / "runs.csv"
    done = done_cells(runs)
    new = not runs.exists()
    with runs.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
        if new:
            writer.writeheader()
        for size in args.sizes:
            path = data_path(args.data, size)
            if not path.exists():
                make_data(size, path)
            for rep in range(args.repeats):
                cells = systems_for(size, args.solvers, args.peers, args.before is not None)
                random.Random(f"{args.seed}-{size}-{rep}").shuffle(cells)
                for system in cells:
                    if (system, size, rep) in done:
                        continue
                    row = launch(system, path, args.before, args.curve)
                    row.update(system=system, code=system.partition(":")[0], size=size,
                               repeat=rep)
                    print(json.dumps(row), file=sys.stderr, flush=True)
                    if "error" not in row:
                        writer.writerow(row)
                        f.flush()
    report(args.out)


if __name__ == "__main__":
    main()
