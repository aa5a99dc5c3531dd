"""The correction loop on plain arrays (no Qt): streamed predictions vs. the user's edits.

The "prediction" layer shows the network's output *and* the user's corrections painted over it.  We
keep the model's own output beside it (``model``); a voxel is a correction when the layer differs
from the model there, or when it was marked as edited before a newer prediction arrived (sticky, so a
stream update that happens to agree with the user does not silently drop the user's correction).
Streamed updates never overwrite edited voxels.  "Accept" turns the edits into sparse marks
(0 -> background label, c -> c) and remembers what it changed so it can be undone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class AcceptRecord:
    """What one "accept corrections" changed, enough to undo it."""

    indices: tuple[np.ndarray, ...]
    old_marks: np.ndarray
    new_marks: np.ndarray
    old_model: np.ndarray
    slices: tuple[int, ...]


class CorrectionTracker:
    """Owns the model's last prediction and tracks which voxels of the displayed layer are edits."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = tuple(shape)
        self.model = np.zeros(self.shape, np.int16)
        self.sticky = np.zeros(self.shape, bool)
        self.has_prediction = False
        self.history: list[AcceptRecord] = []

    def apply_prediction(
        self, shown: np.ndarray, prediction: np.ndarray, region: tuple[slice, ...] | None = None
    ) -> tuple[slice, ...] | None:
        """Merge a streamed ``prediction`` into ``shown`` (the layer's array, edited in place).

        Only ``region`` (the trainer's changed bounding box; ``None`` = whole volume) is touched, and
        edited voxels keep the user's value.  Returns the region that was written, for the refresh.
        """
        if tuple(prediction.shape) != self.shape:
            raise ValueError(f"prediction grid {prediction.shape} does not match {self.shape}")
        if not self.has_prediction:
            region = tuple(slice(0, s) for s in self.shape)
        elif region is None:
            return None
        cur, old, new = shown[region], self.model[region], prediction[region]
        sticky = self.sticky[region]
        sticky |= cur != old
        cur[~sticky] = new[~sticky]
        old[...] = new
        self.has_prediction = True
        return region

    def edits(self, shown: np.ndarray) -> np.ndarray:
        """Boolean mask of corrected voxels."""
        return self.sticky | (shown != self.model)

    def accept(self, shown: np.ndarray, marks: np.ndarray, background_label: int, axis: int = 0) -> AcceptRecord | None:
        """Turn edited voxels into marks (``marks`` edited in place); ``None`` if there is nothing to accept.

        After accepting, the corrected values become the new baseline, so the same edit is not
        accepted twice and later stream updates may change those voxels again (the marks keep them
        in training).
        """
        mask = self.edits(shown)
        if not mask.any():
            return None
        idx = np.nonzero(mask)
        values = shown[idx].astype(marks.dtype)
        new = np.where(values == 0, background_label, values).astype(marks.dtype)
        rec = AcceptRecord(
            indices=idx,
            old_marks=marks[idx].copy(),
            new_marks=new,
            old_model=self.model[idx].copy(),
            slices=tuple(int(z) for z in np.unique(idx[axis])),
        )
        marks[idx] = new
        self.model[idx] = shown[idx]
        self.sticky[idx] = False
        self.history.append(rec)
        return rec

    def undo_accept(self, shown: np.ndarray, marks: np.ndarray) -> AcceptRecord | None:
        """Revert the last accept: the marks go back, the voxels count as (unaccepted) edits again."""
        if not self.history:
            return None
        rec = self.history.pop()
        marks[rec.indices] = rec.old_marks
        self.model[rec.indices] = rec.old_model
        self.sticky[rec.indices] = shown[rec.indices] != rec.old_model
        return rec


def union_region(a: tuple[slice, ...] | None, b: tuple[slice, ...] | None) -> tuple[slice, ...] | None:
    """Bounding box of two regions (``None`` = nothing)."""
    if a is None:
        return b
    if b is None:
        return a
    return tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b))
