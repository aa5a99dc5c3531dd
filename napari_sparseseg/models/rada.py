"""Building blocks of the RADA method (``napari_sparseseg.methods.rada``): a tri-view 2D network,
frozen LiteMedSAM region features, region pooling and the region-alignment losses.

Why these pieces (the paper's Alpha-CLIP dual encoder cannot be had offline, see the method module):

* :class:`TriViewNet` -- ONE shared 2D U-Net for the axial, coronal and sagittal views, told which view
  it looks at by a learned per-view scale/shift of its output features (a "view embedding", zero at
  start).  One net instead of three keeps a step at about the default's cost on 2 CPU cores.  It
  returns the logits AND the per-pixel features, so the features can be pooled per region.
* :func:`encode_slices` -- the frozen LiteMedSAM image encoder, run once per needed axial slice before
  training (256 x 64 x 64 tokens per slice), kept on the training device.
* :func:`sample_frozen` -- those tokens resampled at the pixels of a training block (bilinear, every
  ``stride`` pixels), so frozen and trainable features can be pooled over the same regions.
* :func:`region_pool` + :func:`align_loss` -- per (slice, class) average of a feature map over the
  class's target pixels, and ``1 - cos`` (or an InfoNCE over the classes of a slice) between a
  learnable projection of the seg features and the frozen features.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

from .networks import NetworkSpec, build_network

VIEWS = ("axial", "coronal", "sagittal")  # array axis 0, 1, 2 slices


class TriViewNet(torch.nn.Module):
    """Shared 2D U-Net for three views -> (logits, features).

    Args:
        in_channels: image (+ pseudo-label prior channels when ``prior``).
        n_out: background + classes.
        feat: per-pixel feature width (the U-Net's output; the 1x1 head maps it to logits).
        channels: U-Net channels per level.
        prior: input channels 1.. are pseudo-label probabilities; logits get ``log(prior)`` added and the
            head starts at zero, so the untrained net predicts the pseudo-labels (as the default's
            :class:`~napari_sparseseg.models.networks.PriorResidual`).
        proj_dim: width of the frozen features the projection maps onto (LiteMedSAM: 256).
    """

    def __init__(self, in_channels: int, n_out: int, *, feat: int = 16, channels: Sequence[int] = (16, 32, 64, 128),
                 prior: bool = False, proj_dim: int = 256, proj_hidden: int = 64) -> None:
        super().__init__()
        if prior and in_channels != n_out + 1:
            raise ValueError("prior needs in_channels = 1 image + one prior channel per output")
        spec = NetworkSpec(dims=2, in_channels=in_channels, out_channels=feat, channels=tuple(channels),
                           strides=(2,) * (len(channels) - 1))
        self.unet = build_network(spec)
        self.prior = prior
        self.multiple = 2 ** (len(channels) - 1)  # spatial sizes must be multiples of this
        self.view_scale = torch.nn.Parameter(torch.zeros(len(VIEWS), feat))
        self.view_shift = torch.nn.Parameter(torch.zeros(len(VIEWS), feat))
        self.act = torch.nn.PReLU()
        self.head = torch.nn.Conv2d(feat, n_out, 1)
        if prior:
            torch.nn.init.zeros_(self.head.weight)
            torch.nn.init.zeros_(self.head.bias)
        self.proj = torch.nn.Sequential(torch.nn.Linear(feat, proj_hidden), torch.nn.ReLU(),
                                        torch.nn.Linear(proj_hidden, proj_dim))

    def forward(self, x: torch.Tensor, view: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training and view != 0:
            with _running_stats_frozen(self.unet):
                f = self.unet(x)
        else:
            f = self.unet(x)
        f = f * (1.0 + self.view_scale[view]).view(1, -1, 1, 1) + self.view_shift[view].view(1, -1, 1, 1)
        f = self.act(f)
        logits = self.head(f)
        if self.prior:
            logits = logits + torch.log(x[:, 1:].clamp(0.01, 1.0))
        return logits, f


@contextmanager
def _running_stats_frozen(net: torch.nn.Module) -> Iterator[None]:
    """BatchNorm uses batch statistics but leaves its running statistics alone (momentum 0).

    Why: the running statistics are what inference uses; coronal/sagittal strips (few rows, padded)
    have other statistics than axial slices, and letting them in made marks-only predictions collapse.
    """
    bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, mom in zip(bns, saved):
            m.momentum = mom


class ViewModel(torch.nn.Module):
    """``x -> logits`` of one view (what ``predict_probabilities`` expects)."""

    def __init__(self, net: TriViewNet, view: int) -> None:
        super().__init__()
        self.net = net
        self.view = int(view)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x, self.view)[0]


def z_scale(spacing: Sequence[float], cap: int = 4) -> int:
    """Integer up-sampling of the slice axis in the coronal/sagittal views (1 for isotropic scans).

    Why: with 6.5 mm slices and 0.5 mm pixels a coronal slice is squashed 13x; stretching it (up to
    ``cap``x, which bounds the cost) makes it look more like the tissue the shared net sees axially.
    ACDC's files lost their spacing (identity affine), so ACDC gets 1.
    """
    sp = [float(s) for s in spacing]
    return int(min(max(round(sp[0] / max(min(sp[1], sp[2]), 1e-6)), 1), cap))


# ---------------------------------------------------------------------------- frozen encoder
def choose_encoded_slices(marks: np.ndarray, pseudo: np.ndarray | None, limit: int) -> list[int]:
    """Axial slices to encode: every marked slice first, then slices with confident foreground, evenly.

    Why a subset: the frozen encoder costs ~0.3-1.6 s per slice on 2 CPU cores, more than 100 training
    steps on a 35-slice volume would; marked slices carry the trustworthy regions anyway.
    """
    z = marks.shape[0]
    marked = [i for i in range(z) if bool((marks[i] >= 0).any())]
    rest = [i for i in range(z) if i not in marked]
    if pseudo is not None:
        fg = [i for i in rest if bool((pseudo[i] > 0).any())]
        rest = fg + [i for i in rest if i not in fg]
    chosen = marked[:limit]
    if len(chosen) < limit and rest:
        k = min(limit - len(chosen), len(rest))
        pick = np.linspace(0, len(rest) - 1, k).round().astype(int)
        chosen += [rest[i] for i in sorted(set(pick.tolist()))]
    return sorted(chosen)


def encode_slices(backend, image01: np.ndarray, slices: Sequence[int], device: torch.device,
                  cache_dir=None) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """Frozen embeddings of ``slices`` -> ``(E (n, C, h, w) on device, row (Z,) long: slice -> row or -1,
    input_size (nh, nw) = the encoder-input pixels the slice fills)``.

    Uses :class:`~napari_sparseseg.sam.cache.EmbeddingCache`, so with ``cache_dir`` the embeddings
    the SAM pseudo-labels already computed for this volume are read back instead of recomputed.
    """
    from ..sam.cache import EmbeddingCache

    cache = EmbeddingCache(backend, image01, cache_dir=cache_dir, max_items=max(1, len(slices)))
    embs = [cache.get(z) for z in slices]
    e = torch.from_numpy(np.stack([m.features for m in embs])).to(device)
    row = torch.full((image01.shape[0],), -1, dtype=torch.long)
    row[torch.as_tensor(list(slices), dtype=torch.long)] = torch.arange(len(slices))
    return e, row.to(device), tuple(embs[0].input_size)


def sample_frozen(emb: torch.Tensor, rows: torch.Tensor, origin: Sequence[int], size: Sequence[int],
                  image_hw: Sequence[int], input_size: Sequence[int], encoder_size: int, stride: int) -> torch.Tensor:
    """Frozen features at every ``stride``-th pixel of a block: ``(n, C, by/stride, bx/stride)``.

    ``rows`` are the embedding rows of the block's slices (all >= 0); ``origin``/``size`` the block's
    (y0, x0) and (by, bx) in slice pixels, which may stick out of the slice (those pixels carry no target
    and never enter a region).  Slice pixel (y, x) sits at encoder-input pixel (y + .5) * nh / H; the
    token grid covers the ``encoder_size`` input with ``h`` tokens.
    """
    n = rows.shape[0]
    (y0, x0), (by, bx), (H, W) = origin, size, image_hw
    dev = emb.device
    ys = y0 + stride * torch.arange(by // stride, device=dev, dtype=torch.float32) + (stride - 1) / 2
    xs = x0 + stride * torch.arange(bx // stride, device=dev, dtype=torch.float32) + (stride - 1) / 2
    gy = 2 * (ys + 0.5) * (input_size[0] / H) / encoder_size - 1
    gx = 2 * (xs + 0.5) * (input_size[1] / W) / encoder_size - 1
    grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], dim=-1)  # (h, w, 2) as (x, y)
    return F.grid_sample(emb[rows], grid.expand(n, *grid.shape), mode="bilinear", align_corners=False)


# ---------------------------------------------------------------------------- regions and losses
def region_pool(feats: torch.Tensor, target: torch.Tensor, k: int, stride: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Average of ``feats (N, C, h, w)`` over each class of ``target (N, H, W)`` (-1 ignored).

    With ``stride > 1`` the one-hot target is average-pooled to ``feats``' grid first (area weights).
    Returns ``pooled (N, k, C)`` and the full-resolution pixel count of each region ``(N, k)``.
    """
    onehot = F.one_hot(target.clamp_min(0), k).movedim(-1, 1).to(feats.dtype)
    onehot = onehot * (target >= 0).unsqueeze(1).to(feats.dtype)
    counts = onehot.sum((2, 3))
    if stride > 1:
        onehot = F.avg_pool2d(onehot, stride)
    w = onehot.flatten(2)
    pooled = torch.einsum("nkp,ncp->nkc", w, feats.flatten(2)) / w.sum(2, keepdim=True).clamp_min(1e-6)
    return pooled, counts


def align_loss(seg: torch.Tensor, frozen: torch.Tensor, valid: torch.Tensor, kind: str = "cosine",
               tau: float = 0.1) -> torch.Tensor:
    """Region alignment between projected seg features and frozen features, both ``(N, k, D)``.

    ``cosine``: mean ``1 - cos`` over valid regions.  ``infonce``: per slice, each class's seg region
    must pick its own frozen region among the slice's valid classes (slices with < 2 valid classes are
    skipped).  Returns 0 with a graph when nothing is valid.
    """
    zero = seg.sum() * 0.0
    if not bool(valid.any()):
        return zero
    a = F.normalize(seg, dim=-1)
    b = F.normalize(frozen, dim=-1)
    if kind == "cosine":
        return (1.0 - (a * b).sum(-1))[valid].mean()
    if kind != "infonce":
        raise ValueError(f"unknown alignment {kind!r}: use cosine or infonce")
    keep = valid.sum(1) >= 2
    if not bool(keep.any()):
        return zero
    a, b, v = a[keep], b[keep], valid[keep]
    sim = torch.einsum("nkd,nld->nkl", a, b) / tau
    sim = sim.masked_fill(~v.unsqueeze(1), float("-inf"))
    k = sim.shape[1]
    tgt = torch.arange(k, device=sim.device).expand(sim.shape[0], k)
    ce = F.cross_entropy(sim.flatten(0, 1)[v.flatten()], tgt.flatten()[v.flatten()])
    return ce
