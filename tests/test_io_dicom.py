"""DICOM series: geometry against nibabel on the same synthetic scan, slice sorting, bad folders.

The series writer below derives the DICOM tags from a known NIfTI affine the way a scanner would
store them (LPS positions of each slice's first pixel, row/column direction cosines), so reading it
back must land every voxel on the world point nibabel gives for the same voxel of the NIfTI.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from napari_sparseseg.errors import VolumeError
from napari_sparseseg.io import read_volume, write_labels_nifti
from napari_sparseseg.io.dicom import read_dicom_series

LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def write_series(
    folder: Path,
    data_ijk: np.ndarray,
    nifti_affine: np.ndarray,
    *,
    slope: float = 1.0,
    intercept: float = 0.0,
    series_uid: str | None = None,
    shuffle: int | None = 0,
) -> Path:
    """Write ``data_ijk`` (NIfTI order: column i, row j, slice k) as one file per slice."""
    folder.mkdir(parents=True, exist_ok=True)
    a = LPS @ nifti_affine  # voxel (i, j, k) -> LPS
    col_step, row_step = a[:3, 0], a[:3, 1]  # moving along a row (i) / down a column (j)
    iop = [*(col_step / np.linalg.norm(col_step)), *(row_step / np.linalg.norm(row_step))]
    uid = series_uid or generate_uid()
    nk = data_ijk.shape[2]
    order = np.random.default_rng(shuffle).permutation(nk) if shuffle is not None else np.arange(nk)
    for n, k in enumerate(order):
        ipp = (a @ [0, 0, k, 1])[:3]
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID = "MR", uid, "1.2.3"
        ds.InstanceNumber = int(n + 1)  # deliberately unrelated to position
        ds.ImagePositionPatient = [f"{v:.6f}" for v in ipp]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in iop]
        ds.PixelSpacing = [f"{np.linalg.norm(row_step):.6f}", f"{np.linalg.norm(col_step):.6f}"]
        ds.SliceThickness = f"{np.linalg.norm(a[:3, 2]):.6f}"
        ds.Rows, ds.Columns = int(data_ijk.shape[1]), int(data_ijk.shape[0])
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:g}", f"{intercept:g}"
        ds.PixelData = np.ascontiguousarray(data_ijk[:, :, k].T.astype(np.int16)).tobytes()  # (rows, cols)
        ds.save_as(folder / f"img_{uid[-4:]}_{n:03d}", enforce_file_format=True)
    return folder


def _oblique_affine() -> np.ndarray:
    th = np.deg2rad(17.0)
    rot = np.array([[np.cos(th), 0, np.sin(th)], [0, 1, 0], [-np.sin(th), 0, np.cos(th)]])
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag([0.8, 0.9, 3.0])
    aff[:3, 3] = [-40.0, 12.5, 7.0]
    return aff


@pytest.mark.parametrize("affine", [np.diag([0.7, 0.7, 2.5, 1.0]), _oblique_affine()], ids=["axial", "oblique"])
def test_dicom_series_matches_nibabel_world_coordinates(tmp_path: Path, affine: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    data = rng.integers(0, 1000, size=(12, 10, 7)).astype(np.int16)  # (i, j, k), all axes distinct
    nib.save(nib.Nifti1Image(data, affine), str(tmp_path / "ref.nii.gz"))
    ref = read_volume(tmp_path / "ref.nii.gz")
    vol = read_dicom_series(write_series(tmp_path / "series", data, affine))
    assert vol.shape == (7, 10, 12) == ref.shape
    np.testing.assert_array_equal(vol.array, ref.array)
    np.testing.assert_allclose(vol.affine, ref.affine, atol=1e-4)
    np.testing.assert_allclose(vol.spacing, ref.spacing, atol=1e-5)
    assert vol.meta["n_slices"] == 7 and vol.meta["format"] == "dicom"


def test_axial_dicom_by_hand(tmp_path: Path) -> None:
    """Standard axial series: first pixel at LPS (-100, -120, z); rows go posterior, columns go left."""
    folder = tmp_path / "axial"
    aff_ras = np.array([[-0.5, 0, 0, 100.0], [0, -0.6, 0, 120.0], [0, 0, 4.0, -30.0], [0, 0, 0, 1]])
    data = np.arange(5 * 4 * 3, dtype=np.int16).reshape(5, 4, 3)  # 5 columns, 4 rows, 3 slices
    write_series(folder, data, aff_ras)
    import pydicom as pd

    ds = pd.dcmread(sorted(folder.iterdir())[0])
    np.testing.assert_allclose([float(v) for v in ds.ImageOrientationPatient], [1, 0, 0, 0, 1, 0])
    vol = read_volume(folder)
    # RAS of array voxel (slice 1, row 2, column 3): x = 100 - 0.5*3, y = 120 - 0.6*2, z = -30 + 4*1
    np.testing.assert_allclose(vol.affine @ [1, 2, 3, 1], [98.5, 118.8, -26.0, 1.0])
    assert vol.array[1, 2, 3] == data[3, 2, 1]


def test_rescale_slope_intercept_and_one_file_path(tmp_path: Path) -> None:
    data = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    folder = write_series(tmp_path / "ct", data, np.eye(4), slope=0.5, intercept=-1024)
    vol = read_volume(next(folder.iterdir()))  # a single slice file opens its series
    assert vol.array.dtype == np.float32
    np.testing.assert_allclose(vol.array, data.transpose(2, 1, 0) * 0.5 - 1024)
    folder2 = write_series(tmp_path / "ct2", data, np.eye(4), intercept=-1024)
    vol2 = read_volume(folder2)
    assert vol2.array.dtype == np.int16 and vol2.array.min() == -1024


def test_largest_series_wins_and_junk_is_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    data = np.ones((4, 4, 6), np.int16)
    write_series(folder, data, np.eye(4), series_uid="1.2.3.4.1")
    write_series(folder, np.ones((4, 4, 2), np.int16), np.eye(4), series_uid="1.2.3.4.2")
    (folder / "README.txt").write_text("scanner export")
    vol = read_volume(folder)
    assert vol.shape == (6, 4, 4) and vol.meta["series_uid"] == "1.2.3.4.1"
    assert any("2 series" in n for n in vol.meta["notes"]) and any("skipped 1" in n for n in vol.meta["notes"])


def test_mixed_geometry_in_one_series_is_rejected(tmp_path: Path) -> None:
    folder = write_series(tmp_path / "bad", np.ones((4, 4, 3), np.int16), np.eye(4), series_uid="9.9")
    write_series(folder, np.ones((5, 5, 1), np.int16), np.eye(4), series_uid="9.9")
    with pytest.raises(VolumeError, match="mixed series"):
        read_volume(folder)


def test_duplicate_positions_rejected(tmp_path: Path) -> None:
    folder = write_series(tmp_path / "dup", np.ones((4, 4, 3), np.int16), np.eye(4), series_uid="7.7")
    f = sorted(folder.iterdir())[0]
    ds = pydicom.dcmread(f)
    ds.SOPInstanceUID = generate_uid()
    ds.save_as(folder / "copy", enforce_file_format=True)
    with pytest.raises(VolumeError, match="share one position"):
        read_volume(folder)


def test_empty_and_non_dicom_folders(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(VolumeError, match="empty"):
        read_dicom_series(tmp_path / "empty")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.dcm").write_bytes(b"\x00" * 300)
    (junk / "notes.txt").write_text("hi")
    with pytest.raises(VolumeError, match="no DICOM image slices among 2 files"):
        read_volume(junk)
    with pytest.raises(FileNotFoundError):
        read_dicom_series(tmp_path / "missing")


def test_labels_written_for_a_dicom_series_overlay_it(tmp_path: Path) -> None:
    aff = _oblique_affine()
    data = np.random.default_rng(2).integers(0, 50, size=(6, 5, 4)).astype(np.int16)
    vol = read_volume(write_series(tmp_path / "s", data, aff))
    out = write_labels_nifti(tmp_path / "seg.nii.gz", (vol.array > 25).astype(np.uint8), vol)
    back = nib.load(str(out))
    np.testing.assert_allclose(back.affine, aff, atol=1e-4)
