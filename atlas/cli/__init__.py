"""The ``atlas`` command line: ingest folders of netCDF files, inspect, check and export stores.

Every command exits 0 on success and 1 on error, with exactly one ``atlas: <message>`` line on
stderr (a traceback only with ``--debug``). Results go to stdout (``--json`` for JSON),
progress and warnings to stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
import warnings
from collections.abc import Sequence

from atlas.cli import _export, _ingest, _inspect, _maintain, _versions
from atlas.cli._common import CommandError, CommandFailed, log, warn

__all__ = ["main"]


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line instead of printing usage and exiting 2."""

    def error(self, message: str):  # type: ignore[override]
        raise _UsageError(f"{message} (see '{self.prog} --help')")


def _command_in(parser: argparse.ArgumentParser, argv: list[str]) -> str | None:
    """The subcommand named in ``argv`` (its first argument that is one), or None."""
    commands = next((set(a.choices) for a in parser._actions
                     if isinstance(a, argparse._SubParsersAction)), set())
    return next((arg for arg in argv if arg in commands), None)


def _common_options(defaults: bool) -> argparse.ArgumentParser:
    # Given before or after the command name; subcommands leave unset options alone so that
    # `atlas --json ls S` and `atlas ls S --json` mean the same.
    unset = argparse.SUPPRESS
    p = _Parser(add_help=False)
    g = p.add_argument_group("common options")
    g.add_argument("--json", action="store_true", default=False if defaults else unset,
                   help="print the result as JSON on stdout")
    g.add_argument("--log-file", metavar="PATH", default=None if defaults else unset,
                   help="append a log of what the command does (with timings) to PATH")
    g.add_argument("-q", "--quiet", action="store_true", default=False if defaults else unset,
                   help="no progress bar")
    g.add_argument("--debug", action="store_true", default=False if defaults else unset,
                   help="show the traceback of an error")
    return p


def build_parser() -> argparse.ArgumentParser:
    from atlas import __version__

    parser = _Parser(prog="atlas", parents=[_common_options(True)],
                     description="A store for many similarly-shaped N-dimensional datasets.",
                     epilog="Run 'atlas COMMAND --help' for the options of a command.")
    parser.add_argument("--version", action="version", version=f"atlas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = _common_options(False)
    _ingest.register(sub, common)
    _inspect.register(sub, common)
    _maintain.register(sub, common)
    _export.register(sub, common)
    _versions.register(sub, common)
    return parser


def _message(err: BaseException) -> str:
    """One line: the error's own message, with the type only where the message needs it."""
    from atlas.errors import AtlasError

    if isinstance(err, KeyError) and not isinstance(err, AtlasError) and len(err.args) == 1:
        text = str(err.args[0])
    else:
        text = str(err)
    text = " ".join(text.split())
    known = (AtlasError, CommandError, CommandFailed, OSError, ValueError, KeyError,
             NotImplementedError)
    if not text or not isinstance(err, known):
        text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return text


def _start_log(path: str) -> logging.Handler:
    try:
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError as err:
        raise CommandError(f"cannot open log file {path}: {err.strerror or err}") from err
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    return handler


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    warn(" ".join(str(message).split()))


# positional arguments that name a path (or a URL), as the usage line shows them
_PATHS = {"store": "STORE", "src": "SRC", "out": "OUT.nc"}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (0 ok, 1 error, 130 interrupted)."""
    log.propagate = False  # our own handlers only: no stray warnings from logging.lastResort
    if not log.handlers:
        log.addHandler(logging.NullHandler())
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as err:
        message = str(err)
        command = _command_in(parser, argv)
        if command is not None:  # the root parser reports a subcommand's unknown options
            message = message.replace("(see 'atlas --help')", f"(see 'atlas {command} --help')")
        print(f"atlas: {message}", file=sys.stderr)
        return 1
    except SystemExit as stop:  # --help and --version
        return stop.code if isinstance(stop.code, int) else 0
    given = getattr(args, "store", "")
    if given.startswith("file://"):  # a plain local path (docs/cloud.md), checked as one
        args.store = given[len("file://"):]
    empty = [name for name in _PATHS if getattr(args, name, None) == ""]
    if empty:  # "" is no path: the current folder would take its place
        shown = given if empty[0] == "store" else ""
        print(f"atlas: {_PATHS[empty[0]]} must be a path, got {shown!r}", file=sys.stderr)
        return 1

    handler = None
    try:
        if args.log_file:
            handler = _start_log(args.log_file)
            log.info("atlas %s", " ".join(argv))
        with warnings.catch_warnings():
            # a library warning is one line like ours, not Python's two with a source line
            warnings.showwarning = _one_line_warning
            status = args.func(args)
        log.info("exit %d", status)
        return status
    except KeyboardInterrupt as err:
        log.warning("interrupted: %s", err)
        log.info("exit 130")
        print(f"atlas: {str(err) or 'interrupted'}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of stdout went away (`atlas ls S | head`): not an error worth a message
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as err:  # noqa: BLE001 - every error becomes one line
        message = _message(err)
        log.error("%s", message, exc_info=True)  # (the log keeps the whole story)
        log.info("exit 1")
        if args.debug:
            traceback.print_exc()
        print(f"atlas: {message}", file=sys.stderr)
        return 1
    finally:
        if handler is not None:
            log.removeHandler(handler)
            handler.close()
