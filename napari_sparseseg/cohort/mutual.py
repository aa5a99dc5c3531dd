"""DK-UXNet's mutual learning at the study level: two networks teach each other.

Why: two networks of different widths make different mistakes on unmarked voxels; each one
learning the other's *confident* predictions there (cross pseudo-supervision) regularises both,
which is what the paper's dual branches do.  Marked voxels are already supervised by the marks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..annotations.sparse import IGNORE_INDEX


def mutual_loss(logits_a: torch.Tensor, logits_b: torch.Tensor, marks: torch.Tensor, threshold: float) -> torch.Tensor:
    """CE of each net against the other's argmax where the other is confident and no mark exists."""
    unmarked = marks == IGNORE_INDEX
    total = logits_a.sum() * 0.0
    for student, teacher in ((logits_a, logits_b), (logits_b, logits_a)):
        with torch.no_grad():
            p = torch.softmax(teacher.detach(), 1)
            conf, target = p.max(1)
            keep = unmarked & (conf >= threshold)
        if bool(keep.any()):
            ce = F.cross_entropy(student, target, reduction="none")
            total = total + (ce * keep).sum() / keep.sum()
    return total / 2
