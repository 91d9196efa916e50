"""``unils`` command line: one module per command, listed in [`COMMANDS`][unils.cli.COMMANDS].

The only part of unils that prints. Errors raised on purpose (UniLSError, FileNotFoundError,
ValueError) become a one-line ``unils CMD: error: ...`` on stderr and exit code 2; anything else is
a bug and keeps its traceback.

A command is a module of this package with ``register(subparsers)``, which adds its parser and sets
``func`` (its handler, ``args -> exit code``); adding one is one line in [`COMMANDS`][unils.cli.COMMANDS].
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from ..errors import UniLSError

__all__ = ["COMMANDS", "build_parser", "main"]

#: Command modules of this package, in the order ``unils --help`` lists them.
COMMANDS: tuple[str, ...] = (
    "generate",
    "stream",
    "convert",
    "info",
    "cache",
    "bench",
    "serve",
    "preview",
    "plot",
    "train",
    "evaluate",
)


def build_parser() -> argparse.ArgumentParser:
    """The ``unils`` parser with every command of [`COMMANDS`][unils.cli.COMMANDS]."""
    parser = argparse.ArgumentParser(
        prog="unils", description="Audio-driven avatars that listen and speak (UniLS)."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``unils`` command (and of ``python -m unils``); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args))
    except (UniLSError, FileNotFoundError, ValueError) as exc:
        message = " ".join(str(exc).split())  # always one line
        print(f"unils {args.command}: error: {message}", file=sys.stderr)
        return 2
