"""Model files: round trip, no pickle, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lsqmf import Ratings
from lsqmf.model.files import load_model, save_model
from lsqmf.solvers import SOLVERS


def _fit(biases: bool, ids: str) -> tuple:
    users = ["ann", "bob", "cy"] if ids == "str" else [10, 20, 30]
    frame = pd.DataFrame({"user": [users[0], users[0], users[1], users[2], users[2]],
                          "item": [1, 2, 2, 1, 3], "rating": [4.0, 3.0, 5.0, 2.0, 1.0]})
    r = Ratings.from_frame(frame)
    return r, SOLVERS["als"](r, 2, reg=0.1, biases=biases, tol=0.5, random_state=0)


@pytest.mark.parametrize("ids", ["str", "int"])
@pytest.mark.parametrize("biases", [False, True], ids=["plain", "biases"])
def test_round_trip(tmp_path: Path, biases: bool, ids: str) -> None:
    _, model = _fit(biases, ids)
    path = save_model(model, tmp_path / "m", metadata={"ratings": "builtin"})
    assert path.suffix == ".npz"
    loaded, meta = load_model(path)
    assert meta == {"ratings": "builtin"}
    np.testing.assert_array_equal(loaded.P, model.P)
    np.testing.assert_array_equal(loaded.Q, model.Q)
    assert loaded.mu == model.mu and loaded.solver == "als"
    assert loaded.has_biases == biases
    assert list(loaded.row_ids) == list(model.row_ids)
    assert loaded.options["rank"] == 2 and loaded.cost == model.cost
    users = list(model.row_ids)
    np.testing.assert_allclose(
        loaded.predict_ids(users[:2], [1, 3]), model.predict_ids(users[:2], [1, 3])
    )
    with np.load(path, allow_pickle=False) as data:  # loads without pickle
        assert "values" not in data.files and "rows" not in data.files


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such model file"):
        load_model(tmp_path / "none.npz")
    bad = tmp_path / "bad.npz"
    bad.write_text("not a zip")
    with pytest.raises(ValueError, match="is not an lsqmf model file"):
        load_model(bad)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(2))
    with pytest.raises(ValueError, match=r"missing \['P', 'Q', 'info', 'mu'\]"):
        load_model(other)
    with pytest.raises(TypeError, match=r"`model` must be lsqmf\.FitResult"):
        save_model({"P": 1}, tmp_path / "x.npz")
