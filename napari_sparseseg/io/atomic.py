"""Atomic file and folder writes: the destination is either the old file or the complete new one.

A crash, a full disk or an exception half-way through a write must never leave a truncated label
map (or annotation autosave) where the user's good file was.  Every writer in the package therefore
writes to a temporary sibling *in the same folder* (so the final rename stays on one file system and
is atomic), flushes it to disk with ``fsync``, and only then moves it over the destination with
:func:`os.replace`.  On any failure the temporary file is removed and the destination is untouched.

Temporary names start with ``.`` and contain ``.sparseseg-tmp-`` so that a leftover from a killed
process is easy to recognise (and is hidden from most file browsers); they keep the destination's
suffixes (``.nii.gz``) because libraries such as nibabel choose the format from the extension.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator

TMP_MARK = ".sparseseg-tmp-"


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
    tmp = parent / f".{dest.name}{TMP_MARK}{uuid.uuid4().hex[:8]}{_full_suffix(dest)}"
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


def _swap_dir(new: Path, dest: Path) -> None:
    if not dest.exists():
        os.replace(new, dest)
        return
    if not dest.is_dir():
        raise IsADirectoryError(21, "a file of that name exists; not replacing it with a folder", str(dest))
    old = dest.parent / f".{dest.name}{TMP_MARK}old-{uuid.uuid4().hex[:8]}"
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
    """Temporaries left in ``folder`` by a killed process (for tests and clean-up tools)."""
    return sorted(p for p in Path(folder).iterdir() if TMP_MARK in p.name)


__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "leftover_temporaries", "TMP_MARK"]
