"""Benchmark grids: presets, schema validation, cell enumeration and the seed RNG stream."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from lsqmf.bench.grid import PRESETS, GridError, load_grid, parse_grid, select_cells

TINY = """
name = "tiny"
problems = "seed"
[problem]
n = [4, 6]
k_factor = [0.5]
sparsity = [0.25]
[solve]
missing = 0
[[configs]]
method = "trf"
tr_solver = ["exact", "lsmr"]
loss = "linear"
"""

LOSSES = ["linear", "soft_l1", "huber", "cauchy", "arctan"]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_load(preset: str) -> None:
    grid = load_grid(preset=preset)
    assert grid.name == preset
    assert grid.cells()


def test_seed_grid_has_336_cells_with_the_right_columns() -> None:
    grid = load_grid(preset="seed")
    cells = grid.cells()
    assert len(cells) == 336
    public = [k for k in cells[0] if not k.startswith("_")]
    assert public == ["sparsity", "k_factor", "n", "m", "k", "solver", "method", "tr_solver",
                      "loss", "cell_id"]
    assert len({c["cell_id"] for c in cells}) == 336
    configs = {(c["method"], c["tr_solver"], c["loss"]) for c in cells}
    expected = set(itertools.product(["trf", "dogbox"], ["exact", "lsmr"], LOSSES))
    expected.add(("lm", "none", "linear"))
    assert configs == expected
    problems = {(c["sparsity"], c["k_factor"], c["n"], c["m"], c["k"]) for c in cells}
    assert len(problems) == 16
    assert (0.75, 0.8, 40, 32, 32) in problems
    assert grid.params(20) == {"missing": 0, "method": "lm", "tr_solver": None,
                               "loss": "linear"}


def _seed_oracle(repeats: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The seed study's loop, written out independently of lsqmf.bench."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(repeats):
        for n in (5, 10, 20, 40):
            m = int(0.8 * n)
            for kf in (0.4, 0.8):
                k = int(kf * n)
                P = rng.random((n, k))
                Q = rng.random((k, m))
                R_h = P @ Q
                for sparsity in (0.25, 0.75):
                    R = R_h.round(2) * (rng.random(R_h.shape) > sparsity)
                    out.append((R, P.round(1), Q.round(1)))
    return out


def test_seed_problems_follow_the_seed_rng_stream() -> None:
    grid = load_grid(preset="seed")
    got = list(grid.iter_problems(3))
    expected = _seed_oracle(3)
    assert [(r, i) for r, i, _ in got] == [(r, i) for r in range(3) for i in range(16)]
    for (_, _, data), (R, P0, Q0) in zip(got, expected, strict=True):
        np.testing.assert_array_equal(data.args[0], R)
        np.testing.assert_array_equal(data.kwargs["P0"], P0)
        np.testing.assert_array_equal(data.kwargs["Q0"], Q0)
        assert data.stats["nnz"] == np.count_nonzero(R)


def test_first_repeat_is_the_same_whatever_the_repeat_count() -> None:
    grid = load_grid(preset="seed")
    one = [d.args[0] for _, _, d in grid.iter_problems(1)]
    three = [d.args[0] for r, _, d in grid.iter_problems(3) if r == 0]
    for a, b in zip(one, three, strict=True):
        np.testing.assert_array_equal(a, b)


def test_synthetic_problems_are_reproducible_and_sparse() -> None:
    grid = parse_grid("""
name = "s"
problems = "synthetic"
[problem]
n = [30]
density = [0.1]
rank = 3
[[configs]]
solver = "lsq"
""")
    (_, _, a), = list(grid.iter_problems(1))
    (_, _, b), = list(grid.iter_problems(1))
    da, db = a.build(), b.build()
    assert da.args[1] == 3
    assert da.args[0].shape == (30, 24)
    assert da.stats["nnz"] == round(0.1 * 30 * 24) == da.args[0].nnz
    np.testing.assert_array_equal(da.args[0].values, db.args[0].values)


def test_list_values_expand_and_none_maps_to_none() -> None:
    grid = parse_grid(TINY + '\n[[configs]]\nmethod = "lm"\ntr_solver = "none"\n')
    assert len(grid.configs) == 3
    assert grid.configs[2] == {"solver": "solve", "method": "lm", "tr_solver": None}
    assert [c["tr_solver"] for c in grid.cells()][:3] == ["exact", "lsmr", "none"]


def test_select_cells_with_a_query() -> None:
    cells = load_grid(preset="seed").cells()
    chosen = select_cells(cells, "tr_solver == 'lsmr' and n <= 10")
    assert len(chosen) == 2 * 2 * 2 * 2 * 5  # n x k_factor x sparsity x method x loss
    assert all(c["tr_solver"] == "lsmr" and c["n"] <= 10 for c in chosen)
    assert select_cells(cells, None) == cells


def test_select_cells_bad_query_names_where_and_the_columns() -> None:
    cells = load_grid(preset="seed").cells()
    with pytest.raises(ValueError, match=r"`where` query .*columns are: sparsity, k_factor"):
        select_cells(cells, "no_such_column > 3")


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        pytest.param(('name = "tiny"', 'name = "tiny"\ncolour = "red"'),
                     r"unknown top-level key\(s\) \['colour'\]", id="unknown-top-key"),
        pytest.param(("n = [4, 6]", "n = [4, 6]\nsize = 3"),
                     r"unknown key\(s\) \['problem.size'\]", id="unknown-problem-key"),
        pytest.param(("n = [4, 6]", 'n = ["four"]'),
                     r"key `problem.n` must be a list of int; got 'four'", id="wrong-type"),
        pytest.param(("n = [4, 6]", "n = []"),
                     r"key `problem.n` must be a non-empty list", id="empty-list"),
        pytest.param(("sparsity = [0.25]", "sparsity = [1.5]"),
                     r"key `problem.sparsity` has an out-of-range value 1.5", id="range"),
        pytest.param(('problems = "seed"', 'problems = "magic"'),
                     r"key `problems` must be one of", id="unknown-generator"),
        pytest.param(('problems = "seed"\n', ""), r"missing required key `problems`",
                     id="missing-generator"),
        pytest.param(("k_factor = [0.5]\n", ""), r"missing required key `problem.k_factor`",
                     id="missing-problem-key"),
        pytest.param(('loss = "linear"', "loss = {a = 1}"),
                     r"key `configs\[0\].loss` must be a string, number or boolean",
                     id="table-value"),
        pytest.param(("missing = 0", "missing = [0, 1]"),
                     r"key `solve.missing` must be a single value", id="list-in-solve"),
        pytest.param(('name = "tiny"', 'name = "tiny"\nrepeats = 0'),
                     r"key `repeats` must be an int >= 1", id="repeats"),
        pytest.param(("[problem]", "[problem\n"), r"not valid TOML", id="toml-syntax"),
    ],
)
def test_bad_grid_files_name_the_file_and_key(
    tmp_path: Path, edit: tuple[str, str], match: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(TINY.replace(*edit), encoding="utf-8")
    if match is None:
        assert len(load_grid(path).cells()) == 4
    else:
        with pytest.raises(GridError, match=match) as info:
            load_grid(path)
        assert str(path) in str(info.value)


def test_grid_without_configs_is_an_error() -> None:
    text = TINY.split("[[configs]]")[0]
    with pytest.raises(GridError, match=r"at least one configuration"):
        parse_grid(text, source="g.toml")


def test_load_grid_arguments() -> None:
    with pytest.raises(ValueError, match="exactly one of `grid`"):
        load_grid()
    with pytest.raises(ValueError, match="`preset` must be one of"):
        load_grid(preset="nope")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_grid("/no/such/grid.toml")


def test_fingerprint_ignores_repeats_but_not_configs() -> None:
    a = parse_grid(TINY)
    b = parse_grid(TINY.replace('name = "tiny"', 'name = "tiny"\nrepeats = 5'))
    c = parse_grid(TINY.replace('loss = "linear"', 'loss = "huber"'))
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
