"""Compare optimizers on one problem: ALS, gradient descent, SGD and Gauss-Newton (lsq).

Run:  python examples/03_compare_solvers.py solvers.png            (a 400 x 300 problem)
      python examples/03_compare_solvers.py solvers.png --quick    (60 x 40, at most 40
                                                                    iterations; for tests)

Every solver in ``lsqmf.SOLVERS`` minimizes the same objective (the 'l2' formulation: squared
error on the observed entries plus ``reg`` times the squared norms of the factors) and returns a
``FitResult`` whose ``history`` records the cost after every iteration with its wall time, so
the methods can be compared on one plot:

- ``als``: alternating least squares, exact ridge solves for all users, then all items;
- ``gd``: full-batch gradient descent (Adam steps);
- ``sgd``: Funk's stochastic gradient descent, one pass over the observed entries per epoch;
- ``lsq``: ``lsqmf.solve``, a Gauss-Newton trust-region method (scipy's ``trf`` with LSMR)
  on the residual vector; its "iterations" are residual evaluations.

The problem is exactly rank 5 plus a little noise, so every method should reach about the same
cost; how fast they get there, per iteration and per second, is the point of the plot. (ALS
takes large first steps and then crawls along a shallow valley; Gauss-Newton needs few
iterations, each one a sparse linear least-squares solve.)
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import lsqmf
from lsqmf.data.synthetic import make_low_rank

SOLVER_OPTIONS = {
    "als": {"max_iter": 100},
    "gd": {"max_iter": 500, "learning_rate": 0.05},
    "sgd": {"max_iter": 60, "learning_rate": 0.02},
    "lsq": {"max_iter": 60},
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="where to save the figure (PNG, SVG, PDF ...)")
    parser.add_argument("--quick", action="store_true", help="a small problem (for tests)")
    args = parser.parse_args(argv)

    n_rows, n_cols = (60, 40) if args.quick else (400, 300)
    ratings, _ = make_low_rank(n_rows, n_cols, 5, density=0.2, noise=0.05, random_state=0)
    print(f"problem: {ratings!r}, true rank 5")
    common = {"reg": 0.05, "tol": 1e-6, "random_state": 0}  # the same objective and start

    # Some solvers run numba-compiled kernels, compiled (or loaded from the on-disk cache) on
    # first use: one iteration on a tiny problem first keeps that out of the timings.
    tiny, _ = make_low_rank(8, 6, 2, density=0.5, random_state=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lsqmf.ConvergenceWarning)
        for name in SOLVER_OPTIONS:
            lsqmf.get_solver(name)(tiny, 2, max_iter=1, random_state=0)

    histories = {}
    print(f"{'solver':6} {'final cost':>11} {'iterations':>10} {'seconds':>8}  status")
    for name, options in SOLVER_OPTIONS.items():
        if args.quick:
            options = {**options, "max_iter": min(options["max_iter"], 40)}
        with warnings.catch_warnings():
            # a solver that uses its whole iteration budget warns; the status says so too
            warnings.simplefilter("ignore", lsqmf.ConvergenceWarning)
            fit = lsqmf.get_solver(name)(ratings, 5, **common, **options)
        histories[name] = fit.history.to_frame()
        print(f"{name:6} {fit.cost:>11.5g} {len(fit.history):>10} {fit.wall_time:>8.3f}  "
              f"{fit.message}")

    # matplotlib is only needed here; the Agg canvas draws without a display
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), layout="constrained")
    by_step, by_time = fig.subplots(1, 2, sharey=True)
    for name, h in histories.items():
        by_step.plot(h["step"], h["cost"], marker=".", label=name)
        by_time.plot(h["time"], h["cost"], marker=".", label=name)
    by_step.set(xlabel="iteration (lsq: residual evaluation)", ylabel="cost", yscale="log")
    by_time.set(xlabel="wall time [s]", xscale="log")
    for ax in (by_step, by_time):
        ax.grid(True, alpha=0.3)
    by_time.legend(title="solver")
    fig.suptitle(f"Same objective, four optimizers ({n_rows} x {n_cols}, rank 5, "
                 f"{ratings.nnz} observed entries)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
