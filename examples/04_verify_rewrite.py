"""Check a rewrite of the reference loop against lsqmf's stored golden outputs.

Run:  python examples/04_verify_rewrite.py            (all ten golden cases)
      python examples/04_verify_rewrite.py --quick    (four small cases; for tests)
or, for one candidate, from the shell (the candidate then runs in a child process):
      lsqmf verify examples/04_verify_rewrite.py:rowwise_rewrite

``lsqmf.oracle.reference.matrix_factorization`` is the classic element-by-element SGD loop for
R ≈ P Qᵀ over the entries r_ij > 0, kept as a readable oracle. Its outputs on ten cases (the
tutorial example and others: shapes, ranks, step counts, an early stop on ``epsilon``) ship
in ``lsqmf/golden/`` with their inputs. ``lsqmf.oracle.verify.verify(candidate)`` calls a candidate
``f(R, P, Q, K, max_steps, alpha, beta, epsilon)`` on copies of each case's inputs and compares
the returned ``P``, ``Q`` with the stored ones (``|actual - expected| <= atol + rtol |expected|``)
and, by default, that the caller's ``P`` and ``Q`` were updated in place as the reference does.

Three rewrites an engineer might try:

- ``rowwise_rewrite`` keeps the order of the updates (entry by entry) and only vectorizes the
  inner loop over the rank: it passes.
- ``batch_rewrite`` updates all entries at once from the same P and Q (one matrix product per
  step). It is much faster, but it is a different algorithm (Jacobi instead of Gauss-Seidel
  order), and verify shows by how much its answers differ.
- ``copying_rewrite`` is ``rowwise_rewrite`` returning new arrays: the numbers match but the
  caller's arrays are not updated, which the mutation check reports (``check_mutation=False``
  accepts it).
"""

from __future__ import annotations

import argparse

import numpy as np

QUICK_CASES = ("one_step", "rank1_tiny", "zero_steps", "tall_k3")


def _error(R: np.ndarray, P: np.ndarray, Q: np.ndarray, beta: float) -> float:
    """The reference's stopping error: squared residuals plus beta/2 times factor norms."""
    rows, cols = np.nonzero(R > 0)
    resid = R[rows, cols] - np.einsum("ij,ij->i", P[rows], Q[cols])
    return float(np.sum(resid**2) + beta / 2 * (np.sum(P[rows] ** 2) + np.sum(Q[cols] ** 2)))


def rowwise_rewrite(R: np.ndarray, P: np.ndarray, Q: np.ndarray, K: int, max_steps: int,
                    alpha: float, beta: float, epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    """The reference's updates in its order, vectorized over the rank only; in place."""
    rows, cols = np.nonzero(R > 0)  # row-major order, as the reference visits them
    for _ in range(max_steps):
        for i, j in zip(rows, cols, strict=True):
            e = 2.0 * (R[i, j] - P[i] @ Q[j])
            P[i] += alpha * (e * Q[j] - beta * P[i])
            Q[j] += alpha * (e * P[i] - beta * Q[j])  # with the new P[i], as the reference
        if _error(R, P, Q, beta) < epsilon:
            break
    return P, Q


def batch_rewrite(R: np.ndarray, P: np.ndarray, Q: np.ndarray, K: int, max_steps: int,
                  alpha: float, beta: float, epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    """All entries of a step from the same P and Q (gradient descent); in place. Fails."""
    mask = R > 0
    for _ in range(max_steps):
        E = 2.0 * np.where(mask, R - P @ Q.T, 0.0)
        P_new = P + alpha * (E @ Q - beta * mask.sum(axis=1)[:, None] * P)
        Q[:] = Q + alpha * (E.T @ P_new - beta * mask.sum(axis=0)[:, None] * Q)
        P[:] = P_new
        if _error(R, P, Q, beta) < epsilon:
            break
    return P, Q


def copying_rewrite(R: np.ndarray, P: np.ndarray, Q: np.ndarray, K: int, max_steps: int,
                    alpha: float, beta: float, epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    """``rowwise_rewrite`` on copies: right numbers, caller's arrays untouched."""
    return rowwise_rewrite(R, P.copy(), Q.copy(), K, max_steps, alpha, beta, epsilon)


def main(argv: list[str] | None = None) -> None:
    from lsqmf.oracle.verify import verify

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"only the cases {', '.join(QUICK_CASES)} (for tests)")
    args = parser.parse_args(argv)
    cases = list(QUICK_CASES) if args.quick else None

    for candidate, options in [(rowwise_rewrite, {}), (batch_rewrite, {}),
                               (copying_rewrite, {}),
                               (copying_rewrite, {"check_mutation": False})]:
        report = verify(candidate, atol=1e-8, cases=cases, **options)
        extra = "".join(f", {k}={v}" for k, v in options.items())
        verdict = "PASS" if report.passed else f"FAIL ({report.n_failed} of {len(report.results)})"
        print(f"{candidate.__name__}{extra}: {verdict}")
        for r in report.results:
            mark = "ok " if r.passed else "BAD"
            print(f"  {mark} {r.case:16} max|dP| {r.max_abs_diff_P:9.2e}  "
                  f"max|dQ| {r.max_abs_diff_Q:9.2e}")
            if r.reason:
                print(f"      {r.reason}")


if __name__ == "__main__":
    main()
