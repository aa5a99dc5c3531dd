"""The dock widget computing on a real local server (xvfb): streamed predictions land in the same layers,
Accept corrections warm-starts the server's model, the choice is remembered, and a server that goes
away is one clear notification with the marks untouched."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui

napari = pytest.importorskip("napari")
pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from _server_process import TOKEN, start_server, stop_server  # noqa: E402
from qtpy.QtCore import Qt  # noqa: E402
from test_widget import FAST, _open, _paint_scribbles, _wait_done  # noqa: E402


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSESEG_AUTOSAVE_DIR", str(tmp_path / "autosave"))
    monkeypatch.setenv("SPARSESEG_CACHE", str(tmp_path / "embeddings"))
    monkeypatch.setenv("SPARSESEG_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("SPARSESEG_TOKEN", TOKEN)
    return tmp_path


@pytest.fixture
def opened():
    made: list = []
    yield made
    for w in made:
        w.close_session()


def test_widget_trains_on_a_local_server_and_receives_streamed_predictions(make_napari_viewer, qtbot, opened, env) -> None:
    from napari_sparseseg.server.remote_trainer import RemoteTrainer
    from napari_sparseseg.widget.compute_on import ComputeOnWidget, load_setting

    proc, url = start_server(env / "sessions")
    try:
        viewer, w, image, gt = _open(make_napari_viewer, qtbot, opened)
        _paint_scribbles(w, gt)
        panel = w.training
        panel.compute_on.set_server(url)
        assert load_setting() == {"where": "server", "url": url}
        assert ComputeOnWidget().server_url == url  # remembered for the next widget
        assert panel.compute_on.check()["device"] in ("cpu", "cuda", "mps")

        w.train_overrides = dict(FAST, threads=1)
        panel.budget.setValue(3)
        panel.pseudo_method.setCurrentText("random-walker")
        qtbot.mouseClick(panel.start_btn, Qt.LeftButton)
        assert panel.runner.running
        qtbot.waitUntil(lambda: panel.n_predictions >= 1, timeout=120_000)
        assert isinstance(panel.trainer, RemoteTrainer)  # computed on the server, not here
        assert w.pred_layer is not None and w.pred_layer.data.shape == image.data.shape
        assert set(np.unique(w.pred_layer.data)) <= {0, 1, 2} and (np.asarray(w.pred_layer.data) > 0).any()
        assert w.unc_layer is not None and 0.0 <= float(w.unc_layer.data.min()) <= float(w.unc_layer.data.max()) <= 1.0
        _wait_done(qtbot, w)
        assert panel.eta.text().startswith("done"), panel.eta.text()
        assert panel.plot.series, "no losses reached the loss plot"
        first_steps = panel.last_event.step

        # a correction: Accept -> new marks to the server, training continues there from the same weights
        pred = w.pred_layer
        pred.brush_size = 1
        z = 14
        block = [(z, y, x) for y in range(20, 24) for x in range(15, 19)]
        for c in block:
            pred.paint(c, 2, refresh=False)
        pred.refresh()
        qtbot.mouseClick(panel.accept_btn, Qt.LeftButton)
        assert panel.runner.running
        _wait_done(qtbot, w)
        assert panel.eta.text().startswith("done"), panel.eta.text()
        assert panel.last_event.step > first_steps

        # the server goes away mid-training: one clear notification, marks intact, buttons back
        marks = np.array(w.ann_layer.data, copy=True)
        panel.budget.setValue(600)
        for c in [(z, y, x) for y in range(26, 28) for x in range(15, 17)]:
            pred.paint(c, 1, refresh=False)
        qtbot.mouseClick(panel.accept_btn, Qt.LeftButton)
        marks = np.array(w.ann_layer.data, copy=True)
        qtbot.waitUntil(lambda: panel.runner.running and panel.eta.text().startswith("step"), timeout=60_000)
        proc.kill()
        proc.wait(10)
        _wait_done(qtbot, w, timeout=60_000)
        assert "lost connection to the server" in panel._last_error, panel._last_error
        assert "marks stay here" in panel._last_error
        np.testing.assert_array_equal(np.asarray(w.ann_layer.data), marks)
        assert panel.start_btn.isEnabled()

        # the server is back (a restart: its sessions are gone): Start reconnects with a new session
        proc, _ = start_server(env / "sessions2", port=int(url.rsplit(":", 1)[1]))
        panel.budget.setValue(3)
        seen = panel.n_predictions
        qtbot.mouseClick(panel.start_btn, Qt.LeftButton)
        _wait_done(qtbot, w)
        assert panel.eta.text().startswith("done"), (panel.eta.text(), panel._last_error)
        assert panel.n_predictions > seen
    finally:
        stop_server(proc)
