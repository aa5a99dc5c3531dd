"""A light k-means cross-attention (kMaX-DeepLab style) decoder head on a small 2D U-Net.

Used by the DK-UXNet method (``napari_sparseseg/methods/dk_uxnet.py``) as the second network of the
mutual-learning pair.  Why a different decoder head than the default U-Net: mutual learning only
helps when the two networks make different mistakes; a mask-classification head (queries that
cluster pixels) errs differently from a per-pixel 1x1 conv head.

Pieces, mapped to kMaX-DeepLab / the DK-UXNet code (Rows21/DK-UXNet, ``transformer_decoder.py``):

* :class:`FeatureUNet2d` -- CNN encoder/decoder returning decoder features at 1/8, 1/4 and 1/2
  resolution (the paper's 3D UX-Net backbone is replaced by a 2D conv U-Net of the default's size).
* :class:`KMaXLayer` -- one k-means cross-attention layer: each pixel is hard-assigned to the query
  with the largest mask logit (cluster-wise argmax instead of a spatial softmax), each query is
  updated by the mean of its pixels' values, then query self-attention and an FFN.
* :class:`KMaXHead` -- N learnable queries refined by one layer per coarse scale (1/8, 1/4);
  mask logits = query kernel . L2-normalised pixel embedding (1/2 resolution, upsampled);
  per-query class logits; per-class maps = sum_n p(class | query n) * softmax_n(mask logits), a
  proper distribution over classes.  It also returns the *query distribution*: queries are split
  into fixed groups, one per class (the DK-UXNet code sums query responses over index ranges), and
  the group sums form a second class map that the dual loss ties to the labels and to the
  segmentation output.

Substitutes (say so): LayerNorm on queries instead of kMaX's BatchNorm1d (few queries, small
batches); k-means update = cluster *mean* (kMaX sums, then batch-norms) so a query does not depend
on the window size, which differs between training crops and inference windows; no Hungarian
matching or PQ-style losses (semantic segmentation: one group of queries per class).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(cout, momentum=0.3), nn.ReLU(inplace=True))


class FeatureUNet2d(nn.Module):
    """2D U-Net laid out like the default MONAI one (first conv strided, nothing heavy at full
    resolution) that returns its decoder features per scale.

    Why our own and not MONAI's ``UNet``: the kMaX layers read the decoder at several resolutions,
    which MONAI's nested ``SkipConnection`` does not expose.  Why the first conv is strided: the
    default's compute sits at 1/2 resolution and below, and a full-resolution decoder made this
    network ~6x slower per step than the default on the CPU.  Input sides must be multiples of
    ``2 ** (len(channels) - 1)`` (8 by default; inference windows are rounded to 8).
    """

    def __init__(self, in_channels: int, channels: tuple[int, ...] = (16, 32, 64, 128)) -> None:
        super().__init__()
        self.channels = tuple(channels)
        self.down = nn.ModuleList()
        cin = in_channels
        for c in channels[:-1]:  # each halves the grid: 1/2, 1/4, ... of the input
            self.down.append(nn.Sequential(_conv(cin, c, 2), _conv(c, c)))
            cin = c
        self.bottom = nn.Sequential(_conv(cin, channels[-1]), _conv(channels[-1], channels[-1]))
        self.up = nn.ModuleList()
        prev = channels[-1]
        for c in reversed(channels[:-1]):
            self.up.append(_conv(prev + c, c))
            prev = c

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Decoder features coarse to fine: ``[(B, channels[-2], H/2^(L-1), .), ..., (B, channels[0], H/2, W/2)]``."""
        skips = []
        h = x
        for blk in self.down:
            h = blk(h)
            skips.append(h)
        h = self.bottom(h)
        feats = []
        for blk, skip in zip(self.up, reversed(skips)):
            if h.shape[-2:] != skip.shape[-2:]:
                h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = blk(torch.cat([h, skip], 1))
            feats.append(h)
        return feats


class KMaXLayer(nn.Module):
    """One kMaX decoder layer: k-means cross-attention, query self-attention, FFN (pre-norm residuals)."""

    def __init__(self, pixel_channels: int, dim: int, heads: int = 4) -> None:
        super().__init__()
        self.pixel = nn.Sequential(nn.Conv2d(pixel_channels, dim, 1, bias=False), nn.BatchNorm2d(dim, momentum=0.3), nn.GELU())
        self.pixel_embed = nn.Conv2d(dim, dim, 1)  # assignment space (L2-normalised)
        self.pixel_value = nn.Conv2d(dim, dim, 1)  # what a cluster centre averages
        self.query_kernel = nn.Linear(dim, dim)
        self.update_norm = nn.LayerNorm(dim)
        self.update = nn.Linear(dim, dim)
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ffn_norm = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, feat: torch.Tensor, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``feat`` (B, C, h, w), ``queries`` (B, N, D) -> updated queries and mask logits (B, N, h, w)."""
        p = self.pixel(feat)
        emb = F.normalize(self.pixel_embed(p), dim=1)
        mask_logits = torch.einsum("bdhw,bnd->bnhw", emb, self.query_kernel(queries))
        with torch.no_grad():  # cluster-wise argmax: each pixel belongs to exactly one query
            assign = F.one_hot(mask_logits.flatten(2).argmax(1), queries.shape[1]).transpose(1, 2).to(p.dtype)
        value = self.pixel_value(p).flatten(2)  # (B, D, hw)
        centre = torch.einsum("bnm,bdm->bnd", assign, value) / (assign.sum(-1, keepdim=True) + 1.0)
        q = queries + self.update(self.update_norm(centre))
        qn = self.attn_norm(q)
        q = q + self.attn(qn, qn, qn, need_weights=False)[0]
        q = q + self.ffn(self.ffn_norm(q))
        return q, mask_logits


class KMaXHead(nn.Module):
    """N = ``queries_per_class * n_classes`` queries -> per-class maps and the query distribution."""

    def __init__(self, feature_channels: tuple[int, ...], n_classes: int, queries_per_class: int = 4, dim: int = 64) -> None:
        super().__init__()
        self.n_classes = n_classes
        n = n_classes * queries_per_class
        self.queries = nn.Parameter(torch.empty(n, dim))
        nn.init.trunc_normal_(self.queries, std=1.0)
        # query n belongs to class group n // queries_per_class (DK-UXNet merges query index ranges)
        self.register_buffer("group", F.one_hot(torch.arange(n) // queries_per_class, n_classes).float(), persistent=False)
        self.layers = nn.ModuleList(KMaXLayer(c, dim) for c in feature_channels[:-1])
        fine = feature_channels[-1]
        self.pixel_head = nn.Sequential(
            nn.Conv2d(fine, fine, 5, padding=2, groups=fine, bias=False), nn.BatchNorm2d(fine, momentum=0.3), nn.GELU(),
            nn.Conv2d(fine, dim, 1, bias=False), nn.BatchNorm2d(dim, momentum=0.3), nn.GELU(), nn.Conv2d(dim, dim, 1),
        )
        self.mask_kernel = nn.Linear(dim, dim)
        self.class_head = nn.Linear(dim, n_classes)
        # near-uniform class probabilities at start (kMaX: std 0.01), so a prior-residual net starts at the prior
        nn.init.trunc_normal_(self.class_head.weight, std=0.01)
        nn.init.zeros_(self.class_head.bias)

    def query_distribution(self, mask_logits: torch.Tensor) -> torch.Tensor:
        """Softmax over queries, summed within each class group: (B, K, h, w), sums to 1 per pixel."""
        return torch.einsum("bnhw,nk->bkhw", torch.softmax(mask_logits, 1), self.group)

    def forward(self, feats: list[torch.Tensor], size: tuple[int, int]) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """``feats`` coarse to fine; the final mask logits are upsampled bilinearly to ``size``
        (kMaX also predicts at a coarser stride and upsamples)."""
        b = feats[0].shape[0]
        q = self.queries.unsqueeze(0).expand(b, -1, -1)
        aux_qd = []
        for layer, f in zip(self.layers, feats[:-1]):
            q, ml = layer(f, q)
            aux_qd.append(self.query_distribution(ml))
        emb = F.normalize(self.pixel_head(feats[-1]), dim=1)
        mask_logits = torch.einsum("bdhw,bnd->bnhw", emb, self.mask_kernel(q))
        if tuple(mask_logits.shape[-2:]) != tuple(size):
            mask_logits = F.interpolate(mask_logits, size=size, mode="bilinear", align_corners=False)
        resp = torch.softmax(mask_logits, 1)
        class_logits = self.class_head(q)  # (B, N, K)
        class_prob = torch.softmax(class_logits, -1)
        seg = torch.einsum("bnk,bnhw->bkhw", class_prob, resp)
        qd = torch.einsum("bnhw,nk->bkhw", resp, self.group)
        return {"seg_prob": seg, "qd": qd, "aux_qd": aux_qd, "mask_logits": mask_logits, "class_logits": class_logits}


class KMaXUNet2d(nn.Module):
    """2D U-Net + kMaX head.  ``forward`` returns class logits (so the engine's inference runs it);
    :meth:`forward_all` also returns the query distributions the dual loss needs.

    With ``prior_residual`` the logits are ``log(seg) + log(prior)`` (prior = pseudo-label channels
    ``x[:, 1:]``), like the default's :class:`~napari_sparseseg.models.networks.PriorResidual`: the
    class head starts near-uniform, so the untrained net predicts the pseudo-labels.
    """

    def __init__(self, in_channels: int, out_channels: int, channels: tuple[int, ...] = (16, 32, 64, 128),
                 queries_per_class: int = 4, dim: int = 64, prior_residual: bool = False, floor: float = 0.01) -> None:
        super().__init__()
        if prior_residual and in_channels != out_channels + 1:
            raise ValueError("prior_residual needs in_channels = 1 image + one prior channel per output")
        self.backbone = FeatureUNet2d(in_channels, channels)
        self.head = KMaXHead(tuple(reversed(channels[:-1])), out_channels, queries_per_class, dim)
        self.prior_residual = prior_residual
        self.floor = floor

    def forward_all(self, x: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        out = self.head(self.backbone(x), tuple(x.shape[-2:]))
        logits = torch.log(out["seg_prob"].clamp_min(1e-6))  # type: ignore[union-attr]
        if self.prior_residual:
            logits = logits + torch.log(x[:, 1:].clamp(self.floor, 1.0))
        out["logits"] = logits
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_all(x)["logits"]  # type: ignore[return-value]
