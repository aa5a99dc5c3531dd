"""Batch augmentation in torch (cheap on the CPU, no per-sample Python transforms).

Geometric: random flips and small in-plane rotations, applied identically to inputs and targets.
Intensity: random scale/shift and Gaussian noise on the image channel only (prior channels, if any,
are probabilities and stay untouched).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..annotations.sparse import IGNORE_INDEX


def intensity(x: torch.Tensor, gen: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """Random contrast/brightness/noise on channel 0."""
    b = x.shape[0]
    shape = (b,) + (1,) * (x.ndim - 2)
    scale = 1.0 + strength * 0.15 * (2 * torch.rand(shape, generator=gen) - 1)
    shift = strength * 0.15 * (2 * torch.rand(shape, generator=gen) - 1)
    out = x.clone()
    img = out[:, 0]
    img = img * scale + shift + strength * 0.05 * torch.randn(img.shape, generator=gen)
    out[:, 0] = img
    return out


def random_flips(spatial: int, batch: int, gen: torch.Generator) -> torch.Tensor:
    """(B, spatial) bools: which spatial axes to flip for each sample."""
    return torch.rand((batch, spatial), generator=gen) < 0.5


def apply_flips(t: torch.Tensor, flips: torch.Tensor, first_spatial: int) -> torch.Tensor:
    """Flip each sample along the axes flagged in ``flips`` (``first_spatial`` = index of the first spatial dim)."""
    out = t.clone()
    for i in range(t.shape[0]):
        axes = [first_spatial - 1 + a for a in range(flips.shape[1]) if flips[i, a]]
        if axes:
            out[i] = torch.flip(t[i], axes)
    return out


def rotate2d(x: torch.Tensor, targets: list[torch.Tensor | None], gen: torch.Generator, max_deg: float = 15.0) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
    """Small random in-plane rotations of a 2D batch (B, C, Y, X); targets (B, Y, X) use nearest.

    Float targets (weights) are rotated with nearest too; pixels rotated in from outside become
    ignored (targets) / zero weight.
    """
    b = x.shape[0]
    ang = (2 * torch.rand(b, generator=gen) - 1) * math.radians(max_deg)
    cos, sin = torch.cos(ang), torch.sin(ang)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    xr = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    out: list[torch.Tensor | None] = []
    for t in targets:
        if t is None:
            out.append(None)
            continue
        is_int = not t.is_floating_point()
        src = (t.float() + 1.0 if is_int else t)[:, None]  # shift so IGNORE (-1) -> 0 == padding
        r = F.grid_sample(src, grid, mode="nearest", padding_mode="zeros", align_corners=False)[:, 0]
        out.append((r.round().long() - 1).clamp_min(IGNORE_INDEX) if is_int else r)
    return xr, out


def geometric(x: torch.Tensor, m: torch.Tensor, p: torch.Tensor | None, w: torch.Tensor | None, dims: int,
              gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """The trainers' geometric augmentation of a crop batch: random flips of image, marks and (if
    given) pseudo targets + weights, then, for 2D batches, a small in-plane rotation of all of them."""
    flips = random_flips(dims, x.shape[0], gen)
    x, m = apply_flips(x, flips, 2), apply_flips(m, flips, 1)
    if p is not None and w is not None:
        p, w = apply_flips(p, flips, 1), apply_flips(w, flips, 1)
    if dims == 2:
        x, (m, p, w) = rotate2d(x, [m, p, w], gen)
    return x, m, p, w
