"""The ``lsqmf`` command line: argparse, printing and exit codes; no numerics.

Each subcommand lives in a module of this package that defines ``register(subparsers)``; the
registered parser sets ``func`` to a function taking the parsed arguments and returning the
exit code. :func:`main` turns every error into one line on stderr (``lsqmf COMMAND: error:
...``) and an exit code (:data:`EXIT_CODES`); ``-v`` or ``--traceback`` adds the traceback.

==== ========================================================================================
code meaning
==== ========================================================================================
0    success
1    a check failed (``verify`` found a mismatch, ``--check-jacobian`` disagreed)
2    bad usage or input: a bad option or value, a missing/unreadable/malformed file (named
     with its line), a non-finite residual, a problem too large for memory
3    ``verify``: the candidate's process exited or crashed before reporting
4    ``verify``: the candidate ran out of time
70   an unexpected internal error (a bug: please report it with ``--traceback``)
130  interrupted (Ctrl-C, or SIGTERM or SIGHUP, which the program handles like Ctrl-C: see
     :mod:`lsqmf.cli._signals`); what was finished is saved first (the model of ``fit`` at its
     last iterate, benchmark rows, CV folds); 130 whichever of the three signals arrived
==== ========================================================================================

Start-up
--------
:func:`main` builds the parser of the command it runs only (:data:`COMMANDS`: the module that
defines it), so that ``lsqmf evaluate`` does not import what ``solve``, ``bench`` or ``verify``
need. A command that fits a solver loads that solver's kernels (from numba's disk cache, or
compiles them) in its ``prepare`` step, before it reads its data. Run as the program (the
``lsqmf`` script, ``python -m lsqmf``: ``argv`` None), :func:`main` also manages the cyclic
garbage collector, which would otherwise spend a third of a warm start-up walking the objects
that importing numpy, scipy and numba creates (they live until the process exits):

- during the start-up (building the parser, parsing, ``prepare``) the collector is paused, and
  the objects made so far are then frozen (:func:`gc.freeze`), so that later full collections
  skip them;
- at exit (the last ``atexit`` handler), the remaining objects are frozen too, so that the
  interpreter's final collections, whose garbage the process's end frees anyway, are skipped.
  Every other step of a normal exit still runs: ``atexit`` handlers, flushing the standard
  streams, releasing each module's objects (files are closed with ``with`` throughout lsqmf);
  only objects left in reference cycles at exit are not finalized.

Called with an ``argv`` list (tests, other programs), :func:`main` leaves the collector alone.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import importlib
import logging
import sys
import traceback
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = [
    "COMMANDS",
    "EXIT_CODES",
    "add_input_options",
    "build_parser",
    "command_name",
    "input_options",
    "main",
    "skip_exit_collection",
    "startup_gc",
]

#: Exit codes of ``lsqmf`` (documented in ``lsqmf --help`` and the README).
EXIT_CODES = {
    "ok": 0,
    "check_failed": 1,
    "bad_input": 2,
    "verify_crashed": 3,
    "verify_timeout": 4,
    "internal_error": 70,
    "interrupted": 130,
}

_EPILOG = (
    "exit status: 0 success; 1 a check failed (verify mismatch, --check-jacobian); 2 bad usage "
    "or input (bad option, missing or malformed file, non-finite residual, out of memory); "
    "3 verify: the candidate's process exited or crashed; 4 verify: the candidate timed out; "
    "70 internal error; 130 interrupted (Ctrl-C, SIGTERM or SIGHUP; finished work is saved "
    "first). Errors are one "
    "line on stderr; -v or --traceback shows the traceback."
)

#: Commands that time solvers: BLAS runs on one thread unless ``--blas-threads`` says otherwise
#: (multi-threaded BLAS on small matrices and a busy machine distorts timings many-fold).
_SINGLE_THREAD_COMMANDS = ("bench", "demo")

#: Subcommand modules, in the order ``lsqmf --help`` lists them.
_COMMAND_MODULES = ("solve", "verify", "bench", "models", "tune", "demo")

#: Command -> the module of this package whose ``register`` adds it (with its siblings).
#: :func:`main` builds the parser of that module only; ``tests/test_startup.py`` checks that the
#: table lists every command of the full parser.
COMMANDS = {
    "solve": "solve",
    "verify": "verify", "golden": "verify",
    "bench": "bench", "plot": "bench", "report": "bench",
    "fit": "models", "predict": "models", "evaluate": "models", "cv": "models",
    "recommend": "models",
    "tune": "tune",
    "demo": "demo",
}

#: Options of the ``lsqmf`` parser itself that take a value (see :func:`command_name`).
_VALUE_OPTIONS = ("--blas-threads",)


def add_input_options(parser: argparse.ArgumentParser) -> None:
    """``--dense`` and ``--header/--no-header``: how :func:`lsqmf.data.readers.read_input` reads
    a subcommand's input files."""
    parser.add_argument(
        "--dense", action="store_true",
        help="read a text input as a dense matrix (one row per line; empty or nan = missing) "
        "instead of user,item,rating lines",
    )
    parser.add_argument(
        "--header", action=argparse.BooleanOptionalAction, default=None,
        help="whether a text input's first line is a header (default: decided from the line "
        "and logged with -v)",
    )


def input_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of :func:`lsqmf.data.readers.read_input` from ``add_input_options``."""
    return {"dense": bool(getattr(args, "dense", False)), "header": getattr(args, "header", None)}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``lsqmf`` argument parser with every available subcommand.

    Parameters
    ----------
    command : str, optional
        A key of :data:`COMMANDS`: only the subcommands of the module that defines it are
        added (what :func:`main` does; the parser of ``command`` is the same). None, or a name
        that is not a command: every subcommand.
    """
    from .._version import __version__

    parser = argparse.ArgumentParser(
        prog="lsqmf",
        description="Low-rank matrix factorization with missing data as nonlinear least squares.",
        epilog=_EPILOG,
    )
    parser.add_argument("--traceback", action="store_true",
                        help="show the full traceback of an error")
    parser.add_argument("--version", action="version", version=f"lsqmf {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    parser.add_argument(
        "--blas-threads", type=int, default=None, metavar="N",
        help="limit BLAS/LAPACK threads. 'bench' and 'demo' default to 1 for comparable "
        "timings: every BLAS copy, OpenMP and numba pool is limited in the process that times "
        "the cells, measured there and recorded in run.json. Other commands apply the limit "
        "with threadpoolctl to every BLAS copy (numpy's and scipy's) when they start; without "
        "it they keep the library default",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = (COMMANDS[command],) if command in COMMANDS else _COMMAND_MODULES
    for name in modules:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"{__name__}.{name}":
                continue  # subcommand not shipped in this build
            raise
        module.register(sub)
    return parser


def command_name(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (the first argument that is not an option of the
    ``lsqmf`` parser itself or an option's value), or None."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return argv[i + 1] if i + 1 < len(argv) else None
        if not arg.startswith("-") or arg == "-":
            return arg
        # a value option, spelled in full or abbreviated (argparse's prefixes), without "="
        takes_value = len(arg) > 2 and "=" not in arg and any(
            option.startswith(arg) for option in _VALUE_OPTIONS)
        i += 2 if takes_value else 1
    return None


@contextlib.contextmanager
def startup_gc(active: bool = True) -> Iterator[None]:
    """Pause the cyclic garbage collector for a start-up step, then freeze what it made.

    The start-up creates the objects of every imported module (numpy, scipy, numba's typing
    and lowering tables), which the process keeps until it exits; collecting while they are
    made walks them again and again, and :func:`gc.freeze` afterwards keeps later full
    collections from walking them at all. The collector's state is restored on exit. A no-op
    when not ``active`` (see the module docstring: only the program does this).
    """
    if not active:
        yield
        return
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def skip_exit_collection() -> None:
    """Freeze every object at interpreter exit, so that the final collections are skipped.

    Registered with :mod:`atexit` when :func:`main` starts, so it runs after every handler
    registered later (logging, multiprocessing, numba); see the module docstring.
    """
    atexit.unregister(gc.freeze)  # once per process
    atexit.register(gc.freeze)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (:data:`EXIT_CODES`).

    ``argv`` None: the process's own arguments (``sys.argv[1:]``), run as the program, with the
    start-up and exit handling of the module docstring.
    """
    program = argv is None
    if program:
        skip_exit_collection()
    argv = sys.argv[1:] if argv is None else list(argv)
    with startup_gc(program):
        parser = build_parser(command_name(argv))
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
    show_traceback = bool(args.verbose or getattr(args, "traceback", False))
    if program:  # SIGTERM and SIGHUP act like Ctrl-C: finished work is saved, exit 130
        from ._signals import install

        install()
    from ..runtime.interrupts import propagate_interrupts

    try:
        prepare = getattr(args, "prepare", None)
        if prepare is not None:  # the command's own start-up (its kernels)
            with startup_gc(program):
                prepare(args)
        # a command is a job: Ctrl-C stops it (a solver does not return its iterate as if
        # finished; `fit` defers the first signal to the solver's callback instead)
        with propagate_interrupts():
            if threads is None:
                return int(args.func(args))
            from ..runtime.threads import blas_limit, load_thread_pools

            # every BLAS copy: scipy's own OpenBLAS is loaded by scipy.linalg, and a limit
            # applied before that load would not reach it
            load_thread_pools(numba=False)
            with blas_limit(threads):
                return int(args.func(args))
    except BaseException as err:  # every failure becomes one line and an exit code
        if isinstance(err, SystemExit):
            raise
        code, line = describe_error(err)
        if show_traceback and (not isinstance(err, KeyboardInterrupt)
                               or getattr(args, "traceback", False)):  # -v: no trace on Ctrl-C
            traceback.print_exc(file=sys.stderr)
        print(f"lsqmf {args.command}: {line}", file=sys.stderr)
        return code


def describe_error(err: BaseException) -> tuple[int, str]:
    """The exit code and the one-line message of an error reaching the command line."""
    text = " ".join(str(err).split()) or type(err).__name__  # one line
    from ..model.gradcheck import JacobianCheckError

    if isinstance(err, JacobianCheckError):
        return EXIT_CODES["check_failed"], f"error: JacobianCheckError: {text}"
    if isinstance(err, KeyboardInterrupt):
        return EXIT_CODES["interrupted"], "interrupted" + (f": {text}" if str(err) else "")
    if isinstance(err, MemoryError):
        return EXIT_CODES["bad_input"], (
            "error: out of memory" + (f" ({text})" if str(err) else "")
            + "; try a smaller rank, a sparse or matrix-free method (--tr-solver lsmr), or "
            "a subset of the data"
        )
    if isinstance(err, FileNotFoundError | FileExistsError | IsADirectoryError
                  | NotADirectoryError | PermissionError):
        where = f"{err.filename!r}: " if getattr(err, "filename", None) else ""
        reason = err.strerror if where and err.strerror else text
        return EXIT_CODES["bad_input"], f"error: {where}{reason}"
    if isinstance(err, ValueError | TypeError | ArithmeticError | OSError
                  | ImportError | NotImplementedError):
        name = type(err).__name__
        label = "" if type(err) in (ValueError, TypeError, FileNotFoundError) else f"{name}: "
        return EXIT_CODES["bad_input"], f"error: {label}{text}"
    return EXIT_CODES["internal_error"], (
        f"internal error: {type(err).__name__}: {text} (a bug; rerun with --traceback and "
        "report it)"
    )
