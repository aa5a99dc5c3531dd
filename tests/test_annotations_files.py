"""Annotation files: label map + JSON sidecar, background label from argument / sidecar / error."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_sparseseg.annotations import (
    SparseAnnotation,
    load_annotation,
    read_sidecar,
    save_annotation,
    sidecar_path,
)
from napari_sparseseg.errors import AnnotationError, SparsesegError
from napari_sparseseg.io import Volume, write_labels_nifti

SHAPE = (5, 12, 10)


@pytest.fixture
def like() -> Volume:
    aff = np.diag([1.5, 1.25, 6.0, 1.0])[:, [2, 1, 0, 3]]  # array axes (k, j, i): 6 mm slices
    aff[:3, 3] = (-10.0, 20.0, 3.0)
    return Volume(np.zeros(SHAPE, np.float32), aff, name="img")


def _ann() -> SparseAnnotation:
    lab = np.zeros(SHAPE, np.int16)
    lab[1, 2:6, 3] = 1
    lab[2, 4, 2:8] = 3
    lab[3, 0, :] = 4
    return SparseAnnotation(lab, 4, (1, 3), {1: "RV", 3: "LV"})


def test_round_trip_with_sidecar(tmp_path, like):
    path, side = save_annotation(tmp_path / "case_ann.nii.gz", _ann(), like)
    assert side == tmp_path / "case_ann.json" == sidecar_path(path)
    meta = json.loads(side.read_text())
    assert meta["background_label"] == 4 and meta["classes"] == [1, 3] and meta["version"] == 1
    assert meta["class_names"] == {"1": "RV", "3": "LV"}
    back = load_annotation(path, like)
    assert np.array_equal(back.labels, _ann().labels)
    assert back.background_label == 4 and back.classes == (1, 3) and back.class_names == {1: "RV", 3: "LV"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case_ann.json", "case_ann.nii.gz"]  # no temporaries


def test_zarr_round_trip(tmp_path, like):
    path, side = save_annotation(tmp_path / "ann.zarr", _ann(), like)
    assert side.name == "ann.json"
    back = load_annotation(path, like)
    assert np.array_equal(back.labels, _ann().labels) and back.background_label == 4


def test_background_label_from_argument_or_clear_error(tmp_path, like):
    p = tmp_path / "scribbles.nii.gz"
    write_labels_nifti(p, _ann().labels, like)  # a bare map, like the ACDC scribbles
    with pytest.raises(AnnotationError, match="--background-label"):
        load_annotation(p, like)
    a = load_annotation(p, like, background_label=4)
    assert a.background_label == 4 and a.classes == (1, 3)
    # with a sidecar, no argument is needed; an argument that contradicts the map is caught
    save_annotation(p, _ann(), like)
    assert load_annotation(p, like).background_label == 4
    with pytest.raises(AnnotationError, match=r"unknown label values \[4\]"):
        load_annotation(p, like, background_label=3)


def test_argument_overrides_sidecar_classes(tmp_path, like):
    p, _ = save_annotation(tmp_path / "a.nii.gz", _ann(), like)
    b = load_annotation(p, like, background_label=3, classes=[1, 4])
    assert b.background_label == 3 and b.classes == (1, 4)
    assert np.array_equal(b.background, _ann().labels == 3)


def test_corrupt_sidecar_and_unknown_values(tmp_path, like):
    p, side = save_annotation(tmp_path / "a.nii.gz", _ann(), like)
    side.write_text("{not json")
    with pytest.raises(AnnotationError, match="unreadable annotation sidecar"):
        load_annotation(p, like)
    side.write_text(json.dumps({"hello": 1}))
    with pytest.raises(AnnotationError, match="not an annotation sidecar"):
        read_sidecar(p)
    side.write_text(json.dumps({"background_label": 4, "classes": [1]}))
    with pytest.raises(AnnotationError, match=r"unknown label values \[3\]"):
        load_annotation(p, like)


def test_grid_mismatch_on_load_and_save(tmp_path, like):
    p, _ = save_annotation(tmp_path / "a.nii.gz", _ann(), like)
    other = Volume(np.zeros((5, 12, 11), np.float32), like.affine)
    with pytest.raises(SparsesegError, match="does not match"):
        load_annotation(p, other)
    small = SparseAnnotation(np.ones((2, 2, 2), np.int16), 4)
    before = p.read_bytes()
    with pytest.raises(AnnotationError, match="does not match the image grid"):
        save_annotation(p, small, like)
    assert p.read_bytes() == before
    with pytest.raises(AnnotationError, match=r"\.nii\.gz"):
        save_annotation(tmp_path / "a.txt", _ann(), like)


def test_acdc_human_scribbles_load_with_background_4(shared_data):
    from napari_sparseseg.io import read_volume

    case = "patient001_frame01"
    img = read_volume(shared_data / "acdc" / "imagesTr" / f"{case}.nii.gz")
    ann = load_annotation(shared_data / "acdc" / "scribblesTr" / f"{case}.nii.gz", img, background_label=4)
    assert ann.classes == (1, 2, 3) and ann.shape == img.shape
    ann.validate(img.shape, require_background=True)
