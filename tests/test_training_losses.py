"""Losses: ignored voxels contribute nothing, marked voxels get gradients."""

from __future__ import annotations

import torch

from napari_sparseseg.annotations.sparse import IGNORE_INDEX
from napari_sparseseg.training.losses import consistency, partial_ce, soft_dice, weighted_ce


def _case() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    target = torch.full((2, 8, 8), IGNORE_INDEX)
    target[0, 2, 3] = 1
    target[1, 5, 5] = 0
    target[1, 6, 1] = 2
    return logits, target


def test_partial_ce_ignores_unmarked_and_gradients_flow_to_marks() -> None:
    logits, target = _case()
    loss = partial_ce(logits, target)
    loss.backward()
    g = logits.grad.abs().sum(1)
    marked = target != IGNORE_INDEX
    assert torch.all(g[~marked] == 0)
    assert torch.all(g[marked] > 0)
    # changing the logits of unmarked voxels does not change the loss
    other = logits.detach().clone()
    other[:, :, 0, 0] += 5.0
    assert torch.isclose(partial_ce(other, target), loss.detach())


def test_partial_ce_without_marks_is_zero_but_differentiable() -> None:
    logits = torch.randn(1, 2, 4, 4, requires_grad=True)
    loss = partial_ce(logits, torch.full((1, 4, 4), IGNORE_INDEX))
    loss.backward()
    assert float(loss.detach()) == 0.0 and logits.grad is not None


def test_weighted_ce_uses_confidence_and_ignores_low_voxels() -> None:
    logits, target = _case()
    w = torch.zeros(2, 8, 8)
    w[target != IGNORE_INDEX] = 1.0
    full = weighted_ce(logits, target, w)
    assert torch.isclose(full, partial_ce(logits, target))
    w2 = w.clone()
    w2[0, 2, 3] = 0.0  # zero weight = ignored
    t2 = target.clone()
    t2[0, 2, 3] = IGNORE_INDEX
    assert torch.isclose(weighted_ce(logits, target, w2), partial_ce(logits, t2))


def test_soft_dice_perfect_and_wrong() -> None:
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[0, 2:6, 2:6] = 1
    perfect = torch.nn.functional.one_hot(target, 2).movedim(-1, 1).float() * 40
    wrong = torch.nn.functional.one_hot(1 - target, 2).movedim(-1, 1).float() * 40
    assert float(soft_dice(perfect, target)) < 1e-3
    assert float(soft_dice(wrong, target)) > 0.9
    ignored = target.clone()
    ignored[0, 2:6, 2:6] = IGNORE_INDEX  # every foreground voxel ignored: nothing to score
    assert float(soft_dice(wrong, ignored)) == 0.0


def test_consistency_zero_for_identical_views() -> None:
    a = torch.randn(2, 3, 5, 5, requires_grad=True)
    assert float(consistency(a, a.detach())) == 0.0
    loss = consistency(a, torch.randn(2, 3, 5, 5))
    loss.backward()
    assert float(loss) > 0 and a.grad.abs().sum() > 0
