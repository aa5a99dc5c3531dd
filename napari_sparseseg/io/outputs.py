"""Every file one run will write: checked before the compute, reserved, staged, and committed together.

Why: a command that trains for ten minutes must not find out at the end that its output folder is
missing, read-only or has the wrong extension, nor write one output and then fail on the next, nor
silently lose the result of another run writing the same ``-o``.  So a command declares its outputs
first (:meth:`OutputSet.add`) and :meth:`OutputSet.reserve` checks them all before any compute:

* the name has an extension the writer understands (``.nii``, ``.nii.gz``, ``.zarr`` ...);
* two outputs are not the same file, and no output is one of the inputs;
* the folder exists, is a folder, and a file can be created in it (the reservation is that file);
* without ``overwrite``, no output exists yet (exclusive creation);
* no other live process is writing the same output (its reservation is there): the second of two runs
  on one ``-o`` fails at once, with or without ``overwrite``.

A reservation is a small ``.<name>.sparseseg-lock`` file created with ``O_EXCL`` and holding the
writer's process id; a reservation whose process is dead (SIGKILL, power loss) is taken over, and the
dead process's temporaries beside the outputs are deleted (:func:`remove_stale_temporaries`).

Then each output is written to its temporary (:meth:`OutputSet.stage`) and :meth:`OutputSet.commit`
moves them all in: first every existing destination is hard-linked (files) or kept (folders) as a
backup, then each temporary is renamed over its destination (a file by ``rename``, a folder by an
atomic exchange), and if any rename fails the ones already done are rolled back.  An exception or a
signal before the commit removes every temporary and leaves every destination as it was.  Without
``overwrite`` a file is committed with ``link`` (which refuses to replace), so a destination that
appeared meanwhile is never clobbered.  What no file system offers is an atomic rename of several
files: a SIGKILL *during* the commit (a few renames, microseconds) can leave some outputs new and
others old; each one is still complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import OutputError
from .atomic import LOCK_SUFFIX, _alive, _fsync_dir, exchange, remove_stale_temporaries, temporary_name

#: extensions per kind of output
SUFFIXES: dict[str, tuple[str, ...]] = {
    "volume": (".nii", ".nii.gz", ".zarr", ".ome.zarr"),
    "checkpoint": (".safetensors",),
    "json": (".json",),
}
def lock_path(dest: Path) -> Path:
    return dest.parent / f".{dest.name}{LOCK_SUFFIX}"


@dataclass
class _Output:
    path: Path
    kind: str
    flag: str
    directory: bool
    tmp: Path | None = None
    backup: Path | None = None
    committed: bool = False


@dataclass
class OutputSet:
    """The outputs of one run (see the module docstring).  Use as a context manager around the run."""

    overwrite: bool = False
    outputs: list[_Output] = field(default_factory=list)
    _locks: list[Path] = field(default_factory=list)

    # ----------------------------------------------------------------------------- declare
    def add(self, path: str | os.PathLike[str] | None, kind: str = "volume", flag: str = "-o") -> Path | None:
        """Declare an output (``None`` is ignored: an option that was not given)."""
        if path is None:
            return None
        if kind not in SUFFIXES:
            raise ValueError(f"unknown output kind {kind!r}")
        p = Path(path).expanduser()
        name = p.name.lower().rstrip("/")
        if not name.endswith(SUFFIXES[kind]):
            raise OutputError(f"{flag} {p}: the name must end in {', '.join(SUFFIXES[kind])}")
        self.outputs.append(_Output(p, kind, flag, directory=name.endswith(".zarr")))
        return p

    # ----------------------------------------------------------------------------- check
    def reserve(self, inputs: Iterable[str | os.PathLike[str] | None] = ()) -> OutputSet:
        """Check every output and reserve it (see the module docstring); raises :class:`OutputError`."""
        seen: dict[Path, str] = {}
        ins = {_resolved(Path(i)): str(i) for i in inputs if i is not None}
        for o in self.outputs:
            r = _resolved(o.path)
            if r in seen:
                raise OutputError(f"{o.flag} {o.path} is also {seen[r]}: give each output its own name")
            if r in ins:
                raise OutputError(f"{o.flag} {o.path} is an input of this run; write the output elsewhere")
            seen[r] = o.flag
            folder = o.path.parent if str(o.path.parent) else Path(".")
            if not folder.exists():
                raise OutputError(f"{o.flag} {o.path}: the folder {folder} does not exist")
            if not folder.is_dir():
                raise OutputError(f"{o.flag} {o.path}: {folder} is not a folder")
            if o.path.exists() and (o.path.is_dir() != o.directory):
                what = "a folder" if o.path.is_dir() else "a file"
                raise OutputError(f"{o.flag} {o.path} exists and is {what}; choose another name")
            if o.path.exists() and not self.overwrite:
                raise OutputError(f"{o.flag} {o.path} exists; pass --overwrite to replace it")
        try:
            for o in self.outputs:
                self._lock(o)
        except BaseException:
            self.release()
            raise
        for folder in {o.path.parent for o in self.outputs}:
            remove_stale_temporaries(folder)
        return self

    def _lock(self, o: _Output) -> None:
        lp = lock_path(o.path)
        for _ in range(2):
            try:
                fd = os.open(lp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid = _lock_owner(lp)
                if pid is not None and _alive(pid):
                    raise OutputError(
                        f"{o.flag} {o.path} is being written by another run (process {pid}); wait for it or "
                        "choose another name"
                    ) from None
                with contextlib.suppress(OSError):
                    lp.unlink()  # a dead writer's reservation
                continue
            except OSError as exc:
                raise OutputError(f"{o.flag} {o.path}: cannot write in {lp.parent} ({exc.strerror})") from None
            try:
                os.write(fd, f"{os.getpid()}\n".encode())
            finally:
                os.close(fd)
            self._locks.append(lp)
            return
        raise OutputError(f"{o.flag} {o.path}: cannot take the reservation {lp.name}")

    # ----------------------------------------------------------------------------- write
    def stage(self, path: str | os.PathLike[str]) -> Path:
        """The temporary to write ``path``'s content to (same folder, same extension)."""
        o = self._find(path)
        if o.tmp is None:
            o.tmp = temporary_name(o.path)
        return o.tmp

    def commit(self) -> list[Path]:
        """Move every staged output in, all or none (see the module docstring); returns the paths."""
        staged = [o for o in self.outputs if o.tmp is not None]
        for o in staged:
            if not (o.tmp.is_dir() if o.directory else o.tmp.is_file()):
                raise OutputError(f"{o.path}: the writer produced nothing")
            _fsync(o.tmp)
        done: list[_Output] = []
        try:
            for o in staged:
                self._commit_one(o)
                done.append(o)
        except BaseException:
            for o in reversed(done):
                with contextlib.suppress(OSError):
                    self._rollback_one(o)
            raise
        for o in staged:
            _fsync_dir(o.path.parent)
            if o.backup is not None:
                _remove(o.backup)
                o.backup = None
        return [o.path for o in staged]

    def _commit_one(self, o: _Output) -> None:
        assert o.tmp is not None
        exists = o.path.exists()
        if exists and not self.overwrite:
            raise OutputError(f"{o.path} appeared while this run was computing; it is left as it was")
        if o.directory:
            if exists and exchange(o.tmp, o.path):
                o.backup, o.tmp = o.tmp, None  # the old folder now sits at the temporary's name
            elif exists:
                o.backup = temporary_name(o.path, "old-")
                os.rename(o.path, o.backup)
                os.rename(o.tmp, o.path)
                o.tmp = None
            else:
                os.rename(o.tmp, o.path)
                o.tmp = None
        elif exists:
            o.backup = temporary_name(o.path, "old-")
            os.link(o.path, o.backup)
            os.replace(o.tmp, o.path)
            o.tmp = None
        else:
            os.link(o.tmp, o.path)  # refuses to replace a file that appeared meanwhile
            os.unlink(o.tmp)
            o.tmp = None
        o.committed = True

    def _rollback_one(self, o: _Output) -> None:
        if o.backup is not None:
            if o.directory and exchange(o.backup, o.path):
                _remove(o.backup)
            elif o.directory:
                _remove(o.path)
                os.rename(o.backup, o.path)
            else:
                os.replace(o.backup, o.path)
            o.backup = None
        else:
            _remove(o.path)
        o.committed = False

    # ----------------------------------------------------------------------------- clean-up
    def abort(self) -> None:
        """Remove every temporary and backup; destinations are left as they are."""
        for o in self.outputs:
            for p in (o.tmp, o.backup):
                if p is not None:
                    _remove(p)
            o.tmp = o.backup = None

    def release(self) -> None:
        for lp in self._locks:
            with contextlib.suppress(OSError):
                lp.unlink()
        self._locks.clear()

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()
        self.release()

    def _find(self, path: str | os.PathLike[str]) -> _Output:
        p = Path(path).expanduser()
        for o in self.outputs:
            if o.path == p:
                return o
        raise KeyError(f"{p} was not declared with add()")


@contextlib.contextmanager
def planned_outputs(overwrite: bool, *specs: tuple[str | os.PathLike[str] | None, str, str],
                    inputs: Iterable[str | os.PathLike[str] | None] = ()) -> Iterator[OutputSet]:
    """``with planned_outputs(args.overwrite, (args.output, "volume", "-o"), ...) as outs:`` -- checked
    and reserved on entry; temporaries removed and reservations released on exit."""
    outs = OutputSet(overwrite)
    for path, kind, flag in specs:
        outs.add(path, kind, flag)
    with outs:
        outs.reserve(inputs)
        yield outs


def _lock_owner(lp: Path) -> int | None:
    try:
        return int(lp.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _resolved(p: Path) -> Path:
    try:
        return p.expanduser().resolve()
    except OSError:  # pragma: no cover
        return p.absolute()


def _fsync(p: Path) -> None:
    from .atomic import _fsync_file, _fsync_tree

    _fsync_tree(p) if p.is_dir() else _fsync_file(p)


def _remove(p: Path) -> None:
    with contextlib.suppress(OSError):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()


__all__ = ["OutputSet", "planned_outputs", "lock_path", "SUFFIXES"]
