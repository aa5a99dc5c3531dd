"""The sparse-annotation model: validation errors, napari layers -> annotation, labelled slices."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sparseseg.annotations import (
    IGNORE_INDEX,
    SparseAnnotation,
    combine,
    from_layers,
    label_slice,
)
from napari_sparseseg.errors import AnnotationError

SHAPE = (4, 6, 7)


def _ann(**marks) -> SparseAnnotation:
    lab = np.zeros(SHAPE, np.int16)
    lab[0, 0, 0] = 1
    lab[1, 1, 1] = 2
    lab[2, 2, 2] = 4
    return SparseAnnotation(lab, 4, **marks)


# ------------------------------------------------------------------ validation
def test_validate_accepts_good_marks_and_targets():
    a = _ann(classes=(1, 2))
    a.validate(SHAPE, require_background=True)
    t = a.to_targets()
    assert t[0, 0, 0] == 1 and t[1, 1, 1] == 2 and t[2, 2, 2] == 0 and t[3, 3, 3] == IGNORE_INDEX


def test_validate_grid_mismatch():
    with pytest.raises(AnnotationError, match=r"does not match the image grid \(4, 6, 8\)"):
        _ann().validate((4, 6, 8))


def test_validate_no_foreground():
    lab = np.zeros(SHAPE, np.int16)
    lab[0, 0, 0] = 4
    with pytest.raises(AnnotationError, match="no foreground marks"):
        SparseAnnotation(lab, 4, classes=(1,)).validate()


def test_validate_unknown_values():
    a = _ann(classes=(1, 2))
    a.labels[3, 3, 3] = 7
    with pytest.raises(AnnotationError, match=r"unknown label values \[7\]"):
        a.validate()


def test_validate_class_without_marks():
    with pytest.raises(AnnotationError, match=r"class\(es\) \[3\] have no marks"):
        _ann(classes=(1, 2, 3)).validate()


def test_validate_missing_background_when_required():
    lab = np.zeros(SHAPE, np.int16)
    lab[0, 0, 0] = 1
    with pytest.raises(AnnotationError, match="no background marks"):
        SparseAnnotation(lab, 4).validate(require_background=True)


def test_constructor_rejects_bad_background_and_values():
    with pytest.raises(AnnotationError, match="positive integer"):
        SparseAnnotation(np.zeros(SHAPE, np.int16), 0)
    with pytest.raises(AnnotationError, match="also declared as a class"):
        SparseAnnotation(np.zeros(SHAPE, np.int16), 2, classes=(1, 2))
    with pytest.raises(AnnotationError, match=">= 0"):
        SparseAnnotation(-np.ones(SHAPE, np.int16), 4)


# ------------------------------------------------------------------ from_layers
def test_from_layers_merges_paint_and_points():
    paint = np.zeros(SHAPE, np.uint8)
    paint[1, 2, 2:5] = 1  # a scribble of class 1
    paint[3, 0, :] = 3  # a background scribble
    pts = np.array([[0.2, 4.6, 5.4], [2.0, 1.0, 1.0], [1.0, 2.0, 3.0], [9.0, 0, 0], [0, -0.7, 0]])
    # points 4 and 5 fall outside the grid (z = 9, y rounds to -1)
    with pytest.warns(UserWarning, match="2 point"):
        a = from_layers(paint, pts, [2, -1, 0, 1, 1], background_label=3, classes=[1, 2], class_names={1: "RV"})
    assert a.labels[0, 5, 5] == 2  # rounded to the nearest voxel
    assert a.labels[2, 1, 1] == 3  # negative point -> background
    assert a.labels[1, 2, 3] == 3  # SAM-style 0 label -> background, and the click overrides paint
    assert a.labels[1, 2, 2] == 1 and a.labels[1, 2, 4] == 1
    assert a.classes == (1, 2) and a.class_names == {1: "RV"}
    assert paint[1, 2, 3] == 1, "the layer's data must not be modified"
    a.validate(SHAPE, require_background=True)


def test_from_layers_points_only_and_errors():
    a = from_layers(None, np.array([[1, 1, 1]]), None, background_label=4, classes=[2], shape=SHAPE)
    assert a.counts() == {2: 1}
    with pytest.raises(AnnotationError, match="shape"):
        from_layers(None, None, background_label=4)
    with pytest.raises(AnnotationError, match=r"unknown label values \[5\]"):
        from_layers(np.full(SHAPE, 5, np.uint8), background_label=4, classes=[1])
    with pytest.raises(AnnotationError, match="3 points but 2 point labels"):
        from_layers(np.zeros(SHAPE, np.uint8), np.zeros((3, 3)), [1, 2], background_label=4, classes=[1, 2])
    with pytest.raises(AnnotationError, match="point_labels are needed"):
        from_layers(np.zeros(SHAPE, np.uint8), np.zeros((1, 3)), background_label=4, classes=[1, 2])
    with pytest.raises(AnnotationError, match="does not match the image grid"):
        from_layers(np.zeros((2, 2, 2), np.uint8), background_label=4, shape=SHAPE)
    with pytest.raises(AnnotationError, match="integer"):
        from_layers(np.zeros(SHAPE, np.float32), background_label=4)


def test_from_layers_4d_points_use_last_axes():
    pts = np.array([[0, 1, 2, 3]])  # (t, z, y, x) from a 4D viewer
    a = from_layers(np.zeros(SHAPE, np.uint8), pts, [1], background_label=4)
    assert a.labels[1, 2, 3] == 1


# ------------------------------------------------------------------ label_slice / combine
def test_label_slice_writes_whole_slice_along_any_axis():
    a = _ann(classes=(1, 2))
    dense = np.zeros((4, 6), np.uint8)  # a slice along axis 2 has shape (4, 6)
    dense[1:3, 2:4] = 2
    b = label_slice(a, dense, axis=2, index=5)
    assert np.all(b.labels[:, :, 5] == np.where(dense == 0, 4, 2))
    assert b.labels[0, 0, 0] == 1 and a.labels[1, 2, 5] == 0, "other marks kept, input untouched"
    assert b.marked_fraction() > a.marked_fraction()
    b.validate(SHAPE)


def test_label_slice_errors():
    a = _ann(classes=(1, 2))
    with pytest.raises(AnnotationError, match="do not fit slice shape"):
        label_slice(a, np.zeros((6, 7)), axis=1, index=0)
    with pytest.raises(AnnotationError, match="outside 0..3"):
        label_slice(a, np.zeros((6, 7)), axis=0, index=4)
    with pytest.raises(AnnotationError, match="not declared"):
        label_slice(a, np.full((6, 7), 3), axis=0, index=0)
    with pytest.raises(AnnotationError, match="background label"):
        label_slice(a, np.full((6, 7), 4), axis=0, index=0)


def test_combine_overrides_and_checks():
    a = _ann(classes=(1, 2))
    lab = np.zeros(SHAPE, np.int16)
    lab[0, 0, 0] = 4  # a correction: that voxel was background after all
    lab[3, 3, 3] = 3
    c = combine(a, SparseAnnotation(lab, 4))
    assert c.labels[0, 0, 0] == 4 and c.labels[3, 3, 3] == 3 and c.classes == (1, 2, 3)
    with pytest.raises(AnnotationError, match="background labels differ"):
        combine(a, SparseAnnotation(lab.clip(0, 3), 5))


def test_annotations_import_no_gui_or_torch():
    """The headless core: building annotations must not pull in Qt, napari or torch."""
    import subprocess
    import sys

    code = (
        "import sys, napari_sparseseg.annotations; "
        "print(sorted(m for m in ('napari', 'qtpy', 'PyQt5', 'torch', 'monai') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
