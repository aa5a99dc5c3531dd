"""Small MONAI U-Nets sized for per-volume training on a laptop CPU.

Why small: the trainer has ~60-120 s on 2 CPU cores per volume.  A U-Net with 16-128 channels is
already enough to refine pseudo-labels; bigger nets do not converge within that budget.

Why BatchNorm: the trainer learns on crops around the marks but predicts whole slices/volumes.
Instance/Group norm compute statistics over the whole input, so a net trained on crops sees other
statistics at inference; BatchNorm in eval mode uses fixed running statistics and keeps every
prediction local (a voxel's output depends only on its receptive field).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from monai.networks.nets import UNet

#: in-plane/through-plane spacing ratio above which a scan is treated slice by slice
ANISOTROPY_RATIO = 3.0
#: fewer slices than this along an axis: 3D convolutions have nothing to pool over
MIN_SLICES_3D = 16


@dataclass
class NetworkSpec:
    """Everything needed to rebuild a network (stored in checkpoints)."""

    dims: int  # 2 (slice-wise along array axis 0) or 3
    in_channels: int
    out_channels: int  # number of classes + 1 (background)
    channels: tuple[int, ...] = (16, 32, 64, 128)
    strides: tuple[int, ...] = (2, 2, 2)
    num_res_units: int = 1
    dropout: float = 0.0
    prior_residual: bool = False  # output = U-Net(x) + log(prior channels of x): learn corrections
    norm: str = "batch"  # "batch" or "none"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = list(self.channels)
        d["strides"] = list(self.strides)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NetworkSpec:
        d = dict(d)
        d["channels"] = tuple(int(c) for c in d.get("channels", (16, 32, 64, 128)))
        d["strides"] = tuple(int(s) for s in d.get("strides", (2, 2, 2)))
        return cls(**d)

    @property
    def name(self) -> str:
        return f"unet{self.dims}d"


def choose_network(spacing: Sequence[float], shape: Sequence[int], requested: str = "auto") -> int:
    """Return 2 or 3: slice-wise 2D for anisotropic scans (or few slices), 3D for near-isotropic ones.

    ``requested`` is ``"auto"``, ``"unet2d"`` or ``"unet3d"``.  Some files lose their spacing
    (ACDC's WSL4MIS copy has an identity affine although its slices are 5-10 mm apart), so a
    volume with fewer than :data:`MIN_SLICES_3D` slices along axis 0 also goes 2D.
    """
    if requested in ("unet2d", "2d"):
        return 2
    if requested in ("unet3d", "3d"):
        return 3
    if requested != "auto":
        raise ValueError(f"unknown network {requested!r}: use auto, unet2d or unet3d")
    sp = [float(s) for s in spacing]
    ratio = sp[0] / max(min(sp[1], sp[2]), 1e-6)
    if ratio > ANISOTROPY_RATIO or int(shape[0]) < MIN_SLICES_3D:
        return 2
    return 3


class PriorResidual(torch.nn.Module):
    """Logits = U-Net(x) + log(prior), where the prior is the pseudo-label probabilities in x[:, 1:].

    Why: the pseudo-labels (random walker ~0.82 Dice on ACDC) are a strong start.  With the prior's
    log-probabilities added to the output, the untrained network already predicts the pseudo-labels
    (the first streamed preview is useful at once) and training only has to learn corrections.
    """

    def __init__(self, net: torch.nn.Module, channels: int, dims: int, floor: float = 0.01) -> None:
        super().__init__()
        self.net = net
        self.floor = floor
        # a zero-initialised 1x1 head: at step 0 the prediction *is* the prior (no random-init noise)
        conv = torch.nn.Conv2d if dims == 2 else torch.nn.Conv3d
        self.head = conv(channels, channels, 1)
        torch.nn.init.zeros_(self.head.weight)
        torch.nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.net(x)) + torch.log(x[:, 1:].clamp(self.floor, 1.0))


def build_network(spec: NetworkSpec) -> torch.nn.Module:
    """A MONAI U-Net from ``spec`` (BatchNorm, PReLU, residual units), optionally prior-residual."""
    net = _unet(spec)
    if spec.prior_residual:
        if spec.in_channels != spec.out_channels + 1:
            raise ValueError("prior_residual needs in_channels = 1 image + one prior channel per output")
        return PriorResidual(net, spec.out_channels, spec.dims)
    return net


def _unet(spec: NetworkSpec) -> torch.nn.Module:
    return UNet(
        spatial_dims=spec.dims,
        in_channels=spec.in_channels,
        out_channels=spec.out_channels,
        channels=tuple(spec.channels),
        strides=tuple(spec.strides),
        num_res_units=spec.num_res_units,
        norm=("BATCH", {"momentum": 0.3}) if spec.norm == "batch" else None,
        dropout=spec.dropout,
    )


def default_spec(dims: int, in_channels: int, out_channels: int, **overrides: Any) -> NetworkSpec:
    """Per-dimension defaults: 3D nets get fewer channels (compute grows with the third axis)."""
    base: dict[str, Any] = (
        dict(channels=(16, 32, 64, 128), strides=(2, 2, 2)) if dims == 2 else dict(channels=(8, 16, 32, 64), strides=(2, 2, 2))
    )
    base.update({k: v for k, v in overrides.items() if v is not None})
    if "strides" not in overrides or overrides["strides"] is None:
        base["strides"] = (2,) * (len(base["channels"]) - 1)
    return NetworkSpec(dims=dims, in_channels=in_channels, out_channels=out_channels, **base)
