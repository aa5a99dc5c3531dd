"""Whole-scan prediction of the cohort's 2D network (slice by slice, full slices, flip-averaged)."""

from __future__ import annotations

import torch

from ..training.inference import predict_probabilities


@torch.no_grad()
def predict_scan_probabilities(model: torch.nn.Module, image: torch.Tensor, prior: torch.Tensor,
                               device: torch.device, flips: bool = True) -> torch.Tensor:
    """Softmax ``(K, Z, Y, X)`` for a normalised image ``(Z, Y, X)`` and a prior ``(K, Z, Y, X)``.

    ``flips`` averages the prediction over the two in-plane flips (test-time augmentation: the
    network was trained with flips, so each view is as good and their mean is smoother).
    """
    x = torch.cat([image[None].float(), prior.float()])
    prob = predict_probabilities(model, x, 2, device)
    assert prob is not None
    if flips:
        for ax in (2, 3):
            p = predict_probabilities(model, torch.flip(x, (ax,)), 2, device)
            assert p is not None
            prob = prob + torch.flip(p, (ax,))
        prob = prob / 3
    return prob
