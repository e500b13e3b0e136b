"""Compiled kernels (lsqmf.kernels.core, through lsqmf.kernels.registry) against plain-Python
oracles."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from lsqmf.kernels import core as _compiled
from lsqmf.kernels import jit, registry
from lsqmf.oracle.golden import case_names, load_case
from lsqmf.oracle.reference import matrix_factorization, matrix_factorization_fast
from lsqmf.oracle.verify import verify

pytest.importorskip("numba")


# --------------------------------------------------------------------------------------------
# numba missing (a required dependency, but a broken install must still explain itself)


def test_missing_numba_gives_a_clear_import_error(monkeypatch):
    registry.get_kernel("tutorial_mf")  # compiled and cached before numba "disappears"
    monkeypatch.setitem(sys.modules, "numba", None)  # makes `import numba` raise ImportError
    with pytest.raises(ImportError, match=r"required dependency.*pip install numba"):
        registry.get_kernel("tutorial_mf")
    P, Q = np.ones((2, 1)), np.ones((2, 1))
    with pytest.raises(ImportError, match=r"required dependency.*pip install numba"):
        matrix_factorization_fast(np.ones((2, 2)), P, Q, 1)
    assert_array_equal(P, 1.0)


def test_unknown_kernel_name():
    with pytest.raises(ValueError, match=r"`name` must be one of 'tutorial_mf'.*got 'nope'"):
        registry.get_kernel("nope")


def test_kernel_is_compiled_once():
    assert registry.get_kernel("tutorial_mf") is registry.get_kernel("tutorial_mf")


# --------------------------------------------------------------------------------------------
# backends, warm-up, disk cache


@pytest.mark.parametrize(("backend", "expected"),
                         [("auto", "compiled"), ("compiled", "compiled"), ("numpy", "numpy")])
def test_resolve_backend(backend, expected):
    assert registry.resolve_backend(backend) == expected


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match=r"`backend` must be one of 'auto', 'compiled', 'numpy'"):
        registry.resolve_backend("cuda")
    with pytest.raises(ValueError, match=r"`backend` must be one of"):
        registry.select_kernels(("als_rows",), "cuda")


def test_select_kernels_by_backend(monkeypatch):
    assert registry.select_kernels(("als_rows",), "numpy") is None
    (kernel,) = registry.select_kernels(("als_rows",), "compiled")
    assert kernel is registry.get_kernel("als_rows")
    monkeypatch.setitem(sys.modules, "numba", None)
    assert registry.resolve_backend("auto") == "numpy"
    assert registry.select_kernels(("als_rows",), "auto") is None
    with pytest.raises(ImportError, match="pip install numba"):
        registry.select_kernels(("als_rows",), "compiled")
    registry.warm_up(None, "numpy")  # a no-op without numba


def test_warm_up_prepares_every_kernel():
    registry.warm_up(None, "compiled")
    assert set(jit._compiled) == set(registry.KERNELS)
    for name in registry.KERNELS:  # lazily typed ones ran their example
        assert registry.get_kernel(name).signatures, name


def test_kernels_are_cached_on_disk():
    """Every kernel is compiled with cache=True (numba's dispatcher then holds a cache)."""
    registry.warm_up(None, "compiled")
    for name in registry.KERNELS:
        kernel = registry.get_kernel(name)
        assert kernel._cache.__class__.__name__ == "FunctionCache", name


# --------------------------------------------------------------------------------------------
# matrix_factorization_fast == the reference


@pytest.mark.parametrize("name", case_names())
def test_fast_matches_every_golden_case(name):
    golden = load_case(name)
    P, Q = golden.P0.copy(), golden.Q0.copy()
    P_out, Q_out = matrix_factorization_fast(golden.R, P, Q, **golden.params())
    assert P_out is P and Q_out is Q
    assert_allclose(P, golden.P, rtol=0, atol=1e-10)
    assert_allclose(Q, golden.Q, rtol=0, atol=1e-10)


def test_fast_passes_verify_at_1e_10():
    report = verify(matrix_factorization_fast, atol=1e-10)
    assert report.passed, report.to_records()


def test_fast_accepts_any_memory_layout():
    golden = load_case("tall_k3")
    P_big = np.zeros((golden.R.shape[0], 2 * golden.K))
    P = P_big[:, ::2]  # strided view
    P[:] = golden.P0
    Q = np.asfortranarray(golden.Q0)
    matrix_factorization_fast(golden.R, P, Q, **golden.params())
    assert_allclose(P, golden.P, rtol=0, atol=1e-10)
    assert_allclose(Q, golden.Q, rtol=0, atol=1e-10)
    assert np.all(P_big[:, 1::2] == 0.0)


def outcome(function, R, P0, Q0, *args):
    """``("ok", P, Q)`` or ``("diverged", message)``."""
    P, Q = P0.copy(), Q0.copy()
    try:
        function(R, P, Q, *args)
    except FloatingPointError as err:
        return ("diverged", str(err))
    return ("ok", P, Q)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 5),
    m=st.integers(1, 5),
    K=st.integers(1, 3),
    max_steps=st.integers(0, 30),
    alpha=st.floats(1e-4, 0.2),
    beta=st.floats(0.0, 0.2),
    epsilon=st.sampled_from([0.0, 1e-3, 0.5, 5.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_fast_matches_reference_on_random_small_cases(
    n, m, K, max_steps, alpha, beta, epsilon, seed
):
    # large alpha makes some runs diverge: then both must raise the same error
    rng = np.random.default_rng(seed)
    R = rng.integers(-1, 6, size=(n, m)).astype(float) * rng.random((n, m)) * 2
    P0, Q0 = rng.random((n, K)), rng.random((m, K))
    args = (K, max_steps, alpha, beta, epsilon)
    expected = outcome(matrix_factorization, R, P0, Q0, *args)
    actual = outcome(matrix_factorization_fast, R, P0, Q0, *args)
    assert actual[0] == expected[0]
    if expected[0] == "ok":
        assert_allclose(actual[1], expected[1], rtol=0, atol=1e-12)
        assert_allclose(actual[2], expected[2], rtol=0, atol=1e-12)
    else:
        assert actual[1] == expected[1]


@pytest.mark.parametrize(
    "function", [matrix_factorization, matrix_factorization_fast], ids=["oracle", "fast"]
)
def test_divergence_raises_at_the_same_step(function):
    # R = [[100]], p = q = 1, alpha = 0.5: the factors grow without bound
    P, Q = np.ones((1, 1)), np.ones((1, 1))
    with pytest.raises(
        FloatingPointError, match=r"diverged: the error e is not finite after step 4 of at "
        r"most 100.*smaller `alpha` \(got 0.5\)"
    ):
        function(np.array([[100.0]]), P, Q, 1, 100, 0.5, 0.0, 1e-3)
    # left holding the diverged step's values: huge, so that (p q)**2 overflows
    assert np.log10(abs(P[0, 0])) + np.log10(abs(Q[0, 0])) > 154


# --------------------------------------------------------------------------------------------
# sgd_epoch against a plain-Python loop


def sgd_epoch_oracle(rows, cols, values, weights, order, P, Q, row_bias, col_bias, mu, lr,
                     reg_P, reg_Q, reg_row_bias, reg_col_bias, fit_biases,
                     update_rows=True, update_cols=True):
    """The documented update, on Python floats and lists; returns new arrays and the loss."""
    P, Q = P.tolist(), Q.tolist()  # P[u][k], Q[k][i]
    b = list(row_bias) if fit_biases else None
    c = list(col_bias) if fit_biases else None
    rank = len(P[0])
    loss = 0.0
    for t in order:
        u, i, v = int(rows[t]), int(cols[t]), float(values[t])
        w = 1.0 if weights is None else float(weights[t])
        pred = mu
        if fit_biases:
            pred += b[u] + c[i]
        for k in range(rank):
            pred += P[u][k] * Q[k][i]
        e = v - pred
        loss += w * e * e
        if fit_biases and update_rows:
            b[u] = b[u] + lr * (w * e - reg_row_bias[u] * b[u])
        if fit_biases and update_cols:
            c[i] = c[i] + lr * (w * e - reg_col_bias[i] * c[i])
        old_p = [P[u][k] for k in range(rank)]
        old_q = [Q[k][i] for k in range(rank)]
        for k in range(rank):
            if update_rows:
                P[u][k] = old_p[k] + lr * (w * e * old_q[k] - reg_P[u] * old_p[k])
            if update_cols:
                Q[k][i] = old_q[k] + lr * (w * e * old_p[k] - reg_Q[i] * old_q[k])
    out_b = None if b is None else np.array(b)
    out_c = None if c is None else np.array(c)
    return np.array(P), np.array(Q), out_b, out_c, loss


def random_problem(seed, n_rows, n_cols, nnz, rank, *, weighted, biased):
    rng = np.random.default_rng(seed)
    flat = rng.choice(n_rows * n_cols, size=nnz, replace=False)
    rows, cols = np.divmod(flat, n_cols)
    return {
        "rows": rows.astype(np.int64),
        "cols": cols.astype(np.int64),
        "values": rng.integers(1, 6, size=nnz).astype(float),
        "weights": rng.random(nnz) + 0.5 if weighted else None,
        "order": rng.permutation(nnz),
        "P": rng.normal(0, 0.3, (n_rows, rank)),
        "Q": rng.normal(0, 0.3, (rank, n_cols)),
        "row_bias": rng.normal(0, 0.1, n_rows) if biased else None,
        "col_bias": rng.normal(0, 0.1, n_cols) if biased else None,
        "mu": 3.0,
        "lr": 0.02,
        "reg_P": rng.random(n_rows) * 0.1,
        "reg_Q": rng.random(n_cols) * 0.1,
        "reg_row_bias": rng.random(n_rows) * 0.1,
        "reg_col_bias": rng.random(n_cols) * 0.1,
        "fit_biases": biased,
    }


def run_both(problem, epochs=1):
    """Run the kernel (in place, on copies) and the oracle for ``epochs`` epochs."""
    def copy(d):
        return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in d.items()}

    fast, slow = copy(problem), copy(problem)
    fast_losses, slow_losses = [], []
    for _ in range(epochs):
        fast_losses.append(_compiled.sgd_epoch(**fast))
        P, Q, b, c, loss = sgd_epoch_oracle(**slow)
        slow = slow | {"P": P, "Q": Q, "row_bias": b, "col_bias": c}
        slow_losses.append(loss)
    return fast, slow, fast_losses, slow_losses


def test_sgd_epoch_single_entry_by_hand():
    P = np.array([[1.0, 0.0]])
    Q = np.array([[2.0], [1.0]])  # (rank, n_cols)
    b, c = np.array([0.5]), np.array([-0.5])
    loss = _compiled.sgd_epoch(
        np.array([0]), np.array([0]), np.array([4.0]), np.array([2.0]), np.array([0]),
        P, Q, b, c, mu=1.0, lr=0.1, reg_P=0.5, reg_Q=0.25, reg_row_bias=1.0,
        reg_col_bias=0.0, fit_biases=True,
    )
    # pred = 1 + 0.5 - 0.5 + 1*2 + 0*1 = 3; e = 1; w e = 2; loss = w e^2 = 2
    assert loss == 2.0
    assert_allclose(b, [0.5 + 0.1 * (2 - 1.0 * 0.5)], rtol=1e-15)  # 0.65
    assert_allclose(c, [-0.5 + 0.1 * 2], rtol=1e-15)  # -0.3
    # P uses the old Q and Q the old P
    assert_allclose(P, [[1 + 0.1 * (2 * 2 - 0.5 * 1), 0 + 0.1 * (2 * 1 - 0)]], rtol=1e-15)
    assert_allclose(Q, [[2 + 0.1 * (2 * 1 - 0.25 * 2)], [1 + 0.1 * (2 * 0 - 0.25 * 1)]],
                    rtol=1e-15)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("biased", [False, True], ids=["no-biases", "biases"])
def test_sgd_epoch_matches_python_oracle(weighted, biased):
    problem = random_problem(0, 7, 9, 30, 3, weighted=weighted, biased=biased)
    fast, slow, fast_losses, slow_losses = run_both(problem, epochs=3)
    assert_allclose(fast["P"], slow["P"], rtol=0, atol=1e-12)
    assert_allclose(fast["Q"], slow["Q"], rtol=0, atol=1e-12)
    assert_allclose(fast_losses, slow_losses, rtol=1e-12)
    if biased:
        assert_allclose(fast["row_bias"], slow["row_bias"], rtol=0, atol=1e-12)
        assert_allclose(fast["col_bias"], slow["col_bias"], rtol=0, atol=1e-12)


@settings(max_examples=20, deadline=None)
@given(
    n_rows=st.integers(1, 6),
    n_cols=st.integers(1, 6),
    rank=st.integers(1, 4),
    fill=st.floats(0.05, 1.0),
    weighted=st.booleans(),
    biased=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_sgd_epoch_matches_oracle_on_random_problems(
    n_rows, n_cols, rank, fill, weighted, biased, seed
):
    nnz = max(1, int(fill * n_rows * n_cols))
    problem = random_problem(seed, n_rows, n_cols, nnz, rank, weighted=weighted, biased=biased)
    fast, slow, fast_losses, slow_losses = run_both(problem, epochs=2)
    assert_allclose(fast["P"], slow["P"], rtol=0, atol=1e-12)
    assert_allclose(fast["Q"], slow["Q"], rtol=0, atol=1e-12)
    assert_allclose(fast_losses, slow_losses, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize(
    ("update_rows", "update_cols"), [(True, False), (False, True)], ids=["rows-only", "cols-only"]
)
def test_sgd_epoch_one_side_only(update_rows, update_cols):
    problem = random_problem(7, 6, 5, 15, 2, weighted=True, biased=True) | {
        "update_rows": update_rows, "update_cols": update_cols,
    }
    fast, slow, fast_losses, slow_losses = run_both(problem, epochs=2)
    for key in ("P", "Q", "row_bias", "col_bias"):
        assert_allclose(fast[key], slow[key], rtol=0, atol=1e-12)
    assert_allclose(fast_losses, slow_losses, rtol=1e-12)
    fixed = ("Q", "col_bias") if update_rows else ("P", "row_bias")
    for key in fixed:
        assert_array_equal(fast[key], problem[key])


def test_sgd_epoch_accepts_an_item_major_transposed_view():
    problem = random_problem(8, 6, 5, 15, 3, weighted=False, biased=True)
    expected = run_both(problem)[0]
    Qt = np.ascontiguousarray(problem["Q"].T)  # (n_cols, rank), one row per item
    args = problem | {"P": problem["P"].copy(), "row_bias": problem["row_bias"].copy(),
                      "col_bias": problem["col_bias"].copy(), "Q": Qt.T}
    _compiled.sgd_epoch(**args)
    assert_array_equal(Qt.T, expected["Q"])
    assert_array_equal(args["P"], expected["P"])


def test_sgd_epoch_visiting_order_matters_and_is_followed():
    problem = random_problem(1, 5, 5, 12, 2, weighted=False, biased=True)
    forward = run_both(problem | {"order": np.arange(12)})[0]
    backward = run_both(problem | {"order": np.arange(12)[::-1].copy()})[0]
    assert not np.allclose(forward["P"], backward["P"])
    # a partial order visits only the listed entries
    only_first = run_both(problem | {"order": np.array([0])})[0]
    touched = np.flatnonzero(np.any(only_first["P"] != problem["P"], axis=1))
    assert_array_equal(touched, [problem["rows"][0]])


def test_sgd_epoch_touches_only_observed_rows_and_columns():
    problem = random_problem(2, 10, 10, 6, 2, weighted=True, biased=True)
    fast = run_both(problem)[0]
    unseen_rows = np.setdiff1d(np.arange(10), problem["rows"])
    unseen_cols = np.setdiff1d(np.arange(10), problem["cols"])
    assert unseen_rows.size and unseen_cols.size
    assert_array_equal(fast["P"][unseen_rows], problem["P"][unseen_rows])
    assert_array_equal(fast["Q"][:, unseen_cols], problem["Q"][:, unseen_cols])
    assert_array_equal(fast["row_bias"][unseen_rows], problem["row_bias"][unseen_rows])


def test_sgd_epoch_without_biases_ignores_them():
    problem = random_problem(3, 4, 4, 8, 2, weighted=False, biased=False)
    b, c = np.ones(4), np.ones(4)
    no_bias = _compiled.sgd_epoch(**(problem | {"P": problem["P"].copy(),
                                                "Q": problem["Q"].copy()}))
    with_arrays = _compiled.sgd_epoch(**(problem | {"row_bias": b, "col_bias": c}))
    assert no_bias == with_arrays
    assert_array_equal(b, 1.0)


def test_sgd_epoch_never_builds_the_dense_matrix():
    # a 200_000 x 300_000 dense float64 matrix would need 480 GB
    n_rows, n_cols, rank = 200_000, 300_000, 2
    rows = np.array([0, 199_999, 12_345], dtype=np.int64)
    cols = np.array([299_999, 0, 777], dtype=np.int64)
    P = np.full((n_rows, rank), 0.1)
    Q = np.full((rank, n_cols), 0.1)
    loss = _compiled.sgd_epoch(rows, cols, np.array([3.0, 4.0, 5.0]), None, np.arange(3),
                               P, Q, None, None, 0.0, 0.01, 0.0, 0.0)
    assert np.isfinite(loss)
    assert np.count_nonzero(P != 0.1) == 3 * rank


def test_sgd_epochs_reduce_the_error_on_a_low_rank_matrix():
    rng = np.random.default_rng(4)
    A, B = rng.random((8, 2)), rng.random((2, 7))
    rows, cols = np.nonzero(np.ones((8, 7)))
    values = (A @ B)[rows, cols]
    P, Q = rng.random((8, 2)) * 0.5, rng.random((2, 7)) * 0.5
    losses = [
        _compiled.sgd_epoch(rows, cols, values, None, rng.permutation(values.size), P, Q,
                            None, None, 0.0, 0.05, 0.0, 0.0)
        for _ in range(300)
    ]
    assert losses[-1] < 1e-3 * losses[0]


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"Q": np.zeros((4, 2))}, ValueError, r"`Q` must have shape \(rank, n_cols\)"),
        ({"P": np.zeros((4, 2), np.float32)}, TypeError, "`P` must be a 2-D float64 ndarray"),
        ({"row_bias": None}, TypeError, "`row_bias` must be a 1-D float64 ndarray"),
        ({"col_bias": np.zeros(3)}, ValueError, r"`col_bias` must have shape \(4,\)"),
        ({"weights": np.ones(3)}, ValueError, r"`weights` must have shape \(8,\)"),
        ({"cols": np.zeros(3, int)}, ValueError, "must be 1-D of one length"),
        ({"reg_Q": np.ones(3)}, ValueError, r"`reg_Q` must be a scalar or have shape \(4,\)"),
    ],
    ids=["Q-layout", "P-dtype", "bias-missing", "bias-length", "weights", "cols", "reg_Q"],
)
def test_sgd_epoch_shape_checks(changes, error, match):
    problem = random_problem(5, 4, 4, 8, 2, weighted=False, biased=True)
    with pytest.raises(error, match=match):
        _compiled.sgd_epoch(**(problem | changes))


def test_sgd_epoch_missing_numba(monkeypatch):
    problem = random_problem(6, 3, 3, 4, 1, weighted=False, biased=False)
    monkeypatch.setitem(sys.modules, "numba", None)
    with pytest.raises(ImportError, match=r"required dependency.*pip install numba"):
        _compiled.sgd_epoch(**problem)


@pytest.mark.slow
def test_read_only_install_caches_in_the_user_cache(tmp_path):
    """A copy of lsqmf in a read-only directory: numba cannot write next to the source, falls
    back to its per-user cache, and a second process loads the kernels from there."""
    import os
    import shutil
    import stat
    import subprocess
    from pathlib import Path

    import lsqmf

    tree = tmp_path / "site"
    shutil.copytree(Path(lsqmf.__file__).parent, tree / "lsqmf",
                    ignore=shutil.ignore_patterns("__pycache__"))
    # read-only bits do not stop root: a file where each package's cache directory would go
    # does (the kernels live in lsqmf/kernels/)
    for package in [p.parent for p in (tree / "lsqmf").rglob("__init__.py")]:
        (package / "__pycache__").write_text("")
    for path in [tree, *tree.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(PYTHONPATH=str(tree), XDG_CACHE_HOME=str(tmp_path / "cache"),
               PYTHONDONTWRITEBYTECODE="1")
    code = ("import lsqmf.kernels.registry as c; c.warm_up(['jac_matvec'], 'compiled'); "
            "s = c.get_kernel('jac_matvec').stats; "
            "print(sum(s.cache_hits.values()), s.cache_path)")
    try:
        runs = [subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path,
                               capture_output=True, text=True, check=True).stdout.split()
                for _ in range(2)]
    finally:
        for path in [tree, *tree.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
    assert list(tree.rglob("*.nbi")) == []
    assert list((tmp_path / "cache").rglob("*.nbi"))
    assert [int(run[0]) for run in runs] == [0, 1]  # compiled, then loaded from the cache
    assert all(run[1].startswith(str(tmp_path / "cache")) for run in runs)
