"""Simulated annotators: marks land in the right structure, are thin, seeded, and cover every class."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_sparseseg.annotations.simulate import (
    choose_slices,
    simulate_correction,
    simulate_points,
    simulate_scribbles,
    simulate_slices,
)
from napari_sparseseg.errors import AnnotationError


def phantom(nz: int = 8, size: int = 64) -> np.ndarray:
    """A 'heart': ring (2) around a disc (3), a thick blob (1) beside it, slices 1..nz-2 occupied."""
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - 32, xx - 36)
    sl = np.zeros((size, size), np.uint8)
    sl[r < 14] = 2
    sl[r < 9] = 3
    sl[(np.hypot(yy - 32, xx - 12) < 9) & (r >= 15)] = 1
    vol = np.zeros((nz, size, size), np.uint8)
    vol[1 : nz - 1] = sl
    return vol


def _inside(ann, dense):
    lab = ann.labels
    for c in ann.classes:
        assert np.all(dense[lab == c] == c), f"class {c} marks outside class {c}"
    assert np.all(dense[lab == ann.background_label] == 0), "background marks on an object"


def test_scribbles_in_place_thin_and_valid():
    dense = phantom()
    ann = simulate_scribbles(dense, background_label=4, seed=0)
    assert ann.classes == (1, 2, 3) and ann.background_label == 4
    ann.validate(dense.shape, require_background=True)
    _inside(ann, dense)
    # every occupied slice gets every class and a background curve; empty slices get background too
    for z in range(1, 7):
        assert set(np.unique(ann.labels[z])) == {0, 1, 2, 3, 4}
    assert set(np.unique(ann.labels[0])) == {0, 4}
    # thin: a stroke, never a filled area
    for c in (1, 2, 3):
        assert (ann.labels == c).sum() < 0.35 * (dense == c).sum()
    marked = ann.labels > 0
    full3x3 = ndimage.binary_erosion(marked, structure=np.ones((1, 3, 3)))
    assert not full3x3.any()
    # well inside thick structures: median depth of the disc's marks >= 2 px
    z = 3
    dt = ndimage.distance_transform_edt(dense[z] == 3)
    assert np.median(dt[ann.labels[z] == 3]) >= 2


def test_scribbles_seeded_and_axis():
    dense = phantom()
    a = simulate_scribbles(dense, 4, seed=7)
    b = simulate_scribbles(dense, 4, seed=7)
    c = simulate_scribbles(dense, 4, seed=8)
    assert np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labels, c.labels)
    moved = simulate_scribbles(np.moveaxis(dense, 0, 2), 4, seed=7, axis=2)
    assert np.array_equal(np.moveaxis(moved.labels, 2, 0), a.labels)


def test_scribbles_tiny_class_still_marked_and_default_background():
    dense = phantom()
    dense[4, 60, 60] = 5  # a single voxel, below min_area
    ann = simulate_scribbles(dense, seed=0)
    assert ann.background_label == 6  # largest class + 1
    assert ann.labels[4, 60, 60] == 5
    ann.validate(dense.shape)


def test_simulators_reject_bad_input():
    with pytest.raises(AnnotationError, match="no foreground"):
        simulate_scribbles(np.zeros((3, 8, 8), np.uint8), 4)
    with pytest.raises(AnnotationError, match="also a class"):
        simulate_points(phantom(), 2, background_label=3)
    with pytest.raises(AnnotationError, match=">= 1"):
        simulate_points(phantom(), 0)
    with pytest.raises(AnnotationError, match="3D"):
        simulate_scribbles(np.ones((8, 8), np.uint8), 4)
    with pytest.raises(AnnotationError, match="does not match"):
        simulate_correction(np.zeros((2, 3, 3)), np.ones((2, 3, 4), np.uint8), 0)
    with pytest.raises(AnnotationError, match="whole numbers"):
        simulate_slices(phantom().astype(float) + 0.5, 1)


def test_points_counts_depth_and_negatives():
    dense = phantom()
    ann = simulate_points(dense, 3, background_label=4, seed=1)
    _inside(ann, dense)
    assert ann.counts() == {1: 3, 2: 3, 3: 3, 4: 3}
    for c in (1, 2, 3):
        dt = ndimage.distance_transform_edt(np.pad(dense == c, 1))[1:-1, 1:-1, 1:-1]
        assert np.all(dt[ann.labels == c] >= 0.5 * dt.max())
    dfg = ndimage.distance_transform_edt(dense == 0)
    d = dfg[ann.labels == 4]
    assert np.all((d >= 2) & (d <= 15))
    assert simulate_points(dense, 2, 4, seed=1, negatives=0).counts().get(4) is None
    assert not np.array_equal(simulate_points(dense, 3, 4, seed=2).labels, ann.labels)


def test_slices_spread_full_and_seeded():
    dense = np.zeros((40, 16, 16), np.uint8)
    dense[10:30, 4:12, 4:12] = 1
    dense[10:30, 6:8, 6:8] = 2
    idx = choose_slices(dense, 4, axis=0, seed=0)
    assert len(idx) == 4 and all(10 <= i < 30 for i in idx)
    assert all(b - a >= 2 for a, b in zip(idx, idx[1:]))  # bins of 5 slices, jitter <= 1.25
    ann = simulate_slices(dense, 4, axis=0, background_label=3, seed=0)
    assert ann.annotated_slices(0) == idx
    for i in idx:  # each chosen slice is labelled completely, background included
        assert np.array_equal(ann.labels[i], np.where(dense[i] == 0, 3, dense[i]))
    assert simulate_slices(dense, 4, 0, 3, seed=0).labels.tolist() == ann.labels.tolist()
    assert choose_slices(dense, 50, 0) == list(range(10, 30))
    side = simulate_slices(dense, 2, axis=2, background_label=3, seed=0)
    assert len(side.annotated_slices(2)) == 2 and side.annotated_slices(0) == list(range(40))
    ann.validate(dense.shape, require_background=True)


def test_slices_add_one_for_a_class_between_chosen_slices():
    dense = np.zeros((30, 8, 8), np.uint8)
    dense[0:30, 2:6, 2:6] = 1
    dense[3, 3, 3] = 2  # only on slice 3; one slice lands at 14.5 +- 7.5, never on 3
    ann = simulate_slices(dense, 1, 0, 3, seed=3)
    ann.validate(dense.shape)
    assert 3 in ann.annotated_slices(0) and len(ann.annotated_slices(0)) == 2


def test_correction_targets_largest_error_region():
    gt = phantom()
    pred = gt.copy()
    z = 4
    pred[z][gt[z] == 3] = 0  # the whole disc missed: large error, truth = class 3
    pred[z, 2:4, 2:4] = 1  # small leak into background
    pred[5, 2:4, 2:4] = 1  # other slice: must not be touched
    corr = simulate_correction(pred, gt, z, axis=0, background_label=4, seed=0)
    assert corr is not None
    assert set(corr.counts()) == {3}
    assert corr.annotated_slices(0) == [z]
    assert np.all(gt[corr.labels == 3] == 3) and np.all(pred[corr.labels == 3] != 3)
    # when the leak is the largest error, the correction is a background scribble
    pred2 = gt.copy()
    pred2[z, 40:60, 2:20] = 1
    corr2 = simulate_correction(pred2, gt, z, 0, 4, seed=0)
    assert set(corr2.counts()) == {4}
    assert np.all(gt[corr2.labels == 4] == 0)
    assert simulate_correction(gt, gt, z, 0, 4) is None
    with pytest.raises(AnnotationError, match="outside"):
        simulate_correction(pred, gt, 99, 0, 4)


def test_scribble_density_close_to_human_acdc(shared_data):
    """The simulated annotator marks about as much as the human ACDC annotators (within 0.5x-2x)."""
    import nibabel as nib

    ratios = []
    for case in ("patient001_frame01", "patient041_frame11"):
        human = np.asarray(nib.load(shared_data / "acdc" / "scribblesTr" / f"{case}.nii.gz").dataobj).T
        gt = np.asarray(nib.load(shared_data / "acdc" / "labelsTr" / f"{case}.nii.gz").dataobj).T.astype(np.int16)
        sim = simulate_scribbles(gt, 4, seed=0)
        _inside(sim, gt)
        ratios.append(sim.marked_fraction() / float((human > 0).mean()))
    assert all(0.5 < r < 2.0 for r in ratios), ratios
