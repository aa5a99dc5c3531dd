"""The pseudo-label container handed from the pseudo-label engine to the trainer and the widget."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..annotations.sparse import IGNORE_INDEX, SparseAnnotation, mix


@dataclass
class PseudoLabels:
    """Dense pseudo-labels with a per-voxel confidence.

    Attributes:
        labels: int16 dense label map on the image grid, 0 = background, classes > 0.  The user's
            marks are already mixed in (SA-Net eq. 1): a marked voxel carries its mark.
        confidence: float32 in [0, 1] per voxel; marked voxels have confidence 1.  Voxels below a
            threshold ``t`` are meant to be ignored by the loss (SA-Net's ``t``).
        probabilities: optional float32 ``(n_classes + 1, *shape)``; channel 0 = background, channel
            ``i`` = ``classes[i - 1]``.  ``None`` when the method has no calibrated probabilities.
        classes: the foreground class ids, in channel order.
        info: what was run (method, timings, per-slice decisions) for logs and benchmarks.
    """

    labels: np.ndarray
    confidence: np.ndarray
    probabilities: np.ndarray | None = None
    classes: tuple[int, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels).astype(np.int16, copy=False)
        self.confidence = np.clip(np.asarray(self.confidence, dtype=np.float32), 0.0, 1.0)
        if self.confidence.shape != self.labels.shape:
            raise ValueError(f"confidence shape {self.confidence.shape} != labels shape {self.labels.shape}")
        if self.probabilities is not None:
            self.probabilities = np.asarray(self.probabilities, dtype=np.float32)
            if self.probabilities.shape[1:] != self.labels.shape:
                raise ValueError("probabilities must be (n_classes + 1, *labels.shape)")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.labels.shape)

    def confident(self, t: float) -> np.ndarray:
        """Boolean mask of voxels whose confidence is at least ``t`` (the rest are 'ignore')."""
        return self.confidence >= float(t)

    def targets(self, t: float) -> np.ndarray:
        """Training targets: the label where confident, :data:`IGNORE_INDEX` elsewhere (int64)."""
        out = self.labels.astype(np.int64)
        out[~self.confident(t)] = IGNORE_INDEX
        return out

    def fraction_kept(self, t: float) -> float:
        return float(self.confident(t).mean()) if self.labels.size else 0.0

    def with_marks(self, marks: SparseAnnotation, copy: bool = True) -> PseudoLabels:
        """MIX with the user's marks: marked voxels take the mark and confidence 1 (and one-hot probs).

        ``copy=False`` writes into this object's arrays (for a producer that drops them anyway: no
        second full-size probability volume).  No int64 target map is built.
        """
        if tuple(marks.shape) != self.shape:
            mix(marks, self.labels)  # raises the usual grid-mismatch error
        labels = self.labels.copy() if copy else self.labels
        conf = self.confidence.copy() if copy else self.confidence
        probs = self.probabilities
        if probs is not None and copy:
            probs = probs.copy()
        ml = np.asarray(marks.labels)
        conf[ml != 0] = 1.0
        chan: dict[int, tuple[int, int | None]] = {int(c): (int(c), None) for c in marks.classes}
        chan.update({int(c): (int(c), i + 1) for i, c in enumerate(self.classes)})
        chan[int(marks.background_label)] = (0, 0)
        for value, (lab, ch) in chan.items():
            sel = ml == value
            if not sel.any():
                continue
            labels[sel] = lab
            if probs is not None and ch is not None:
                probs[:, sel] = 0.0
                probs[ch][sel] = 1.0
        return PseudoLabels(labels, conf, probs, self.classes, dict(self.info))
