"""Hostile model files: tampered members, oversized claims, truncation, overwrites.

Each case takes a valid model file, changes one thing, and asserts the exact ``ValueError``
(naming the file and the member) that :func:`lsqmf.model.files.load_model` raises, or the result
it must preserve.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lsqmf import FitResult
from lsqmf.model import files as model_io
from lsqmf.model.files import FORMAT_VERSION, load_model, read_metadata, save_model


def _model(**changes: Any) -> FitResult:
    fields: dict[str, Any] = {
        "P": np.arange(6, dtype=float).reshape(3, 2) / 10,
        "Q": np.arange(8, dtype=float).reshape(2, 4) / 10,
        "mu": 3.5,
        "row_bias": np.array([0.1, -0.2, 0.3]),
        "col_bias": np.array([0.0, 0.1, 0.2, -0.1]),
        "row_counts": np.array([2, 1, 3]),
        "col_counts": np.array([1, 1, 2, 2]),
        "row_ids": np.array([10, 20, 30]),
        "col_ids": np.array(["a", "b", "c", "d"], dtype=object),
        "solver": "als",
        "status": 1,
        "message": "ok",
        "cost": 1.25,
        "options": {"rank": 2, "reg": 0.1},
    }
    fields.update(changes)
    return FitResult(**fields)


def _members(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _write(path: Path, arrays: dict[str, Any]) -> Path:
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


def _info(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    return json.loads(str(arrays["info"]))


def _with_info(arrays: dict[str, np.ndarray], **changes: Any) -> dict[str, Any]:
    info = _info(arrays)
    for key, value in changes.items():
        if value is _DROP:
            info.pop(key, None)
        else:
            info[key] = value
    return {**arrays, "info": np.asarray(json.dumps(info))}


_DROP = object()


def _set(name: str, value: Any) -> Callable[[dict[str, np.ndarray]], dict[str, Any]]:
    def change(a: dict[str, np.ndarray]) -> dict[str, Any]:
        out = dict(a)
        out[name] = value(a) if callable(value) else value
        return out
    return change


def _drop(name: str) -> Callable[[dict[str, np.ndarray]], dict[str, Any]]:
    return lambda a: {k: v for k, v in a.items() if k != name}


def _nan_at(name: str, fill: float = np.nan) -> Callable:
    def value(a: dict[str, np.ndarray]) -> np.ndarray:
        arr = a[name].astype(float).copy()
        arr.flat[0] = fill
        return arr
    return _set(name, value)


# (change to the member dict, message pattern after "'<file>', member ")
TAMPERED = [
    pytest.param(_nan_at("P"), r"'P': has 1 non-finite entry \(NaN or inf\)", id="nan-in-P"),
    pytest.param(_nan_at("Q", np.inf), r"'Q': has 1 non-finite entry", id="inf-in-Q"),
    pytest.param(_set("mu", np.asarray(np.nan)), r"'mu': has 1 non-finite entry", id="nan-mu"),
    pytest.param(_nan_at("row_bias"), r"'row_bias': has 1 non-finite", id="nan-row-bias"),
    pytest.param(_nan_at("col_bias", -np.inf), r"'col_bias': has 1 non-finite",
                 id="inf-col-bias"),
    pytest.param(_set("P", lambda a: a["P"].ravel()), r"'P': must be 2-D", id="P-1d"),
    pytest.param(_set("Q", lambda a: a["Q"][:1]), r"'Q': P is \(3, 2\) and Q is \(1, 4\): P's "
                 r"columns must equal Q's rows", id="rank-mismatch"),
    pytest.param(_set("P", lambda a: a["P"][:2]), r"'P': the metadata declares shape \[3, 4\]; "
                 r"the factors give \[2, 4\]", id="fewer-rows-than-declared"),
    pytest.param(lambda a: _with_info(a, rank=3), r"'P': the metadata declares rank 3; the "
                 r"factors have 2", id="declared-rank-differs"),
    pytest.param(_set("P", lambda a: a["P"].astype(np.int64)), r"'P': must be floating point; "
                 r"got dtype int64", id="int-P"),
    pytest.param(_set("mu", np.ones(2)), r"'mu': must be a scalar; got shape \(2,\)",
                 id="mu-vector"),
    pytest.param(_set("row_bias", np.zeros(2)), r"'row_bias': must have shape \(3,\) \(one per "
                 r"row\); got \(2,\)", id="row-bias-short"),
    pytest.param(_set("col_bias", np.zeros(9)), r"'col_bias': must have shape \(4,\) \(one per "
                 r"column\); got \(9,\)", id="col-bias-long"),
    pytest.param(_drop("col_bias"), r"'row_bias': a model has both row and column biases or "
                 r"neither", id="only-row-bias"),
    pytest.param(_set("row_bias", np.array(["x", "y", "z"])), r"'row_bias': must be floating "
                 r"point; got dtype <U1", id="string-bias"),
    pytest.param(_set("row_ids", np.array([1, 2])), r"'row_ids': must have shape \(3,\)",
                 id="row-ids-short"),
    pytest.param(_set("col_ids", np.array(["a", "b", "c", "d", "e"])),
                 r"'col_ids': must have shape \(4,\)", id="col-ids-long"),
    pytest.param(_drop("row_ids"), r"'col_ids': a model has both id maps or neither",
                 id="only-col-ids"),
    pytest.param(_set("row_ids", np.array([10, 10, 30])), r"'row_ids': has repeated ids",
                 id="repeated-ids"),
    pytest.param(_set("row_ids", np.array([1.5, 2.5, 3.5])), r"'row_ids': must be int64 or "
                 r"unicode ids; got dtype float64", id="float-ids"),
    pytest.param(_set("row_ids", np.array(["x" * 300, "y", "z"])), r"'row_ids': ids longer "
                 r"than 256 characters", id="giant-ids"),
    pytest.param(_set("row_counts", np.array([1, -1, 2])), r"'row_counts': must be >= 0; got -1",
                 id="negative-counts"),
    pytest.param(_set("col_counts", np.array([1.0, 1.0, 2.0, 2.0])), r"'col_counts': must be "
                 r"integers; got dtype float64", id="float-counts"),
    pytest.param(_set("row_counts", np.array([1, 2])), r"'row_counts': must have shape \(3,\)",
                 id="counts-short"),
    pytest.param(_set("row_ids", np.array([None, 1, 2], dtype=object)),
                 r"'row_ids': holds Python objects \(pickle\); refused", id="pickled-ids"),
    pytest.param(_set("P", np.array([[None]], dtype=object)),
                 r"'P': holds Python objects \(pickle\); refused", id="pickled-P"),
    pytest.param(_set("info", np.asarray("{not json")), r"'info': not valid JSON",
                 id="info-not-json"),
    pytest.param(_set("info", np.asarray("[1, 2]")), r"'info': expected a JSON object; got "
                 r"list", id="info-json-list"),
    pytest.param(_set("info", np.arange(3)), r"'info': expected a JSON string", id="info-ints"),
    pytest.param(lambda a: _with_info(a, solver=_DROP), r"'info': missing the 'solver' field",
                 id="info-no-solver"),
    pytest.param(lambda a: _with_info(a, status="one"), r"'info': field 'status' must be int; "
                 r"got 'one'", id="info-status-str"),
    pytest.param(lambda a: _with_info(a, success="yes"), r"'info': field 'success' must be "
                 r"bool", id="info-success-str"),
    pytest.param(lambda a: _with_info(a, status=True), r"'info': field 'status' must be int; "
                 r"got True", id="info-status-bool"),
    pytest.param(lambda a: _with_info(a, metadata=[1]), r"'info': field 'metadata' must be "
                 r"dict", id="info-metadata-list"),
    pytest.param(lambda a: _with_info(a, shape=[3]), r"'info': `shape` must be two ints >= 1",
                 id="info-shape-one-int"),
    pytest.param(lambda a: _with_info(a, shape=[3, -4]), r"'info': `shape` must be two ints",
                 id="info-shape-negative"),
    pytest.param(lambda a: _with_info(a, rank=0), r"'info': `shape` must be two ints >= 1 and "
                 r"`rank` an int >= 1", id="info-rank-zero"),
    pytest.param(lambda a: _with_info(a, shape=[1, 1], rank=1), r"'P': declares \d+ bytes, "
                 r"more than the \d+ its shape in the metadata allows; refusing to read it",
                 id="member-larger-than-declared-shape"),
]


@pytest.mark.parametrize(("change", "match"), TAMPERED)
def test_tampered_member_refused(tmp_path: Path, change: Callable, match: str,
                                 request: pytest.FixtureRequest) -> None:
    source = save_model(_model(), tmp_path / "good.npz")
    if request.node.callspec.id == "member-larger-than-declared-shape":
        # a real 300 x 200 factor in a file whose metadata says (1, 1), rank 1
        source = save_model(_model(P=np.ones((300, 200)), Q=np.ones((200, 4)), row_bias=None,
                                   col_bias=None, row_counts=None, col_counts=None,
                                   row_ids=None, col_ids=None), tmp_path / "big.npz")
    bad = _write(tmp_path / "bad.npz", change(_members(source)))
    with pytest.raises(ValueError, match=rf"^'{bad}', member {match}") as info:
        load_model(bad)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        pytest.param(b"", r"is empty \(0 bytes\): not an lsqmf model file", id="empty"),
        pytest.param(b"not a zip", r"is not an lsqmf model file \(\.npz\): not a readable zip "
                     r"archive\.", id="text"),
        pytest.param(b"PK\x03\x04" + b"\x00" * 40, r"not a readable zip archive \(it starts "
                     r"like a zip archive: truncated\?\)", id="zip-header-only"),
        pytest.param(b"\x93NUMPY\x01\x00", r"not a readable zip archive", id="npy-not-npz"),
    ],
)
def test_not_a_model_file(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "m.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match):
        load_model(path)


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9, 0.99], ids=lambda f: f"keep-{f:.0%}")
def test_truncated_model_file(tmp_path: Path, fraction: float) -> None:
    good = save_model(_model(P=np.random.default_rng(0).random((50, 2)),
                             Q=np.ones((2, 4)), row_bias=None, col_bias=None,
                             row_counts=None, col_counts=None, row_ids=None, col_ids=None),
                      tmp_path / "good.npz")
    data = good.read_bytes()
    bad = tmp_path / "cut.npz"
    bad.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ValueError, match=rf"^'{bad}'.*(not a readable zip archive|corrupt or "
                       r"truncated)"):
        load_model(bad)


def test_corrupt_member_bytes(tmp_path: Path) -> None:
    good = save_model(_model(P=np.random.default_rng(0).random((200, 2)), Q=np.ones((2, 4)),
                             row_bias=None, col_bias=None, row_counts=None, col_counts=None,
                             row_ids=None, col_ids=None), tmp_path / "good.npz")
    data = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as zf:
        info = zf.getinfo("P.npy")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 20
    for k in range(start, start + 40):
        data[k] ^= 0x5A
    bad = tmp_path / "bad.npz"
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"^'{bad}', member 'P': "):
        load_model(bad)


@pytest.mark.parametrize(
    ("drop", "match"),
    [("P", r"missing \['P'\]"), ("info", r"missing \['info'\]"), ("mu", r"missing \['mu'\]")],
    ids=["no-P", "no-info", "no-mu"],
)
def test_missing_required_member(tmp_path: Path, drop: str, match: str) -> None:
    arrays = _members(save_model(_model(), tmp_path / "good.npz"))
    del arrays[drop]
    bad = _write(tmp_path / "bad.npz", arrays)
    with pytest.raises(ValueError, match=rf"is not an lsqmf model file: {match}"):
        load_model(bad)


@pytest.mark.parametrize("version", [0, 3, 99, "2", None, True], ids=repr)
def test_unknown_format_version(tmp_path: Path, version: Any) -> None:
    arrays = _members(save_model(_model(), tmp_path / "good.npz"))
    bad = _write(tmp_path / "bad.npz", _with_info(arrays, format_version=version))
    with pytest.raises(ValueError, match=rf"has model format version {version!r}; this lsqmf "
                       r"reads versions 1, 2"):
        load_model(bad)


def test_oversized_info_refused_before_reading(tmp_path: Path, monkeypatch) -> None:
    path = save_model(_model(), tmp_path / "m.npz")
    monkeypatch.setattr(model_io, "_MAX_INFO_BYTES", 100)
    with pytest.raises(ValueError, match=r"member 'info': declares \d+ bytes, more than the 100"):
        load_model(path)


def test_unknown_members_are_ignored_and_logged(tmp_path: Path, caplog) -> None:
    arrays = _members(save_model(_model(), tmp_path / "good.npz"))
    path = _write(tmp_path / "extra.npz", {**arrays, "evil": np.zeros(10**6)})
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("../../escape.txt", b"never extracted")
    with caplog.at_level(logging.INFO, logger="lsqmf.model.files"):
        model, _ = load_model(path)
    assert "ignoring members the model format does not define" in caplog.text
    np.testing.assert_array_equal(model.P, _model().P)
    assert not (tmp_path.parent.parent / "escape.txt").exists()


def test_version_1_file_still_read(tmp_path: Path) -> None:
    arrays = _members(save_model(_model(), tmp_path / "v2.npz"))
    v1 = _with_info(arrays, format_version=1, shape=_DROP, rank=_DROP, members=_DROP)
    model, meta = load_model(_write(tmp_path / "v1.npz", v1))
    np.testing.assert_array_equal(model.Q, _model().Q)
    assert model.row_ids.tolist() == [10, 20, 30] and meta == {}


def test_version_1_file_checked_too(tmp_path: Path) -> None:
    arrays = _members(save_model(_model(), tmp_path / "v2.npz"))
    v1 = _with_info(arrays, format_version=1, shape=_DROP, rank=_DROP)
    v1["row_bias"] = np.zeros(7)
    bad = _write(tmp_path / "v1.npz", v1)
    with pytest.raises(ValueError, match=r"member 'row_bias': must have shape \(3,\)"):
        load_model(bad)


def test_round_trip_preserves_everything(tmp_path: Path) -> None:
    model = _model()
    path = save_model(model, tmp_path / "m", metadata={"note": "x"})
    assert path.name == "m.npz"
    loaded, meta = load_model(path)
    for name in ("P", "Q", "row_bias", "col_bias", "row_counts", "col_counts"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(model, name))
    assert loaded.row_ids.tolist() == [10, 20, 30]
    assert loaded.col_ids.tolist() == ["a", "b", "c", "d"]
    assert loaded.mu == 3.5 and loaded.cost == 1.25 and loaded.solver == "als"
    assert meta == {"note": "x"} and read_metadata(path) == {"note": "x"}
    assert _info(_members(path))["format_version"] == FORMAT_VERSION == 2


def test_save_never_overwrites_without_force(tmp_path: Path) -> None:
    path = save_model(_model(), tmp_path / "m.npz")
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match=r"m\.npz' exists; pass force=True \(--force on "
                       r"the command line\) to overwrite"):
        save_model(_model(mu=1.0), path)
    assert path.read_bytes() == before
    save_model(_model(mu=1.0), path, force=True)
    assert load_model(path)[0].mu == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]  # no temp file left


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"P": np.full((3, 2), np.nan)}, r"the model's `P` has non-finite entries"),
        ({"mu": float("inf")}, r"the model's `mu` has non-finite entries"),
        ({"row_bias": np.array([np.nan, 0, 0])}, r"the model's `row_bias` has non-finite"),
    ],
    ids=["nan-P", "inf-mu", "nan-bias"],
)
def test_save_refuses_non_finite_models(tmp_path: Path, changes: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        save_model(_model(**changes), tmp_path / "m.npz")
    assert list(tmp_path.iterdir()) == []  # nothing written, no temp file


def test_save_failure_leaves_old_file_intact(tmp_path: Path, monkeypatch) -> None:
    path = save_model(_model(), tmp_path / "m.npz")
    before = path.read_bytes()

    def boom(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", boom)
    with pytest.raises(OSError, match="disk full"):
        save_model(_model(mu=0.0), path, force=True)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"model": {"P": 1}}, TypeError, r"`model` must be lsqmf\.FitResult"),
        ({"path": 3}, TypeError, r"`path` must be a file path; got 3"),
        ({"metadata": [1]}, TypeError, r"`metadata` must be a dict"),
        ({"force": "yes"}, TypeError, r"`force` must be True or False"),
    ],
    ids=["model", "path", "metadata", "force"],
)
def test_save_argument_errors(tmp_path: Path, kwargs: dict, error: type, match: str) -> None:
    args: dict[str, Any] = {"model": _model(), "path": tmp_path / "m.npz", **kwargs}
    with pytest.raises(error, match=match):
        save_model(args.pop("model"), args.pop("path"), **args)


def test_fifo_model_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "m.npz"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match=r"is not a regular file"):
        load_model(fifo)


def test_save_to_a_directory(tmp_path: Path) -> None:
    (tmp_path / "d.npz").mkdir()
    with pytest.raises(ValueError, match=r"is a directory; give a file name"):
        save_model(_model(), tmp_path / "d.npz")


@pytest.mark.parametrize(
    ("path", "error", "match"),
    [
        (3, TypeError, r"`path` must be a file path; got 3"),
        ("nope.npz", FileNotFoundError, r"no such model file: 'nope\.npz'"),
        (".", ValueError, r"'\.' is a directory, not an lsqmf model file"),
        ("/dev/zero", ValueError, r"'/dev/zero' is not a regular file \(a pipe or a device\)"),
    ],
    ids=["int", "missing", "directory", "device"],
)
def test_load_argument_errors(path: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        load_model(path)
