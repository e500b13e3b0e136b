"""The ``lsqmf`` entry point: help, version, BLAS thread limits."""

from __future__ import annotations

import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import lsqmf
from lsqmf.cli import build_parser, main


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert lsqmf.__version__ in capsys.readouterr().out


def test_no_command_prints_help_and_exits_2(capsys) -> None:
    assert main([]) == 2
    assert "solve" in capsys.readouterr().out


def test_every_documented_command_is_registered() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in ("solve", "verify", "golden", "bench", "plot", "fit", "predict", "evaluate",
                 "cv", "recommend", "demo"):
        assert name in sub.choices, name


def test_blas_threads_option_limits_threads(monkeypatch) -> None:
    seen: list[list[int]] = []

    def fake_run(args):
        seen.append([i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"])
        return 0

    original = build_parser

    def patched(command=None):
        parser = original(command)
        sub = next(a for a in parser._actions if a.dest == "command")
        for name in ("solve", "bench"):
            if name in sub.choices:  # main builds the parser of the command it runs
                sub.choices[name].set_defaults(func=fake_run)
        return parser

    monkeypatch.setattr("lsqmf.cli.build_parser", patched)
    with threadpool_limits(limits=2, user_api="blas"):
        assert main(["--blas-threads", "1", "solve", "x", "--rank", "1"]) == 0
        assert main(["solve", "x", "--rank", "1"]) == 0  # library default left alone
        assert main(["bench", "--preset", "seed", "--out", "x"]) == 0  # timing: one thread
    assert seen[0] and set(seen[0]) == {1}
    assert set(seen[1]) == {2}
    assert set(seen[2]) == {1}
    assert main(["--blas-threads", "0", "solve", "x", "--rank", "1"]) == 2
