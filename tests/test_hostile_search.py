"""Model selection refuses what it cannot run before running anything: a misspelt solver, a
grid too large to run, column exclusions that are not column indices."""

from __future__ import annotations

import numpy as np
import pytest

from lsqmf.data.synthetic import make_low_rank
from lsqmf.evaluate import cross_validate, grid_search, top_n
from lsqmf.evaluate.search import MAX_CELLS
from lsqmf.solvers import als


@pytest.fixture(scope="module")
def ratings():  # type: ignore[no-untyped-def]
    r, _ = make_low_rank(20, 15, 2, density=0.5, random_state=0)
    return r


@pytest.mark.parametrize("run", ["grid_search", "cross_validate"])
def test_a_misspelt_solver_is_an_error_not_a_table_of_nan(ratings, run: str) -> None:
    with pytest.raises(ValueError, match=r"`solver` must be one of 'lsq', .*; got 'nope'"):
        if run == "grid_search":
            grid_search(ratings, "nope", {"rank": [1, 2]}, n_splits=2, progress=False)
        else:
            cross_validate(ratings, solver="nope", n_splits=2)


def test_a_giant_grid_is_refused_before_any_cell_is_built(ratings) -> None:
    grid = {"rank": list(range(1, 10_001)), "reg": [0.01 * i for i in range(10_000)]}
    with pytest.raises(ValueError, match=r"makes 500,000,000 cells .* more than the 100,000"):
        grid_search(ratings, "als", grid, n_splits=5, progress=False)
    assert MAX_CELLS == 100_000


@pytest.mark.parametrize("exclude", [[0.7], [True], ["a"], np.array([1.5])],
                         ids=["float", "bool", "string", "float-array"])
def test_top_n_exclude_takes_integer_indices_only(ratings, exclude: object) -> None:
    model = als(ratings, 2, max_iter=200, random_state=0)
    with pytest.raises(TypeError, match="`exclude` must hold integer column indices"):
        top_n(model, 0, exclude=exclude)


def test_top_n_exclude_with_indices_excludes_them(ratings) -> None:
    model = als(ratings, 2, max_iter=200, random_state=0)
    best, _ = top_n(model, 0, n=3)
    again, _ = top_n(model, 0, n=3, exclude=[int(best[0])])
    assert int(best[0]) not in again.tolist()
    empty, _ = top_n(model, 0, n=3, exclude=[])
    np.testing.assert_array_equal(empty, best)


def test_a_checkpoint_in_use_by_another_run_is_refused(ratings, tmp_path) -> None:
    import os
    import socket

    out = tmp_path / "cv.csv"
    lock = tmp_path / "cv.csv.lock"
    lock.write_text(f"{os.getppid()} {socket.gethostname()}\n")  # a live process holds it
    with pytest.raises(ValueError, match=r"`out` file .*cv\.csv' is in use by another run"):
        cross_validate(ratings, solver="als", n_splits=2, rank=1, out=out)
    assert not out.exists()
    lock.write_text(f"{2**22 + 12345} {socket.gethostname()}\n")  # a pid that is not running
    cv = cross_validate(ratings, solver="als", n_splits=2, rank=1, max_iter=200, out=out)
    assert len(cv) == 2 and out.exists() and not lock.exists()  # a stale lock is taken over
