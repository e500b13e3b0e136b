"""Hostile model files: tampered members, oversized claims, truncation, overwrites.

Each case takes a valid model file, changes one thing, and asserts the exact ``ValueError``
(naming the file and the member) that :func:`lsqmf.model.files.load_model` raises, or the result
it must preserve.
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
import subprocess
import sys
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


def test_unknown_members_are_refused_unread(tmp_path: Path) -> None:
    arrays = _members(save_model(_model(), tmp_path / "good.npz"))
    path = _write(tmp_path / "extra.npz", {**arrays, "evil": np.zeros(10**6)})
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("../../escape.txt", b"never extracted")
    with pytest.raises(ValueError, match=r"member '\.\./\.\./escape\.txt': not a member of an "
                       r"lsqmf model file \(it has '\.\./\.\./escape\.txt', 'evil\.npy'"):
        load_model(path)
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


# ------------------------------------------------------------ tampered zip entries and headers
def _rezip(src: Path, dst: Path, edit: Callable[[str, bytes], list[tuple[str, bytes]]],
           compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """Copy ``src``'s members through ``edit(name, data) -> [(name, data), ...]``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compression) as zout:
        for name in zin.namelist():
            for new_name, data in edit(name, zin.read(name)):
                zout.writestr(new_name, data)
    return dst


def _patch_entries(data: bytes, *, flag: int = 0, method: int | None = None) -> bytes:
    """Set general-purpose ``flag`` bits and the compression ``method`` of every entry, in the
    local headers and the central directory."""
    out = bytearray(data)
    for signature, flag_at, method_at in ((b"PK\x03\x04", 6, 8), (b"PK\x01\x02", 8, 10)):
        at = out.find(signature)
        while at >= 0:
            out[at + flag_at] |= flag
            if method is not None:
                out[at + method_at:at + method_at + 2] = struct.pack("<H", method)
            at = out.find(signature, at + 4)
    return bytes(out)


def _npy(header: dict[str, Any], payload: bytes) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + payload


def _replace(member: str, data: bytes) -> Callable[[str, bytes], list[tuple[str, bytes]]]:
    return lambda name, old: [(name, data if name == member else old)]


_P_BYTES = _model().P.tobytes()
ZIP_TAMPERED = {
    "npy-header-1e12-rows": (
        _replace("P.npy", _npy({"descr": "<f8", "fortran_order": False, "shape": (10**12, 2)},
                               _P_BYTES)),
        r"member 'P': its header declares shape \(1000000000000, 2\) of float64 "
        r"\(16000000000000 bytes\) but the member holds 48 bytes of data"),
    "npy-header-shape-swapped": (
        _replace("P.npy", _npy({"descr": "<f8", "fortran_order": False, "shape": (2, 3)},
                               _P_BYTES)),
        r"member 'Q': P is \(2, 3\) and Q is \(2, 4\)"),
    "npy-header-object-dtype": (
        _replace("P.npy", _npy({"descr": "|O", "fortran_order": False, "shape": (3, 2)},
                               _P_BYTES)),
        r"member 'P': holds Python objects \(pickle\); refused"),
    "npy-header-structured-dtype": (
        _replace("P.npy", _npy({"descr": [("a", "<f8")], "fortran_order": False,
                                "shape": (3, 2)}, _P_BYTES)),
        r"member 'P': dtype \[\('a', '<f8'\)\] is not one a model file uses"),
    "npy-header-garbage": (
        _replace("Q.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': nope}\n" + b"\0" * 64),
        r"member 'Q': not a readable array"),
    "renamed-member": (
        lambda name, old: [("p.npy" if name == "P.npy" else name, old)],
        r"is not an lsqmf model file: missing \['P'\] \(and has members it does not define: "
        r"\['p\.npy'\]\)"),
    "extra-member": (
        lambda name, old: [(name, old)] + ([("README", b"hi")] if name == "info.npy" else []),
        r"member 'README': not a member of an lsqmf model file"),
    "repeated-member": (
        lambda name, old: [(name, old)] * (2 if name == "mu.npy" else 1),
        r"member 'mu\.npy': appears more than once in the archive"),
}


@pytest.mark.filterwarnings("ignore:Duplicate name")
@pytest.mark.parametrize(("edit", "match"), ZIP_TAMPERED.values(), ids=ZIP_TAMPERED.keys())
def test_tampered_zip_member_refused(tmp_path: Path, edit: Callable, match: str) -> None:
    good = save_model(_model(), tmp_path / "good.npz")
    bad = _rezip(good, tmp_path / "bad.npz", edit)
    with pytest.raises(ValueError, match=re.escape(str(bad)) + r"',? " + match):
        load_model(bad)


@pytest.mark.parametrize(
    ("flag", "method", "match"),
    [
        (1, None, r"member 'info': flagged encrypted; lsqmf never writes encrypted members"),
        (0, 99, r"member 'info': zip compression method 99; lsqmf writes only 0 \(stored\) and "
                r"8 \(deflate\)"),
        (0, 14, r"member 'info': zip compression method 14"),
        (0, 12, r"member 'info': zip compression method 12"),
    ],
    ids=["encrypted", "method-99", "method-14-lzma", "method-12-bzip2"],
)
def test_zip_entry_flags_refused_before_decompressing(tmp_path: Path, flag: int,
                                                      method: int | None, match: str) -> None:
    good = save_model(_model(), tmp_path / "good.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(_patch_entries(good.read_bytes(), flag=flag, method=method))
    with pytest.raises(ValueError, match=re.escape(str(bad)) + "', " + match):
        load_model(bad)


def test_declared_rank_1e9_refused(tmp_path: Path) -> None:
    arrays = _members(save_model(_model(), tmp_path / "good.npz"))
    bad = _write(tmp_path / "bad.npz", _with_info(arrays, rank=10**9))
    with pytest.raises(ValueError, match=r"member 'P': the metadata declares rank 1000000000; "
                       r"the factors have 2"):
        load_model(bad)


@pytest.mark.parametrize("ids", [["a\0", "b", "c", "d"], ["a", "b\0c", "c", "d"], ["\0"] * 4],
                         ids=["trailing-nul", "inner-nul", "only-nul"])
def test_ids_with_nul_refused_on_save(tmp_path: Path, ids: list[str]) -> None:
    with pytest.raises(ValueError, match=r"the model's `col_ids` has an id with a NUL "
                       r"character at position 0|at position 1"):
        save_model(_model(col_ids=np.array(ids, dtype=object)), tmp_path / "m.npz")
    assert list(tmp_path.iterdir()) == []


def test_ids_with_nul_refused_on_load(tmp_path: Path) -> None:
    arrays = _members(save_model(_model(), tmp_path / "good.npz"))
    bad = _write(tmp_path / "bad.npz", {**arrays, "col_ids": np.array(["a", "b\0c", "c", "d"])})
    with pytest.raises(ValueError, match=r"member 'col_ids': id at position 1 \('b\\x00c'\) "
                       r"contains a NUL character"):
        load_model(bad)


# ------------------------------------------------------------ file-system faults on save
@pytest.mark.parametrize("name", ["with space.npz", "unicodé-模型.npz", "new\nline.npz",
                                  "-dash.npz", "quote'\".npz"],
                         ids=["space", "unicode", "newline", "dash", "quotes"])
def test_odd_path_names_round_trip(tmp_path: Path, name: str) -> None:
    path = save_model(_model(), tmp_path / name)
    assert path == tmp_path / name
    np.testing.assert_array_equal(load_model(path)[0].P, _model().P)


def test_symlink_output_writes_its_target(tmp_path: Path) -> None:
    target = save_model(_model(), tmp_path / "elsewhere" / "real.npz")
    link = tmp_path / "link.npz"
    link.symlink_to(target)
    with pytest.raises(FileExistsError, match=re.escape(repr(str(target))) + " exists"):
        save_model(_model(mu=1.0), link)
    assert save_model(_model(mu=1.0), link, force=True) == target
    assert link.is_symlink() and load_model(link)[0].mu == 1.0
    assert sorted(p.name for p in target.parent.iterdir()) == ["real.npz"]


def test_dangling_symlink_output_refused(tmp_path: Path) -> None:
    link = tmp_path / "link.npz"
    link.symlink_to(tmp_path / "gone" / "x.npz")
    with pytest.raises(FileNotFoundError, match=r"is a symbolic link to .*gone/x\.npz', which "
                       r"does not exist") as info:
        save_model(_model(), link, force=True)
    assert info.value.filename == str(link)


_SAVE_SCRIPT = """
import resource, signal, sys
sys.path.insert(0, {tests!r})
from test_hostile_models import _model
from lsqmf.model.files import save_model
import numpy as np
limit = {limit!r}
if limit is not None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
if {user!r} is not None:
    import os
    os.setgid(65534); os.setuid(65534)
try:
    P = np.random.default_rng(0).random((5000, 2))  # incompressible: larger than the limit
    save_model(_model(P=P, row_bias=None, col_bias=None, row_ids=None, col_ids=None,
                      row_counts=None, col_counts=None), {path!r}, force=True)
except OSError as err:
    print(type(err).__name__, err.filename, err.strerror, sep="|")
"""


def _save_in_child(path: Path, *, limit: int | None = None, user: int | None = None) -> str:
    script = _SAVE_SCRIPT.format(tests=str(Path(__file__).parent), limit=limit, user=user,
                                 path=str(path))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_disk_full_leaves_old_file_and_names_path(tmp_path: Path) -> None:
    path = save_model(_model(), tmp_path / "m.npz")
    before = path.read_bytes()
    out = _save_in_child(path, limit=4096)  # the new file would be larger than 4 kB
    kind, filename, reason = out.split("|")
    assert (kind, filename) == ("OSError", str(path))
    assert reason.startswith("File too large; the model was not saved")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]


def test_read_only_folder_names_path(tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("ro", numbered=True)
    folder.chmod(0o555)
    for parent in folder.parents:  # let the unprivileged child reach the folder
        if parent == Path("/tmp") or parent == Path("/"):
            break
        parent.chmod(parent.stat().st_mode | 0o011)
    user = 65534 if os.geteuid() == 0 else None  # root ignores permissions
    out = _save_in_child(folder / "m.npz", user=user)
    assert out.split("|")[:2] == ["PermissionError", str(folder / "m.npz")]
    assert list(folder.iterdir()) == []


# ------------------------------------------------------------ concurrent writers and readers
_WRITER = """
import sys
sys.path.insert(0, {tests!r})
from test_hostile_models import _model
from lsqmf.model.files import save_model
import numpy as np
mu = float(sys.argv[1])
for _ in range({n}):
    save_model(_model(P=np.full((4000, 2), mu), mu=mu, row_bias=None, col_bias=None,
                      row_ids=None, col_ids=None, row_counts=None, col_counts=None),
               {path!r}, force=True)
print("done")
"""


def test_two_writers_and_a_reader_see_only_complete_files(tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    script = _WRITER.format(tests=str(Path(__file__).parent), n=15, path=str(path))
    writers = [subprocess.Popen([sys.executable, "-c", script, str(mu)],
                                stdout=subprocess.PIPE, text=True) for mu in (1.0, 2.0)]
    seen: set[float] = set()
    while any(w.poll() is None for w in writers) or not seen:
        if path.exists():
            model, _ = load_model(path)  # never a half-written file
            assert model.mu in (1.0, 2.0) and np.all(model.P == model.mu)
            seen.add(model.mu)
    for w in writers:
        out, _ = w.communicate(timeout=120)
        assert (w.returncode, out.strip()) == (0, "done")
    assert {p.name for p in tmp_path.iterdir()} == {"m.npz"}


def test_kill_9_during_save_leaves_a_complete_file(tmp_path: Path) -> None:
    path = save_model(_model(P=np.full((4000, 2), 7.0), mu=7.0, row_bias=None, col_bias=None,
                             row_ids=None, col_ids=None, row_counts=None, col_counts=None),
                      tmp_path / "m.npz")
    script = _WRITER.format(tests=str(Path(__file__).parent), n=10**6, path=str(path))
    writer = subprocess.Popen([sys.executable, "-c", script, "3.0"])
    try:  # once the writer has replaced the file, it is in the middle of its next save
        while writer.poll() is None and load_model(path)[0].mu != 3.0:
            pass
    finally:
        writer.kill()
        writer.wait(timeout=60)
    model, _ = load_model(path)
    assert model.mu in (3.0, 7.0) and np.all(model.P == model.mu)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "m.npz"]
    assert all(n.startswith(".m.npz.") and n.endswith(".tmp") for n in leftovers)
