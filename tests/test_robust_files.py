"""Sessions, autosaves, NIfTI headers and metrics: damaged or hostile files give one line, bounded memory."""

from __future__ import annotations

import gzip
import io
import json
import math
import zipfile

import nibabel as nib
import numpy as np
import pytest

from napari_sparseseg.errors import VolumeError
from napari_sparseseg.evaluate import dice_per_class, evaluate_labels
from napari_sparseseg.io import read_volume
from napari_sparseseg.session import AnnotationAutosave, ClassTable, Session, SessionError


def _session(tmp_path, shape=(3, 8, 8)):
    ann = np.zeros(shape, np.int16)
    ann[1, 2, 2] = 1
    s = Session(None, "abc", shape, np.eye(4), ClassTable.default(1), ann)
    return s.save(tmp_path / "case")


def _edit_json(path, fn):
    info = json.loads(path.read_text())
    fn(info)
    path.write_text(json.dumps(info))


@pytest.mark.parametrize("edit, expect", [
    (lambda i: i.pop("image"), "incomplete"),
    (lambda i: i.pop("classes"), "class table"),
    (lambda i: i["image"].pop("fingerprint"), "incomplete"),
    (lambda i: i["image"].update(shape=[3, 8]), "three positive"),
    (lambda i: i["image"].update(affine="x"), "4x4"),
    (lambda i: i.update(version="one"), "version"),
    (lambda i: i.update(checkpoint="../../etc/passwd"), "inside the session"),
    (lambda i: i.update(reviewed="all"), "reviewed"),
])
def test_session_missing_or_bad_keys_are_one_line(tmp_path, edit, expect) -> None:
    folder = _session(tmp_path)
    _edit_json(folder / "session.json", edit)
    with pytest.raises(SessionError, match=expect) as info:
        Session.load(folder)
    assert "\n" not in str(info.value)


def test_session_npz_of_wrong_grid_is_refused_before_loading(tmp_path, monkeypatch) -> None:
    folder = _session(tmp_path)
    np.savez_compressed(folder / "annotations.npz", labels=np.zeros((300, 300, 300), np.int16))

    def no_load(*a, **k):  # the 54 MB array must not be loaded to find out it does not fit
        raise AssertionError("np.load called before the shape check")

    monkeypatch.setattr(np, "load", no_load)
    with pytest.raises(SessionError, match="grid"):
        Session.load(folder)


def test_session_npz_whose_zip_size_lies_is_refused(tmp_path) -> None:
    folder = _session(tmp_path)
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.zeros((3, 8, 8), np.int16))
    raw = buf.getvalue()[:-10]  # header promises 384 bytes of data; fewer are there
    with zipfile.ZipFile(folder / "annotations.npz", "w") as zf:
        zf.writestr("labels.npy", raw)
    with pytest.raises(SessionError, match="damaged"):
        Session.load(folder)


def test_session_float_marks_are_refused(tmp_path) -> None:
    folder = _session(tmp_path)
    np.savez_compressed(folder / "annotations.npz", labels=np.full((3, 8, 8), 0.5))
    with pytest.raises(SessionError, match="integer"):
        Session.load(folder)


@pytest.mark.parametrize("damage", ["notjson", "noclasses", "badshape", "list"])
def test_corrupt_autosave_is_a_session_error_and_clean_exit_survives_it(tmp_path, damage) -> None:
    auto = AnnotationAutosave("fp", tmp_path)
    auto.save(np.zeros((2, 4, 4), np.int16), ClassTable.default(1))
    info = json.loads(auto.meta_path.read_text())
    if damage == "notjson":
        auto.meta_path.write_text("{not json")
    elif damage == "noclasses":
        info.pop("classes")
        auto.meta_path.write_text(json.dumps(info))
    elif damage == "badshape":
        info["shape"] = "big"
        auto.meta_path.write_text(json.dumps(info))
    else:
        auto.meta_path.write_text("[1, 2]")
    with pytest.raises(SessionError):
        auto.load()
    auto.mark_clean_exit()  # closing the widget must get past a damaged autosave


def _nifti_gz(shape, path):
    img = nib.Nifti1Image(np.zeros(shape, np.float32), np.eye(4))
    bio = io.BytesIO()
    img.to_file_map({"image": nib.FileHolder(fileobj=bio), "header": nib.FileHolder(fileobj=bio)})
    path.write_bytes(gzip.compress(bio.getvalue()))
    return bio.getvalue()


def test_nifti_voxel_cap_is_tighter_and_configurable(tmp_path, monkeypatch) -> None:
    raw = bytearray(_nifti_gz((2, 2, 2), tmp_path / "a.nii.gz"))
    hdr = nib.Nifti1Header.from_fileobj(io.BytesIO(bytes(raw)))
    hdr.set_data_shape((1200, 1200, 1200))  # 1.7 G voxels: under the old 2**31 cap
    p = tmp_path / "big.nii.gz"
    p.write_bytes(gzip.compress(hdr.binaryblock + b"\0" * 4 + bytes(8 * 4)))
    with pytest.raises(VolumeError, match="implausibly large"):
        read_volume(p)
    monkeypatch.setenv("SPARSESEG_MAX_VOXELS", str(2**32))
    with pytest.raises(VolumeError, match="truncated or corrupt"):
        read_volume(p)


def test_small_gz_claiming_more_than_it_holds_is_refused_without_allocating(tmp_path, monkeypatch) -> None:
    _nifti_gz((2, 2, 2), tmp_path / "a.nii.gz")
    raw = bytearray(gzip.decompress((tmp_path / "a.nii.gz").read_bytes()))
    hdr = nib.Nifti1Header.from_fileobj(io.BytesIO(bytes(raw)))
    hdr.set_data_shape((400, 400, 400))  # 256 MB promised by a 300 kB file: under deflate's 1032:1 bound
    p = tmp_path / "bomb.nii.gz"
    noise = np.random.default_rng(0).bytes(300_000)  # incompressible, so the file is large enough
    p.write_bytes(gzip.compress(hdr.binaryblock + b"\0" * 4 + noise, 1))
    import napari_sparseseg.io.nifti as nifti_mod

    def no_alloc(*a, **k):
        raise AssertionError("voxel data read before the size check")

    monkeypatch.setattr(nifti_mod.np, "asanyarray", no_alloc)
    with pytest.raises(VolumeError, match="compressed data holds"):
        read_volume(p)


def test_class_absent_from_both_maps_is_not_a_perfect_score() -> None:
    gt = np.zeros((3, 4, 4), np.int16)
    gt[1, 1, 1] = 1
    d = dice_per_class(gt, gt, [1, 2])
    assert d[1] == 1.0 and math.isnan(d[2])
    rec = evaluate_labels(gt, gt, [1, 2], distances=False)
    assert rec["mean"]["dice"] == 1.0 and rec["absent_classes"] == [2]
    pred = np.zeros_like(gt)
    assert evaluate_labels(pred, gt, [1, 2], distances=False)["mean"]["dice"] == 0.0  # was 0.5
