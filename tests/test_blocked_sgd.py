"""bsgd's blocked (LIBMF-style stratified) epochs, ``blocks=B``: the parallel kernel
``bsgd_cells`` == its numpy oracle, the same numbers for any thread count and for a seed,
and convergence to the serial solver's objective."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("numba")

from lsqmf import ConvergenceWarning
from lsqmf.data.synthetic import make_low_rank
from lsqmf.kernels.registry import get_kernel
from lsqmf.solvers import als, bsgd

OBJECTIVE = {"reg": 0.1, "biases": True, "count_scaled": True}


def _cells(rng: np.random.Generator, n: int, m: int, nnz: int, blocks: int):
    rows = rng.integers(0, n, nnz).astype(np.int64)
    cols = rng.integers(0, m, nnz).astype(np.int64)
    cell = (rows % blocks) * blocks + cols % blocks
    idx = np.argsort(cell, kind="stable")
    ptr = np.concatenate([[0], np.cumsum(np.bincount(cell, minlength=blocks**2))])
    return rows[idx], cols[idx], ptr.astype(np.int64)


@pytest.mark.parametrize("with_bias", [True, False], ids=["biases", "no-biases"])
@pytest.mark.parametrize("blocks", [1, 3], ids=["1-block", "3-blocks"])
def test_bsgd_cells_matches_oracle(with_bias, blocks):
    rng = np.random.default_rng(1)
    n, m, k, nnz = 11, 9, 3, 60
    rows, cols, ptr = _cells(rng, n, m, nnz, blocks)
    v, w = rng.standard_normal(nnz), rng.random(nnz) + 0.5
    shifts = rng.permutation(blocks).astype(np.int64)
    reg = [rng.random(n), rng.random(m), rng.random(n), rng.random(m)]
    start = [rng.standard_normal((n, k)), rng.standard_normal((m, k)), rng.standard_normal(n),
             rng.standard_normal(m)]
    results = []
    for backend in ("compiled", "numpy"):
        arrays, losses = [a.copy() for a in start], np.zeros(blocks**2)
        get_kernel("bsgd_cells", backend)(rows, cols, v, w, ptr, shifts, *arrays, 0.2, 0.03,
                                          0.05, *reg, with_bias, losses)
        results.append((losses, arrays))
    # the oracle's dot product is numpy's (another summation order): rounding only
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-12)
    for a, b in zip(results[0][1], results[1][1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.fixture(scope="module")
def data():
    R, _ = make_low_rank(600, 400, 3, density=0.1, noise=0.1, random_state=0, scale=(1.0, 5.0))
    return R


def _fit(R, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return bsgd(R, 3, **OBJECTIVE, tol=0.0, **kw)


def test_blocked_epochs_same_numbers_for_any_thread_count(data):
    numba = pytest.importorskip("numba")
    from lsqmf.kernels import solvers as kernel_solvers

    previous = (numba.get_num_threads(), kernel_solvers.PARALLEL_MIN_NNZ)
    fits = []
    try:
        kernel_solvers.PARALLEL_MIN_NNZ = 0  # run the parallel kernel at this small size
        for threads in (1, numba.config.NUMBA_NUM_THREADS):
            numba.set_num_threads(threads)
            fits.append(_fit(data, blocks=4, max_iter=6, random_state=3))
    finally:
        numba.set_num_threads(previous[0])
        kernel_solvers.PARALLEL_MIN_NNZ = previous[1]
    np.testing.assert_array_equal(fits[0].P, fits[1].P)
    np.testing.assert_array_equal(fits[0].Q, fits[1].Q)
    np.testing.assert_array_equal(fits[0].history.cost, fits[1].history.cost)


def test_blocked_epochs_same_seed_same_numbers(data):
    a, b = (_fit(data, blocks=3, max_iter=5, random_state=5) for _ in range(2))
    c = _fit(data, blocks=3, max_iter=5, random_state=6)
    np.testing.assert_array_equal(a.P, b.P)
    np.testing.assert_array_equal(a.history.cost, b.history.cost)
    assert not np.array_equal(a.P, c.P)
    assert a.options["blocks"] == 3


def test_blocked_compiled_and_numpy_backends_agree(data):
    a = _fit(data, blocks=3, max_iter=4, random_state=4, backend="compiled")
    b = _fit(data, blocks=3, max_iter=4, random_state=4, backend="numpy")
    np.testing.assert_allclose(a.P @ a.Q, b.P @ b.Q, rtol=1e-9, atol=1e-10)


def test_blocked_epochs_reach_the_als_objective(data):
    exact = als(data, 3, **OBJECTIVE, tol=1e-12, max_iter=3000, random_state=1)
    fit = bsgd(data, 3, **OBJECTIVE, blocks=4, learning_rate=0.05, decay=0.99, max_iter=3000,
               tol=1e-9, random_state=1)
    assert fit.success
    assert fit.cost == pytest.approx(exact.cost, rel=1e-3)


def test_blocks_must_be_a_non_negative_int(data):
    with pytest.raises(ValueError, match="blocks"):
        bsgd(data, 3, blocks=-1)
