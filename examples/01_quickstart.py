"""Quickstart: factor a small rating matrix with missing entries and predict the missing ones.

Run:  python examples/01_quickstart.py

A dense array with NaN for "not rated" goes straight into ``lsqmf.solve``, which poses the
factorization R ≈ P Q as a nonlinear least-squares problem for
``scipy.optimize.least_squares`` (trf + lsmr by default) and returns a ``FitResult``.
"""

from __future__ import annotations

import numpy as np

import lsqmf


def main() -> None:
    R = np.array([
        [5, 3, np.nan, 1],
        [4, np.nan, np.nan, 1],
        [1, 1, np.nan, 5],
        [1, np.nan, np.nan, 4],
        [np.nan, 1, 5, 4],
    ])  # NaN marks a missing rating

    # 'l2': squared error on the observed entries + reg * (|P|^2 + |Q|^2)
    fit = lsqmf.solve(R, rank=2, formulation="l2", reg=0.01, random_state=0)
    print(fit.summary())
    print(f"P {fit.P.shape}, Q {fit.Q.shape}: R ≈ P @ Q")
    observed = ~np.isnan(R)
    R_hat = fit.P @ fit.Q
    rms = float(np.sqrt(np.mean((R_hat - R)[observed] ** 2)))
    print(f"status {lsqmf.Status(fit.status).name}, success {fit.success}, {fit.nfev} "
          f"evaluations, cost {fit.cost:.4g}, RMS error on the observed entries {rms:.3g}")
    print("fitted matrix (observed entries as given, * = predicted):")
    for i in range(R.shape[0]):
        cells = [f"{R[i, j]:5.2f} " if observed[i, j] else f"{R_hat[i, j]:5.2f}*"
                 for j in range(R.shape[1])]
        print("  " + " ".join(cells))

    rows, cols = np.nonzero(~observed)
    predicted = fit.predict(rows, cols)
    print("missing entries:", ", ".join(
        f"({r}, {c}) -> {v:.2f}" for r, c, v in zip(rows, cols, predicted, strict=True)))

    # The cost after every residual evaluation, with wall time: a pandas DataFrame.
    history = fit.history.to_frame()
    print(f"cost history: {len(history)} evaluations, "
          f"{history['cost'].iloc[0]:.4g} -> {history['cost'].iloc[-1]:.4g}")


if __name__ == "__main__":
    main()
