"""A correction re-solves the pseudo-labels around it in the widget, as the active-learning benchmark measures.

Why: ``PseudoLabels.with_marks`` fixes only the scribbled voxels; the benchmark (active_sim) calls
``refine_around_marks`` each round, so the widget must hand the trainer the same refined pseudo-labels.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui

napari = pytest.importorskip("napari")

from tests.test_widget import FAST, _open, _paint_scribbles, _wait_done, autosave_dir, opened  # noqa: E402,F401


def contradict_class1(w, before: np.ndarray) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """Paint a correction that contradicts the pseudo-labels ``before``: background on 6 class-1 voxels
    of an unmarked slice.  Returns the painted voxels' index and a mask of them."""
    marks = np.asarray(w.ann_layer.data)
    zs = [z for z in range(before.shape[0]) if (before[z] == 1).sum() > 20 and not marks[z].any()]
    assert zs, "no unmarked slice with class-1 pseudo-labels"
    z = zs[len(zs) // 2]
    ys, xs = np.nonzero(before[z] == 1)
    pick = np.arange(0, len(ys), max(1, len(ys) // 6))[:6]
    idx = (np.full(len(pick), z), ys[pick], xs[pick])
    w.ann_layer.data_setitem(idx, np.full(len(pick), w.classes.background))
    scribbled = np.zeros(before.shape, bool)
    scribbled[idx] = True
    return idx, scribbled


def test_correction_refines_pseudo_labels_beyond_the_scribble(make_napari_viewer, qtbot, opened, autosave_dir) -> None:
    viewer, w, image, gt = _open(make_napari_viewer, qtbot, opened)
    _paint_scribbles(w, gt)
    w.train_overrides = dict(FAST)
    w.training.budget.setValue(2)
    w.training.pseudo_method.setCurrentText("random-walker")
    w.training.start()
    _wait_done(qtbot, w)
    tp = w.training
    assert tp.pseudo is not None and tp.pseudo.probabilities is not None and tp._pseudo_ann is not None
    before = np.array(tp.pseudo.labels, copy=True)
    idx, scribbled = contradict_class1(w, before)
    got: list = []
    real = tp.trainer.update_annotation
    tp.trainer.update_annotation = lambda ann, pseudo=None: (got.append(pseudo), real(ann, pseudo))
    tp._push_marks()  # what Accept corrections does after writing the marks
    _wait_done(qtbot, w)
    after = tp.pseudo.labels
    changed = (after != before) & ~scribbled
    assert changed.sum() > 0, "only the scribbled voxels changed: the correction was only mixed in"
    assert got and got[0] is not None and np.array_equal(got[0].labels, after)
    assert tp._pseudo_ann is not None and tp._pseudo_ann.labels[idx].tolist() == [w.classes.background] * len(idx[0])
