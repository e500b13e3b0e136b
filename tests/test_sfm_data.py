"""Affine structure-from-motion sequences (make_affine_sfm), 0/1 integer masks, .mat input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

import lsqmf
from lsqmf.data.ratings import as_mask, as_ratings
from lsqmf.data.readers import read_input
from lsqmf.data.synthetic import SFM_FAMILIES, AffineSequence, make_affine_sfm

FIT = dict(formulation="none", init_scale=1.0, ftol=1e-12, xtol=1e-12, gtol=1e-12,
           max_nfev=300, method="lm-normal", x_scale=1.0)


# ------------------------------------------------------------------------------- generator
@pytest.mark.parametrize("family", sorted(SFM_FAMILIES))
def test_family_sequence_layout_and_truth(family: str) -> None:
    seq = make_affine_sfm(**SFM_FAMILIES[family], random_state=3)  # type: ignore[arg-type]
    F, N = seq.n_frames, seq.n_points
    assert isinstance(seq, AffineSequence)
    assert seq.M.shape == seq.mask.shape == seq.clean.shape == (2 * F, N)
    assert seq.P.shape == (2 * F, 4) and seq.Q.shape == (4, N) and seq.rank == 4
    np.testing.assert_array_equal(seq.mask, np.isfinite(seq.M))
    np.testing.assert_array_equal(seq.mask[0::2], seq.mask[1::2])  # x and y rows of a frame
    np.testing.assert_allclose(seq.P @ seq.Q, seq.clean, rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(seq.Q[3], 1.0)  # homogeneous points: [X; 1]
    s = np.linalg.svd(seq.clean, compute_uv=False)
    assert s[3] > 1e-6 * s[0] and s[4] < 1e-9 * s[0]  # exactly rank 4
    assert seq.mask.sum(axis=0).min() >= 2 * 3 and seq.mask.sum(axis=1).min() >= 6
    assert not (seq.outliers & ~seq.mask).any()
    assert 100.0 < np.median(np.abs(seq.M[seq.mask])) < 640.0  # pixels, far from unit scale


def test_family_densities() -> None:
    dens = {name: np.mean([make_affine_sfm(**kw, random_state=s).density  # type: ignore[arg-type]
                           for s in range(3)]) for name, kw in SFM_FAMILIES.items()}
    assert 0.3 < dens["turntable"] < 0.7
    assert 0.1 < dens["tumble"] < 0.4
    assert 0.05 <= dens["sparse_long"] <= 0.10


def test_noise_and_outliers_are_as_stated() -> None:
    seq = make_affine_sfm(40, 300, noise=0.5, outliers=0.05, random_state=0)
    inl = seq.mask & ~seq.outliers
    err = (seq.M - seq.clean)[inl]
    assert 0.45 < err.std() < 0.55
    n_obs = seq.mask.sum() // 2
    assert abs(seq.outliers.sum() // 2 - round(0.05 * n_obs)) <= 1
    np.testing.assert_array_equal(seq.outliers[0::2], seq.outliers[1::2])
    assert np.abs(seq.M - seq.clean)[seq.outliers].max() > 50.0


def test_reproducible_and_seeded() -> None:
    a = make_affine_sfm(40, 200, lifetime=10.0, occluder=0.2, dropout=0.05, random_state=7)
    b = make_affine_sfm(40, 200, lifetime=10.0, occluder=0.2, dropout=0.05,
                        random_state=np.random.default_rng(7))
    c = make_affine_sfm(40, 200, lifetime=10.0, occluder=0.2, dropout=0.05, random_state=8)
    np.testing.assert_array_equal(a.M, b.M)
    assert not np.array_equal(a.mask, c.mask)


def test_centred_sequence_is_rank_3() -> None:
    seq = make_affine_sfm(30, 100, translation=False, random_state=0)
    assert seq.rank == 3 and seq.P.shape == (60, 3)
    s = np.linalg.svd(seq.clean, compute_uv=False)
    assert s[3] < 1e-9 * s[0]


def test_largest_size_is_sparse_and_covered() -> None:
    seq = make_affine_sfm(200, 10_000, facing=False, lifetime=14.0, random_state=0)
    assert seq.M.shape == (400, 10_000)
    assert 0.05 <= seq.density <= 0.10
    assert seq.mask.sum(axis=0).min() >= 6 and seq.mask.sum(axis=1).min() >= 6


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"motion": "orbit"}, ValueError, "motion"),
        ({"n_frames": 2}, ValueError, "n_frames"),
        ({"outliers": 0.9}, ValueError, "outliers"),
        ({"lifetime": 0.5}, ValueError, "lifetime"),
        ({"facing": 1}, TypeError, "facing"),
        ({"noise": -1.0}, ValueError, "noise"),
    ],
    ids=["motion", "frames", "outliers", "lifetime", "facing-type", "noise"],
)
def test_invalid_settings(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        make_affine_sfm(**kwargs)


@pytest.mark.parametrize(
    ("family", "eliminate"),
    [("turntable", "Q"), ("tumble", "Q"), ("turntable", "P")],
    ids=["turntable-Q", "tumble-Q", "turntable-P"],
)
@pytest.mark.filterwarnings("ignore::lsqmf.ConvergenceWarning")  # a start may use max_nfev
def test_noise_free_sequence_is_fitted_exactly(family: str, eliminate: str) -> None:
    settings = dict(SFM_FAMILIES[family], noise=0.0, outliers=0.0)
    seq = make_affine_sfm(**settings, random_state=1)  # type: ignore[arg-type]
    # the best of 8 starts: single starts also end in local minima (e.g. RMS 0.026 px on
    # tumble, seed 0), which reports/sfm measures
    rms = [lsqmf.solve(seq.M, seq.rank, mask=seq.mask, eliminate=eliminate, random_state=s,
                       **FIT).rms for s in range(8)]
    assert min(rms) < 1e-6  # pixels: the truth is the global optimum, RMS 0


# ------------------------------------------------------------------------------- masks
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int32, np.int64, np.uint64, np.bool_])
def test_integer_masks_are_accepted(dtype) -> None:
    seq = make_affine_sfm(10, 20, random_state=0)
    ref = as_ratings(seq.M, mask=seq.mask)
    R = as_ratings(seq.M, mask=seq.mask.astype(dtype))
    np.testing.assert_array_equal(R.rows, ref.rows)
    np.testing.assert_array_equal(R.values, ref.values)
    masked = np.ma.masked_invalid(seq.M)
    assert as_ratings(masked, mask=seq.mask.astype(dtype)).nnz == ref.nnz


def test_solve_takes_a_uint8_mask() -> None:
    seq = make_affine_sfm(12, 30, noise=0.0, random_state=0)
    a = lsqmf.solve(seq.M, 4, mask=seq.mask, eliminate="Q", random_state=0, **FIT)
    b = lsqmf.solve(seq.M, 4, mask=seq.mask.astype(np.uint8), eliminate="Q", random_state=0,
                    **FIT)
    np.testing.assert_array_equal(a.P, b.P)


@pytest.mark.parametrize(
    ("mask", "error", "match"),
    [
        (np.full((4, 3), 2, np.uint8), ValueError, r"only 0 and 1.*2"),
        (np.array([[0, 1, -1]] * 4), ValueError, r"only 0 and 1.*-1"),
        (np.ones((4, 3)), TypeError, "boolean array, or integers"),
        (np.full((4, 3), "1"), TypeError, "boolean array, or integers"),
    ],
    ids=["uint8-2", "int-minus-1", "float", "str"],
)
def test_bad_mask_values(mask, error, match) -> None:
    with pytest.raises(error, match=match):
        as_ratings(np.ones((4, 3)), mask=mask)
    with pytest.raises(error, match=match):
        as_mask(mask)


# ------------------------------------------------------------------------------- .mat
@pytest.fixture
def mat_file(tmp_path: Path) -> tuple[Path, AffineSequence]:
    seq = make_affine_sfm(10, 20, random_state=0)
    M = np.where(seq.mask, seq.M, 0.0)  # MATLAB files often hold zeros where not visible
    path = tmp_path / "seq.mat"
    scipy.io.savemat(path, {"M": M, "W": seq.mask.astype(np.uint8), "F": np.float64(10)})
    return path, seq


def test_mat_matrix_and_mask(mat_file) -> None:
    path, seq = mat_file
    R = read_input(path, matrix="M", mask="W")
    ref = as_ratings(seq.M, mask=seq.mask)
    assert R.shape == ref.shape and R.nnz == ref.nnz
    np.testing.assert_array_equal(R.values, ref.values)
    assert read_input(path, format="mat", matrix="M", mask="W").nnz == ref.nnz


def test_mat_logical_and_double_masks(tmp_path: Path) -> None:
    seq = make_affine_sfm(10, 20, random_state=0)
    for name, W in (("logical", seq.mask), ("double", seq.mask.astype(float))):
        path = tmp_path / f"{name}.mat"
        scipy.io.savemat(path, {"M": np.nan_to_num(seq.M), "W": W})
        assert read_input(path, matrix="M", mask="W").nnz == seq.mask.sum()


def test_mat_single_matrix_nan_missing(tmp_path: Path) -> None:
    seq = make_affine_sfm(10, 20, random_state=0)
    path = tmp_path / "one.mat"
    scipy.io.savemat(path, {"measurements": seq.M})
    assert read_input(path).nnz == seq.mask.sum()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"matrix": "X", "mask": "W"}, r"no variable named 'X'.*variables: .*M \(20x20 double\)"),
        ({"matrix": "M", "mask": "mask"}, r"no variable named 'mask' for the mask.*W"),
        ({}, r"name the matrix with `matrix=` \(2 candidates\).*M .*W .*F \(1x1 double\)"),
        ({"matrix": "M", "mask": "M"}, "same variable"),
        ({"matrix": "M", "mask": "F"}, "shape"),
        ({"matrix": "M", "mask": "W", "missing": 0.0}, "cannot be combined"),
    ],
    ids=["no-matrix", "no-mask", "ambiguous", "same", "mask-shape", "missing-and-mask"],
)
def test_mat_errors(mat_file, kwargs, match) -> None:
    path, _ = mat_file
    with pytest.raises(ValueError, match=match):
        read_input(path, **kwargs)


def test_mat_bad_mask_values(tmp_path: Path) -> None:
    path = tmp_path / "bad.mat"
    scipy.io.savemat(path, {"M": np.ones((4, 3)), "W": np.full((4, 3), 0.5)})
    with pytest.raises(ValueError, match="only 0 and 1"):
        read_input(path, matrix="M", mask="W")


def test_mat_v73_is_refused(tmp_path: Path) -> None:
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5"
    path = tmp_path / "v73.mat"
    path.write_bytes(header.ljust(512, b" ") + b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)
    with pytest.raises(ValueError, match=r"v7.3 \(HDF5\).*-v7"):
        read_input(path, matrix="M")


def test_matrix_names_only_for_mat_files(tmp_path: Path) -> None:
    path = tmp_path / "m.npy"
    np.save(path, np.ones((3, 3)))
    with pytest.raises(ValueError, match=r"MATLAB \.mat"):
        read_input(path, matrix="M")
    with pytest.raises(TypeError, match="`mask` must be a variable name"):
        read_input(path, mask=np.ones((3, 3), bool))
