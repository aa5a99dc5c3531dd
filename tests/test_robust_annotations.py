"""Annotations that cannot train are refused with one line: no background, fractional marks, sidecar clash."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sparseseg.annotations.build import from_layers
from napari_sparseseg.annotations.files import load_annotation, save_annotation
from napari_sparseseg.annotations.sparse import SparseAnnotation
from napari_sparseseg.cli import main
from napari_sparseseg.errors import AnnotationError
from napari_sparseseg.io import Volume, write_labels_nifti, write_volume_nifti


@pytest.fixture()
def case(tmp_path):
    rng = np.random.default_rng(0)
    img = Volume(rng.normal(size=(4, 20, 20)).astype(np.float32), np.eye(4), name="img")
    write_volume_nifti(tmp_path / "img.nii.gz", img)
    return tmp_path, img


def test_full_label_map_as_annotation_is_refused_by_the_cli(case, capsys) -> None:
    tmp, img = case
    dense = np.zeros(img.shape, np.int16)
    dense[:, 5:15, 5:15] = 1  # a label map: class 1 and 0, no background mark anywhere
    write_labels_nifti(tmp / "ann.nii.gz", dense, img)
    rc = main(["pseudo", str(tmp / "img.nii.gz"), "--annotations", str(tmp / "ann.nii.gz"), "--background-label", "2",
               "-o", str(tmp / "p.nii.gz"), "--confidence", str(tmp / "c.nii.gz"), "--method", "random-walker-ignore"])
    err = capsys.readouterr().err
    assert rc == 2 and "no background marks" in err and len(err.strip().splitlines()) == 1
    assert not (tmp / "p.nii.gz").exists()
    with pytest.raises(AnnotationError, match="full label map"):
        load_annotation(tmp / "ann.nii.gz", like=img, background_label=2, for_training=True)
    load_annotation(tmp / "ann.nii.gz", like=img, background_label=2)  # viewing it is still fine


def test_fractional_point_labels_are_refused() -> None:
    with pytest.raises(AnnotationError, match="whole numbers"):
        from_layers(None, np.array([[1, 2, 3]]), [0.5], background_label=3, classes=(1, 2), shape=(4, 8, 8))
    with pytest.raises(AnnotationError, match="whole numbers"):
        from_layers(None, np.array([[1, 2, 3]]), [float("nan")], background_label=3, classes=(1, 2), shape=(4, 8, 8))
    ann = from_layers(None, np.array([[1, 2, 3]]), [2.0], background_label=3, classes=(1, 2), shape=(4, 8, 8))
    assert ann.labels[1, 2, 3] == 2


def test_nifti_and_zarr_of_one_stem_do_not_share_a_sidecar(case) -> None:
    tmp, img = case
    a = np.zeros(img.shape, np.int16)
    a[1, 2, 2], a[1, 9, 9] = 1, 4
    save_annotation(tmp / "a.nii.gz", SparseAnnotation(a, 4), img)
    b = np.zeros(img.shape, np.int16)
    b[1, 2, 2], b[1, 9, 9] = 1, 2
    with pytest.raises(AnnotationError, match="already describes a.nii.gz"):
        save_annotation(tmp / "a.zarr", SparseAnnotation(b, 2), img)
    assert load_annotation(tmp / "a.nii.gz").background_label == 4
    # a sidecar that names another map is not applied to this one
    write_labels_nifti(tmp / "a.nii", b, img)
    with pytest.raises(AnnotationError, match="which value marks background"):
        load_annotation(tmp / "a.nii")
