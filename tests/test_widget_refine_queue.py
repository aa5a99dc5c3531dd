"""Pushed corrections are refined off the GUI thread, one walk at a time, the newest marks last.

Why: ``refine_around_marks`` (scikit-image's random walker) took 1.5-3.5 s on the GUI thread for an
ACDC volume; :class:`RefineQueue` moves it to a worker.  These tests check what could go wrong there:
results adopted out of order, a superseded request refined anyway, a cancelled walk adopted, and
that a correction pushed while training runs reaches the trainer at once and refined afterwards.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui

napari = pytest.importorskip("napari")

from tests.test_widget import FAST, _open, _paint_scribbles, _wait_done, autosave_dir, opened  # noqa: E402,F401
from tests.test_widget_refine import contradict_class1  # noqa: E402


@pytest.fixture(scope="module")
def case(sample_dir):
    """Hippocampus sample: image, scribbles, walker pseudo-labels and three successive corrections."""
    from napari_sparseseg.annotations import combine, simulate_scribbles
    from napari_sparseseg.benchmarking.active_sim import correct_slice
    from napari_sparseseg.io import read_labels, read_volume
    from napari_sparseseg.pseudo import make_pseudo_labels

    root = sample_dir / "hippocampus"
    vol = read_volume(root / "imagesTr" / "hippocampus_001.nii.gz")
    gt = np.asarray(read_labels(root / "labelsTr" / "hippocampus_001.nii.gz", like=vol).array).astype(np.int16)
    ann = simulate_scribbles(gt, background_label=3, seed=0)
    pseudo = make_pseudo_labels(vol, ann, method="random-walker")
    wrong = (pseudo.labels != gt).sum(axis=(1, 2))
    anns, cur = [], ann
    for z in np.argsort(-wrong)[:3]:
        corr = correct_slice(pseudo.labels, gt, int(z), cur, seed=int(z))
        assert corr is not None
        cur = combine(cur, corr)
        anns.append(cur)
    return np.asarray(vol.array), tuple(vol.spacing), pseudo, ann, anns


def _queue(case, in_process):
    from napari_sparseseg.widget.refine_queue import RefineQueue

    image, spacing, pseudo, ann, _ = case
    state = {"pseudo": pseudo, "ann": ann, "adopted": []}

    def adopt(refined, a, newer):
        state["pseudo"], state["ann"] = refined, a
        state["adopted"].append((a, newer))

    q = RefineQueue(None, snapshot=lambda: (image, spacing, state["pseudo"], state["ann"]), adopt=adopt,
                    can_run=lambda: True, in_process=in_process)
    return q, state


def test_burst_refines_first_then_newest_only(qtbot, case) -> None:
    from napari_sparseseg.pseudo.refine import refine_around_marks

    image, spacing, pseudo, ann, (a1, a2, a3) = case
    q, state = _queue(case, in_process=False)
    for a in (a1, a2, a3):
        q.request(a)
    assert q.busy and q.waiting is a3  # a2 was superseded: a3's marks include it
    qtbot.waitUntil(q.idle, timeout=60_000)
    assert [(a, n) for a, n in state["adopted"]] == [(a1, a3), (a3, None)]
    r1 = refine_around_marks(image, pseudo, ann, a1, spacing=spacing)
    r3 = refine_around_marks(image, r1, a1, a3, spacing=spacing)
    assert np.array_equal(state["pseudo"].labels, r3.labels)
    assert state["ann"] is a3
    q.shutdown()


def test_cancel_drops_the_walk_in_flight_and_hold_defers(qtbot, case) -> None:
    image, spacing, pseudo, ann, (a1, _, a3) = case
    q, state = _queue(case, in_process=True)
    q.request(a1)
    assert q.busy
    q.cancel()  # a reset: the spawned walk is stopped and never adopted
    qtbot.waitUntil(lambda: not q.busy, timeout=60_000)
    assert state["adopted"] == [] and state["pseudo"] is pseudo and state["ann"] is ann
    q.hold()  # the training job refines itself: requests wait
    q.request(a3)
    assert not q.busy and q.waiting is a3
    q.release()
    qtbot.waitUntil(q.idle, timeout=60_000)
    assert [a for a, _ in state["adopted"]] == [a3]
    changed = (state["pseudo"].labels != pseudo.labels) & ~a3.marked
    assert changed.any(), "the walk changed nothing beyond the marks"
    q.shutdown()


def test_push_while_training_feeds_marks_now_and_refined_later(make_napari_viewer, qtbot, opened, autosave_dir) -> None:
    viewer, w, image, gt = _open(make_napari_viewer, qtbot, opened)
    _paint_scribbles(w, gt)
    w.train_overrides = dict(FAST)
    w.training.budget.setValue(60)
    w.training.pseudo_method.setCurrentText("random-walker")
    tp = w.training
    tp.start()
    qtbot.waitUntil(lambda: tp.n_predictions > 0, timeout=120_000)
    before = np.array(tp.pseudo.labels, copy=True)
    idx, scribbled = contradict_class1(w, before)
    got: list = []
    real = tp.trainer.update_annotation
    tp.trainer.update_annotation = lambda ann, pseudo=None: (got.append((ann, pseudo)), real(ann, pseudo))
    tp._push_marks()
    # at once, on the GUI thread: the marks mixed into the old pseudo-labels; the walk is in flight
    assert len(got) == 1 and tp.refiner.busy
    ann_now, mixed = got[0]
    assert ann_now.labels[idx].tolist() == [w.classes.background] * len(idx[0])
    assert np.array_equal(mixed.labels[~ann_now.marked], before[~ann_now.marked])
    qtbot.waitUntil(lambda: tp.refiner.n_done == 1, timeout=60_000)
    assert len(got) == 2 and got[1][0] is ann_now and tp._pseudo_ann is ann_now
    assert np.array_equal(got[1][1].labels, tp.pseudo.labels)
    assert ((tp.pseudo.labels != before) & ~scribbled).any(), "only the scribbled voxels changed"
    tp.stop()
    _wait_done(qtbot, w)
