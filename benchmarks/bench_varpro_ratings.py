"""VarPro on MovieLens latest-small against ALS and joint ``lsq``: test RMSE against wall time.

Issue 10, item 5. Every run fits the same ``'l2'`` objective on the training part of a fold of
``lsqmf.evaluate.splits.kfold(load_builtin(), 5, random_state=0)``: ``reg=0.1``,
``count_scaled=True``, ``biases=True`` (the objective of :mod:`lsqmf.solvers._common`), at
rank 20 and 50, from the same start (one :func:`lsqmf.model.start.random_start` per fold and rank,
``init_scale=0.1``, handed to every method as ``P0``/``Q0``). Methods, interleaved in this
order within each fold and rank (ALS first: its final test RMSE is the target of the others):

- ``als``: :func:`lsqmf.solvers.als` (``tol=1e-4``, ``max_iter=200``), the reference;
- ``lsq``: :func:`lsqmf.solvers.lsq` (joint trf + LSMR, ``tol=1e-8``);
- ``varpro-Q`` / ``varpro-P``: :func:`lsqmf.solve` with ``eliminate='Q'`` (optimizes ``P``,
  610 x (rank + 1) unknowns) or ``'P'`` (optimizes ``Q``, 9724 x (rank + 1)),
  ``formulation='l2'``, trf + LSMR (matrix-free Kaufman operator), tolerances 1e-8;
- the same with ``-lsmrN``: ``tr_options={'maxiter': N}`` (inexact trf steps);
- ``als-repN``: ALS again (same start, same iterates), run later in the cell: the spread of
  the reference time (the ratios use the median over ``als`` and its repeats);
  ``als-tight``: ALS with ``tol=1e-10`` until the budget (how far ALS's cost gets).

Every run has the wall budget ``--budget`` (``max_time``). The test RMSE is traced with the
run's ``callback``: at every evaluation that lowers the cost the benchmark reads the iterate
from the caller's frame (the callback receives only step, cost and time), scores it on the
test pairs (clipped to the training range, cold pairs by the bias model, as
:func:`lsqmf.evaluate.scoring.predict_pairs` does) and subtracts its own time from the clock, so the
trace times are the solver's. "Time to ALS's RMSE" is the first trace time at which a run's
test RMSE is at most ALS's final test RMSE (``t_target``), and at most 1.001 times it
(``t_target_0p1``).

``eliminate='Q'`` fails on these folds with ``count_scaled=True``: 782 items of a training
part have no rating, so their ridge scale is 0 and their normal equations are singular
(``build_reduced`` raises). Their factors are 0 at every optimum (they appear only in the
regularization, with scale 0), so the benchmark drops those columns for ``varpro-Q`` and puts
zeros back afterwards; the ``cost_full`` column checks that the padded factors have the
reported cost on the full training problem.

One BLAS and one numba thread (set before numpy is imported). Rows are appended to
``reports/varpro/ratings.csv`` as each run finishes (the trace to ``ratings_trace.csv``);
a rerun skips the (fold, rank, method) cells already there.

Run::

    nohup python benchmarks/bench_varpro_ratings.py --folds 2 --budget 100 \
        --lsmr-maxiter 3 10 30 --methods als lsq lsq-lsmr10 varpro-Q varpro-Q-lsmr10 \
        varpro-P varpro-P-lsmr3 varpro-P-lsmr10 varpro-P-lsmr30 &
    python benchmarks/bench_varpro_ratings.py --report-only   # table + figure from the CSVs
    python benchmarks/bench_varpro_ratings.py --check   # same factors -> same cost, all three
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

import lsqmf  # noqa: E402
from lsqmf.data.ratings import Ratings  # noqa: E402
from lsqmf.data.readers import load_builtin  # noqa: E402
from lsqmf.evaluate import kfold, predict_pairs, rmse  # noqa: E402
from lsqmf.model.problem import build_problem  # noqa: E402
from lsqmf.model.result import FitResult, IterationInfo  # noqa: E402
from lsqmf.model.start import random_start  # noqa: E402
from lsqmf.runtime.checkpoint import RowWriter, parse_float  # noqa: E402
from lsqmf.solvers import als, lsq  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "reports" / "varpro"
RUNS = OUT_DIR / "ratings.csv"
TRACE = OUT_DIR / "ratings_trace.csv"
FIGURE = OUT_DIR / "ratings_rmse_vs_time.png"

OBJECTIVE: dict[str, Any] = {"reg": 0.1, "count_scaled": True, "biases": True}
INIT_SCALE = 0.1
TOLS = {"ftol": 1e-8, "xtol": 1e-8, "gtol": 1e-8}

RUN_COLUMNS = [
    "fold", "rank", "method", "eliminate", "lsmr_maxiter", "status", "nfev", "njev",
    "n_unknowns", "wall_s", "setup_s", "cpu_s", "trace_overhead_s", "cost", "cost_full",
    "train_rms",
    "test_rmse", "best_trace_rmse", "als_rmse", "t_target", "t_target_0p1", "t_als",
    "ratio", "ratio_0p1", "load1_start", "load1_end", "budget_s",
]
TRACE_COLUMNS = ["fold", "rank", "method", "step", "time_s", "cost", "test_rmse"]


def method_table(lsmr_maxiters: list[int]) -> dict[str, dict[str, Any]]:
    """Method name -> its settings (``kind``: 'als', 'lsq' or 'varpro')."""
    table: dict[str, dict[str, Any]] = {
        "als": {"kind": "als"},
        "lsq": {"kind": "lsq", "maxiter": None},
    }
    for j in (1, 2, 3):  # ALS again, after the others: the spread of the reference time
        table[f"als-rep{j}"] = {"kind": "als"}
    # ALS run on to the budget: how far its cost gets in the time VarPro takes
    table["als-tight"] = {"kind": "als", "tol": 1e-10, "max_iter": 1_000_000}
    for elim in ("Q", "P"):
        table[f"varpro-{elim}"] = {"kind": "varpro", "eliminate": elim, "maxiter": None}
        for n in lsmr_maxiters:
            table[f"varpro-{elim}-lsmr{n}"] = {"kind": "varpro", "eliminate": elim,
                                                "maxiter": n}
    for n in lsmr_maxiters:
        table[f"lsq-lsmr{n}"] = {"kind": "lsq", "maxiter": n}
    return table


# ---------------------------------------------------------------------- scoring
class Scorer:
    """Test RMSE of factors in some problem's indexing (transposed and/or column-restricted).

    ``rows``/``cols`` are the test pairs in that indexing (-1: a row or column the problem
    does not have, predicted by the bias model with the missing factor and bias 0).
    """

    def __init__(self, rows: np.ndarray, cols: np.ndarray, values: np.ndarray,
                 clip: tuple[float, float]) -> None:
        self.rows, self.cols, self.values, self.clip = rows, cols, values, clip

    def __call__(self, P: np.ndarray, Q: np.ndarray, b: np.ndarray | None,
                 c: np.ndarray | None, mu: float) -> float:
        r_ok, c_ok = self.rows >= 0, self.cols >= 0
        r = np.where(r_ok, self.rows, 0)
        cc = np.where(c_ok, self.cols, 0)
        pred = np.einsum("nk,kn->n", P[r], Q[:, cc]) * (r_ok & c_ok)
        if b is not None and c is not None:
            pred = pred + mu + np.where(r_ok, b[r], 0.0) + np.where(c_ok, c[cc], 0.0)
        err = np.clip(pred, *self.clip) - self.values
        return float(np.sqrt(np.mean(err * err)))


def _iterate_from_frames() -> tuple[Any, np.ndarray] | None:
    """The (problem, joint x) of the evaluation that called the callback.

    Looks up the caller's frames for the solver's state: VarPro's ``fun(theta)`` (a local
    ``red`` with ``joint_x``), :func:`lsqmf.solve`'s ``Evaluations.fun(self, x)``
    (``self.plan.problem``) or the solvers' ``Tracker.observe(self, j, x)``
    (``self.setup.problem``). Benchmark-only instrumentation: the callback API passes no x.
    """
    frame = sys._getframe(2)
    for _ in range(4):
        if frame is None:
            return None
        loc = frame.f_locals
        code = frame.f_code
        args = [loc.get(name) for name in code.co_varnames[: code.co_argcount]]
        arrays = [a for a in args if isinstance(a, np.ndarray) and a.ndim == 1]
        if arrays:
            red = loc.get("red")
            if red is not None and hasattr(red, "joint_x"):
                return red.problem, red.joint_x(arrays[0])
            owner = loc.get("self")
            plan = getattr(owner, "plan", None)
            if plan is not None and hasattr(plan, "problem"):
                return plan.problem, arrays[0]
            setup = getattr(owner, "setup", None)
            if setup is not None and hasattr(setup, "problem"):
                return setup.problem, arrays[0]
        frame = frame.f_back
    return None


class Tracer:
    """The callback: test RMSE at every evaluation that lowers the cost, own time excluded."""

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer
        self.best_cost = np.inf
        self.overhead = 0.0
        self.rows: list[tuple[int, float, float, float]] = []
        self.missed = 0
        self.clock_start: float | None = None  # perf_counter() at the solver's time 0

    def __call__(self, info: IterationInfo) -> None:
        t0 = time.perf_counter()
        if self.clock_start is None:
            self.clock_start = t0 - info.time
        if not info.cost < self.best_cost:
            return None
        self.best_cost = info.cost
        found = _iterate_from_frames()
        if found is None:
            self.missed += 1
        else:
            problem, x = found
            P, Q, b, c = problem.unpack(x)
            score = self.scorer(P, Q, b, c, problem.mu)
            self.rows.append((info.step, info.time - self.overhead, info.cost, score))
        self.overhead += time.perf_counter() - t0
        return None


#: Relative slack of "at most the target": the trace's RMSE and the final one (through
#: ``predict_pairs``) of the same factors differ in the last bits.
ROUNDING = 1e-9


def first_time_at_most(trace: list[tuple[int, float, float, float]], target: float) -> float:
    """First trace time with test RMSE <= target (within :data:`ROUNDING`; NaN if never)."""
    for _, t, _, score in trace:
        if score <= target * (1 + ROUNDING):
            return t
    return float("nan")


# ---------------------------------------------------------------------- runs
def restrict_columns(train: Ratings) -> tuple[Ratings, np.ndarray, np.ndarray]:
    """``train`` without its empty columns, the kept columns and old -> new index (-1)."""
    keep = np.flatnonzero(train.col_counts() > 0)
    new = -np.ones(train.shape[1], dtype=np.int64)
    new[keep] = np.arange(keep.size)
    sub = Ratings(train.rows, new[train.cols], train.values, (train.shape[0], keep.size),
                  weights=train.weights)
    return sub, keep, new


def pad_columns(fit: FitResult, train: Ratings, keep: np.ndarray) -> FitResult:
    """A restricted fit's result on all of ``train``'s columns (zeros for the dropped)."""
    import dataclasses

    Q = np.zeros((fit.Q.shape[0], train.shape[1]))
    Q[:, keep] = fit.Q
    c = None
    if fit.col_bias is not None:
        c = np.zeros(train.shape[1])
        c[keep] = fit.col_bias
    return dataclasses.replace(fit, Q=Q, col_bias=c, col_counts=train.col_counts(),
                               col_ids=train.col_ids)


def run_method(name: str, spec: dict[str, Any], train: Ratings, test: Ratings, rank: int,
               P0: np.ndarray, Q0: np.ndarray, budget: float) -> tuple[FitResult, Tracer, int]:
    """One fit with its tracer; returns (fit on all of train's columns, tracer, unknowns)."""
    clip = (float(train.values.min()), float(train.values.max()))
    kind = spec["kind"]
    common = dict(OBJECTIVE, max_time=budget)
    if kind == "als":  # als and its repeats
        tracer = Tracer(Scorer(test.rows, test.cols, test.values, clip))
        fit = als(train, rank, P0=P0, Q0=Q0, tol=spec.get("tol", 1e-4),
                  max_iter=spec.get("max_iter", 200), callback=tracer, **common)
        n_unknowns = (train.shape[0] + train.shape[1]) * (rank + 1)
        return fit, tracer, n_unknowns
    tr_options = {} if spec["maxiter"] is None else {"maxiter": spec["maxiter"]}
    if kind == "lsq":
        tracer = Tracer(Scorer(test.rows, test.cols, test.values, clip))
        fit = lsq(train, rank, P0=P0, Q0=Q0, method="trf", tr_solver="lsmr",
                  tr_options=tr_options, tol=TOLS["ftol"], xtol=TOLS["xtol"],
                  gtol=TOLS["gtol"], max_iter=100_000, callback=tracer, **common)
        n_unknowns = (train.shape[0] + train.shape[1]) * (rank + 1)
        return fit, tracer, n_unknowns
    elim = spec["eliminate"]
    if elim == "Q":
        sub, keep, new = restrict_columns(train)
        tracer = Tracer(Scorer(test.rows, new[test.cols], test.values, clip))
        fit = lsqmf.solve(sub, rank, P0=P0, Q0=Q0[:, keep], formulation="l2",
                          eliminate="Q", method="trf", tr_solver="lsmr",
                          tr_options=tr_options, callback=tracer, **TOLS, **common)
        return pad_columns(fit, train, keep), tracer, train.shape[0] * (rank + 1)
    # eliminate='P': the reduced problem is built on the transposed ratings
    tracer = Tracer(Scorer(test.cols, test.rows, test.values, clip))
    fit = lsqmf.solve(train, rank, P0=P0, Q0=Q0, formulation="l2", eliminate="P",
                      method="trf", tr_solver="lsmr", tr_options=tr_options,
                      callback=tracer, **TOLS, **common)
    return fit, tracer, train.shape[1] * (rank + 1)


def done_cells(path: Path) -> set[tuple[int, int, str]]:
    if not path.exists():
        return set()
    with path.open(newline="", encoding="utf-8") as fh:
        return {(int(r["fold"]), int(r["rank"]), r["method"]) for r in csv.DictReader(fh)}


def als_reference(path: Path, fold: int, rank: int) -> tuple[float, float] | None:
    """(final test RMSE, its first trace time) of a finished ALS run in ``path``."""
    if not path.exists():
        return None
    with path.open(newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            if int(r["fold"]) == fold and int(r["rank"]) == rank and r["method"] == "als":
                return float(r["test_rmse"]), parse_float(r["t_target"])
    return None


def main_run(args: argparse.Namespace) -> None:
    methods = method_table(args.lsmr_maxiter)
    chosen = args.methods or list(methods)
    unknown = [m for m in chosen if m not in methods]
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; choose from {list(methods)}")
    if "als" not in chosen:
        chosen = ["als", *chosen]
    chosen = ["als", *[m for m in chosen if m != "als"]]
    ratings = load_builtin()
    folds = kfold(ratings, 5, random_state=0)
    done = done_cells(args.out)
    runs = RowWriter(args.out, RUN_COLUMNS)
    traces = RowWriter(args.trace, TRACE_COLUMNS)
    print(f"load average at start: {os.getloadavg()}", flush=True)
    for fold in args.fold_ids:
        train, test = folds[fold]
        problem_cache: dict[int, Any] = {}
        for rank in args.ranks:
            rng = np.random.default_rng(1000 * fold + rank)
            P0, Q0 = random_start(train, rank, rng, init_scale=INIT_SCALE)
            ref = als_reference(args.out, fold, rank)
            for name in chosen:
                if (fold, rank, name) in done:
                    continue
                load0 = os.getloadavg()[0]
                wall0, cpu0 = time.perf_counter(), time.process_time()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    fit, tracer, n_unknowns = run_method(name, methods[name], train, test,
                                                         rank, P0, Q0, args.budget)
                wall = time.perf_counter() - wall0 - tracer.overhead
                cpu = time.process_time() - cpu0 - tracer.overhead
                if rank not in problem_cache:
                    problem_cache[rank] = build_problem(train, rank, formulation="l2",
                                                        **OBJECTIVE)
                full = problem_cache[rank]
                x = full.pack(fit.P, fit.Q, fit.row_bias, fit.col_bias)
                pred, _ = predict_pairs(fit, train, test.rows, test.cols)
                test_rmse = rmse(test.values, pred)
                trace = tracer.rows
                if name == "als":
                    ref = (test_rmse, first_time_at_most(trace, test_rmse))
                assert ref is not None
                t_target = first_time_at_most(trace, ref[0])
                t_target_0p1 = first_time_at_most(trace, ref[0] * 1.001)
                row = {
                    "fold": fold, "rank": rank, "method": name,
                    "eliminate": methods[name].get("eliminate"),
                    "lsmr_maxiter": methods[name].get("maxiter"),
                    "status": int(fit.status), "nfev": fit.nfev, "njev": fit.njev,
                    "n_unknowns": n_unknowns, "wall_s": wall, "cpu_s": cpu,
                    "setup_s": (float("nan") if tracer.clock_start is None
                                else tracer.clock_start - wall0),
                    "trace_overhead_s": tracer.overhead, "cost": fit.cost,
                    "cost_full": full.cost(x), "train_rms": full.rms(x),
                    "test_rmse": test_rmse,
                    "best_trace_rmse": min((s for *_, s in trace), default=float("nan")),
                    "als_rmse": ref[0], "t_target": t_target, "t_target_0p1": t_target_0p1,
                    "t_als": ref[1], "ratio": t_target / ref[1],
                    "ratio_0p1": t_target_0p1 / ref[1],
                    "load1_start": load0, "load1_end": os.getloadavg()[0],
                    "budget_s": args.budget,
                }
                runs.write(row)
                for step, t, cost, score in trace:
                    traces.write({"fold": fold, "rank": rank, "method": name, "step": step,
                                  "time_s": t, "cost": cost, "test_rmse": score})
                print(f"fold {fold} rank {rank} {name:18s} status {int(fit.status):3d} "
                      f"nfev {fit.nfev:6d} wall {wall:7.1f} s test {test_rmse:.4f} "
                      f"t_target {t_target:7.1f} (ALS {ref[1]:.1f}) cost {fit.cost:.6g} "
                      f"full {full.cost(x):.6g} missed {tracer.missed} load {load0:.1f}",
                      flush=True)
    runs.close()
    traces.close()


# ---------------------------------------------------------------------- report
def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _traces(path: Path) -> dict[tuple[int, int, str], list[tuple[float, float, float]]]:
    """(fold, rank, method) -> [(time, cost, test RMSE)] in trace order."""
    series: dict[tuple[int, int, str], list[tuple[float, float, float]]] = {}
    for r in _read(path):
        key = (int(r["fold"]), int(r["rank"]), r["method"])
        series.setdefault(key, []).append(
            (float(r["time_s"]), float(r["cost"]), float(r["test_rmse"]))
        )
    return series


def _first(points: list[tuple[float, float, float]], index: int, target: float) -> float:
    """First time at which field ``index`` (1 cost, 2 test RMSE) is at most ``target``."""
    return next((p[0] for p in points if p[index] <= target * (1 + ROUNDING)), float("nan"))


def summarize(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One record per run with the times to ALS's test RMSE and to ALS's cost (same cell).

    The reference time of a cell is the median over its ALS runs (``als`` and the repeats,
    same start and iterates, so only their times differ).
    """
    rows = _read(args.out)
    series = _traces(args.trace)
    als_rows = {(int(r["fold"]), int(r["rank"])): r for r in rows if r["method"] == "als"}
    out: list[dict[str, Any]] = []
    for r in rows:
        cell = (int(r["fold"]), int(r["rank"]))
        ref = als_rows[cell]
        target_rmse, target_cost = float(ref["test_rmse"]), float(ref["cost"])
        ref_runs = [q for q in rows if (int(q["fold"]), int(q["rank"])) == cell
                    and (q["method"] == "als" or q["method"].startswith("als-rep"))]
        t_ref_rmse = float(np.median([_first(series[(*cell, q["method"])], 2, target_rmse)
                                      for q in ref_runs]))
        t_ref_cost = float(np.median([_first(series[(*cell, q["method"])], 1, target_cost)
                                      for q in ref_runs]))
        best_cost = min(float(q["cost"]) for q in rows
                        if (int(q["fold"]), int(q["rank"])) == cell)
        pts = series.get((*cell, r["method"]), [])
        t_rmse = _first(pts, 2, target_rmse)
        t_rmse_0p1 = _first(pts, 2, target_rmse * 1.001)
        t_cost = _first(pts, 1, target_cost)
        out.append({
            "method": r["method"], "rank": cell[1], "fold": cell[0],
            "status": int(r["status"]), "nfev": int(r["nfev"]),
            "budget": float(r["budget_s"]),
            "test_rmse": float(r["test_rmse"]), "best_rmse": float(r["best_trace_rmse"]),
            "cost": float(r["cost"]), "wall_s": float(r["wall_s"]),
            "als_rmse": target_rmse, "als_cost": target_cost,
            "t_rmse": t_rmse, "ratio_rmse": t_rmse / t_ref_rmse,
            "t_rmse_0p1": t_rmse_0p1, "ratio_rmse_0p1": t_rmse_0p1 / t_ref_rmse,
            "t_cost": t_cost, "ratio_cost": t_cost / t_ref_cost,
            "t_ref_rmse": t_ref_rmse, "t_ref_cost": t_ref_cost,
            "t_gap4": _first(pts, 1, best_cost * (1 + 1e-4)),
            "load1": 0.5 * (float(r["load1_start"]) + float(r["load1_end"])),
        })
    return out


def _f(value: float, spec: str) -> str:
    return "--" if not np.isfinite(value) else format(value, spec)


def report(args: argparse.Namespace) -> None:
    records = summarize(args)
    order = {m: i for i, m in enumerate(dict.fromkeys(r["method"] for r in records))}
    print("| method | rank | fold | budget s | status | nfev | test RMSE | best traced | cost "
          "| wall s | to ALS RMSE s | ratio | to ALS RMSE +0.1% s | to ALS cost s | ratio |")
    print("|" + "---|" * 15)
    for r in sorted(records, key=lambda r: (r["rank"], r["fold"], order[r["method"]])):
        print(f"| {r['method']} | {r['rank']} | {r['fold']} | {r['budget']:.0f} | "
              f"{r['status']} | {r['nfev']} | {r['test_rmse']:.4f} | {r['best_rmse']:.4f} | "
              f"{r['cost']:.1f} | {r['wall_s']:.1f} | {_f(r['t_rmse'], '.1f')} | "
              f"{_f(r['ratio_rmse'], '.1f')} | {_f(r['t_rmse_0p1'], '.1f')} | "
              f"{_f(r['t_cost'], '.1f')} | {_f(r['ratio_cost'], '.1f')} |")
    print("\nMedians over folds (ratios: against the median ALS time of the same cell):\n")
    print("| method | rank | folds | test RMSE - ALS's | best traced - ALS's | "
          "to ALS RMSE: ratio | reached | to ALS cost: ratio | reached | "
          "to best cost +1e-4 s | reached |")
    print("|" + "---|" * 11)
    groups: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["rank"], r["method"]), []).append(r)
    for (rank, method), rs in sorted(groups.items(), key=lambda g: (g[0][0], order[g[0][1]])):
        if method.startswith("als-rep"):
            continue
        cells = [method, str(rank), str(len(rs)),
                 f"{np.median([r['test_rmse'] - r['als_rmse'] for r in rs]):+.4f}",
                 f"{np.median([r['best_rmse'] - r['als_rmse'] for r in rs]):+.4f}"]
        for key in ("ratio_rmse", "ratio_cost", "t_gap4"):
            vals = np.array([r[key] for r in rs])
            ok = np.isfinite(vals)
            # median over all folds with "not reached" as +inf
            med = float(np.median(np.where(ok, vals, np.inf)))
            cells += [_f(med, ".1f") if np.isfinite(med) else "not reached",
                      f"{int(ok.sum())}/{len(rs)}"]
        print("| " + " | ".join(cells) + " |")
    als_times = {}
    for r in records:
        if r["method"] == "als" or r["method"].startswith("als-rep"):
            als_times.setdefault((r["rank"], r["fold"]), []).append(r["t_cost"])
    print("\nALS time to its final cost per cell (all ALS runs): " + "; ".join(
        f"rank {rk} fold {f}: " + ", ".join(f"{t:.1f}" for t in ts)
        for (rk, f), ts in sorted(als_times.items())))
    loads = [r["load1"] for r in records]
    print(f"\nload average (1 min) over the runs: median {np.median(loads):.1f}, "
          f"range {min(loads):.1f}-{max(loads):.1f}")
    plot(args)


def _method_label(method: str) -> str:
    """A reader's name of a method of the CSVs, e.g. 'varpro-P-lsmr3' -> 'VarPro, eliminate P,
    LSMR <= 3 inner iterations'."""
    if method in ("als", "als-tight"):
        return "ALS" + (", tight tolerance" if method == "als-tight" else "")
    base, _, cap = method.partition("-lsmr")
    name = {"lsq": "lsq (joint problem, trf)"}.get(base, base)
    if base.startswith("varpro-"):
        name = f"VarPro, eliminate {base.removeprefix('varpro-')}"
    return name + (f", LSMR <= {cap} inner iterations" if cap else "")


def _method_styles(plt: Any, methods: list[str]) -> dict[str, dict[str, Any]]:
    """One color family per kind (ALS black/grey, lsq oranges dashed, VarPro-Q greens
    dash-dot, VarPro-P blues solid), shades by the LSMR cap, so a dozen lines stay apart."""
    families = {"lsq": ("Oranges", "--"), "varpro-Q": ("Greens", "-."),
                "varpro-P": ("Blues", "-")}
    out: dict[str, dict[str, Any]] = {
        "als": {"color": "k", "lw": 2.4, "ls": "-"},
        "als-tight": {"color": "0.55", "lw": 1.6, "ls": ":"},
    }
    for fam, (cmap, ls) in families.items():
        members = sorted((m for m in methods if m.partition("-lsmr")[0] == fam),
                         key=lambda m: int(m.partition("-lsmr")[2] or 10**6))
        for j, m in enumerate(members):
            shade = 0.35 + 0.65 * (j / max(len(members) - 1, 1))
            out[m] = {"color": plt.get_cmap(cmap)(shade), "lw": 1.5, "ls": ls}
    for m in methods:
        out.setdefault(m, {"color": "m", "lw": 1.2, "ls": "-"})
    return out


def plot(args: argparse.Namespace) -> None:
    """Test RMSE (top) and cost above the cell's best (bottom) against time, fold 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = _traces(args.trace)
    fold = min(f for f, _, _ in series)
    ranks = sorted({rk for _, rk, _ in series})
    fig, axes = plt.subplots(2, len(ranks), figsize=(6.2 * len(ranks) + 3.4, 8), squeeze=False,
                             layout="constrained")
    methods = list(dict.fromkeys(m for _, _, m in series if not m.startswith("als-rep")))
    styles = _method_styles(plt, methods)
    for col, rank in enumerate(ranks):
        best = min(p[1] for (f, rk, _), pts in series.items() if (f, rk) == (fold, rank)
                   for p in pts)
        for method in methods:
            pts = series.get((fold, rank, method))
            if not pts:
                continue
            t = np.maximum([p[0] for p in pts], 1e-2)
            style = styles[method]
            axes[0][col].plot(t, [p[2] for p in pts], label=_method_label(method), **style)
            axes[1][col].plot(t, [(p[1] - best) / best + 1e-7 for p in pts], **style)
        als_pts = series[(fold, rank, "als")]
        axes[0][col].axhline(als_pts[-1][2], color="k", lw=0.6, ls=":")
        axes[1][col].axhline((als_pts[-1][1] - best) / best, color="k", lw=0.6, ls=":")
        top = axes[0][col]
        top.set_ylim(als_pts[-1][2] - 0.004, als_pts[-1][2] + 0.03)
        top.set_ylabel("test RMSE")
        top.set_title(f"MovieLens latest-small fold {fold}, rank {rank} (l2, reg 0.1, biases)")
        bottom = axes[1][col]
        bottom.set_yscale("log")
        bottom.set_ylabel("(cost - best cost in the cell) / best")
        for ax in (top, bottom):
            ax.set_xscale("log")
            ax.set_xlabel("solver time, s (one thread; dotted: ALS final)")
            ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    rank = {"ALS": 0, "ALS, tight tolerance": 1, "lsq": 2, "VarPro, eliminate Q": 3}
    order = sorted(range(len(labels)), key=lambda i: (
        min((v for k, v in rank.items() if labels[i].startswith(k)), default=4),
        labels[i].split(", LSMR")[0], int(labels[i].partition("<= ")[2].split()[0] or 0)
        if "<= " in labels[i] else 0))
    fig.legend([handles[i] for i in order], [labels[i] for i in order],
               loc="outside right center", fontsize=9, frameon=False)
    fig.savefig(args.figure, dpi=110)
    print(f"wrote {args.figure}")


def consistency_check() -> None:
    """Same factors, same cost: ALS's reported cost, the joint problem's cost, VarPro's.

    After an ALS sweep (users, then items) ``Q`` is the item half-step at ``P``, i.e. VarPro's
    ``Q*(P)``, so the reduced cost at ALS's ``(P, b)`` must equal ALS's reported cost and the
    joint problem's cost at ALS's factors. For ``eliminate='P'`` the reduced cost at ALS's
    ``(Q, c)`` is the joint cost after one more user half-step: it must equal the joint cost
    at the reduced problem's ``x`` and be at most ALS's cost.
    """
    from lsqmf.nls.varpro import build_reduced, transpose_ratings

    train, _ = kfold(load_builtin(), 5, random_state=0)[0]
    rank = 20
    P0, Q0 = random_start(train, rank, np.random.default_rng(0), init_scale=INIT_SCALE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = als(train, rank, P0=P0, Q0=Q0, tol=1e-4, max_iter=200, **OBJECTIVE)
    full = build_problem(train, rank, formulation="l2", **OBJECTIVE)
    x = full.pack(fit.P, fit.Q, fit.row_bias, fit.col_bias)
    sub, _, _ = restrict_columns(train)
    red = build_reduced(sub, rank, formulation="l2", **OBJECTIVE)
    reduced_q = red.cost(red.pack(fit.P, fit.row_bias))
    redt = build_reduced(transpose_ratings(train), rank, formulation="l2", **OBJECTIVE)
    theta = redt.pack(fit.Q.T, fit.col_bias)
    xt = redt.joint_x(theta)  # (Q, c) fixed, (P, b) re-solved: a user half-step
    Pt, Qt, bt, ct = redt.problem.unpack(xt)
    x_back = full.pack(Qt.T, Pt.T, ct, bt)
    print(f"ALS reported cost            {fit.cost:.10g}")
    print(f"joint problem cost at ALS x  {full.cost(x):.10g}")
    print(f"VarPro-Q reduced cost at P   {reduced_q:.10g}  (empty columns dropped)")
    print(f"VarPro-P reduced cost at Q   {redt.cost(theta):.10g}")
    print(f"joint cost at (P*(Q), Q)     {full.cost(x_back):.10g}  (<= ALS: one more half-step)")
    assert np.isclose(fit.cost, full.cost(x), rtol=1e-10)
    assert np.isclose(reduced_q, fit.cost, rtol=1e-8)
    assert np.isclose(redt.cost(theta), full.cost(x_back), rtol=1e-10)
    assert full.cost(x_back) <= fit.cost * (1 + 1e-12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=2, help="first N folds of the 5")
    parser.add_argument("--fold-ids", type=int, nargs="+", default=None,
                        help="these folds (0-4) instead of the first --folds")
    parser.add_argument("--ranks", type=int, nargs="+", default=[20, 50])
    parser.add_argument("--budget", type=float, default=150.0, help="max_time per run, s")
    parser.add_argument("--lsmr-maxiter", type=int, nargs="*", default=[10],
                        help="inner LSMR iteration caps for the -lsmrN variants")
    parser.add_argument("--methods", nargs="*", default=None)
    parser.add_argument("--out", type=Path, default=RUNS)
    parser.add_argument("--trace", type=Path, default=TRACE)
    parser.add_argument("--figure", type=Path, default=FIGURE)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--check", action="store_true",
                        help="only the same-factors-same-cost check of the objectives")
    args = parser.parse_args()
    if args.fold_ids is None:
        args.fold_ids = list(range(args.folds))
    if args.check:
        consistency_check()
        return
    if args.report_only:
        report(args)
        return
    main_run(args)
    report(args)


if __name__ == "__main__":
    main()

