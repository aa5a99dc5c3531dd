"""``sparseseg``: the headless face of the core (same code the napari widget calls).

Every sub-command lives in ``napari_sparseseg/commands/<name>.py`` and exposes
``register(subparsers)`` which adds its parser and sets ``func(args) -> int``.
User errors (:class:`~napari_sparseseg.errors.SparsesegError`, missing files) print one line on
stderr and exit with code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from .errors import SparsesegError

#: sub-command modules, in the order ``sparseseg --help`` lists them
COMMANDS: tuple[str, ...] = ("info", "simulate", "evaluate", "segment", "pretrain", "bench", "pseudo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparseseg", description="Segment a 3D scan from sparse marks (scribbles, points, slices)."
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"napari_sparseseg.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (SparsesegError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        msg = str(exc) if not isinstance(exc, OSError) or not exc.filename else f"{exc.strerror}: {exc.filename}"
        print(f"sparseseg {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sparseseg {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
