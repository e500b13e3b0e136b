r"""Compiled (numba) kernels, in one module, behind one lookup and an explicit backend.

numba is a required dependency, but nothing here imports it at module import time: each
kernel is written below as a plain Python function over numpy arrays and scalars and declared
in :data:`KERNELS` (a :class:`~lsqmf.kernels.jit.Kernel` each);
:func:`lsqmf.kernels.registry.get_kernel` compiles it with ``numba.njit`` on first request and
keeps the compiled function for the life of the process.

Backends
--------
Every public function that runs a kernel takes ``backend='auto'|'compiled'|'numpy'``, resolved
once by :func:`lsqmf.kernels.backend.resolve_backend`: ``'compiled'`` runs the kernels (and
raises ImportError if numba cannot be imported), ``'numpy'`` runs the numpy implementation
(kept as the oracle the tests compare the kernels against), ``'auto'`` is ``'compiled'``, or
``'numpy'`` with a logged warning if numba cannot be imported.
:func:`lsqmf.kernels.registry.select_kernels` gives the kernels for a backend (None for numpy).

Disk cache and start-up
-----------------------
Kernels are compiled with ``cache=True``: the first process compiles them (a few seconds;
far more on a busy machine) and writes the machine code to numba's cache, and later processes
load it in a fraction of a second. numba writes the cache next to this file
(``lsqmf/__pycache__``) and, when the package directory is not writable (a read-only or
system-wide install), falls back to its per-user cache directory (``~/.cache/numba``, or
``$NUMBA_CACHE_DIR`` when set), so the cache works for every install. A cache entry is tied
to this file's modification time and to the machine's CPU, and is rebuilt when either changes.
:func:`lsqmf.kernels.registry.warm_up` compiles or loads the kernels; timed entry points call
it before their clock starts, so that compile time is never counted as fit time.

Design rules shared by every kernel
-----------------------------------
- Kernels take only numpy arrays and scalars, validated and converted by the caller (a public
  entry point elsewhere in lsqmf); they do no checking of their own.
- Arrays are updated in place; kernels return a scalar (a count or a cost) or nothing.
- Index arrays are int64; values float64; layouts are stated in each docstring.
- Randomness (e.g. a visiting order) is drawn by the caller with a ``numpy.random.Generator``
  and passed in as an array, so kernels are deterministic.
- A long kernel is split into helpers, one stage each (:data:`_HELPERS`), compiled by
  :func:`lsqmf.kernels.jit.jit_helpers` and inlined by LLVM, so that the compiled kernel runs
  the operations of one written in a single body, in the same order, at the same speed.
- No fast-math, so floating-point operations run exactly as written, with one listed
  exception (:data:`_FASTMATH`): a kernel with no reference order to reproduce may let numba
  reassociate its sums.

Kernels
-------
``tutorial_mf``
    The element-by-element loop of :mod:`lsqmf.oracle.reference`, the same operations in the same
    order (used by :func:`lsqmf.oracle.reference.matrix_factorization_fast`).
``sgd_epoch``
    One epoch of Funk-style SGD over the observed entries of a sparse matrix (for the ``sgd``
    solver). Call it through :func:`sgd_epoch`, which documents the update, accepts None for
    absent weights and biases and scalars for uniform regularization, and does O(1) shape
    checks.
``als_rows``
    One exact ALS half-step: for every row of the solving side, accumulate its ridge normal
    equations and solve them by Cholesky, rows in parallel (``numba.prange``; compiled with
    ``parallel=True``). Used by :mod:`lsqmf.solvers.als` with the compiled backend.
``residual_sse``
    The squared residual norm at the observed (or held-out) pairs in one fused pass over the
    entries, chunks in parallel: the data term of :meth:`lsqmf.model.problem.Problem.cost`, the
    RMS and the validation RMSE, without gathering the ``(nnz, rank)`` factor rows.
``jac_matvec``, ``jac_rmatvec``
    The data block of the factorization Jacobian applied to a vector, :math:`Jv`, and its
    transpose, :math:`J^\top y`, straight from the factors and the observed indices (no
    Jacobian is stored), observed entries (``jac_matvec``) or rows and columns
    (``jac_rmatvec``) in parallel. Used by :meth:`lsqmf.model.problem.Problem.operator` with the
    compiled backend.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._validation import check_choice
from .jit import Kernel, compiled
from .linalg import (
    back_substitution,
    cholesky_in_place,
    forward_substitution,
    gather_entries,
    ridge_normal_equations,
)

__all__ = ["KERNELS", "SSE_CHUNK", "residual_sse_numpy", "sgd_epoch"]


#: ``range`` in plain Python; rebound to ``numba.prange`` before a parallel kernel is compiled
#: (:func:`lsqmf.kernels.jit.compiled`; which is how numba finds the parallel loop).
_prange: Any = range

# --------------------------------------------------------------------------------------------
# tutorial_mf


def _tutorial_mf(
    R: np.ndarray,
    P: np.ndarray,
    Qt: np.ndarray,
    max_steps: int,
    alpha: float,
    beta: float,
    epsilon: float,
) -> int:
    """The reference loop on checked arguments; returns the number of steps run.

    A negative return value ``-s`` means the error ``e`` was not finite after step ``s`` (the
    iteration diverged); the caller raises.

    Parameters
    ----------
    R : ndarray of float64, shape (N, M)
        Entries ``> 0`` are observed.
    P : ndarray of float64, shape (N, K)
        Updated in place.
    Qt : ndarray of float64, shape (K, M)
        Updated in place; the transposed view of the caller's ``(M, K)`` array.
    max_steps : int
    alpha, beta, epsilon : float

    Notes
    -----
    The rules are those of :mod:`lsqmf.oracle.reference`; this is an independent transcription
    (the oracle's readability is not traded for speed, and this one's layout is not traded
    for readability). Without fast-math, every sum runs in index order, so the results agree
    with the oracle to the last bit.
    """
    N, M = R.shape
    K = P.shape[1]
    half_beta = beta / 2
    for step in range(max_steps):
        for i in range(N):
            for j in range(M):
                r = R[i, j]
                if r > 0:
                    dot = 0.0
                    for k in range(K):
                        dot += P[i, k] * Qt[k, j]
                    eij = 2.0 * (r - dot)
                    for k in range(K):
                        p = P[i, k] + alpha * (eij * Qt[k, j] - beta * P[i, k])
                        P[i, k] = p
                        Qt[k, j] = Qt[k, j] + alpha * (eij * p - beta * Qt[k, j])
        e = 0.0
        for i in range(N):
            for j in range(M):
                r = R[i, j]
                if r > 0:
                    dot = 0.0
                    for k in range(K):
                        dot += P[i, k] * Qt[k, j]
                    e += (r - dot) * (r - dot)
                    for k in range(K):
                        e += half_beta * (P[i, k] * P[i, k] + Qt[k, j] * Qt[k, j])
        if not np.isfinite(e):
            return -(step + 1)
        if e < epsilon:
            return step + 1
    return max_steps


# --------------------------------------------------------------------------------------------
# sgd_epoch

#: Entries an SGD epoch reads ahead into small buffers before updating: those loads are
#: independent of each other, so the processor overlaps their cache misses (in a plain loop
#: over a shuffled ``order`` each visit's loads wait behind the previous update). 256 visits
#: are 8 kB, in L1 cache. Same visits, same arithmetic, same numbers.
GATHER = 256

# duplicates: Funk's and biased SGD epochs read ahead alike but update differently
def _sgd_epoch(
    rows: np.ndarray,
    cols: np.ndarray,
    values: np.ndarray,
    weights: np.ndarray,
    order: np.ndarray,
    P: np.ndarray,
    Q: np.ndarray,
    row_bias: np.ndarray,
    col_bias: np.ndarray,
    mu: float,
    lr: float,
    reg_P: np.ndarray,
    reg_Q: np.ndarray,
    reg_row_bias: np.ndarray,
    reg_col_bias: np.ndarray,
    fit_biases: bool,
    update_rows: bool,
    update_cols: bool,
) -> float:
    """One SGD epoch over the observed entries listed in ``order``; see :func:`sgd_epoch`."""
    rank = P.shape[1]
    loss = 0.0
    n_visits = order.shape[0]
    us = np.empty(GATHER, dtype=np.int64)
    its = np.empty(GATHER, dtype=np.int64)
    vs = np.empty(GATHER, dtype=np.float64)
    ws = np.ones(GATHER, dtype=np.float64)
    for s0 in range(0, n_visits, GATHER):
        # read ahead: independent loads whose cache misses overlap (see GATHER)
        n = gather_entries(order, s0, rows, cols, values, weights, us, its, vs, ws)
        for j in range(n):
            u = us[j]
            i = its[j]
            w = ws[j]
            pred = mu
            if fit_biases:
                pred += row_bias[u] + col_bias[i]
            for k in range(rank):
                pred += P[u, k] * Q[k, i]
            err = vs[j] - pred
            loss += w * err * err
            werr = w * err
            if fit_biases:
                if update_rows:
                    row_bias[u] += lr * (werr - reg_row_bias[u] * row_bias[u])
                if update_cols:
                    col_bias[i] += lr * (werr - reg_col_bias[i] * col_bias[i])
            for k in range(rank):
                p = P[u, k]
                q = Q[k, i]
                if update_rows:
                    P[u, k] = p + lr * (werr * q - reg_P[u] * p)
                if update_cols:
                    Q[k, i] = q + lr * (werr * p - reg_Q[i] * q)
    return loss


def sgd_epoch(
    rows: np.ndarray,
    cols: np.ndarray,
    values: np.ndarray,
    weights: np.ndarray | None,
    order: np.ndarray,
    P: np.ndarray,
    Q: np.ndarray,
    row_bias: np.ndarray | None,
    col_bias: np.ndarray | None,
    mu: float,
    lr: float,
    reg_P: float | np.ndarray,
    reg_Q: float | np.ndarray,
    reg_row_bias: float | np.ndarray = 0.0,
    reg_col_bias: float | np.ndarray = 0.0,
    fit_biases: bool = False,
    *,
    update_rows: bool = True,
    update_cols: bool = True,
    backend: str = "compiled",
) -> float:
    r"""One epoch of Funk-style SGD over observed entries, updating factors in place.

    Visits the observed entries ``t = order[0], order[1], ...`` in that order -- never the
    dense matrix: time is O(len(order) * rank) and no ``(n_rows, n_cols)`` array exists. For
    entry ``t`` with ``u = rows[t]``, ``i = cols[t]``, value ``v = values[t]`` and weight
    ``w = weights[t]`` (1 without weights):

    .. math::

        e &= v - (\mu + b_u + c_i + \textstyle\sum_{k} P_{uk} Q_{ki}) \\
        b_u &\leftarrow b_u + \mathrm{lr}\,(w e - \lambda^b_u b_u), \qquad
        c_i \leftarrow c_i + \mathrm{lr}\,(w e - \lambda^c_i c_i) \\
        P_{uk} &\leftarrow P_{uk} + \mathrm{lr}\,(w e\, Q_{ki} - \lambda^P_u P_{uk}), \qquad
        Q_{ki} \leftarrow Q_{ki} + \mathrm{lr}\,(w e\, P_{uk} - \lambda^Q_i Q_{ki})

    where every right-hand side uses the values from *before* this entry's update (a plain
    gradient step on the entry's term
    :math:`\tfrac12 w e^2 + \tfrac12 \lambda^P_u\|p_u\|^2 + \tfrac12 \lambda^Q_i\|q_i\|^2
    + \tfrac12 \lambda^b_u b_u^2 + \tfrac12 \lambda^c_i c_i^2`). Without ``fit_biases`` the
    bias terms are absent (neither read nor written). ``mu`` is a fixed offset.

    Regularization is applied at every visit, so the total regularization a row receives per
    epoch is its weight times its number of visits: to minimize
    :math:`\tfrac12[\sum w e^2 + \lambda \sum_u s_u\|p_u\|^2 + \dots]` pass
    ``reg_P[u] = lam * s_u / n_u`` with ``n_u`` the number of observed entries of row ``u``
    (``reg_P = lam`` when ``s_u = n_u``, the count-scaled convention of Funk's SVD).

    Parameters
    ----------
    rows, cols : ndarray of int64, shape (nnz,)
        Row and column index of each observed entry; must lie inside ``P`` and ``Q``.
    values : ndarray of float64, shape (nnz,)
        Observed values.
    weights : ndarray of float64, shape (nnz,), or None
        Per-entry weights of the data term; None for unit weights.
    order : ndarray of int64, shape (n_visits,)
        Entry indices in ``[0, nnz)`` in visiting order: ``np.arange(nnz)`` for the stored
        order, ``rng.permutation(nnz)`` for a shuffled epoch (draw it with a
        ``numpy.random.Generator`` in the caller; the kernel is deterministic).
    P : ndarray of float64, shape (n_rows, rank)
        Row factors, updated in place.
    Q : ndarray of float64, shape (rank, n_cols)
        Column factors -- rank x n_cols, the lsqmf layout -- updated in place. Any strides
        are accepted, so a caller that keeps an item-major ``(n_cols, rank)`` array for
        locality passes its transposed view ``Qt.T``.
    row_bias : ndarray of float64, shape (n_rows,), or None
        Row biases, updated in place when ``fit_biases``; ignored (may be None) otherwise.
    col_bias : ndarray of float64, shape (n_cols,), or None
        Column biases, likewise.
    mu : float
        Global offset (not updated).
    lr : float
        Learning rate.
    reg_P : float or ndarray of float64, shape (n_rows,)
        Per-visit L2 weight of each row's factors (a scalar applies to every row).
    reg_Q : float or ndarray of float64, shape (n_cols,)
        Per-visit L2 weight of each column's factors.
    reg_row_bias : float or ndarray of float64, shape (n_rows,), default=0.0
        Per-visit L2 weight of each row bias (used only with ``fit_biases``).
    reg_col_bias : float or ndarray of float64, shape (n_cols,), default=0.0
        Per-visit L2 weight of each column bias (used only with ``fit_biases``).
    fit_biases : bool, default=False
        Include and update the biases.
    update_rows, update_cols : bool, default=True
        Update the row side (``P``, ``row_bias``) and the column side (``Q``, ``col_bias``);
        switch one off to fit one side with the other held fixed (as ``als_sgd`` does).
    backend : {'compiled', 'numpy'}, default='compiled'
        The resolved backend (:func:`lsqmf.kernels.backend.resolve_backend`): the numba
        kernel, or its oracle -- the same loop run by the Python interpreter (a serial
        per-entry update has no vectorized form), which imports no numba.

    Returns
    -------
    float
        :math:`\sum_t w_t e_t^2` over the visited entries, each error taken just before its
        update (a running estimate of the data term; NaN or inf means the step diverged --
        lower ``lr``).

    Raises
    ------
    ImportError
        If numba is not installed.
    TypeError, ValueError
        If an array updated in place is not float64 or the shapes disagree (O(1) checks only:
        index ranges are the caller's responsibility, and are not checked -- an index out of
        range is undefined behaviour).

    Notes
    -----
    The caller validates the data once (e.g. with :class:`lsqmf.Ratings`, whose indices are
    in range) and calls this once per epoch; the per-call cost beyond the epoch itself is a
    few O(1) checks and, for scalar regularization weights, one O(n_rows + n_cols)
    broadcast.
    """
    check_choice("backend", backend, ("compiled", "numpy"))
    kernel: Callable[..., Any] = compiled(_SGD_EPOCH) if backend == "compiled" else _sgd_epoch
    for name, arr in (("P", P), ("Q", Q)):
        _check_in_place(name, arr, 2)
    rank, n_rows, n_cols = P.shape[1], P.shape[0], Q.shape[1]
    if Q.shape[0] != rank:
        raise ValueError(
            f"`Q` must have shape (rank, n_cols) = ({rank}, n_cols) to match `P` of shape "
            f"{P.shape}; got shape {Q.shape}."
        )
    rows, cols, values, weights, order = _sgd_entries(rows, cols, values, weights, order)
    if fit_biases:
        _check_in_place("row_bias", row_bias, 1, (n_rows,))
        _check_in_place("col_bias", col_bias, 1, (n_cols,))
    else:
        row_bias = col_bias = np.empty(0, dtype=np.float64)
    return float(
        kernel(
            rows, cols, values, weights, order, P, Q, row_bias, col_bias,
            float(mu), float(lr),
            _per_index("reg_P", reg_P, n_rows),
            _per_index("reg_Q", reg_Q, n_cols),
            _per_index("reg_row_bias", reg_row_bias, n_rows),
            _per_index("reg_col_bias", reg_col_bias, n_cols),
            bool(fit_biases),
            bool(update_rows),
            bool(update_cols),
        )
    )


def _sgd_entries(
    rows: Any, cols: Any, values: Any, weights: Any, order: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The entry arrays of :func:`sgd_epoch` as the kernel takes them (no weights: empty)."""
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    order = np.asarray(order, dtype=np.int64)
    nnz = values.shape[0]
    if rows.shape != (nnz,) or cols.shape != (nnz,) or order.ndim != 1:
        raise ValueError(
            "`rows`, `cols` and `values` must be 1-D of one length and `order` 1-D; got "
            f"shapes {rows.shape}, {cols.shape}, {values.shape} and {order.shape}."
        )
    if weights is None:
        weights = np.empty(0, dtype=np.float64)
    else:
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != (nnz,):
            raise ValueError(f"`weights` must have shape ({nnz},); got shape {weights.shape}.")
    return rows, cols, values, weights, order


def _check_in_place(
    name: str, arr: Any, ndim: int, shape: tuple[int, ...] | None = None
) -> None:
    if not isinstance(arr, np.ndarray) or arr.dtype != np.float64 or arr.ndim != ndim:
        raise TypeError(
            f"`{name}` must be a {ndim}-D float64 ndarray (it is updated in place); got "
            f"{type(arr).__name__} {getattr(arr, 'dtype', '')} of shape "
            f"{getattr(arr, 'shape', None)}."
        )
    if shape is not None and arr.shape != shape:
        raise ValueError(f"`{name}` must have shape {shape}; got shape {arr.shape}.")
    if not arr.flags.writeable:
        raise ValueError(f"`{name}` must be writable (it is updated in place).")


def _per_index(name: str, value: Any, n: int) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        return np.full(n, float(arr))
    if arr.shape != (n,):
        raise ValueError(f"`{name}` must be a scalar or have shape ({n},); got {arr.shape}.")
    return arr


# --------------------------------------------------------------------------------------------
# als_rows

#: A Cholesky pivot at most this fraction of its diagonal entry marks the row's system as
#: numerically singular; the caller then solves that row with its dense fallback.
_CHOL_RTOL = 1e-13

#: Rows per parallel task of ``als_rows`` (its work arrays are allocated once per block).
_ALS_BLOCK = 64


def _als_rows(
    indptr: np.ndarray,
    other: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    F: np.ndarray,
    reg_factor: np.ndarray,
    reg_bias: np.ndarray,
    with_bias: bool,
    out: np.ndarray,
    failed: np.ndarray,
) -> int:
    r"""Exact ridge solve of every row of one ALS side; returns the number of failed rows.

    For row ``r`` with entries ``t`` in ``indptr[r]:indptr[r+1]`` and features
    :math:`a_t = [F_{j}; 1]` (``j = other[t]``; the constant 1 only when ``with_bias``),
    solves :math:`(\Lambda_r + \sum_t w_t a_t a_t^\top) z = \sum_t w_t y_t a_t` with
    :math:`\Lambda_r = \mathrm{diag}(\mathrm{reg\_factor}_r, \dots,
    \mathrm{reg\_bias}_r)` by an in-place Cholesky factorization, and writes ``z`` to
    ``out[r]``. Rows without entries get 0. A row whose factorization meets a pivot that is
    not above ``_CHOL_RTOL`` times its diagonal entry (singular or not finite: possible only
    with zero regularization or non-finite data) gets ``failed[r] = True`` and ``out[r] = 0``;
    the caller solves it another way.

    Parameters
    ----------
    indptr : ndarray of int64, shape (n_own + 1,)
        Row ``r``'s entries are ``indptr[r]:indptr[r+1]`` (entries sorted by row).
    other : ndarray of int64, shape (nnz,)
        Row of ``F`` (index on the fixed side) of each entry.
    y : ndarray of float64, shape (nnz,)
        Target of each entry (the value minus any fixed offset).
    weights : ndarray of float64, shape (nnz,)
    F : ndarray of float64, shape (n_other, k)
        Factors of the fixed side (without the constant column).
    reg_factor, reg_bias : ndarray of float64, shape (n_own,)
        Diagonal of :math:`\Lambda_r` (``reg_bias`` used only with ``with_bias``).
    with_bias : bool
    out : ndarray of float64, shape (n_own, k [+1])
        Written in place.
    failed : ndarray of bool, shape (n_own,)
        Written in place.

    Notes
    -----
    Rows are independent and each is computed by one thread in a fixed order, so the result
    does not depend on the number of threads. Time :math:`O(N k^2 + n k^3)`; the work arrays
    are allocated once per block of ``_ALS_BLOCK`` rows.
    """
    n_own = indptr.shape[0] - 1
    k = F.shape[1]
    k1 = k + 1 if with_bias else k
    n_blocks = (n_own + _ALS_BLOCK - 1) // _ALS_BLOCK
    block_failed = np.zeros(n_blocks, dtype=np.int64)
    for blk in _prange(n_blocks):
        # work arrays once per block of rows, not per row (an allocation per row costs more
        # than the solve of a row with a few ratings)
        G = np.empty((k1, k1))
        h = np.empty(k1)
        a = np.empty(k1)
        z = np.empty(k1)
        for r in range(blk * _ALS_BLOCK, min(n_own, (blk + 1) * _ALS_BLOCK)):
            start = indptr[r]
            end = indptr[r + 1]
            failed[r] = False
            for p in range(k1):
                out[r, p] = 0.0
            if start == end:
                continue
            for p in range(k1):
                h[p] = 0.0
                for q in range(k1):
                    G[p, q] = 0.0
            ridge_normal_equations(start, end, other, y, weights, F, with_bias, a, G, h)
            for p in range(k):
                G[p, p] += reg_factor[r]
            if with_bias:
                G[k, k] += reg_bias[r]
            if not cholesky_in_place(G, _CHOL_RTOL, True):
                failed[r] = True
                block_failed[blk] += 1
                continue
            forward_substitution(G, h, z)
            back_substitution(G, z, out, r)
    n_failed = 0
    for blk in range(n_blocks):
        n_failed += block_failed[blk]
    return n_failed


# --------------------------------------------------------------------------------------------
# jac_matvec, jac_rmatvec


# duplicates: block partials summed in block order; kernels share argument order
def _jac_matvec(
    rows: np.ndarray,
    cols: np.ndarray,
    d: np.ndarray,
    P: np.ndarray,
    Qt: np.ndarray,
    vP: np.ndarray,
    vQt: np.ndarray,
    vb: np.ndarray,
    vc: np.ndarray,
    with_bias: bool,
    out: np.ndarray,
) -> None:
    r"""Data rows of :math:`Jv`: ``out[t] = d[t] * (vP[u] . Qt[i] + P[u] . vQt[i] [+ vb[u] +
    vc[i]])`` with ``u = rows[t]``, ``i = cols[t]``.

    Parameters
    ----------
    rows, cols : ndarray of int64, shape (nnz,)
        Row and column of each observed entry.
    d : ndarray of float64, shape (nnz,)
        Scale of each data residual.
    P : ndarray of float64, shape (n_rows, k) ; Qt : (n_cols, k)
        The factors at the current point (``Qt`` is ``Q`` transposed, C-contiguous).
    vP : ndarray of float64, shape (n_rows, k) ; vQt : (n_cols, k)
        The factor blocks of ``v`` in the same layouts.
    vb, vc : ndarray of float64, shape (n_rows,), (n_cols,)
        The bias blocks of ``v`` (read only when ``with_bias``; may be empty otherwise).
    with_bias : bool
    out : ndarray of float64, shape (nnz,)
        Written in place.

    Notes
    -----
    Entries are independent and each is computed by one thread in a fixed order, so the result
    does not depend on the number of threads. Time :math:`O(N k)`.
    """
    k = P.shape[1]
    for t in _prange(rows.shape[0]):
        u = rows[t]
        i = cols[t]
        s = 0.0
        for p in range(k):
            s += vP[u, p] * Qt[i, p] + P[u, p] * vQt[i, p]
        if with_bias:
            s += vb[u] + vc[i]
        out[t] = d[t] * s


def _jac_rmatvec(
    row_ptr: np.ndarray,
    cols: np.ndarray,
    col_ptr: np.ndarray,
    col_order: np.ndarray,
    col_rows: np.ndarray,
    dy: np.ndarray,
    P: np.ndarray,
    Qt: np.ndarray,
    with_bias: bool,
    gP: np.ndarray,
    gQt: np.ndarray,
    gb: np.ndarray,
    gc: np.ndarray,
) -> None:
    r"""Factor (and bias) blocks of :math:`J^\top y` from the weighted data residuals.

    With ``w_t = dy[t]`` (the data scale times ``y``'s data entry):
    ``gP[u] = sum_{t: rows[t] = u} w_t Qt[cols[t]]``, ``gQt[i] = sum_{t: cols[t] = i} w_t
    P[rows[t]]``, ``gb[u] = sum w_t`` and ``gc[i] = sum w_t`` over the same entries.

    Parameters
    ----------
    row_ptr : ndarray of int64, shape (n_rows + 1,)
        Row ``u``'s entries are ``row_ptr[u]:row_ptr[u+1]`` (entries sorted by row).
    cols : ndarray of int64, shape (nnz,)
        Column of each entry.
    col_ptr : ndarray of int64, shape (n_cols + 1,)
        Column ``i``'s entries are ``col_order[col_ptr[i]:col_ptr[i+1]]``.
    col_order : ndarray of int64, shape (nnz,)
        The entries in column order (a stable sort of ``cols``).
    col_rows : ndarray of int64, shape (nnz,)
        ``rows[col_order]``: the row of each entry, in column order.
    dy : ndarray of float64, shape (nnz,)
    P : ndarray of float64, shape (n_rows, k) ; Qt : (n_cols, k)
    with_bias : bool
    gP : ndarray of float64, shape (n_rows, k) ; gQt : (n_cols, k)
        Written in place.
    gb, gc : ndarray of float64, shape (n_rows,), (n_cols,)
        Written in place when ``with_bias`` (may be empty otherwise).

    Notes
    -----
    Each output row is accumulated by one thread, over its entries in a fixed order, so the
    result does not depend on the number of threads. Time :math:`O(N k)`.
    """
    k = P.shape[1]
    n = gP.shape[0]
    m = gQt.shape[0]
    for u in _prange(n):
        for p in range(k):
            gP[u, p] = 0.0
        sb = 0.0
        for t in range(row_ptr[u], row_ptr[u + 1]):
            w = dy[t]
            i = cols[t]
            sb += w
            for p in range(k):
                gP[u, p] += w * Qt[i, p]
        if with_bias:
            gb[u] = sb
    for i in _prange(m):
        for p in range(k):
            gQt[i, p] = 0.0
        sc = 0.0
        for e in range(col_ptr[i], col_ptr[i + 1]):
            w = dy[col_order[e]]
            u = col_rows[e]
            sc += w
            for p in range(k):
                gQt[i, p] += w * P[u, p]
        if with_bias:
            gc[i] = sc


# --------------------------------------------------------------------------------------------
# residual_sse

#: Entries per parallel task of ``residual_sse`` (a fixed split, so the sum's order -- each
#: chunk in entry order, then the chunks in order -- does not depend on the thread count).
SSE_CHUNK = 16384


def _residual_sse(
    rows: np.ndarray,
    cols: np.ndarray,
    values: np.ndarray,
    d: np.ndarray,
    P: np.ndarray,
    Qt: np.ndarray,
    b: np.ndarray,
    c: np.ndarray,
    mu: float,
    with_bias: bool,
    lo: float,
    hi: float,
) -> float:
    r"""Sum of the squared scaled errors at the pairs, in one pass: no per-entry arrays.

    ``sum_t (d_t (clip(pred_t, lo, hi) - values_t))^2`` with
    ``pred_t = mu + b[u] + c[i] + P[u] . Qt[i]`` (``u = rows[t]``, ``i = cols[t]``; the
    biases and ``mu`` only with ``with_bias``). An index -1 marks an id unknown to the factors
    (held-out pairs): its factor product and its bias count as 0. ``d`` empty means every
    ``d_t = 1``; ``lo = -inf``, ``hi = inf`` clip nothing (a NaN prediction stays NaN).

    Parameters
    ----------
    rows, cols : ndarray of int64, shape (nnz,)
    values : ndarray of float64, shape (nnz,)
    d : ndarray of float64, shape (nnz,) or (0,)
        The residual scale of each entry (:attr:`lsqmf.model.problem.Problem.data_scale`).
    P : ndarray of float64, shape (n_rows, k) ; Qt : (n_cols, k)
        Row factors and column factors, one contiguous row per user / item.
    b, c : ndarray of float64, shape (n_rows,), (n_cols,)
        Biases (read only when ``with_bias``; may be empty otherwise).
    mu : float
    with_bias : bool
    lo, hi : float

    Notes
    -----
    Chunks of :data:`SSE_CHUNK` entries in parallel, each summed in entry order, then the
    chunks' sums in chunk order: the result does not depend on the number of threads.
    Time :math:`O(N k)`, extra memory :math:`O(N / \mathrm{SSE\_CHUNK})`.
    """
    nnz = rows.shape[0]
    k = P.shape[1]
    scaled = d.shape[0] > 0
    n_chunks = (nnz + SSE_CHUNK - 1) // SSE_CHUNK
    partial = np.zeros(n_chunks)
    for ch in _prange(n_chunks):
        acc = 0.0
        for t in range(ch * SSE_CHUNK, min(nnz, (ch + 1) * SSE_CHUNK)):
            u = rows[t]
            i = cols[t]
            pred = mu if with_bias else 0.0
            if u >= 0 and i >= 0:
                for p in range(k):
                    pred += P[u, p] * Qt[i, p]
            if with_bias:
                if u >= 0:
                    pred += b[u]
                if i >= 0:
                    pred += c[i]
            if pred < lo:
                pred = lo
            elif pred > hi:
                pred = hi
            e = pred - values[t]
            if scaled:
                e *= d[t]
            acc += e * e
        partial[ch] = acc
    total = 0.0
    for ch in range(n_chunks):
        total += partial[ch]
    return total


# duplicates: kernel and numpy oracle share arguments; the oracle is independent on purpose
def residual_sse_numpy(
    rows: np.ndarray,
    cols: np.ndarray,
    values: np.ndarray,
    d: np.ndarray,
    P: np.ndarray,
    Qt: np.ndarray,
    b: np.ndarray,
    c: np.ndarray,
    mu: float,
    with_bias: bool,
    lo: float,
    hi: float,
) -> float:
    """Oracle of ``residual_sse``: vectorized numpy over chunks of :data:`SSE_CHUNK` pairs
    (the temporaries are ``SSE_CHUNK x k``, never ``nnz x k``), the chunks' sums in order."""
    total = 0.0
    for start in range(0, rows.shape[0], SSE_CHUNK):
        sl = slice(start, start + SSE_CHUNK)
        u, i = rows[sl], cols[sl]
        ok_u, ok_i = u >= 0, i >= 0
        uu, ii = np.where(ok_u, u, 0), np.where(ok_i, i, 0)
        pred = np.einsum("tk,tk->t", P[uu], Qt[ii]) * (ok_u & ok_i)
        if with_bias:
            pred = pred + mu + np.where(ok_u, b[uu], 0.0) + np.where(ok_i, c[ii], 0.0)
        pred = np.where(pred < lo, lo, np.where(pred > hi, hi, pred))
        e = pred - values[sl]
        if d.shape[0]:
            e = e * d[sl]
        total += float(e @ e)
    return total


def _residual_sse_example(kernel: Callable[..., Any]) -> None:
    """Both callers' argument types: the ratings' read-only indices and values, writable
    factors (held-out pairs are passed read-only too)."""
    rows, cols = np.array([0, 0, 1], dtype=np.int64), np.array([0, 1, -1], dtype=np.int64)
    values, d, F = np.array([1.0, 2.0, 3.0]), np.ones(3), np.ones((2, 2))
    for array in (rows, cols, values, d):
        array.setflags(write=False)
    for with_bias in (True, False):
        kernel(rows, cols, values, d, F, F, np.zeros(2), np.zeros(2), 0.5, with_bias,
               -np.inf, np.inf)


# --------------------------------------------------------------------------------------------
# lookup table and lazy compilation


#: The helpers the kernels call (one stage of a kernel each; the row-solve stages come from
#: :mod:`lsqmf.kernels.linalg`). They are plain Python functions until a kernel here is first
#: compiled, which rebinds each name here to its numba version
#: (:func:`lsqmf.kernels.jit.jit_helpers`).
_HELPERS = (
    "gather_entries",
    "ridge_normal_equations",
    "cholesky_in_place",
    "forward_substitution",
    "back_substitution",
)

#: Fast-math flags of ``jac_matvec``, the one kernel allowed to reassociate and contract (fuse
#: multiply-adds in) its sums, which lets numba vectorize it; NaN and infinity keep their IEEE
#: meaning. Only kernels with no reference order to reproduce may do so: the result is
#: deterministic for a given machine and independent of the thread count, but may differ from
#: the written order in the last bits. ``jac_matvec`` (a dot product of length ``2 k`` per
#: entry) runs about 1.7x faster.
_FASTMATH = frozenset({"reassoc", "contract"})

#: The kernels of this module, compiled eagerly from their numba signature. Array arguments are
#: typed with layout 'A' (any strides), so each kernel is compiled exactly once whatever the
#: memory layout of the caller's arrays (such as a transposed view); the Jacobian-product
#: kernels, on the hot path of LSMR, take C-contiguous arrays (``::1``), which their one caller
#: builds. Their numpy paths live with their callers (the reference loop, ``sgd``'s, ALS's and
#: :meth:`lsqmf.model.problem.Problem.operator`'s numpy code).
_SGD_EPOCH = Kernel(
    "sgd_epoch",
    _sgd_epoch,
    oracle=_sgd_epoch,  # the interpreted loop: a serial per-entry update has no vectorized form
    signature="float64(int64[:], int64[:], float64[:], float64[:], int64[:], float64[:, :], "
    "float64[:, :], float64[:], float64[:], float64, float64, float64[:], float64[:], "
    "float64[:], float64[:], boolean, boolean, boolean)",
    helpers=_HELPERS,
)
KERNELS = (
    Kernel(
        "tutorial_mf",
        _tutorial_mf,
        signature="int64(float64[:, :], float64[:, :], float64[:, :], int64, float64, float64, "
        "float64)",
    ),
    _SGD_EPOCH,
    Kernel(
        "als_rows",
        _als_rows,
        signature="int64(int64[:], int64[:], float64[:], float64[:], float64[:, :], float64[:], "
        "float64[:], boolean, float64[:, :], boolean[:])",
        parallel=True,
        helpers=_HELPERS,
    ),
    Kernel("residual_sse", _residual_sse, residual_sse_numpy, parallel=True,
           example=_residual_sse_example),
    Kernel(
        "jac_matvec",
        _jac_matvec,
        signature="void(int64[::1], int64[::1], float64[::1], float64[:, ::1], float64[:, ::1], "
        "float64[:, ::1], float64[:, ::1], float64[::1], float64[::1], boolean, float64[::1])",
        parallel=True,
        fastmath=_FASTMATH,
        helpers=_HELPERS,
    ),
    Kernel(
        "jac_rmatvec",
        _jac_rmatvec,
        signature="void(int64[::1], int64[::1], int64[::1], int64[::1], int64[::1], "
        "float64[::1], float64[:, ::1], float64[:, ::1], boolean, float64[:, ::1], "
        "float64[:, ::1], float64[::1], float64[::1])",
        parallel=True,
        helpers=_HELPERS,
    ),
)
