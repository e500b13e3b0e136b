"""bmf's settings on inner holdouts of the training folds: the default and the fast configuration.

Usage (from the repository root, with the peers' venv for cornac)::

    benchmarks/peers/.venv/bin/python benchmarks/peers/bmf_settings.py --out reports/peers

For each of the five folds of ``bench_peers.py`` (``kfold(load_builtin(), 5, random_state=0)``)
the fold's *training* data is split 90/10 (``holdout_split(..., random_state=100 + fold)``);
the test folds are never used. On every inner split, bmf runs once per setting of
:data:`SETTINGS` (``random_state=fold``) with ``validation=`` the inner 10 % and
``patience=None``, which records the RMSE of the running posterior mean after every sweep past
the burn-in; so one run gives the whole curve "RMSE after T sweeps" of its setting. cornac
(``reports/peers/chosen.json``'s setting) is fitted on the same inner splits, for the level the
fast configuration has to reach.

Output: ``bmf_settings.csv`` (fold, rank, init_scale, burn_in, warm_start, max_iter, sweeps,
rmse; ``system='cornac-mf'`` rows have one RMSE per fold).

How the settings were chosen (``reports/peers/README.md``):

- the default (``lsqmf evaluate``): the cheapest setting whose RMSE after ``max_iter`` sweeps is,
  averaged over the five inner splits, within 0.005 of the best lsqmf setting (bmf rank 20, 160
  sweeps) on the same splits;
- the fast configuration: the setting that reaches cornac's RMSE on each inner split after the
  fewest sweeps (median over the splits), weighted by the cost of a sweep at its rank.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: (rank, init_scale, burn_in, warm_start, max_iter) per run.
SETTINGS = (
    [(k, s, b, 0, 90) for k in (6, 8, 10, 12) for s in (0.03, 0.1) for b in (10, 15, 25)]
    + [(20, 0.1, 15, 0, 160)]
    + [(k, 0.1, b, 0, 45) for k in (4, 5, 6, 8) for b in (4, 7, 10)]
    + [(6, 0.1, 3, 2, 80), (10, 0.1, 3, 2, 80)]
    + [(8, 0.1, 3, 2, 70), (8, 0.1, 10, 2, 70), (6, 0.1, 10, 2, 70)]
)

#: The candidates for the default, rerun with two more seeds (``1000 + fold``, ``2000 + fold``):
#: one chain per split is too noisy (about 0.002 between chains) to rank settings 0.001 apart.
SEEDED_SETTINGS = [(10, 0.1, 15, 0, 70), (6, 0.1, 3, 2, 70), (8, 0.1, 3, 2, 70)]

FIELDS = ["system", "fold", "seed", "rank", "init_scale", "burn_in", "warm_start", "max_iter",
          "sweeps", "rmse", "cpu_s"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=HERE.parent.parent / "reports" / "peers")
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args(argv)

    from lsqmf.data.readers import load_builtin
    from lsqmf.evaluate import holdout_split, kfold
    from lsqmf.solvers import bmf

    sys.path.insert(0, str(HERE))
    import bench_peers

    cornac_setting = json.loads((args.out / "chosen.json").read_text())["cornac-mf"]
    folds = kfold(load_builtin(), 5, random_state=0)[: args.folds]
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "bmf_settings.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, FIELDS)
        writer.writeheader()
        for f, (train, _) in enumerate(folds):
            inner, val = holdout_split(train, test_size=0.1, random_state=100 + f)
            predict, fit_s = bench_peers.fit_cornac(inner, cornac_setting, f)
            writer.writerow({"system": "cornac-mf", "fold": f,
                             "rmse": bench_peers.score(inner, val, predict)["rmse"],
                             "cpu_s": fit_s})
            runs = [(s, f) for s in SETTINGS] + [(s, seed) for seed in (1000 + f, 2000 + f)
                                                 for s in SEEDED_SETTINGS]
            for (rank, scale, burn, warm, T), seed in runs:
                t0 = time.process_time()
                fit = bmf(inner, rank, reg=0.15, count_scaled=True, biases=True, max_iter=T,
                          burn_in=burn, warm_start=warm, init_scale=scale, random_state=seed,
                          validation=val, patience=None)
                cpu = time.process_time() - t0
                for i, rmse in enumerate(fit.options["validation_rmse"]):
                    writer.writerow({"system": "lsqmf-bmf", "fold": f, "seed": seed,
                                     "rank": rank,
                                     "init_scale": scale, "burn_in": burn, "warm_start": warm,
                                     "max_iter": T, "sweeps": burn + 1 + i, "rmse": rmse,
                                     "cpu_s": cpu})
                fh.flush()
                print(f"fold {f} rank {rank} init {scale} burn {burn} warm {warm}: "
                      f"{fit.options['validation_rmse'][-1]:.4f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
