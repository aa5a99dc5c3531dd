"""The Qt-free part of the correction loop: streamed updates keep edits; accept and undo."""

from __future__ import annotations

import numpy as np

from napari_sparseseg.widget.corrections import CorrectionTracker, union_region


def test_stream_keeps_user_edits_and_refreshes_only_the_region() -> None:
    t = CorrectionTracker((3, 4, 4))
    shown = np.zeros((3, 4, 4), np.int16)
    p1 = np.zeros_like(shown)
    p1[1, 1:3, 1:3] = 1
    t.apply_prediction(shown, p1)  # first prediction: whole volume
    np.testing.assert_array_equal(shown, p1)
    shown[1, 0, 0] = 2  # the user paints a correction
    shown[1, 1, 1] = 0  # and erases one voxel to background
    p2 = np.full_like(shown, 1)
    t.apply_prediction(shown, p2, (slice(1, 2), slice(0, 4), slice(0, 4)))
    assert shown[1, 0, 0] == 2 and shown[1, 1, 1] == 0  # edits survive
    assert shown[1, 3, 3] == 1  # non-edited voxels in the region follow the model
    assert shown[0, 0, 0] == 0 and shown[2, 3, 3] == 0  # outside the region: untouched
    assert t.apply_prediction(shown, p2, None) is None  # nothing changed: no write
    # the user's edit at (1,0,0) stays an edit even though the model now agrees it is not 0
    assert t.edits(shown)[1, 0, 0] and t.edits(shown).sum() == 2


def test_accept_turns_edits_into_marks_and_undo_restores() -> None:
    t = CorrectionTracker((2, 3, 3))
    shown = np.zeros((2, 3, 3), np.int16)
    pred = np.ones_like(shown)
    t.apply_prediction(shown, pred)
    marks = np.zeros_like(shown)
    marks[0, 0, 0] = 1
    shown[1, 2, 2] = 0  # correction: background
    shown[1, 0, 0] = 3  # correction: another class
    rec = t.accept(shown, marks, background_label=4)
    assert rec is not None and rec.slices == (1,)
    assert marks[1, 2, 2] == 4 and marks[1, 0, 0] == 3 and marks[0, 0, 0] == 1
    assert int((marks != 0).sum()) == 3
    assert not t.edits(shown).any()
    assert t.accept(shown, marks, 4) is None  # nothing new to accept
    t.undo_accept(shown, marks)
    assert int((marks != 0).sum()) == 1
    assert t.edits(shown).sum() == 2  # the corrections are pending again
    assert t.undo_accept(shown, marks) is None


def test_union_region() -> None:
    a = (slice(0, 2), slice(3, 5))
    b = (slice(1, 4), slice(0, 4))
    assert union_region(a, b) == (slice(0, 4), slice(0, 5))
    assert union_region(None, b) == b and union_region(a, None) == a
