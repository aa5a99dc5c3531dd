"""DICOM as hospitals export it: compressed transfer syntaxes decode through pydicom's pixel-data
plugins (pylibjpeg with its libjpeg / openjpeg / rle back ends) to the same voxels as the
uncompressed series.

Each compressed series is made here from a real encoder: pydicom's own RLE encoder, pylibjpeg-openjpeg
for JPEG 2000, and imagecodecs (libjpeg-turbo, CharLS) for JPEG lossless and JPEG-LS, which pydicom
cannot write itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless, JPEGLosslessSV1, JPEGLSLossless, RLELossless

from napari_sparseseg.io import read_volume
from tests.test_io_dicom import write_series

imagecodecs = pytest.importorskip("imagecodecs", reason="imagecodecs (test extra) encodes JPEG lossless / JPEG-LS")

# first bytes of each codestream: proof the pixel data really is compressed
MAGIC = {RLELossless: None, JPEG2000Lossless: b"\xff\x4f", JPEGLosslessSV1: b"\xff\xd8", JPEGLSLossless: b"\xff\xd8"}


def _uncompressed_12bit(folder: Path) -> Path:
    """A 5-slice oblique MR-like series, 12 bits stored in 16 (unsigned), as most scanners write it."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:40, :36]
    base = (1500 + 1200 * np.exp(-((yy - 20) ** 2 + (xx - 16) ** 2) / 120.0)).T  # (i, j): smooth + noise
    data = np.stack([base + rng.normal(0, 40, base.shape) + 60 * k for k in range(5)], axis=2)
    data = np.clip(data, 0, 4095).astype(np.int16)
    aff = np.diag([0.8, 0.8, 4.0, 1.0])
    aff[:3, 3] = [-20.0, 10.0, 5.0]
    write_series(folder, data, aff)
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 0
        ds.save_as(f, enforce_file_format=True)
    return folder


def _compress(src: Path, dst: Path, syntax: str) -> Path:
    dst.mkdir()
    for f in sorted(src.iterdir()):
        ds = pydicom.dcmread(f)
        arr = ds.pixel_array.astype(np.uint16)
        if syntax in (RLELossless, JPEG2000Lossless):
            ds.compress(syntax, arr)  # pydicom's RLE encoder / pylibjpeg-openjpeg
        else:
            if syntax == JPEGLosslessSV1:
                frame = imagecodecs.jpeg8_encode(arr, lossless=True, predictor=1, bitspersample=12)
            else:
                frame = imagecodecs.jpegls_encode(arr, level=0)
            ds.PixelData = encapsulate([bytes(frame)])
            ds["PixelData"].VR = "OB"
            ds.file_meta.TransferSyntaxUID = syntax
        ds.save_as(dst / f.name, enforce_file_format=True)
    return dst


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _uncompressed_12bit(tmp_path_factory.mktemp("dicom") / "plain")


@pytest.mark.parametrize("syntax", list(MAGIC), ids=["rle", "jpeg2000-lossless", "jpeg-lossless", "jpeg-ls"])
def test_compressed_series_decode_to_the_same_voxels(plain: Path, tmp_path: Path, syntax: str) -> None:
    comp = _compress(plain, tmp_path / "comp", syntax)
    first = pydicom.dcmread(next(comp.iterdir()))
    assert first.file_meta.TransferSyntaxUID == syntax and first.file_meta.TransferSyntaxUID.is_compressed
    frame = next(pydicom.encaps.generate_frames(first.PixelData, number_of_frames=1))
    assert len(frame) < first.Rows * first.Columns * 2  # really compressed, not raw bytes in a wrapper
    if MAGIC[syntax]:
        assert frame.startswith(MAGIC[syntax])
    ref, got = read_volume(plain), read_volume(comp)
    assert got.shape == ref.shape == (5, 40, 36)
    np.testing.assert_array_equal(np.asarray(got.array), np.asarray(ref.array))
    np.testing.assert_allclose(got.affine, ref.affine)
    assert np.asarray(ref.array).max() > 2000  # the 12-bit range is really used
