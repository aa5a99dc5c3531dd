"""Regenerate ``docs/widget.png``: the real widget after training on the bundled hippocampus sample.

    flock /tmp/sparseseg_heavy.lock nice -n 5 xvfb-run -a -s "-screen 0 1600x1000x24" \
        .venv/bin/python docs/make_widget_screenshot.py

It does what a user does (Plugins > SparseSeg > Sparse segmentation, Use image, paint scribbles of
both structures and background on a few slices, Start), with the scribbles drawn by the package's
simulated annotator instead of a hand.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("SPARSESEG_AUTOSAVE_DIR", tempfile.mkdtemp(prefix="sparseseg-shot-"))
os.environ.setdefault("SPARSESEG_CONFIG_HOME", tempfile.mkdtemp(prefix="sparseseg-shot-config-"))  # no remembered settings
from napari_sparseseg.widget._llvm import isolate_triton  # noqa: E402

isolate_triton()
import napari  # noqa: E402
from qtpy.QtWidgets import QApplication  # noqa: E402

from napari_sparseseg.annotations import simulate_scribbles  # noqa: E402
from napari_sparseseg.widget.layers import go_to_slice  # noqa: E402

OUT = Path(__file__).resolve().parent / "widget.png"


def pump(seconds: float) -> None:
    app = QApplication.instance()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.005)


def main(budget: float = 40.0) -> int:
    viewer = napari.Viewer()
    viewer.window._qt_window.resize(1500, 950)
    viewer.open_sample("napari-sparseseg", "hippocampus")
    image = next(ly for ly in viewer.layers if isinstance(ly, napari.layers.Image))
    gt = next(ly for ly in viewer.layers if isinstance(ly, napari.layers.Labels))
    _dock, w = viewer.window.add_plugin_dock_widget("napari-sparseseg", "Sparse segmentation")
    w.image_combo.setCurrentText(image.name)
    w.set_image(image)
    gt.visible = False
    w.class_table.table.classes[0].name = "anterior"
    w.class_table.table.classes[1].name = "posterior"
    w.class_table.set_table(w.class_table.table)
    sim = simulate_scribbles(np.asarray(gt.data), background_label=w.classes.background, seed=0).labels
    for z in (10, 16, 22, 28):
        idx = np.nonzero(sim[z])
        w.write_marks((np.full(idx[0].shape, z), *idx), sim[z][idx])
    w.training.budget.setValue(budget)
    w.training.start()
    t0 = time.perf_counter()
    while w.training.runner.running and time.perf_counter() - t0 < budget + 300:
        pump(0.1)
    pump(0.5)
    z = w.training.suggest()
    go_to_slice(viewer, image, 19 if z is None else z)
    viewer.camera.zoom = viewer.camera.zoom * 1.0
    viewer.layers.selection.active = w.pred_layer
    pump(1.0)
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()  # the PyQt5 deprecation toast would cover the canvas
    pump(0.5)
    viewer.screenshot(str(OUT), canvas_only=False, flash=False)
    print(f"wrote {OUT} ({w.training.eta.text()}; slice {w.current_z()})")
    w.close_session()
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(float(sys.argv[1]) if len(sys.argv) > 1 else 40.0))
