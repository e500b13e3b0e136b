"""lsqmf.nls.lm_normal: the reduced normal equations and solve_varpro(method='lm-normal')."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lsqmf
from lsqmf.data.ratings import as_ratings
from lsqmf.nls.lm_normal import MAX_NORMAL_PARAMS, normal_equations
from lsqmf.nls.solve import solve_varpro
from lsqmf.nls.varpro import build_reduced

GIRAFFE = Path(__file__).resolve().parents[2] / "shared" / "data" / "giraffe" / "giraffe.M.txt"


def _matrix(seed: int, n: int = 9, m: int = 8, k: int = 2, noise: float = 0.1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((n, k)) @ rng.standard_normal((k, m))
    M += noise * rng.standard_normal(M.shape)
    M[rng.random(M.shape) < 0.2] = np.nan
    return M


@pytest.mark.parametrize("biases", [False, True])
@pytest.mark.parametrize(("formulation", "reg"), [("none", 0.0), ("l2", 0.3)])
@pytest.mark.parametrize("weighted", [False, True])
def test_normal_matrix_matches_dense_kaufman(
    biases: bool, formulation: str, reg: float, weighted: bool
) -> None:
    rng = np.random.default_rng(3)
    M = _matrix(1)
    W = rng.random(M.shape) + 0.5 if weighted else None
    red = build_reduced(
        as_ratings(M, weights=W),
        2,
        formulation=formulation,
        reg=reg,
        biases=biases,
        backend="numpy",
    )
    theta = rng.standard_normal(red.n_params)
    A, g = normal_equations(red, theta)
    J = red.dense_jacobian(theta)
    JtJ = J.T @ J
    np.testing.assert_allclose(A, JtJ, rtol=0, atol=1e-10 * np.abs(JtJ).max())
    Jtr = J.T @ red.residual(theta)
    np.testing.assert_allclose(g, Jtr, rtol=0, atol=1e-10 * np.abs(Jtr).max())


@pytest.mark.parametrize("biases", [False, True])
def test_gradient_matches_finite_differences(biases: bool) -> None:
    red = build_reduced(
        as_ratings(_matrix(2)), 2, formulation="l2", reg=0.2, biases=biases, backend="numpy"
    )
    theta = np.random.default_rng(0).standard_normal(red.n_params)
    _, g = normal_equations(red, theta)
    h = 1e-6
    fd = np.array(
        [
            (red.cost(theta + h * e) - red.cost(theta - h * e)) / (2 * h)
            for e in np.eye(red.n_params)
        ]
    )
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-6 * np.abs(fd).max())


@pytest.mark.parametrize("eliminate", ["Q", "P"])
@pytest.mark.parametrize("biases", [False, True])
def test_lm_normal_reaches_the_trf_optimum(eliminate: str, biases: bool) -> None:
    M = _matrix(4, n=12, m=10)
    kw = dict(
        eliminate=eliminate,
        formulation="l2",
        reg=0.05,
        biases=biases,
        ftol=1e-12,
        xtol=1e-12,
        gtol=1e-10,
        backend="numpy",
        random_state=0,
    )
    ref = solve_varpro(M, 2, method="trf", tr_solver="exact", max_nfev=500, **kw)
    fit = solve_varpro(M, 2, method="lm-normal", max_nfev=500, **kw)
    assert fit.success
    assert fit.options["method"] == "lm-normal" and fit.options["jac"] == "normal"
    assert fit.cost == pytest.approx(ref.cost, rel=1e-6)
    assert fit.rms is not None and fit.rms == pytest.approx(ref.rms, rel=1e-5)
    assert fit.optimality is not None and fit.optimality < 1e-6
    assert len(fit.history.cost) == fit.nfev


def test_lm_normal_exact_data_under_none() -> None:
    M = _matrix(6, noise=0.0)
    fit = solve_varpro(
        M,
        2,
        method="lm-normal",
        backend="numpy",
        random_state=1,
        ftol=1e-12,
        xtol=1e-12,
        gtol=1e-12,
    )
    assert fit.rms is not None and fit.rms < 1e-6
    assert fit.status == lsqmf.model.result.Status.GTOL


def test_through_lsqmf_solve() -> None:
    M = _matrix(7)
    fit = lsqmf.solve(
        M,
        rank=2,
        eliminate="P",
        method="lm-normal",
        formulation="l2",
        reg=0.1,
        random_state=0,
        backend="numpy",
        ftol=1e-10,
    )
    assert fit.options["eliminate"] == "P" and fit.options["method"] == "lm-normal"
    assert fit.P.shape == (9, 2) and fit.Q.shape == (2, 8)


def test_callback_stops() -> None:
    fit = solve_varpro(
        _matrix(8),
        2,
        method="lm-normal",
        backend="numpy",
        random_state=0,
        callback=lambda info: info.step >= 2,
    )
    assert fit.status == lsqmf.model.result.Status.CALLBACK
    assert fit.nfev == 3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"loss": "huber", "formulation": "l2", "reg": 0.1}, "needs formulation='none'"),
        ({"bounds": (-1.0, 1.0)}, "bounds"),
        ({"tr_solver": "lsmr"}, "tr_solver"),
        ({"tr_options": {"damp": 1.0}}, "tr_options"),
        ({"jac": "dense"}, "jac='auto'"),
        ({"jacobian": "full"}, "Kaufman"),
    ],
)
def test_refused_options(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        solve_varpro(_matrix(9), 2, method="lm-normal", backend="numpy", **kwargs)


def test_too_many_unknowns_is_refused() -> None:
    n = MAX_NORMAL_PARAMS + 1
    rows = np.repeat(np.arange(n), 2)
    cols = np.tile([0, 1], n)
    R = lsqmf.Ratings(rows, cols, np.ones(rows.size), (n, 2))
    with pytest.raises(ValueError, match="tr_solver='lsmr'"):
        solve_varpro(R, 1, method="lm-normal", backend="numpy", random_state=0)


@pytest.mark.slow
def test_giraffe_reaches_best_known() -> None:
    if not GIRAFFE.exists():
        pytest.skip(f"the giraffe benchmark data is not at {GIRAFFE}")
    M = np.loadtxt(GIRAFFE)[:, 1:]
    fit = solve_varpro(
        M,
        6,
        eliminate="Q",
        method="lm-normal",
        init_scale=1.0,
        random_state=0,
        ftol=1e-10,
        xtol=1e-10,
        gtol=1e-10,
        max_nfev=300,
    )
    assert fit.rms is not None and fit.rms == pytest.approx(0.322795, rel=1e-5)


def test_multistart_with_lm_normal() -> None:
    M = _matrix(10, noise=0.0)
    res = lsqmf.multistart(
        M,
        2,
        eliminate="Q",
        method="lm-normal",
        formulation="none",
        x_scale=1.0,
        ftol=1e-12,
        xtol=1e-12,
        gtol=1e-12,
        backend="numpy",
        random_state=0,
        max_starts=5,
    )
    assert res.best.rms is not None and res.best.rms < 1e-6


@pytest.mark.parametrize("biases", [False, True])
@pytest.mark.parametrize(("formulation", "reg"), [("none", 0.0), ("l2", 0.3)])
@pytest.mark.parametrize("data", ["plain", "weighted"])
def test_compiled_normal_matrix_matches_numpy(
    biases: bool, formulation: str, reg: float, data: str
) -> None:
    rng = np.random.default_rng(11)
    M = _matrix(12, n=11, m=7)
    R = as_ratings(M, weights=rng.random(M.shape) + 0.5 if data == "weighted" else None)
    kw = dict(formulation=formulation, reg=reg, biases=biases)
    red_np = build_reduced(R, 2, backend="numpy", **kw)
    red_c = build_reduced(R, 2, backend="compiled", **kw)
    theta = rng.standard_normal(red_np.n_params)
    A0, g0 = normal_equations(red_np, theta)
    A1, g1 = normal_equations(red_c, theta)
    np.testing.assert_allclose(A1, A0, rtol=0, atol=1e-12 * np.abs(A0).max())
    np.testing.assert_allclose(g1, g0, rtol=0, atol=1e-12 * np.abs(g0).max())
    assert np.array_equal(A1, A1.T)


@pytest.mark.parametrize("biases", [False, True])
def test_gauge_directions_leave_the_reduced_cost_unchanged(biases: bool) -> None:
    from lsqmf.nls.lm_normal import _gauge_basis, _retract

    red = build_reduced(
        as_ratings(_matrix(13)), 2, formulation="none", biases=biases, backend="numpy"
    )
    theta, _ = _retract(red, np.random.default_rng(2).standard_normal(red.n_params))
    V = _gauge_basis(red, theta)
    assert V.shape == (red.n_params, 4 + (3 if biases else 0))
    np.testing.assert_allclose(V.T @ V, np.eye(V.shape[1]), atol=1e-12)
    A, g = normal_equations(red, theta)
    scale = np.abs(A).max()
    np.testing.assert_allclose(A @ V, 0.0, atol=1e-9 * scale)  # the Jacobian misses them
    np.testing.assert_allclose(V.T @ g, 0.0, atol=1e-9 * np.abs(g).max())
    cost = red.cost(theta)
    for j in range(V.shape[1]):  # and a finite move along them leaves the cost as it is
        assert red.cost(theta + 0.3 * V[:, j]) == pytest.approx(cost, rel=1e-9)
    # a direction with a horizontal part does change it
    assert red.cost(theta + 0.3 * g / np.linalg.norm(g)) != pytest.approx(cost, rel=1e-6)


def test_retraction_maps_directions_and_gradients() -> None:
    from lsqmf.nls.lm_normal import _gradient, _layout, _retract, _to_retracted

    red = build_reduced(as_ratings(_matrix(14)), 2, formulation="none", backend="numpy")
    rng = np.random.default_rng(4)
    theta = rng.standard_normal(red.n_params)
    d = rng.standard_normal(red.n_params)
    theta_r, R = _retract(red, theta)
    P, _ = red.split(theta)
    np.testing.assert_allclose(red.split(theta_r)[0] @ R, P, atol=1e-12)
    g = _gradient(red, _layout(red), theta)
    d_r, g_r = _to_retracted(red, R, d, g)
    # the gradient there is the mapped one, and directional derivatives agree
    np.testing.assert_allclose(_gradient(red, _layout(red), theta_r), g_r, rtol=1e-8, atol=1e-10)
    assert float(g_r @ d_r) == pytest.approx(float(g @ d), rel=1e-10)
    # a move along d is the same move along d_r, in the retracted coordinates
    t = 1e-3
    assert red.cost(theta + t * d) == pytest.approx(red.cost(theta_r + t * d_r), rel=1e-10)


@pytest.mark.parametrize("eliminate", ["Q", "P"])
def test_lm_normal_compiled_and_numpy_agree(eliminate: str) -> None:
    M = _matrix(15, n=14, m=12, k=3)
    kw = dict(eliminate=eliminate, formulation="none", method="lm-normal", init_scale=1.0,
              ftol=1e-12, xtol=1e-12, gtol=1e-12, random_state=3, max_nfev=400)
    a = solve_varpro(M, 3, backend="numpy", **kw)
    b = solve_varpro(M, 3, backend="compiled", **kw)
    assert a.success and b.success
    assert b.cost == pytest.approx(a.cost, rel=1e-8)


def test_lm_normal_steps_are_few_where_gauss_newton_alone_crawls() -> None:
    """The projected steps and the longer steps keep the count of evaluations small on a
    track-like instance from N(0, 1) starts (all reach one optimum)."""
    from lsqmf.data.synthetic import make_tracks

    M, _, _ = make_tracks(40, 30, 3, track_fraction=0.4, noise=0.01, random_state=1)
    costs, nfevs = [], []
    for seed in range(4):
        fit = solve_varpro(M, 3, method="lm-normal", formulation="none", init_scale=1.0,
                           ftol=1e-10, xtol=1e-10, gtol=1e-10, max_nfev=300, random_state=seed)
        costs.append(fit.cost)
        nfevs.append(fit.nfev)
    assert max(nfevs) < 300
    assert np.ptp(costs) <= 1e-6 * min(costs)


@pytest.mark.parametrize("orthonormal", [False, True])
def test_factored_matrix_adds_the_gauge_projector(orthonormal: bool) -> None:
    from lsqmf.nls.lm_normal import _add_gauge, _retract, _set_gauge, _State

    rng = np.random.default_rng(5)
    red = build_reduced(as_ratings(_matrix(16, n=13, m=9)), 3, formulation="none",
                        backend="numpy")
    x = rng.standard_normal(red.n_params)
    if orthonormal:  # the Kronecker shortcut
        x = _retract(red, x)[0]
    A, g = normal_equations(red, x)
    st = _State(x, red.residual(x), red.cost(x), A, g)
    _set_gauge(red, st)
    assert st.gauge is not None
    assert (st.gauge_P is not None) == orthonormal
    c = np.trace(A) / A.shape[0]
    expected = A + c * st.gauge @ st.gauge.T
    factored = A.copy()
    _add_gauge(st, factored)
    np.testing.assert_allclose(factored, expected, rtol=0, atol=1e-12 * np.abs(A).max())
    # the projected solve is the same with or without the gauge term
    mu = 1e-2 * c
    s0 = np.linalg.lstsq(A + mu * np.eye(A.shape[0]), -g, rcond=None)[0]
    s0 -= st.gauge @ (st.gauge.T @ s0)
    s1 = np.linalg.solve(factored + mu * np.eye(A.shape[0]), -g)
    np.testing.assert_allclose(s1, s0, rtol=1e-7, atol=1e-9 * np.abs(s0).max())


@pytest.mark.parametrize(("formulation", "count_scaled"), [("none", False), ("l2", True),
                                                           ("l2", False)])
@pytest.mark.parametrize("method", ["trf", "lm-normal"])
def test_an_eliminated_column_without_data_gets_zero(
    formulation: str, count_scaled: bool, method: str
) -> None:
    """An empty eliminated column (e.g. an item only in the test split) is in no residual:
    z_i = 0, and the fit equals the fit without that column."""
    M = _matrix(17, n=10, m=8)
    M_empty = np.hstack([M[:, :3], np.full((M.shape[0], 1), np.nan), M[:, 3:]])
    kw = dict(formulation=formulation, reg=0.1 if formulation == "l2" else 0.0,
              count_scaled=count_scaled, biases=formulation == "l2", method=method,
              random_state=0, ftol=1e-12, xtol=1e-12, gtol=1e-12, max_nfev=500,
              backend="numpy")
    with_empty = solve_varpro(M_empty, 2, **kw)
    without = solve_varpro(M, 2, **kw)
    assert np.all(with_empty.Q[:, 3] == 0.0)
    if with_empty.col_bias is not None:
        assert with_empty.col_bias[3] == 0.0
    assert with_empty.cost == pytest.approx(without.cost, rel=1e-9)
    np.testing.assert_allclose(np.delete(with_empty.Q, 3, axis=1), without.Q, atol=1e-4)


def test_a_column_with_too_few_observations_is_still_refused() -> None:
    M = _matrix(18, n=10, m=8)
    M[1:, 2] = np.nan  # one observation, rank 2
    with pytest.raises(ValueError, match="columns 2 "):
        solve_varpro(M, 2, formulation="none", backend="numpy")



def test_damped_step_is_the_factored_solution_without_its_gauge_part() -> None:
    """The step solves (A + c V V^T + mu D) s = -g with the gauge part dropped, it is
    orthogonal to the gauge, and its predicted decrease is the model's."""
    from lsqmf.nls.lm_normal import _damping, _Factor, _retract, _set_gauge, _State

    red = build_reduced(as_ratings(_matrix(21, n=15, m=11)), 3, formulation="none")
    x = _retract(red, np.random.default_rng(8).standard_normal(red.n_params))[0]
    A, g = normal_equations(red, x)
    st = _State(x, red.residual(x), red.cost(x), A, g)
    _set_gauge(red, st)
    V = st.gauge
    assert V is not None
    damp = 1e-2 * _damping(np.diag(A), "jac")
    p, pred = _Factor.of(st, damp).step(g)
    s = np.linalg.solve(A + st.gauge_c * V @ V.T + np.diag(damp), -g)
    np.testing.assert_allclose(p, s - V @ (V.T @ s), rtol=0, atol=1e-9 * np.abs(s).max())
    np.testing.assert_allclose(V.T @ p, 0.0, atol=1e-12 * np.abs(p).max())
    assert pred == pytest.approx(-(g @ p + 0.5 * p @ A @ p), rel=1e-12)
    assert pred > 0


def test_lm_normal_iterates_do_not_depend_on_the_callers_blas_threads() -> None:
    """lm-normal runs its linear algebra on one BLAS thread whatever the caller set, so the
    iterates are the same bit for bit (threaded LAPACK sums in another order)."""
    from threadpoolctl import threadpool_limits

    M = _matrix(22, n=220, m=60, k=6)
    kw = dict(eliminate="Q", method="lm-normal", formulation="none", init_scale=1.0,
              random_state=4, max_nfev=6)
    fits = []
    for threads in (1, 2):
        with threadpool_limits(limits=threads, user_api="blas"), pytest.warns(
            lsqmf.ConvergenceWarning
        ):
            fits.append(solve_varpro(M, 6, **kw))
    assert fits[0].nfev == fits[1].nfev == 6
    assert np.array_equal(fits[0].P, fits[1].P)
    assert np.array_equal(fits[0].Q, fits[1].Q)


@pytest.mark.parametrize("lam", [0.0, 0.3])
def test_inner_damping_matrix_is_the_schur_complement_of_the_damped_joint_system(
    lam: float,
) -> None:
    """DRW (the switch ``_INNER_DAMPING``): the matrix factored is J_t^T J_t - J_t^T J_z
    (J_z^T J_z + lam diag(J_z^T J_z))^-1 J_z^T J_t, from the joint Jacobian at (P, Q*(P));
    lam = 0 is Kaufman's A."""
    from lsqmf.nls.lm_normal import _damped_inner, _layout, _pieces
    from lsqmf.nls.lm_normal import _matrix as normal_matrix

    R = as_ratings(_matrix(23, n=9, m=7))
    red = build_reduced(R, 2, formulation="none")
    x = np.random.default_rng(9).standard_normal(red.n_params)
    lay = _layout(red)
    pc = _pieces(red, lay, x)
    A = normal_matrix(red, lay, pc, _damped_inner(red, x, lam))
    P = x.reshape(9, 2)
    Qt = pc.sol.Z[:, :2]  # (m, k): q_i
    N = len(red.rows)
    Jt = np.zeros((N, 9 * 2))
    Jz = np.zeros((N, 7 * 2))
    for t, (u, i) in enumerate(zip(red.rows, red.cols, strict=True)):
        Jt[t, 2 * u : 2 * u + 2] = -red.d[t] * Qt[i]
        Jz[t, 2 * i : 2 * i + 2] = -red.d[t] * P[u]
    Hzz = Jz.T @ Jz
    damped = Hzz + lam * np.diag(np.diag(Hzz))
    expected = Jt.T @ Jt - Jt.T @ Jz @ np.linalg.solve(damped, Jz.T @ Jt)
    np.testing.assert_allclose(A, expected, rtol=0, atol=1e-10 * np.abs(expected).max())


def test_lm_normal_with_inner_damping_reaches_the_optimum(monkeypatch: pytest.MonkeyPatch) -> None:
    import lsqmf.nls.lm_normal as lm

    M = _matrix(24, n=14, m=12, k=3, noise=0.01)
    kw = dict(formulation="none", method="lm-normal", init_scale=1.0, ftol=1e-12,
              xtol=1e-12, gtol=1e-12, random_state=3, max_nfev=400)
    plain = solve_varpro(M, 3, **kw)
    monkeypatch.setattr(lm, "_INNER_DAMPING", True)
    damped = solve_varpro(M, 3, **kw)
    assert plain.success and damped.success
    assert damped.cost == pytest.approx(plain.cost, rel=1e-8)
