"""The widget never throws work away: a session of another scan is refused before anything is reset,
and a damaged autosave does not stop closing from stopping the background jobs."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui

napari = pytest.importorskip("napari")

from napari_sparseseg.io import write_volume_nifti  # noqa: E402
from napari_sparseseg.session import ClassTable, Session  # noqa: E402
from tests.test_widget import _open, autosave_dir, opened  # noqa: E402,F401


def test_session_of_another_scan_is_refused_before_switching(make_napari_viewer, qtbot, opened, autosave_dir, tmp_path) -> None:
    viewer, w, image, gt = _open(make_napari_viewer, qtbot, opened)
    pred = w.ensure_prediction_layer()
    pred.data[5, 10:20, 10:20] = 1  # the user's corrections on the prediction
    before_layers = len(viewer.layers)
    other = tmp_path / "other.nii.gz"  # same grid, other voxels: e.g. the file was replaced since
    vol = w.image_volume()
    write_volume_nifti(other, vol.with_array(np.asarray(vol.array, np.float32) + 1.0))
    shape = tuple(image.data.shape)
    folder = Session(str(other), "0" * 20, shape, np.eye(4), ClassTable.default(2),
                     np.zeros(shape, np.int16)).save(tmp_path / "s")
    assert w.files.open_session(folder) is None  # guarded: notified, not raised
    assert "fingerprint" in w.files._last_error
    assert w.image_layer is image and w.pred_layer is pred and pred in viewer.layers
    assert int(np.asarray(pred.data)[5, 10:20, 10:20].sum()) == 100  # the corrections are still there
    assert len(viewer.layers) == before_layers  # the image opened for the check is removed again


def test_close_with_a_damaged_autosave_still_stops_the_jobs(make_napari_viewer, qtbot, opened, autosave_dir) -> None:
    viewer, w, image, gt = _open(make_napari_viewer, qtbot, opened)
    w.files.autosave.save(np.zeros(image.data.shape, np.int16), w.classes)
    w.files.autosave.meta_path.write_text("{damaged")
    w.close_session()
    assert not w.files._jobs._thread.is_alive()
