"""Fuzz the readers: random bytes and mutated NIfTI/gzip/zarr/DICOM inputs must either read or raise
:class:`VolumeError` -- never another exception type, never a huge allocation.

Example counts are bounded (and the database off) so the module runs in seconds; raise
``SPARSESEG_FUZZ_EXAMPLES`` for a longer hunt.
"""

from __future__ import annotations

import gzip
import io
import os
import tempfile
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_sparseseg.errors import VolumeError
from napari_sparseseg.io import Volume, read_labels, read_volume, write_zarr

N = int(os.environ.get("SPARSESEG_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=N, deadline=None, database=None, suppress_health_check=list(HealthCheck))


def _valid_nii_bytes() -> bytes:
    rng = np.random.default_rng(0)
    img = nib.Nifti1Image(rng.normal(size=(5, 6, 4)).astype(np.float32), np.diag([0.9, 1.1, 2.5, 1.0]))
    bio = io.BytesIO()
    img.to_file_map({"image": nib.FileHolder(fileobj=bio), "header": nib.FileHolder(fileobj=bio)})
    return bio.getvalue()


VALID = _valid_nii_bytes()
VALID_GZ = gzip.compress(VALID)


def _must_read_or_volume_error(path: Path, labels: bool = False) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            vol = read_labels(path) if labels else read_volume(path)
        except VolumeError as exc:
            assert str(exc) and "\n" not in str(exc)
            return
    assert isinstance(vol, Volume) and vol.array.ndim == 3
    assert np.all(np.isfinite(vol.affine))


ROOT: Path | None = None


@pytest.fixture(scope="module", autouse=True)
def _fuzz_root(tmp_path_factory: pytest.TempPathFactory) -> None:
    global ROOT
    ROOT = tmp_path_factory.mktemp("fuzz")


def _folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="case-", dir=ROOT))


def _write(data: bytes, name: str) -> Path:
    folder = _folder()
    p = folder / name
    p.write_bytes(data)
    return p


mutations = st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=8)
header_mutations = st.lists(st.tuples(st.integers(0, 351), st.integers(0, 255)), min_size=1, max_size=6)


def _mutate(base: bytes, muts: list[tuple[int, int]]) -> bytes:
    b = bytearray(base)
    for pos, val in muts:
        b[pos % len(b)] = val
    return bytes(b)


def test_valid_base_reads() -> None:
    _must_read_or_volume_error(_write(VALID, "ok.nii"))
    assert read_volume(_write(VALID_GZ, "ok.nii.gz")).shape == (4, 6, 5)


@FUZZ
@given(data=st.binary(max_size=2048), name=st.sampled_from(["x.nii", "x.nii.gz"]))
def test_random_bytes(data: bytes, name: str) -> None:
    _must_read_or_volume_error(_write(data, name))


@FUZZ
@given(muts=header_mutations, gz=st.booleans(), labels=st.booleans())
def test_mutated_nifti_header(muts: list[tuple[int, int]], gz: bool, labels: bool) -> None:
    raw = _mutate(VALID, muts)
    _must_read_or_volume_error(_write(gzip.compress(raw) if gz else raw, "m.nii.gz" if gz else "m.nii"), labels)


@FUZZ
@given(muts=mutations)
def test_mutated_nifti_anywhere(muts: list[tuple[int, int]]) -> None:
    _must_read_or_volume_error(_write(_mutate(VALID, muts), "m.nii"))


@FUZZ
@given(muts=st.lists(st.tuples(st.integers(0, len(VALID_GZ) - 1), st.integers(0, 255)), min_size=1, max_size=4),
       cut=st.integers(0, len(VALID_GZ)))
def test_mutated_or_truncated_gzip(muts: list[tuple[int, int]], cut: int) -> None:
    _must_read_or_volume_error(_write(_mutate(VALID_GZ, muts)[: max(cut, 1)], "g.nii.gz"))


@FUZZ
@given(text=st.text(max_size=200) | st.sampled_from(['{"shape": [2, 2, 2]}', '{"zarr_format": 2, "shape": [1e9, 1e9, 1e9]}']))
def test_mutated_zarr_metadata(text: str) -> None:
    folder = _folder()
    like = Volume(np.zeros((2, 3, 4), np.float32), np.eye(4))
    store = write_zarr(folder / "s.zarr", np.ones(like.shape, np.float32), like, labels=False)
    (store / "0" / ".zarray").write_text(text)
    _must_read_or_volume_error(store)


@FUZZ
@given(data=st.binary(max_size=1024))
def test_random_dicom_like_files(data: bytes) -> None:
    folder = _folder()
    (folder / "IM0001").write_bytes(b"\x00" * 128 + b"DICM" + data)
    _must_read_or_volume_error(folder)


@pytest.mark.parametrize("dims", [(3, 2000, 2000, 2000), (3, 32767, 32767, 32767)])
def test_header_claiming_huge_volume_fails_before_allocating(tmp_path: Path, dims: tuple[int, ...]) -> None:
    raw = bytearray(VALID)
    hdr = nib.Nifti1Header.from_fileobj(io.BytesIO(VALID))
    hdr["dim"][:4] = dims
    raw[:348] = hdr.binaryblock
    p = tmp_path / "huge.nii.gz"
    p.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(VolumeError, match="truncated or corrupt|implausibly large"):
        read_volume(p)


def _valid_dicom_slices() -> list[bytes]:
    from test_io_dicom import write_series  # the synthetic series writer of the DICOM tests

    folder = Path(tempfile.mkdtemp(prefix="sparseseg-dcm-"))
    write_series(folder, np.arange(4 * 3 * 2, dtype=np.int16).reshape(4, 3, 2), np.diag([0.5, 0.5, 2.0, 1.0]))
    out = [p.read_bytes() for p in sorted(folder.iterdir())]
    for p in folder.iterdir():
        p.unlink()
    folder.rmdir()
    return out


DICOM_SLICES = _valid_dicom_slices()


@FUZZ
@given(muts=st.lists(st.tuples(st.integers(132, len(DICOM_SLICES[0]) - 1), st.integers(0, 255)), min_size=1, max_size=6),
       which=st.integers(0, 1))
def test_mutated_dicom_series(muts: list[tuple[int, int]], which: int) -> None:
    folder = _folder()
    for i, raw in enumerate(DICOM_SLICES):
        (folder / f"IM{i}").write_bytes(_mutate(raw, muts) if i == which else raw)
    _must_read_or_volume_error(folder)
