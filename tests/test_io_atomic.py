"""Atomic writes: the destination is the old content or the new one, never a mix; no temporaries left."""

from __future__ import annotations

from pathlib import Path

import pytest

from napari_sparseseg.io.atomic import (
    TMP_MARK,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    leftover_temporaries,
)


def test_write_text_and_bytes(tmp_path: Path) -> None:
    p = atomic_write_text(tmp_path / "a.json", '{"x": 1}')
    assert p.read_text() == '{"x": 1}'
    atomic_write_bytes(p, b"new")
    assert p.read_bytes() == b"new"
    assert leftover_temporaries(tmp_path) == []


def test_temp_keeps_suffix_and_lives_beside_destination(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "seg.nii.gz") as tmp:
        assert tmp.parent == tmp_path and tmp.name.endswith(".nii.gz") and TMP_MARK in tmp.name
        tmp.write_bytes(b"data")
    assert (tmp_path / "seg.nii.gz").read_bytes() == b"data"


def test_exception_keeps_destination_and_removes_temp(tmp_path: Path) -> None:
    dest = tmp_path / "keep.txt"
    dest.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert dest.read_text() == "old"
    assert leftover_temporaries(tmp_path) == []


def test_writer_that_writes_nothing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        with atomic_path(tmp_path / "x.bin"):
            pass
    assert not (tmp_path / "x.bin").exists()


def test_directory_swap(tmp_path: Path) -> None:
    dest = tmp_path / "store.zarr"
    for content in ("one", "two"):
        with atomic_path(dest, directory=True) as tmp:
            tmp.mkdir()
            (tmp / "f").write_text(content)
    assert (dest / "f").read_text() == "two"
    with pytest.raises(ValueError):
        with atomic_path(dest, directory=True) as tmp:
            tmp.mkdir()
            (tmp / "f").write_text("three")
            raise ValueError("bad")
    assert (dest / "f").read_text() == "two"
    assert leftover_temporaries(tmp_path) == []


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        atomic_write_text(tmp_path / "no" / "such" / "file.txt", "x")
