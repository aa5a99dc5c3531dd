"""Atomic file and folder writes: the destination is either the old file or the complete new one.

A crash, a full disk or an exception half-way through a write must never leave a truncated label
map (or annotation autosave) where the user's good file was.  Every writer in the package therefore
writes to a temporary sibling *in the same folder* (so the final rename stays on one file system and
is atomic), flushes it to disk with ``fsync``, and only then moves it over the destination with
:func:`os.replace`.  On any failure the temporary file is removed and the destination is untouched.

Temporary names start with ``.`` and contain ``.sparseseg-tmp-<pid>-`` so that a leftover from a
killed process is easy to recognise (and is hidden from most file browsers), and so that
:func:`remove_stale_temporaries` can tell a dead writer's leftover from a live writer's work in
progress; they keep the destination's suffixes (``.nii.gz``) because libraries such as nibabel choose
the format from the extension.  Every writer in the package (images, labels, zarr stores, sidecars,
autosaves, sessions, checkpoints) names its temporaries this way.

Replacing an existing folder (a zarr store) uses Linux's ``renameat2(RENAME_EXCHANGE)``, which swaps
the two folders in one step, so there is no moment without a destination; elsewhere the old folder is
renamed aside and the new one renamed in (two renames, a window of microseconds).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

TMP_MARK = ".sparseseg-tmp-"
_TMP_PID = re.compile(re.escape(TMP_MARK) + r"(\d+)-")


def temporary_name(dest: Path, tag: str = "") -> Path:
    """``.<name>.sparseseg-tmp-<pid>-<tag><random><suffix>`` beside ``dest`` (the one naming scheme)."""
    return dest.parent / f".{dest.name}{TMP_MARK}{os.getpid()}-{tag}{uuid.uuid4().hex[:8]}{_full_suffix(dest)}"


def _full_suffix(path: Path) -> str:
    """``'.nii.gz'`` for ``x.nii.gz``; keeps compound extensions that format sniffers rely on."""
    return "".join(path.suffixes[-2:]) if path.name.endswith(".gz") else path.suffix


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself (POSIX); harmless no-op where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            _fsync_file(Path(dirpath) / f)
        _fsync_dir(Path(dirpath))


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str], *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on clean exit move it over ``dest`` atomically.

    Write your file (or, with ``directory=True``, your folder, e.g. a zarr store) at the yielded
    path.  If the ``with`` body raises, the temporary is deleted and ``dest`` is left as it was.

    A folder cannot be swapped in one system call when the destination already exists, so for
    ``directory=True`` the old folder is first renamed aside, the new one renamed in, and the old
    one deleted; if the second rename fails the old folder is moved back.
    """
    dest = Path(dest)
    parent = dest.parent if str(dest.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(2, "folder does not exist", str(parent))
    remove_stale_temporaries(parent)  # a killed writer's leftovers go at the next write in that folder
    tmp = temporary_name(parent / dest.name)
    try:
        yield tmp
        if directory:
            if not tmp.is_dir():
                raise FileNotFoundError(2, "the writer produced no folder", str(tmp))
            _fsync_tree(tmp)
            _swap_dir(tmp, dest)
        else:
            if not tmp.is_file():
                raise FileNotFoundError(2, "the writer produced no file", str(tmp))
            _fsync_file(tmp)
            os.replace(tmp, dest)
        _fsync_dir(parent)
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists() or tmp.is_symlink():
            with contextlib.suppress(OSError):
                tmp.unlink()


_RENAME_EXCHANGE = 2


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2``); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):  # pragma: no cover - old libc
        return False
    AT_FDCWD = -100
    rc = fn(AT_FDCWD, os.fsencode(str(a)), AT_FDCWD, os.fsencode(str(b)), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL / ENOSYS / EOPNOTSUPP: this file system cannot exchange
        return False
    raise OSError(err, os.strerror(err), str(b))


def _swap_dir(new: Path, dest: Path) -> None:
    if not dest.exists():
        os.rename(new, dest)
        return
    if not dest.is_dir():
        raise IsADirectoryError(21, "a file of that name exists; not replacing it with a folder", str(dest))
    if exchange(new, dest):  # dest is the new folder now, ``new`` holds the old one (removed by the caller)
        return
    old = temporary_name(dest, "old-")
    os.replace(dest, old)
    try:
        os.replace(new, dest)
    except BaseException:
        os.replace(old, dest)
        raise
    shutil.rmtree(old, ignore_errors=True)


def atomic_write_bytes(dest: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``dest`` atomically (see module docstring); returns ``dest`` as a Path."""
    dest = Path(dest)
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return dest


def atomic_write_text(dest: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``dest`` atomically (JSON settings, annotation metadata, autosaves)."""
    return atomic_write_bytes(dest, text.encode(encoding))


def leftover_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Temporaries in ``folder`` (a killed process's, or a running writer's)."""
    return sorted(p for p in Path(folder).iterdir() if TMP_MARK in p.name)


LOCK_SUFFIX = ".sparseseg-lock"


def _lock_pid(p: Path) -> re.Match[str] | None:
    try:
        return re.match(r"(\d+)", p.read_text()[:32])
    except OSError:
        return None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete temporaries whose writing process no longer runs (SIGKILL, power loss); returns them.

    A temporary of a live process (another run writing beside us) is left alone; so is one whose
    name carries no process id.
    """
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for p in entries:
        m = _TMP_PID.search(p.name)
        if m is None and p.name.startswith(".") and p.name.endswith(LOCK_SUFFIX):
            m = _lock_pid(p)  # an output reservation (io.outputs) left by a killed run
        if m is None or _alive(int(m.group(1))):
            continue
        with contextlib.suppress(OSError):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
    return removed


__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "exchange", "leftover_temporaries",
           "remove_stale_temporaries", "temporary_name", "TMP_MARK"]
