"""A correction re-solves the pseudo-labels of the region it contradicts, and nothing else."""

from __future__ import annotations

import numpy as np

from napari_sparseseg.annotations import SparseAnnotation
from napari_sparseseg.pseudo import PseudoLabels
from napari_sparseseg.pseudo.refine import new_marks, refine_around_marks

BG = 4


def _scene() -> tuple[np.ndarray, np.ndarray]:
    """Two bright discs on a dark background in 9 slices: class 1 left, class 2 right."""
    z, y, x = np.mgrid[:9, :48, :64]
    gt = np.zeros((9, 48, 64), np.int16)
    gt[(y - 24) ** 2 + (x - 18) ** 2 < 64] = 1
    gt[(y - 24) ** 2 + (x - 46) ** 2 < 64] = 2
    rng = np.random.default_rng(0)
    image = np.where(gt == 1, 200.0, np.where(gt == 2, 100.0, 10.0)) + rng.normal(0, 3, gt.shape)
    return image.astype(np.float32), gt


def _pseudo(labels: np.ndarray, conf: float = 0.95) -> PseudoLabels:
    probs = np.stack([(labels == c).astype(np.float32) for c in (0, 1, 2)])
    probs = probs * conf + (1 - conf) / 3
    return PseudoLabels(labels, np.full(labels.shape, conf, np.float32), probs, (1, 2))


def _ann(labels: np.ndarray) -> SparseAnnotation:
    return SparseAnnotation(labels.astype(np.int16), background_label=BG, classes=(1, 2))


def test_scribble_in_a_missed_region_takes_the_region_back() -> None:
    image, gt = _scene()
    wrong = gt.copy()
    wrong[4][gt[4] == 1] = 0  # the pseudo-labels missed class 1 on slice 4 ...
    wrong[3][gt[3] == 1] = 0  # ... and on slice 3
    old = _ann(np.zeros_like(gt))
    marks = np.zeros_like(gt)
    marks[4, 24, 15:21] = 1  # a short scribble inside the missed disc
    new = _ann(marks)
    out = refine_around_marks(image, _pseudo(wrong), old, new, slab=2)
    for z in (3, 4):
        disc = gt[z] == 1
        assert (out.labels[z][disc] == 1).mean() > 0.9, z  # the walk filled the disc on both slices
    # nothing else moved: class 2 and the slices outside the slab are as before
    assert np.array_equal(out.labels == 2, wrong == 2)
    assert np.array_equal(out.labels[:2], wrong[:2]) and np.array_equal(out.labels[7:], wrong[7:])
    # the marks are mixed in with confidence 1, the refined voxels carry the walker's confidence
    assert out.labels[4, 24, 16] == 1 and out.confidence[4, 24, 16] == 1.0
    assert out.info["refined_voxels"] > 0


def test_a_correction_never_erases_a_class_it_does_not_contradict() -> None:
    """The first version re-solved everything near the mark: a small structure's other class, all of
    it within the radius, lost its seeds and vanished from five slices."""
    image, gt = _scene()
    wrong = gt.copy()
    wrong[4][(gt[4] == 0) & (np.arange(64)[None, :] < 8)] = 1  # a false class-1 strip at the left edge
    marks = np.zeros_like(gt)
    marks[4, 24, 2:5] = BG  # "this is background"
    out = refine_around_marks(image, _pseudo(wrong), _ann(np.zeros_like(gt)), _ann(marks), radius=40)
    assert np.array_equal(out.labels == 2, gt == 2)  # class 2 lies within the radius and is untouched
    assert (out.labels[4, 21:28, :7] == 0).all()  # the strip went back to background around the scribble
    assert (out.labels[4][gt[4] == 1] == 1).all()  # the true class-1 disc stayed


def test_saying_not_here_keeps_the_rest_of_a_small_structure() -> None:
    """A "not class 1" scribble on the rim of a class-1 disc that lies wholly within ``radius``: the
    disc must survive (its voxels beyond ``fg_radius`` stay seeds), only the rim near the mark goes."""
    image, gt = _scene()
    wrong = gt.copy()
    rim = (gt == 0) & (np.abs(np.arange(64)[None, None, :] - 18) <= 11) & (np.abs(np.arange(48)[None, :, None] - 24) <= 2)
    wrong[rim] = 1  # the pseudo-labels bled class 1 sideways out of the disc
    marks = np.zeros_like(gt)
    marks[4, 24, 7:9] = BG  # "not class 1" at the left end of the bleed
    out = refine_around_marks(image, _pseudo(wrong), _ann(np.zeros_like(gt)), _ann(marks), radius=30)
    for z in range(2, 7):
        assert (out.labels[z][gt[z] == 1] == 1).mean() > 0.95, z  # the disc is still there on every slice
    assert out.labels[4, 24, 7] == 0 and out.labels[4, 24, 9] == 0


def test_marks_that_agree_with_the_pseudo_labels_change_nothing() -> None:
    image, gt = _scene()
    p = _pseudo(gt)
    marks = np.zeros_like(gt)
    marks[4, 24, 15:21] = 1
    new = _ann(marks)
    out = refine_around_marks(image, p, None, new)
    ref = p.with_marks(new)
    assert np.array_equal(out.labels, ref.labels) and np.array_equal(out.confidence, ref.confidence)
    assert not new_marks(new, new).any()
