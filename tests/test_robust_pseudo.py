"""Pseudo-labelling never spins: constant images and slices, non-finite input, a time limit."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sparseseg.annotations.sparse import SparseAnnotation
from napari_sparseseg.errors import AnnotationError, PseudoLabelError
from napari_sparseseg.pseudo import make_pseudo_labels
from napari_sparseseg.pseudo.normalize import percentile_unit_range
from napari_sparseseg.pseudo.walker import random_walker_pseudo, walker_probabilities


def _two_class_marks(shape: tuple[int, int, int], z: int = 1) -> np.ndarray:
    lab = np.zeros(shape, np.int16)
    lab[z, 4:6, 4:20] = 1  # class 1
    lab[z, 18:20, 4:20] = 2  # background (label 2)
    return lab


def test_constant_image_gives_finite_pseudo_labels_with_both_labels() -> None:
    # before: NaN edge weights (skimage divides beta by the zero std), a CG solve of 10*n iterations,
    # NaN confidences and the background label lost
    img = np.full((3, 24, 24), 7.0, np.float32)
    pl = random_walker_pseudo(img, SparseAnnotation(_two_class_marks(img.shape), 2), unmarked="nearest")
    assert np.all(np.isfinite(pl.confidence)) and np.all(np.isfinite(pl.probabilities))
    assert set(np.unique(pl.labels[1]).tolist()) == {0, 1}
    # uniform weights: the half nearer the class-1 scribble is class 1
    assert pl.labels[1, 6, 12] == 1 and pl.labels[1, 17, 12] == 0


def test_constant_slice_in_a_textured_volume() -> None:
    rng = np.random.default_rng(0)
    img = rng.normal(size=(3, 24, 24)).astype(np.float32)
    img[1] = 3.0  # the marked slice carries two labels and no contrast
    p = walker_probabilities(percentile_unit_range(img)[1], np.where(_two_class_marks(img.shape)[1] == 2, 1,
                             np.where(_two_class_marks(img.shape)[1] == 1, 2, 0)), 2)
    assert np.all(np.isfinite(p)) and np.allclose(p.sum(0), 1.0, atol=1e-3)


def test_normalisation_keeps_a_small_bright_structure() -> None:
    img = np.zeros((10, 20, 20), np.float32)
    img[5, 10, 10] = 100.0
    img[5, 10, 11] = 50.0  # below 0.5 % of the voxels: the 99.5th percentile is 0
    out = percentile_unit_range(img)
    assert out[5, 10, 10] == pytest.approx(1.0) and out[5, 10, 11] == pytest.approx(0.5)
    assert not percentile_unit_range(np.full((2, 3, 3), 9.0)).any()


def test_time_limit_stops_pseudo_labels_with_a_clear_error() -> None:
    img = np.random.default_rng(0).normal(size=(6, 24, 24)).astype(np.float32)
    lab = np.zeros(img.shape, np.int16)
    for z in range(6):
        lab[z] = _two_class_marks(img.shape, z)[z]
    with pytest.raises(PseudoLabelError, match="longer than"):
        make_pseudo_labels(img, SparseAnnotation(lab, 2), "random-walker-nearest", time_limit=1e-9)


def test_threshold_outside_unit_interval_is_refused() -> None:
    img = np.zeros((3, 24, 24), np.float32)
    with pytest.raises(AnnotationError, match=r"\[0, 1\]"):
        make_pseudo_labels(img, SparseAnnotation(_two_class_marks(img.shape), 2), threshold=1.5)
