"""Weak-supervision losses.

* :func:`partial_ce` -- cross-entropy on marked voxels only (unmarked = IGNORE_INDEX = -1).
* :func:`weighted_ce` + :func:`soft_dice` -- pseudo-labels weighted by their confidence, voxels
  below the threshold ignored (SA-Net's threshold ``t``).
* :func:`consistency` -- predictions of two augmented views of the same crop should agree.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..annotations.sparse import IGNORE_INDEX


def partial_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean CE over voxels whose target is not IGNORE_INDEX; 0 (with a graph) when none is marked."""
    if not bool((target != IGNORE_INDEX).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)


def weighted_ce(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """CE weighted per voxel by confidence; ignored voxels contribute nothing."""
    valid = target != IGNORE_INDEX
    if not bool(valid.any()):
        return logits.sum() * 0.0
    ce = F.cross_entropy(logits, target.clamp_min(0), reduction="none")
    w = weight * valid
    return (ce * w).sum() / w.sum().clamp_min(1e-6)


def soft_dice(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None, eps: float = 1.0) -> torch.Tensor:
    """1 - mean soft Dice over foreground channels, computed on valid (non-ignored) voxels only."""
    valid = (target != IGNORE_INDEX).float()
    if weight is not None:
        valid = valid * (weight > 0)
    if not bool(valid.any()):
        return logits.sum() * 0.0
    prob = torch.softmax(logits, dim=1)
    k = logits.shape[1]
    onehot = F.one_hot(target.clamp_min(0), k).movedim(-1, 1).float()
    v = valid.unsqueeze(1)
    dims = tuple([0] + list(range(2, logits.ndim)))
    inter = (prob * onehot * v).sum(dims)
    denom = (prob * v).sum(dims) + (onehot * v).sum(dims)
    present = (onehot * v).sum(dims)[1:] > 0
    dice = (2 * inter[1:] + eps) / (denom[1:] + eps)
    if not bool(present.any()):
        return logits.sum() * 0.0
    return 1.0 - dice[present].mean()


def consistency(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the two views' softmax (both already on the same grid)."""
    return F.mse_loss(torch.softmax(logits_a, 1), torch.softmax(logits_b, 1))
