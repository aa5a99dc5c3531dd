"""The real dock widget in a real napari viewer (xvfb): draw, train, stream, correct, export, reopen.

Run: ``xvfb-run -a .venv/bin/pytest tests/test_widget.py``.  The training budget is a few seconds, so
the model is poor; these tests check the plumbing and the data (values, grids, undo, autosave),
not accuracy (that is ``bench/``'s job).
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui

napari = pytest.importorskip("napari")
from qtpy.QtCore import Qt  # noqa: E402

from napari_sparseseg.annotations import simulate_scribbles  # noqa: E402
from napari_sparseseg.widget.main import SparseSegWidget  # noqa: E402

FAST = dict(first_preview_seconds=0.5, preview_every_seconds=1.0, warm_budget_seconds=2.0, step_event_every_seconds=0.2)


@pytest.fixture
def autosave_dir(tmp_path, monkeypatch):
    d = tmp_path / "autosave"
    monkeypatch.setenv("SPARSESEG_AUTOSAVE_DIR", str(d))
    monkeypatch.setenv("SPARSESEG_CACHE", str(tmp_path / "embeddings"))
    return d


@pytest.fixture
def opened(request):
    """Widgets made by a test; closed (threads stopped, autosave flushed) at teardown."""
    made: list = []
    yield made
    for w in made:
        w.close_session()


def _open(make_napari_viewer, qtbot, made=None):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-sparseseg", "hippocampus")
    image = next(ly for ly in viewer.layers if isinstance(ly, napari.layers.Image))
    gt = next(ly for ly in viewer.layers if isinstance(ly, napari.layers.Labels))
    gt.visible = False
    # through the plugin manifest, as Plugins > SparseSeg > Sparse segmentation does
    _dock, w = viewer.window.add_plugin_dock_widget("napari-sparseseg", "Sparse segmentation")
    assert isinstance(w, SparseSegWidget)
    w.image_combo.setCurrentText(image.name)
    qtbot.mouseClick(w.use_btn, Qt.LeftButton)
    assert w.image_layer is image and w.ann_layer is not None
    if made is not None:
        made.append(w)
    return viewer, w, image, gt


def _paint_scribbles(w, gt, slices=(10, 17, 24)) -> np.ndarray:
    """Paint simulated scribbles (both classes + background) with napari's own brush, voxel by voxel."""
    bg = w.classes.background
    sim = simulate_scribbles(np.asarray(gt.data), background_label=bg, seed=0).labels
    layer = w.ann_layer
    layer.brush_size = 1
    for z in slices:
        for y, x in zip(*np.nonzero(sim[z])):
            layer.selected_label = int(sim[z, y, x])
            layer.paint((z, y, x), int(sim[z, y, x]), refresh=False)
    layer.refresh()
    return sim


def _wait_done(qtbot, w, timeout=120_000):
    qtbot.waitUntil(lambda: not w.training.runner.running, timeout=timeout)
    qtbot.wait(100)


def test_draw_train_stream_correct_export_reopen(make_napari_viewer, qtbot, opened, tmp_path, autosave_dir) -> None:
    import nibabel as nib

    viewer, w, image, gt = _open(make_napari_viewer, qtbot, opened)
    # the marks layer is on the image grid
    np.testing.assert_allclose(w.ann_layer.data_to_world([3, 4, 5]), image.data_to_world([3, 4, 5]))
    sim = _paint_scribbles(w, gt)
    marks = np.asarray(w.ann_layer.data)
    assert {1, 2, w.classes.background} <= set(np.unique(marks).tolist())
    # autosave: debounced, atomic, on every change
    qtbot.waitUntil(lambda: w.files.n_autosaves >= 1, timeout=10_000)
    np.testing.assert_array_equal(w.files.autosave.load().labels, marks)

    # train in the background; predictions stream into the layers
    w.train_overrides = dict(FAST)
    w.training.budget.setValue(3)
    w.training.pseudo_method.setCurrentText("random-walker")
    bar = []  # the progress bar's (format, value) while it runs: the pseudo-label stage moves it too
    w.training.progress.valueChanged.connect(lambda v: bar.append((w.training.progress.format(), v)))
    qtbot.mouseClick(w.training.start_btn, Qt.LeftButton)
    assert w.training.runner.running and not w.training.start_btn.isEnabled()
    qtbot.waitUntil(lambda: w.training.n_predictions >= 1, timeout=120_000)
    stage = [v for f, v in bar if f.startswith("pseudo-labels")]
    assert stage and stage == sorted(stage) and stage[-1] == 1000 and min(stage) < 1000, bar[:20]
    pred_layer = w.pred_layer
    assert pred_layer is not None and pred_layer.data.shape == image.data.shape
    assert w.unc_layer is not None and 0.0 <= float(w.unc_layer.data.min()) <= float(w.unc_layer.data.max()) <= 1.0
    _wait_done(qtbot, w)
    assert w.training.eta.text().startswith("done"), w.training.eta.text()
    assert w.training.plot.series, "the loss plot received no losses"

    # correct: repaint a block of the prediction on an unannotated slice, accept -> marks, warm start
    z = 14
    pred_layer.brush_size = 1
    block = [(z, y, x) for y in range(20, 24) for x in range(15, 19)]
    model = np.array(pred_layer.data, copy=True)
    edited = [c for c in block if model[c] != 2]  # painting a voxel its own value is not an edit
    assert edited, "the test block is already class 2 everywhere"
    for c in block:
        pred_layer.paint(c, 2, refresh=False)
    pred_layer.refresh()
    before = np.array(w.ann_layer.data, copy=True)
    qtbot.mouseClick(w.training.accept_btn, Qt.LeftButton)
    after = np.asarray(w.ann_layer.data)
    changed = np.argwhere(after != before)
    assert {tuple(c) for c in changed} == set(edited)
    assert all(after[c] == 2 for c in edited)
    assert z in w.training.reviewed
    assert w.training.runner.running  # accepting continued training from the current weights
    qtbot.mouseClick(w.training.stop_btn, Qt.LeftButton)
    _wait_done(qtbot, w, timeout=30_000)
    assert w.training.eta.text() == "stopped"
    # undo the accept (our button): the marks go back, the edits are pending again
    qtbot.mouseClick(w.training.undo_btn, Qt.LeftButton)
    np.testing.assert_array_equal(np.asarray(w.ann_layer.data), before)
    qtbot.mouseClick(w.training.accept_btn, Qt.LeftButton)  # accept again (continues training)
    assert all(w.ann_layer.data[c] == 2 for c in edited)
    qtbot.mouseClick(w.training.stop_btn, Qt.LeftButton)
    _wait_done(qtbot, w, timeout=30_000)

    # next slice to review: the viewer moves to the strategy's first slice
    w.training.strategy.setCurrentText("entropy")
    expected = w.training.suggest()
    qtbot.mouseClick(w.training.next_btn, Qt.LeftButton)
    assert expected is not None and w.current_z() == expected and expected not in w.training.reviewed

    # export through the plugin writer; reopen: same values, same affine as the source file
    out = tmp_path / "prediction.nii.gz"
    written = w.files.export_prediction(out)
    assert written and out.exists()
    src = nib.load(image.metadata["sparseseg_source"])
    exp = nib.load(out)
    np.testing.assert_allclose(exp.affine, src.affine, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(exp.dataobj).transpose(2, 1, 0), np.asarray(pred_layer.data))
    assert np.issubdtype(exp.get_data_dtype(), np.integer)

    # save the session, reopen it in a fresh viewer: marks, classes, prediction, model
    folder = w.files.save_session(tmp_path / "case")
    assert folder is not None and (folder / "model.pt").exists() or any(folder.glob("model.pt*"))
    saved_marks = np.array(w.ann_layer.data, copy=True)
    saved_pred = np.array(pred_layer.data, copy=True)
    saved_reviewed, saved_classes = set(w.training.reviewed), w.classes
    w.close_session()

    viewer2, w2, image2, _ = _open(make_napari_viewer, qtbot, opened)
    assert w2.files.banner.isVisible() or not w2.files.banner.isHidden()  # autosave found: restore offered
    w2.files.open_session(folder)
    np.testing.assert_array_equal(np.asarray(w2.ann_layer.data), saved_marks)
    np.testing.assert_array_equal(np.asarray(w2.pred_layer.data), saved_pred)
    assert w2.classes == saved_classes and w2.training.reviewed == saved_reviewed == {14}
    assert w2.training.trainer is not None  # the checkpoint was loaded: "Continue" fine-tunes it
    assert w2.training.start_btn.text() == "Continue"
    w2.close_session()
    del sim


def test_crash_restore_from_autosave(make_napari_viewer, qtbot, opened, autosave_dir) -> None:
    viewer, w, image, gt = _open(make_napari_viewer, qtbot, opened)
    _paint_scribbles(w, gt, slices=(12,))
    marks = np.array(w.ann_layer.data, copy=True)
    qtbot.waitUntil(lambda: w.files.n_autosaves >= 1, timeout=10_000)
    w.files.flush_autosave()  # no clean exit recorded: as after a crash
    viewer2, w2, _, _ = _open(make_napari_viewer, qtbot, opened)
    assert not w2.files.banner.isHidden()
    assert "did not close normally" in w2.files.banner_text.text()
    assert not np.asarray(w2.ann_layer.data).any()
    w2.files.restore_autosave()
    np.testing.assert_array_equal(np.asarray(w2.ann_layer.data), marks)
    w2.ann_layer.undo()  # the restore is one undo step
    assert not np.asarray(w2.ann_layer.data).any()


def test_engine_errors_notify_and_buttons_come_back(make_napari_viewer, qtbot, opened, autosave_dir, monkeypatch) -> None:
    viewer, w, image, gt = _open(make_napari_viewer, qtbot, opened)
    # no marks: a clear one-line error, the Start button stays usable
    qtbot.mouseClick(w.training.start_btn, Qt.LeftButton)
    assert "no structure marks" in w.training._last_error
    assert w.training.start_btn.isEnabled() and not w.training.runner.running

    # the worker dies mid-training: an error message, marks intact, buttons back
    _paint_scribbles(w, gt, slices=(17,))
    marks = np.array(w.ann_layer.data, copy=True)
    from napari_sparseseg.training import Trainer

    def broken_run(self):
        yield from ()
        raise MemoryError("simulated out-of-memory in the worker")

    monkeypatch.setattr(Trainer, "run", broken_run)
    w.training.pseudo_method.setCurrentText("none")
    qtbot.mouseClick(w.training.start_btn, Qt.LeftButton)
    _wait_done(qtbot, w)
    assert "MemoryError" in w.training._last_error
    assert w.training.start_btn.isEnabled() and not w.training.stop_btn.isEnabled()
    np.testing.assert_array_equal(np.asarray(w.ann_layer.data), marks)


def test_label_this_slice_and_undo(make_napari_viewer, qtbot, opened, autosave_dir) -> None:
    viewer, w, image, gt = _open(make_napari_viewer, qtbot, opened)
    from napari_sparseseg.widget.layers import go_to_slice

    go_to_slice(viewer, image, 16)
    assert w.current_z() == 16
    w.class_table.select_label(1)
    yy, xx = np.nonzero(np.asarray(gt.data[16]) == 1)
    w.write_marks((np.full(yy.shape, 16), yy, xx), 1)
    qtbot.mouseClick(w.slice_btn, Qt.LeftButton)
    sl = np.asarray(w.ann_layer.data[16])
    assert (sl != 0).all() and set(np.unique(sl).tolist()) == {1, w.classes.background}
    assert not np.asarray(w.ann_layer.data[15]).any()
    w.ann_layer.undo()
    assert set(np.unique(w.ann_layer.data[16]).tolist()) == {0, 1}


def test_interactive_sam_click_shows_mask_and_accept(make_napari_viewer, qtbot, opened, autosave_dir) -> None:
    """Real bundled LiteMedSAM: a positive click shows a mask at once; Accept writes it as marks."""
    viewer, w, image, gt = _open(make_napari_viewer, qtbot, opened)
    from napari_sparseseg.widget.layers import go_to_slice

    z = 17
    go_to_slice(viewer, image, z)
    w.sam.enable(wait=True)
    assert w.sam.cache is not None and w.prompts_layer is not None
    qtbot.waitUntil(lambda: w.sam.cache.in_memory(z) and w.sam.cache.in_memory(z + 1), timeout=60_000)  # prefetch
    yy, xx = np.nonzero(np.asarray(gt.data[z]) > 0)
    w.class_table.select_label(1)
    shown = w.sam.n_shown
    w.prompts_layer.add([[z, float(np.median(yy)), float(np.median(xx))]])
    qtbot.waitUntil(lambda: w.sam.n_shown > shown, timeout=30_000)  # decoded on the SAM thread
    assert w.sam.preview_mask is not None and w.sam.preview_z == z
    assert w.sam.last_latency_ms is not None
    shown = w.sam.n_shown
    # a box around the structure (LiteMedSAM is a box-prompted model)
    y0, y1, x0, x1 = yy.min() - 2, yy.max() + 2, xx.min() - 2, xx.max() + 2
    w.boxes_layer.add_rectangles(np.array([[z, y0, x0], [z, y0, x1], [z, y1, x1], [z, y1, x0]], float))
    qtbot.waitUntil(lambda: w.sam.n_shown > shown, timeout=30_000)
    n = int(w.sam.preview_mask.sum())
    assert n > 20, n
    assert n > 0 and np.asarray(w.preview_layer.data[z]).astype(bool).sum() == n
    qtbot.mouseClick(w.sam.accept_btn, Qt.LeftButton)
    assert int((np.asarray(w.ann_layer.data[z]) == 1).sum()) == n
    assert len(w.prompts_layer.data) == 0 and not np.asarray(w.preview_layer.data).any()


def test_pause_resume_stop(make_napari_viewer, qtbot, opened, autosave_dir) -> None:
    """Pause holds the step count, Resume continues, Stop ends the run within seconds; buttons follow."""
    viewer, w, image, gt = _open(make_napari_viewer, qtbot, opened)
    _paint_scribbles(w, gt, slices=(14, 20))
    w.train_overrides = dict(FAST)
    w.training.budget.setValue(600)
    w.training.pseudo_method.setCurrentText("none")
    qtbot.mouseClick(w.training.start_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.training.last_event is not None and w.training.last_event.step >= 2, timeout=120_000)
    qtbot.mouseClick(w.training.pause_btn, Qt.LeftButton)
    assert w.training.pause_btn.text() == "Resume"
    qtbot.wait(1500)  # a step in flight may still finish
    held = w.training.last_event.step
    qtbot.wait(1500)
    assert w.training.last_event.step == held
    qtbot.mouseClick(w.training.pause_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.training.last_event.step > held, timeout=60_000)
    qtbot.mouseClick(w.training.stop_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: not w.training.runner.running, timeout=30_000)
    qtbot.wait(100)
    assert w.training.eta.text() == "stopped"
    assert w.training.start_btn.isEnabled() and w.training.start_btn.text() == "Continue"
    assert not w.training.pause_btn.isEnabled() and not w.training.stop_btn.isEnabled()
