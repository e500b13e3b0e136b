"""The ``lsqmf`` command line: argparse, printing and exit codes; no numerics.

Each subcommand lives in a module of this package that defines ``register(subparsers)``; the
registered parser sets ``func`` to a function taking the parsed arguments and returning the
exit code. Exit codes: 0 success, 1 a check failed (e.g. ``verify`` found a mismatch),
2 bad usage or input.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main"]

#: Commands that time solvers: BLAS runs on one thread unless ``--blas-threads`` says otherwise
#: (multi-threaded BLAS on small matrices and a busy machine distorts timings many-fold).
_SINGLE_THREAD_COMMANDS = ("bench", "demo")

#: Subcommand modules, in the order ``lsqmf --help`` lists them.
_COMMAND_MODULES = ("solve", "verify", "bench", "models", "demo")


def build_parser() -> argparse.ArgumentParser:
    """The ``lsqmf`` argument parser with every available subcommand."""
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="lsqmf",
        description="Low-rank matrix factorization with missing data as nonlinear least squares.",
    )
    parser.add_argument("--version", action="version", version=f"lsqmf {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    parser.add_argument(
        "--blas-threads", type=int, default=None, metavar="N",
        help="limit BLAS/LAPACK threads (threadpoolctl); 'bench' and 'demo' default to 1 for "
        "comparable timings, other commands leave the library default",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"{__name__}.{name}":
                continue  # subcommand not shipped in this build
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    threads = args.blas_threads
    if threads is None and args.command in _SINGLE_THREAD_COMMANDS:
        threads = 1
    if threads is not None and threads < 1:
        print(f"lsqmf: error: --blas-threads must be >= 1; got {threads}", file=sys.stderr)
        return 2
    try:
        if threads is None:
            return int(args.func(args))
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=threads, user_api="blas"):
            return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"lsqmf {args.command}: error: {err}", file=sys.stderr)
        return 2
