"""Building blocks of SA-Net's cross-supervision (Su et al., MICCAI 2025, Fig. 1 and eq. 1).

Three networks see the *same* 3D crop: a 2D U-Net on its transverse slices (array axis 0 is the slice
axis), a 2D U-Net on its coronal slices (slices along array axis 1, i.e. images of (Z, X)) and a 3D
U-Net on the whole crop.  The 2D nets learn from MIX(marks, SAM pseudo-labels above ``t``); where
their predictions agree (same argmax, both confident) they become the 3D net's targets.

Why anisotropic geometry: most scans here have few, thick slices (ACDC: 6-17 slices, identity
affine; brain tumour: 6.5 mm slices).  Pooling along a 6-slice axis leaves nothing to convolve, so
such volumes get U-Nets that never stride along the slice axis ((1, 2, 2) in 3D, (1, 2) for the
coronal net whose first image axis is the slice axis) and a thin crop (8 slices, or fewer when the
volume has fewer).  Near-isotropic volumes with enough slices keep ordinary stride-2 pooling.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..annotations.sparse import IGNORE_INDEX
from .networks import ANISOTROPY_RATIO, NetworkSpec, build_network

CHANNELS_2D = (16, 32, 64, 128)
CHANNELS_3D = (8, 16, 32, 64)
#: fewer slices than this: no pooling along axis 0 (an isotropic crop is 24 slices, pooled 3 times)
MIN_SLICES_POOLED = 24


@dataclass(frozen=True)
class Geometry:
    """Crop and stride plan shared by the three networks."""

    anisotropic: bool
    patch: tuple[int, int, int]  # 3D crop (Z, Y, X)
    batch: int  # 3D crops per step

    def roi_3d(self, shape: Sequence[int]) -> tuple[int, int, int]:
        """Sliding-window size for the 3D net: the whole slice stack when it is thin."""
        if self.anisotropic:
            return (min(int(shape[0]), 32), 128, 128)
        return (64, 96, 96)


def plan_geometry(shape: Sequence[int], spacing: Sequence[float], patch: Sequence[int] | None = None,
                  batch: int | None = None) -> Geometry:
    """Anisotropic (no pooling along axis 0) for thick-slice or few-slice volumes, else isotropic.

    Thick slices (spacing ratio above ``ANISOTROPY_RATIO``, as in
    :func:`~napari_sparseseg.models.networks.choose_network`) or fewer than ``MIN_SLICES_POOLED``
    slices (ACDC has 6-17 and lost its spacing) mean anisotropic.  The default crops hold about the
    same number of voxels: 8 x 64 x 64 (anisotropic) and 24 x 40 x 40.
    """
    sp = [float(s) for s in spacing]
    ratio = sp[0] / max(min(sp[1], sp[2]), 1e-6)
    aniso = ratio > ANISOTROPY_RATIO or int(shape[0]) < MIN_SLICES_POOLED
    if patch is not None and len(patch) == 3:
        p = tuple(int(v) for v in patch)
    else:
        p = (8, 64, 64) if aniso else (24, 40, 40)
    p = (_ceil8(p[0]) if not aniso else max(1, p[0]), _ceil8(p[1]), _ceil8(p[2]))  # pooled axes: multiples of 8
    if aniso:
        p = (min(p[0], int(shape[0])), p[1], p[2])  # a 6-slice volume gets 6-slice crops, no padding
    return Geometry(aniso, p, int(batch) if batch else 2)  # type: ignore[arg-type]


def _ceil8(v: int) -> int:
    return int(-(-max(int(v), 1) // 8) * 8)


def build_sa_nets(geo: Geometry, in_channels: int, out_channels: int, prior_residual: bool,
                  channels_2d: Sequence[int] = CHANNELS_2D, channels_3d: Sequence[int] = CHANNELS_3D) -> torch.nn.ModuleDict:
    """The transverse 2D, coronal 2D and 3D U-Nets (MONAI, BatchNorm, optional prior-residual head)."""
    ch2, ch3 = tuple(channels_2d), tuple(channels_3d)
    n2 = len(ch2) - 1
    specs = {
        "transverse": NetworkSpec(2, in_channels, out_channels, ch2, (2,) * n2, prior_residual=prior_residual),
        "coronal": NetworkSpec(2, in_channels, out_channels, ch2, ((1 if geo.anisotropic else 2, 2),) * n2,  # type: ignore[arg-type]
                               prior_residual=prior_residual),
        "volume": NetworkSpec(3, in_channels, out_channels, ch3, ((1 if geo.anisotropic else 2, 2, 2),) * (len(ch3) - 1),  # type: ignore[arg-type]
                              prior_residual=prior_residual),
    }
    return torch.nn.ModuleDict({k: build_network(s) for k, s in specs.items()})


# ---------------------------------------------------------------- views of a 3D crop
def to_transverse(t: torch.Tensor) -> torch.Tensor:
    """(B, C, D, H, W) -> (B*D, C, H, W); (B, D, H, W) -> (B*D, H, W)."""
    if t.ndim == 5:
        b, c, d, h, w = t.shape
        return t.permute(0, 2, 1, 3, 4).reshape(b * d, c, h, w)
    b, d, h, w = t.shape
    return t.reshape(b * d, h, w)


def from_transverse(t: torch.Tensor, batch: int) -> torch.Tensor:
    """(B*D, K, H, W) -> (B, K, D, H, W)."""
    bd, k, h, w = t.shape
    return t.reshape(batch, bd // batch, k, h, w).permute(0, 2, 1, 3, 4)


def to_coronal(t: torch.Tensor) -> torch.Tensor:
    """(B, C, D, H, W) -> (B*H, C, D, W); (B, D, H, W) -> (B*H, D, W): images of (slice, x)."""
    if t.ndim == 5:
        b, c, d, h, w = t.shape
        return t.permute(0, 3, 1, 2, 4).reshape(b * h, c, d, w)
    b, d, h, w = t.shape
    return t.permute(0, 2, 1, 3).reshape(b * h, d, w)


def from_coronal(t: torch.Tensor, batch: int) -> torch.Tensor:
    """(B*H, K, D, W) -> (B, K, D, H, W)."""
    bh, k, d, w = t.shape
    return t.reshape(batch, bh // batch, k, d, w).permute(0, 2, 3, 1, 4)


def agreement_targets(prob_a: torch.Tensor, prob_b: torch.Tensor, threshold: float, marks: torch.Tensor,
                      valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets where two views agree: same argmax and both max-probabilities >= ``threshold``.

    ``prob_*``: (B, K, ...) softmax (no gradient needed).  Marks win where present (eq. 1's MIX);
    elsewhere the weight is the weaker of the two confidences, 0 where they disagree, are unsure or
    (``valid`` False) the crop stuck out of the image.  Returns (targets with IGNORE_INDEX, weights).
    """
    conf_a, lab_a = prob_a.max(1)
    conf_b, lab_b = prob_b.max(1)
    keep = (lab_a == lab_b) & (conf_a >= threshold) & (conf_b >= threshold)
    if valid is not None:
        keep = keep & valid
    target = torch.where(keep, lab_a, torch.full_like(lab_a, IGNORE_INDEX))
    weight = torch.where(keep, torch.minimum(conf_a, conf_b), torch.zeros_like(conf_a))
    marked = marks != IGNORE_INDEX
    target = torch.where(marked, marks, target)
    weight = torch.where(marked, torch.ones_like(weight), weight)
    return target, weight


__all__ = ["CHANNELS_2D", "CHANNELS_3D", "Geometry", "agreement_targets", "build_sa_nets", "from_coronal",
           "from_transverse", "plan_geometry", "to_coronal", "to_transverse"]
