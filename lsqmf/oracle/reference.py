"""The element-by-element matrix-factorization loop, kept as a readable oracle.

This is the classic tutorial stochastic-gradient loop for ``R ~= P @ Q.T`` over the positive
entries of a dense matrix. lsqmf keeps it verbatim in spirit, as plain Python, so that any fast
rewrite can be checked against it number for number (see :mod:`lsqmf.oracle.verify` and the stored
outputs in :mod:`lsqmf.oracle.golden`). Its rules are part of its contract; the golden outputs
depend
on every one of them.

Layout
------
``R`` has shape ``(N, M)``; entry ``r_ij`` is *observed* when ``r_ij > 0`` (zero and negative
entries are ignored). ``P`` has shape ``(N, K)`` and ``Q`` has shape ``(M, K)`` -- note that
this tutorial layout differs from the rest of lsqmf, where ``Q`` is ``(rank, n_cols)``. Row
``p_i`` of ``P`` and row ``q_j`` of ``Q`` are the factors of row ``i`` and column ``j``.

One step
--------
For ``i = 0 .. N-1`` in order, for ``j = 0 .. M-1`` in order, if ``r_ij > 0``:

.. math::

    e_{ij} = 2\\,(r_{ij} - p_i \\cdot q_j)

computed once per ``(i, j)``, where the dot product is summed in order ``k = 0 .. K-1``
starting from ``0.0``; then for ``k = 0 .. K-1`` in order

.. math::

    p_{ik} &\\leftarrow p_{ik} + \\alpha\\,(e_{ij}\\, q_{jk} - \\beta\\, p_{ik}) \\\\
    q_{jk} &\\leftarrow q_{jk} + \\alpha\\,(e_{ij}\\, p_{ik} - \\beta\\, q_{jk})

where the ``q`` update uses the ``p_ik`` just updated. ``e_ij`` is the negative gradient of
``(r_ij - p_i . q_j)**2`` with respect to ``p_i . q_j``; ``beta`` is a weight-decay term.

Stopping
--------
After each step the loop evaluates

.. math::

    e = \\sum_{i, j:\\ r_{ij} > 0} \\Big[ (r_{ij} - p_i \\cdot q_j)^2
        + \\sum_k \\tfrac{\\beta}{2}\\,(p_{ik}^2 + q_{jk}^2) \\Big]

(summed in the same ``i, j, k`` order) and stops when ``e < epsilon``; otherwise it runs
``max_steps`` steps. If ``e`` is not finite (the iteration diverged: ``alpha`` is too large
for the data), it raises :class:`FloatingPointError` naming the step, where the tutorial would
carry on with NaN until ``max_steps``; the golden outputs are unaffected.

In place
--------
``P`` and ``Q`` are updated in place: the caller's arrays change, and the returned ``(P, Q)``
*are* the caller's arrays (``Q`` has shape ``(M, K)``). The loop works on ``Q.T``, a
``(K, M)`` view of the caller's ``Q``, as the tutorial does.

The oracle never imports what it checks: :func:`matrix_factorization` shares no numerical code
with :func:`matrix_factorization_fast`, whose kernel lives in :mod:`lsqmf.kernels.core` and is
imported only when the fast function is called. The two share only the argument checks.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import numpy as np

from .._validation import check_array, check_float, check_int, describe

__all__ = ["matrix_factorization", "matrix_factorization_fast"]

logger = logging.getLogger(__name__)


def matrix_factorization(
    R: Any,
    P: np.ndarray,
    Q: np.ndarray,
    K: int,
    max_steps: int = 5000,
    alpha: float = 2e-4,
    beta: float = 0.02,
    epsilon: float = 1e-3,
) -> tuple[np.ndarray, np.ndarray]:
    """Factor ``R ~= P @ Q.T`` with the tutorial's element-by-element SGD loop (the oracle).

    Parameters
    ----------
    R : array_like of float, shape (N, M)
        The matrix; entries ``> 0`` are observed, the others ignored. Not modified.
    P : ndarray of float64, shape (N, K)
        Initial row factors; updated in place.
    Q : ndarray of float64, shape (M, K)
        Initial column factors; updated in place (the loop works on its ``(K, M)`` view
        ``Q.T``).
    K : int
        Rank; must equal ``P.shape[1]`` and ``Q.shape[1]``.
    max_steps : int, default=5000
        Maximum number of sweeps over ``R``; 0 returns the inputs unchanged.
    alpha : float, default=2e-4
        Learning rate (>= 0).
    beta : float, default=0.02
        Regularization weight (>= 0).
    epsilon : float, default=1e-3
        Stop after the first step whose error ``e`` (see Notes) is ``< epsilon`` (>= 0).

    Returns
    -------
    P : ndarray, shape (N, K)
        The caller's ``P``, updated in place.
    Q : ndarray, shape (M, K)
        The caller's ``Q``, updated in place.

    Raises
    ------
    TypeError
        If an argument has the wrong type, or ``P``/``Q`` is not a float64 ndarray.
    ValueError
        If shapes disagree, a value is out of range or not finite, ``P`` or ``Q`` is read-only,
        or ``P`` and ``Q`` share memory.
    FloatingPointError
        If the iteration diverges (``e`` is not finite after a step); ``P`` and ``Q`` then hold
        the (huge or non-finite) values of that step.

    Notes
    -----
    For each row ``i`` then column ``j`` in order, when ``r_ij > 0``: ``e_ij = 2 (r_ij - p_i .
    q_j)`` once, then for ``k = 0..K-1``: ``p_ik += alpha (e_ij q_jk - beta p_ik)`` followed
    by ``q_jk += alpha (e_ij p_ik - beta q_jk)`` with the new ``p_ik``. After each step,
    ``e = sum_{r_ij > 0} [(r_ij - p_i . q_j)**2 + sum_k beta/2 (p_ik**2 + q_jk**2)]``, and the
    loop stops when ``e < epsilon``. Dot products and sums run in index order from ``0.0``.
    The module docstring derives these rules.

    Examples
    --------
    >>> import numpy as np
    >>> from lsqmf.oracle.reference import matrix_factorization
    >>> R = np.array([[5.0, 3.0], [4.0, 0.0]])
    >>> P = np.full((2, 1), 0.5)
    >>> Q = np.full((2, 1), 0.5)
    >>> P_out, Q_out = matrix_factorization(R, P, Q, 1, max_steps=1)
    >>> P_out is P and Q_out is Q
    True
    >>> P.ravel().round(6)
    array([0.501496, 0.500749])
    """
    R, P, Q, K, max_steps, alpha, beta, epsilon = _check_arguments(
        R, P, Q, K, max_steps, alpha, beta, epsilon
    )
    n_steps = _tutorial_loop(R, P, Q, K, max_steps, alpha, beta, epsilon)
    logger.debug("matrix_factorization: ran %d of at most %d steps", n_steps, max_steps)
    return P, Q


def _tutorial_loop(
    R: np.ndarray,
    P: np.ndarray,
    Q: np.ndarray,
    K: int,
    max_steps: int,
    alpha: float,
    beta: float,
    epsilon: float,
) -> int:
    """The loop itself, on checked arguments; returns the number of steps it ran."""
    Q = Q.T  # (K, M) view of the caller's array: writes go to the caller's Q
    N, M = R.shape
    with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported below
        for step in range(max_steps):
            for i in range(N):
                for j in range(M):
                    if R[i, j] > 0:
                        dot = 0.0
                        for k in range(K):
                            dot = dot + P[i, k] * Q[k, j]
                        eij = 2.0 * (R[i, j] - dot)
                        for k in range(K):
                            P[i, k] = P[i, k] + alpha * (eij * Q[k, j] - beta * P[i, k])
                            Q[k, j] = Q[k, j] + alpha * (eij * P[i, k] - beta * Q[k, j])
            e = 0.0
            for i in range(N):
                for j in range(M):
                    if R[i, j] > 0:
                        dot = 0.0
                        for k in range(K):
                            dot = dot + P[i, k] * Q[k, j]
                        e = e + (R[i, j] - dot) * (R[i, j] - dot)
                        for k in range(K):
                            e = e + (beta / 2) * (P[i, k] * P[i, k] + Q[k, j] * Q[k, j])
            if not np.isfinite(e):
                raise _diverged(step + 1, max_steps, alpha)
            if e < epsilon:
                return step + 1
    return max_steps


def _diverged(step: int, max_steps: int, alpha: float) -> FloatingPointError:
    return FloatingPointError(
        f"the iteration diverged: the error e is not finite after step {step} of at most "
        f"{max_steps} (P and Q hold the diverged values of that step); use a smaller `alpha` "
        f"(got {alpha})."
    )


# duplicates: the compiled drop-in keeps the reference's signature and contract
def matrix_factorization_fast(
    R: Any,
    P: np.ndarray,
    Q: np.ndarray,
    K: int,
    max_steps: int = 5000,
    alpha: float = 2e-4,
    beta: float = 0.02,
    epsilon: float = 1e-3,
) -> tuple[np.ndarray, np.ndarray]:
    """Compiled equivalent of :func:`matrix_factorization`: same arguments, same numbers.

    Runs the same operations in the same order as the oracle, compiled with numba (no
    fast-math), so its results match the oracle's to rounding (in practice bit for bit). Like
    the oracle, it updates the caller's ``P`` and ``Q`` in place and returns them.

    Parameters
    ----------
    R, P, Q, K, max_steps, alpha, beta, epsilon
        As in :func:`matrix_factorization`.

    Returns
    -------
    P : ndarray, shape (N, K)
        The caller's ``P``, updated in place.
    Q : ndarray, shape (M, K)
        The caller's ``Q``, updated in place.

    Raises
    ------
    ImportError
        If numba is not installed (``pip install 'lsqmf[fast]'``).
    TypeError, ValueError, FloatingPointError
        As in :func:`matrix_factorization`, with the same messages.

    Notes
    -----
    The first call compiles the kernel (about a second); later calls in the same process
    reuse it.
    """
    R, P, Q, K, max_steps, alpha, beta, epsilon = _check_arguments(
        R, P, Q, K, max_steps, alpha, beta, epsilon
    )
    from ..kernels.registry import get_kernel

    kernel = get_kernel("tutorial_mf")
    n_steps = kernel(R, P, Q.T, max_steps, alpha, beta, epsilon)
    if n_steps < 0:  # the kernel's signal that e became non-finite after step -n_steps
        raise _diverged(-n_steps, max_steps, alpha)
    logger.debug("matrix_factorization_fast: ran %d of at most %d steps", n_steps, max_steps)
    return P, Q


def _check_factor(name: str, value: Any, n_rows: int, of: str) -> np.ndarray:
    """``value`` must be a writable 2-D float64 ndarray with ``n_rows`` finite rows."""
    if not isinstance(value, np.ndarray):
        raise TypeError(
            f"`{name}` must be a numpy ndarray of float64 (it is updated in place); "
            f"got {describe(value)}."
        )
    if value.dtype != np.float64:
        raise TypeError(
            f"`{name}` must have dtype float64 (it is updated in place); got dtype "
            f"{value.dtype}. Pass np.asarray({name}, dtype=np.float64) and use the returned "
            "array."
        )
    if value.ndim != 2:
        raise ValueError(f"`{name}` must be 2-dimensional; got shape {value.shape}.")
    if value.shape[0] != n_rows:
        raise ValueError(
            f"`{name}` must have {n_rows} rows (the number of {of} of `R`); got shape "
            f"{value.shape}."
        )
    if not value.flags.writeable:
        raise ValueError(
            f"`{name}` must be writable (it is updated in place); got a read-only array of "
            f"shape {value.shape}."
        )
    check_array(name, value)  # finiteness
    return value


def _check_arguments(
    R: Any,
    P: Any,
    Q: Any,
    K: Any,
    max_steps: Any,
    alpha: Any,
    beta: Any,
    epsilon: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int, float, float, float]:
    """Validate the arguments of :func:`matrix_factorization` and its fast equivalent."""
    R = check_array("R", R, ndim=2)
    N, M = R.shape
    K = check_int("K", K, min_value=1)
    P = _check_factor("P", P, N, "rows")
    Q = _check_factor("Q", Q, M, "columns")
    if P.shape[1] != K or Q.shape[1] != K:
        raise ValueError(
            f"`K` must equal the number of columns of `P` and of `Q`; got K={K}, P of shape "
            f"{P.shape} and Q of shape {Q.shape}."
        )
    if np.shares_memory(P, Q):
        raise ValueError("`P` and `Q` must not share memory; pass separate arrays.")
    max_steps = check_int("max_steps", max_steps, min_value=0)
    alpha = cast(float, check_float("alpha", alpha, min_value=0.0))
    beta = cast(float, check_float("beta", beta, min_value=0.0))
    epsilon = cast(float, check_float("epsilon", epsilon, min_value=0.0))
    return R, P, Q, K, max_steps, alpha, beta, epsilon
