"""NIfTI I/O on the real data sets, round trips, and every kind of bad input we promise to reject."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_sparseseg.errors import VolumeError
from napari_sparseseg.io import (
    Volume,
    read_labels,
    read_nifti_header,
    read_volume,
    write_labels_nifti,
    write_volume_nifti,
)
from napari_sparseseg.io.atomic import leftover_temporaries

SETS = {
    "acdc": ("imagesTr", "labelsTr", "scribblesTr"),
    "hippocampus": ("imagesTr", "labelsTr"),
    "brain_tumor": ("imagesTr", "labelsTr"),
}


def _all_cases(root: Path) -> list[Path]:
    return [p for s, subs in SETS.items() for sub in subs for p in sorted((root / s / sub).glob("*.nii.gz"))]


def test_every_shared_case_has_reversed_shape_and_spacing(shared_data: Path) -> None:
    files = _all_cases(shared_data)
    counts = {s: sum(1 for f in files if f.parts[-3] == s) for s in SETS}
    assert counts["acdc"] == 60 and counts["hippocampus"] == 2 * 201 and counts["brain_tumor"] == 16, counts
    for f in files:
        img = nib.load(str(f))
        shape, spacing, _ = read_nifti_header(f)
        assert shape == tuple(reversed(img.shape)), f
        np.testing.assert_allclose(spacing, tuple(reversed(img.header.get_zooms()[:3])), rtol=1e-5, err_msg=str(f))


@pytest.mark.parametrize(
    "rel",
    [
        "acdc/imagesTr/patient001_frame01.nii.gz",
        "hippocampus/imagesTr/hippocampus_001.nii.gz",
        "brain_tumor/imagesTr/PGBM-008_1993-06-10.nii.gz",
    ],
)
def test_read_volume_data_matches_nibabel(shared_data: Path, rel: str) -> None:
    f = shared_data / rel
    img = nib.load(str(f))
    vol = read_volume(f)
    ref = np.asanyarray(img.dataobj)
    assert vol.shape == tuple(reversed(img.shape))
    np.testing.assert_array_equal(vol.array, ref.transpose(2, 1, 0))
    # voxel (a0, a1, a2) of the volume is voxel (a2, a1, a0) of nibabel: same world point
    idx = np.array([3, 5, 7])
    np.testing.assert_allclose(vol.affine @ [*idx, 1], img.affine @ [*idx[::-1], 1])
    assert vol.meta["format"] == "nifti" and vol.name == f.name[: -len(".nii.gz")]


@pytest.mark.parametrize("case", ["hippocampus_003", "hippocampus_243", "hippocampus_001"])
def test_hippocampus_labels_float_files_become_integers(shared_data: Path, case: str) -> None:
    img = read_volume(shared_data / "hippocampus" / "imagesTr" / f"{case}.nii.gz")
    lab = read_labels(shared_data / "hippocampus" / "labelsTr" / f"{case}.nii.gz", like=img)
    assert lab.array.dtype == np.uint8
    assert set(np.unique(lab.array)) <= {0, 1, 2} and lab.array.max() == 2


def test_acdc_scribbles_read_as_labels_on_the_image_grid(shared_data: Path) -> None:
    img = read_volume(shared_data / "acdc/imagesTr/patient001_frame01.nii.gz")
    scr = read_labels(shared_data / "acdc/scribblesTr/patient001_frame01.nii.gz", like=img)
    assert set(np.unique(scr.array)) <= {0, 1, 2, 3, 4} and 4 in scr.array


def test_brain_tumor_labels_round_trip_with_identical_affine(shared_data: Path, tmp_path: Path) -> None:
    case = "PGBM-001_1991-11-19"
    src_img = nib.load(str(shared_data / "brain_tumor/imagesTr" / f"{case}.nii.gz"))
    vol = read_volume(shared_data / "brain_tumor/imagesTr" / f"{case}.nii.gz")
    lab = read_labels(shared_data / "brain_tumor/labelsTr" / f"{case}.nii.gz", like=vol)
    assert lab.array.any()
    out = write_labels_nifti(tmp_path / "pred.nii.gz", lab.array, vol)
    back = nib.load(str(out))
    assert np.array_equal(back.affine, src_img.affine)
    assert back.shape == src_img.shape
    assert back.header.get_data_dtype() == np.uint8
    assert int(back.header["sform_code"]) == int(src_img.header["sform_code"])
    np.testing.assert_array_equal(np.asanyarray(back.dataobj).transpose(2, 1, 0), lab.array)
    again = read_labels(out, like=vol)
    np.testing.assert_array_equal(again.array, lab.array)
    assert leftover_temporaries(tmp_path) == []


def test_label_dtype_chosen_by_range_and_affine_only_volume(tmp_path: Path) -> None:
    aff = np.array([[0, 0, 2.0, 10], [0, 1.5, 0, -5], [3.0, 0, 0, 7], [0, 0, 0, 1]])
    like = Volume(np.zeros((4, 5, 6), np.float32), aff, name="synthetic")  # no header: affine path
    big = np.zeros(like.shape, np.int64)
    big[0, 0, 0] = 300
    write_labels_nifti(tmp_path / "a.nii", big, like)
    back = nib.load(str(tmp_path / "a.nii"))
    assert back.header.get_data_dtype() == np.int16
    r = read_labels(tmp_path / "a.nii", like=like)
    np.testing.assert_allclose(r.affine, aff, atol=1e-5)
    assert r.array[0, 0, 0] == 300
    with pytest.raises(VolumeError, match="whole numbers"):
        write_labels_nifti(tmp_path / "b.nii.gz", np.full(like.shape, 0.5), like)
    with pytest.raises(VolumeError, match="do not fit the image grid"):
        write_labels_nifti(tmp_path / "b.nii.gz", np.zeros((4, 5, 7), np.uint8), like)
    assert not (tmp_path / "b.nii.gz").exists()


def test_write_volume_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    aff = np.array([[0, 0.1, 0.9, 1], [0, 0.9, -0.1, 2], [2.5, 0, 0, 3], [0, 0, 0, 1]])
    vol = Volume(rng.normal(size=(3, 4, 5)).astype(np.float32), aff, name="v")
    write_volume_nifti(tmp_path / "v.nii.gz", vol)
    back = read_volume(tmp_path / "v.nii.gz")
    np.testing.assert_array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.affine, aff, atol=1e-5)


# ------------------------------------------------------------------------------------ bad inputs
def _save(tmp_path: Path, name: str, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    p = tmp_path / name
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(p))
    return p


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_volume(tmp_path / "nope.nii.gz")


def test_truncated_nifti_gz(tmp_path: Path) -> None:
    good = _save(tmp_path, "good.nii.gz", np.random.default_rng(1).normal(size=(20, 20, 20)).astype(np.float32))
    raw = good.read_bytes()
    bad = tmp_path / "trunc.nii.gz"
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(VolumeError, match="trunc.nii.gz: ") as ei:
        read_volume(bad)
    assert "\n" not in str(ei.value)


def test_corrupt_gzip_and_garbage(tmp_path: Path) -> None:
    good = _save(tmp_path, "good.nii.gz", np.ones((4, 4, 4), np.int16))
    raw = bytearray(good.read_bytes())
    raw[20:40] = b"\x00" * 20  # inside the deflate stream
    (tmp_path / "corrupt.nii.gz").write_bytes(bytes(raw))
    with pytest.raises(VolumeError, match="corrupt.nii.gz"):
        read_volume(tmp_path / "corrupt.nii.gz")
    (tmp_path / "text.nii.gz").write_text("hello, not an image")
    with pytest.raises(VolumeError, match="not a readable NIfTI"):
        read_volume(tmp_path / "text.nii.gz")
    (tmp_path / "plain.nii").write_bytes(gzip.decompress(good.read_bytes())[:100])
    with pytest.raises(VolumeError):
        read_volume(tmp_path / "plain.nii")


def test_2d_and_4d_images(tmp_path: Path) -> None:
    with pytest.raises(VolumeError, match="2D"):
        read_volume(_save(tmp_path, "flat.nii.gz", np.ones((8, 8), np.float32)))
    with pytest.raises(VolumeError, match="4D.*single 3D"):
        read_volume(_save(tmp_path, "time.nii.gz", np.ones((4, 5, 6, 3), np.float32)))
    with pytest.warns(UserWarning, match="squeezed"):
        vol = read_volume(_save(tmp_path, "single.nii.gz", np.ones((4, 5, 6, 1), np.float32)))
    assert vol.shape == (6, 5, 4) and "squeezed" in vol.meta["notes"][0]


def test_zero_size_axis(tmp_path: Path) -> None:
    with pytest.raises(VolumeError, match="empty axis"):
        read_volume(_save(tmp_path, "empty.nii.gz", np.ones((4, 0, 6), np.float32)))


def test_nan_intensities_rejected_or_filled(tmp_path: Path) -> None:
    data = np.arange(60, dtype=np.float32).reshape(3, 4, 5) + 10
    data[1, 2, 3] = np.nan
    data[0, 0, 0] = np.inf
    p = _save(tmp_path, "nan.nii.gz", data)
    with pytest.raises(VolumeError, match="2 of 60 voxels are NaN or infinite"):
        read_volume(p)
    vol = read_volume(p, nonfinite="fill")
    assert np.all(np.isfinite(vol.array)) and vol.meta["nonfinite_filled"] == 2
    assert vol.array[3, 2, 1] == np.nanmin(data[np.isfinite(data)])
    with pytest.raises(VolumeError, match="NaN"):
        read_labels(p)


def test_labels_on_another_grid(tmp_path: Path) -> None:
    img = read_volume(_save(tmp_path, "img.nii.gz", np.ones((4, 5, 6), np.float32)))
    lab = _save(tmp_path, "lab.nii.gz", np.ones((4, 5, 7), np.uint8))
    with pytest.raises(VolumeError, match=r"shape \(7, 5, 4\).*shape \(6, 5, 4\)"):
        read_labels(lab, like=img)
    moved = _save(tmp_path, "moved.nii.gz", np.ones((4, 5, 6), np.uint8), np.diag([2.0, 1, 1, 1]))
    with pytest.raises(VolumeError, match="spacing"):
        read_labels(moved, like=img)


def test_fractional_labels_rejected(tmp_path: Path) -> None:
    p = _save(tmp_path, "prob.nii.gz", np.full((3, 3, 3), 0.25, np.float32))
    with pytest.raises(VolumeError, match="whole numbers"):
        read_labels(p)


def test_unsupported_paths(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(VolumeError, match="unsupported file type"):
        read_volume(tmp_path / "a.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VolumeError, match="empty"):
        read_volume(tmp_path / "empty")


def test_failed_write_leaves_destination_untouched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    like = Volume(np.zeros((3, 4, 5), np.float32), np.eye(4), name="x")
    dest = tmp_path / "labels.nii.gz"
    write_labels_nifti(dest, np.ones(like.shape, np.uint8), like)
    before = dest.read_bytes()

    def boom(img, filename):  # noqa: ARG001 - fails after a partial write, like a full disk
        Path(filename).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(nib, "save", boom)
    with pytest.raises(OSError, match="No space"):
        write_labels_nifti(dest, np.full(like.shape, 2, np.uint8), like)
    assert dest.read_bytes() == before
    assert leftover_temporaries(tmp_path) == []
    shutil.rmtree(tmp_path, ignore_errors=True)
