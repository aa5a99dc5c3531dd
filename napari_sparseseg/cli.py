"""``sparseseg``: the headless face of the core (same code the napari widget calls).

Every sub-command lives in ``napari_sparseseg/commands/<name>.py`` and exposes
``register(subparsers)`` which adds its parser and sets ``func(args) -> int``.
User errors (:class:`~napari_sparseseg.errors.SparsesegError`, missing files, a full disk, a
read-only folder, not enough memory) print one line on stderr and exit with code 2; an interrupt
(Ctrl+C, SIGTERM) prints one line and exits with 130 (143 for SIGTERM) after every temporary file
has been removed; anything else is a bug and keeps its traceback.  docs/guarantees.md lists what is
checked and what is atomic.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import signal
import sys
from collections.abc import Sequence

from .errors import SparsesegError

#: sub-command modules, in the order ``sparseseg --help`` lists them
COMMANDS: tuple[str, ...] = ("info", "simulate", "evaluate", "segment", "train", "project", "pretrain", "bench", "pseudo",
                            "serve")


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


#: operating-system errors the user can act on (space, permissions, a read-only disk, a missing path)
USER_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT,
                         errno.EISDIR, errno.ENOTDIR, errno.EEXIST, errno.ENAMETOOLONG, errno.EFBIG})


class Terminated(BaseException):
    """SIGTERM, turned into an exception so that ``finally`` blocks remove temporaries (as for Ctrl+C)."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
    except KeyboardInterrupt:  # Ctrl+C while the command's modules load: nothing started yet
        print("sparseseg: interrupted", file=sys.stderr)
        return _interrupted(argv)
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (an embedding application): leave signals alone
        pass
    try:
        return int(args.func(args) or 0)
    except SparsesegError as exc:
        return _fail(args.command, " ".join(str(exc).split("\n")))
    except MemoryError:
        return _fail(args.command, "not enough memory for this input (crop or downsample the image)")
    except OSError as exc:
        if exc.errno not in USER_ERRNOS and not isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
            raise
        msg = f"{exc.strerror}: {exc.filename}" if exc.filename else (exc.strerror or str(exc))
        return _fail(args.command, msg)
    except KeyboardInterrupt:  # every temporary is gone: the ``with``/``finally`` blocks ran on the way up
        print(f"sparseseg {args.command}: interrupted", file=sys.stderr)
        return _interrupted(argv)
    except Terminated:
        print(f"sparseseg {args.command}: terminated", file=sys.stderr)
        return 143
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _interrupted(argv: Sequence[str] | None) -> int:
    """130; as a program (``argv is None``), exit with it at once.

    An interrupt that lands inside an extension module's import can leave CPython's "unhandled
    KeyboardInterrupt" flag set, and the interpreter then kills itself with SIGINT at exit instead of
    returning 130 (seen here about one time in three).  By now every temporary has been removed.
    """
    if argv is None:
        import os

        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(130)
    return 130


def _fail(command: str, msg: str) -> int:
    print(f"sparseseg {command}: error: {msg}", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
