"""A measurement matrix with track-like missing data: joint least squares vs VarPro restarts.

Run:  python examples/05_measurement_matrix.py            (a 60 x 40 matrix, rank 4)
      python examples/05_measurement_matrix.py --quick    (30 x 20, rank 3; for tests)

In structure from motion and similar problems the data are a measurement matrix M (frames x
point tracks) of low rank, with a visibility mask W: track j is seen only in one band of
frames. Such banded patterns have local minima: a joint fit of P and Q from a random start
often stops at a worse cost. Variable projection (``eliminate='Q'``: Q solved in closed form
for every P, only P optimized) stalls much less often (compare the costs this script prints),
and ``lsqmf.multistart`` restarts it from seeded starts until the best cost has been seen
twice, so that the answer does not depend on one lucky start.

``lsqmf.data.synthetic.make_tracks`` draws such an instance. ``lsqmf.solve(M, rank, mask=W)`` fits
exactly the entries where W is True, whatever M holds elsewhere (``Ratings.from_dense(M,
mask=W)`` builds the same observed entries, to pass around or to ``lsqmf.multistart``).
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np

import lsqmf
from lsqmf.data.synthetic import make_tracks


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller instance (for tests)")
    args = parser.parse_args(argv)

    n_rows, n_cols, rank = (30, 20, 3) if args.quick else (60, 40, 4)
    M, W, (P_true, Q_true) = make_tracks(n_rows, n_cols, rank, noise=0.01, random_state=0)
    print(f"measurement matrix {M.shape}, rank {rank}, {W.mean():.0%} visible")
    # no regularization: formulation 'none' fits the visible entries only
    options = {"mask": W, "formulation": "none", "init_scale": 1.0, "ftol": 1e-10,
               "xtol": 1e-10, "gtol": 1e-10}

    print("the same 5 random starts, joint least squares (P and Q together) vs VarPro:")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lsqmf.ConvergenceWarning)
        for seed in range(5):
            joint = lsqmf.solve(M, rank, random_state=seed, max_nfev=500, **options)
            varpro = lsqmf.solve(M, rank, random_state=seed, eliminate="Q", **options)
            print(f"  start {seed}: joint cost {joint.cost:.4g} ({joint.nfev} evaluations), "
                  f"VarPro cost {varpro.cost:.4g} ({varpro.nfev} evaluations)")

    res = lsqmf.multistart(M, rank, eliminate="Q", random_state=0, max_starts=20, **options)
    print(f"VarPro multistart: {res.n_starts} starts, {res.n_optima} distinct optima, "
          f"best cost {res.costs.min():.4g} reached {res.hits[0]} times, "
          f"converged {res.converged}")

    best = res.best
    truth = P_true @ Q_true
    hidden = ~W
    error = (best.P @ best.Q - truth)[hidden]
    print(f"best fit: RMS error on the {int(hidden.sum())} hidden entries "
          f"{np.sqrt(np.mean(error ** 2)):.3g} (entries of the truth have RMS "
          f"{np.sqrt(np.mean(truth[hidden] ** 2)):.3g})")


if __name__ == "__main__":
    main()
