"""The project panel in a real napari viewer (xvfb): open a study of three scans, mark two, train the
shared model, open the third pre-segmented, correct it, train again and see the model version move.

Run: ``xvfb-run -a .venv/bin/pytest tests/test_widget_project.py``.  Budgets are a few seconds, so the
model is poor; this checks the loop and the files, not accuracy (``bench/`` measures that).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gui

napari = pytest.importorskip("napari")
from qtpy.QtCore import Qt  # noqa: E402

from napari_sparseseg.annotations import simulate_slices  # noqa: E402
from napari_sparseseg.io import (  # noqa: E402
    Volume,
    read_labels,
    read_volume,
    write_labels_nifti,
    write_volume_nifti,
)
from napari_sparseseg.project import Project  # noqa: E402
from napari_sparseseg.widget.main import SparseSegWidget  # noqa: E402

FAST = dict(max_steps=6, threads=1, device="cpu", step_event_every_seconds=0.1)


@pytest.fixture
def study(tmp_path, sample_dir) -> tuple[Path, dict[str, np.ndarray]]:
    """A project of three real scans: the bundled hippocampus case and two crops of it."""
    img = read_volume(sample_dir / "hippocampus" / "imagesTr" / "hippocampus_001.nii.gz")
    gt = np.asarray(read_labels(sample_dir / "hippocampus" / "labelsTr" / "hippocampus_001.nii.gz").array)
    (tmp_path / "scans").mkdir()
    paths, dense = [], {}
    for i, (a, b) in enumerate([(0, 35), (2, 33), (4, 31)]):
        aff = img.affine.copy()
        aff[:3, 3] = aff[:3, :3] @ np.array([a, 0, 0]) + aff[:3, 3]
        vol = Volume(np.asarray(img.array)[a:b].copy(), aff, name=f"case{i}")
        p = tmp_path / "scans" / f"case{i}.nii.gz"
        write_volume_nifti(p, vol)
        write_labels_nifti(tmp_path / "scans" / f"case{i}_gt.nii.gz", gt[a:b], vol)
        paths.append(p)
        dense[f"case{i}"] = gt[a:b].copy()
    proj = Project.create(tmp_path / "study")
    proj.add_scans(paths)
    return tmp_path / "study", dense


@pytest.fixture
def widget(make_napari_viewer, tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSESEG_AUTOSAVE_DIR", str(tmp_path / "autosave"))
    monkeypatch.setenv("SPARSESEG_CACHE", str(tmp_path / "embeddings"))
    viewer = make_napari_viewer()
    _dock, w = viewer.window.add_plugin_dock_widget("napari-sparseseg", "Sparse segmentation")
    assert isinstance(w, SparseSegWidget)
    yield viewer, w
    w.close_session()


def _train(qtbot, panel) -> None:
    box = panel.trainer
    qtbot.mouseClick(box.train_btn, Qt.LeftButton)
    assert panel.training, box._last_error
    qtbot.waitUntil(lambda: not panel.training, timeout=300_000)
    assert box._last_error == "" and panel._last_error == "", box._last_error or panel._last_error


def test_project_loop(widget, study, qtbot, tmp_path) -> None:
    viewer, w = widget
    folder, dense = study
    panel = w.project
    panel.open_project(folder)
    assert panel.project is not None and panel.table.rowCount() == 3
    assert panel.model_label.text() == "model version 0"

    # mark two scans: three labelled slices each, written into the marks layer as one undoable step
    for sid in ("case0", "case1"):
        panel.open_scan(sid)
        assert panel.current == sid and w.image_layer is panel.scan_layer
        assert w.image_layer.data.shape == dense[sid].shape
        ann = simulate_slices(dense[sid], 3, background_label=w.classes.background, seed=0)
        w.write_marks(np.nonzero(ann.labels), ann.labels[ann.labels != 0])
        qtbot.waitUntil(lambda sid=sid: Project.open(folder).scan(sid).status == "marked", timeout=10_000)  # debounced save
    saved = Project.open(folder).load_marks("case1")
    np.testing.assert_array_equal(saved.labels != 0, simulate_slices(dense["case1"], 3, background_label=3, seed=0).labels != 0)

    # train the shared model in the background: progress, loss, then model version 1
    box = panel.trainer
    box.train_overrides = dict(FAST)
    box.budget.setValue(3)
    _train(qtbot, panel)
    assert box.n_events > 0 and box.last_loss is not None and np.isfinite(box.last_loss)
    assert panel.model_label.text() == "model version 1"
    assert Project.open(folder).current_model.scans == ["case0", "case1"]

    # open the third scan: pre-segmented by the model, no marks needed
    panel.open_scan("case2")
    qtbot.waitUntil(lambda: Project.open(folder).scan("case2").prediction_model_version == 1, timeout=60_000)
    assert w.training.tracker is not None and w.training.tracker.has_prediction
    pred = np.asarray(w.pred_layer.data)
    assert pred.shape == dense["case2"].shape and set(np.unique(pred).tolist()) <= {0, 1, 2}
    assert np.asarray(w.ann_layer.data).max() == 0  # no marks on it yet
    s2 = Project.open(folder).scan("case2")
    assert s2.status == "unmarked" and s2.foreground_uncertainty is not None
    assert panel.table.item(2, 3).text() == "v1"

    # correct it: repaint a block of one slice with the expert's labels, accept -> marks -> project
    z = dense["case2"].shape[0] // 2
    block = [(z, y, x) for y in range(15, 25) for x in range(10, 22)]
    layer = w.pred_layer
    layer.brush_size = 1
    for c in block:
        layer.paint(c, int(dense["case2"][c]), refresh=False)
    layer.refresh()
    edited = [c for c in block if pred[c] != dense["case2"][c]]
    qtbot.mouseClick(w.training.accept_btn, Qt.LeftButton)
    marks = np.asarray(w.ann_layer.data)
    if edited:
        assert all(marks[c] == (dense["case2"][c] or w.classes.background) for c in edited)
    # the correction alone may not mark every class: finish the slice like a user would
    ann = simulate_slices(dense["case2"], 3, background_label=w.classes.background, seed=2)
    keep = (ann.labels != 0) & (marks == 0)
    w.write_marks(np.nonzero(keep), ann.labels[keep])
    qtbot.waitUntil(lambda: Project.open(folder).scan("case2").status == "marked", timeout=10_000)

    # the per-scan loop on this scan fine-tunes the project's model (warm start), within its own budget
    w.train_overrides = dict(first_preview_seconds=0.5, preview_every_seconds=1.0, max_steps=3, threads=1)
    w.training.budget.setValue(2)
    w.training.pseudo_method.setCurrentText("random-walker")
    qtbot.mouseClick(w.training.start_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: not w.training.runner.running, timeout=120_000)
    qtbot.waitUntil(lambda: w.training.eta.text().startswith("done"), timeout=10_000)  # the last events drain
    assert w.training.trainer is not None and w.training.trainer.pretrained, w.training._last_error

    # train again: the new scan joins, the earlier ones are replayed, the version moves
    _train(qtbot, panel)
    assert panel.model_label.text() == "model version 2"
    proj = Project.open(folder)
    assert proj.model_version == 2 and proj.current_model.scans == ["case0", "case1", "case2"]
    qtbot.waitUntil(lambda: Project.open(folder).scan("case2").prediction_model_version == 2, timeout=60_000)

    # next scan: every scan is marked; the suggestion is one of them, and reviewed ones drop out
    panel.mark_reviewed()
    assert Project.open(folder).scan("case2").status == "reviewed"
    nxt = panel.next_scan()
    assert nxt in {"case0", "case1"} and panel.current == nxt
    # the study-wide refresh after training was not cancelled by opening a scan: every scan has v2
    qtbot.waitUntil(lambda: not panel.predicting, timeout=60_000)
    assert [s.prediction_model_version for s in Project.open(folder).scans] == [2, 2, 2]
    assert all(panel.table.item(r, 3).text() == "v2" for r in range(3))
    panel.grab().save(str(tmp_path / "project_panel.png"))

    # pause and stop a long run: the weights learnt so far still become a version
    box.train_overrides = dict(FAST, max_steps=None)
    box.budget.setValue(600)
    qtbot.mouseClick(box.train_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: box.last_event is not None and box.last_event.kind == "step"
                    and box.last_event.step > 0 and box.run is not None, timeout=120_000)
    qtbot.mouseClick(box.pause_btn, Qt.LeftButton)
    assert box.pause_btn.text() == "Resume" and box.run.trainer.paused
    qtbot.mouseClick(box.pause_btn, Qt.LeftButton)
    assert box.pause_btn.text() == "Pause" and not box.run.trainer.paused
    qtbot.mouseClick(box.stop_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: not panel.training, timeout=60_000)
    assert box.last_event.kind == "cancelled" and panel.model_label.text() == "model version 3"
    assert Project.open(folder).current_model.info["outcome"] == "cancelled"


def test_new_project_and_a_corrupt_one(widget, study, tmp_path) -> None:
    """'New project' from files; a corrupt project.json is a one-line notification, the panel stays usable."""
    _viewer, w = widget
    folder, _dense = study
    panel = w.project
    scans = sorted(str(p) for p in (folder.parent / "scans").glob("case?.nii.gz"))
    proj = panel.new_project(tmp_path / "fresh", scans)
    assert proj is not None and panel.table.rowCount() == 3 and panel.trainer.train_btn.isEnabled()
    assert [panel.table.item(r, 1).text() for r in range(3)] == ["unmarked"] * 3
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "project.json").write_text("{ not json")
    assert panel.open_project(tmp_path / "bad") is None
    assert "corrupt project file" in panel._last_error and "\n" not in panel._last_error
    assert panel.project is proj  # the open project is kept
    panel.open_scan("case1")
    assert panel.current == "case1" and w.image_layer is panel.scan_layer
