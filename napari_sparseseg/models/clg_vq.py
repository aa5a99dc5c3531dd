"""Networks of the cross-latent graph + vector-quantised memory method (``--method clg-vq``).

Paper: Xu et al., "Annotation-efficient medical image segmentation via cross-latent graphs and
vector-quantized memory" (2026; we had only its abstract).  Its three parts map
to the classes here:

* :class:`ClgVqNet` -- one shared 2D encoder, a segmentation decoder (U-Net skips) and an auxiliary
  *reconstruction* decoder that rebuilds the input image from the deep features alone (no skips, so
  the reconstruction has to pass through the latent the graph is built from).
* :class:`CrossLatentGraph` -- nodes are the cells of the deepest feature map (each covers an 8x8
  patch); edges are the top-k cosine affinities between the *reconstruction* branch's node
  features; one GCN layer (Kipf & Welling: ``D^-1/2 (A + I) D^-1/2 H W``) passes messages between
  the *segmentation* branch's node features along those edges (the "cross-latent" transfer).
* :class:`VQMemory` -- a codebook of L2-normalised features updated by exponential moving averages
  (VQ-VAE-2 style EMA codes, dead codes restarted from the batch), which also accumulates a class
  histogram per code from the labelled voxels; :func:`memory_targets` turns the nearest codes of
  every voxel into a class distribution used to fill unlabelled voxels (pseudo-label refinement).

Everything is plain torch (no numpy), so one step runs on whatever device the tensors are on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def _block(cin: int, cout: int, stride: int = 1) -> nn.Module:
    """Residual unit: one 3x3 conv + BatchNorm + PReLU and a 1x1 shortcut, like MONAI's UNet with
    ``num_res_units=1`` (the default's network), so the two cost about the same per layer.
    BatchNorm for the reason given in :mod:`napari_sparseseg.models.networks`."""
    return _ResUnit(cin, cout, stride)


class _ResUnit(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout, momentum=0.3), nn.PReLU())
        self.skip = nn.Conv2d(cin, cout, 1, stride, bias=False) if (cin != cout or stride != 1) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.skip(x)


class _Up(nn.Module):
    """Transposed-conv upsampling, optionally concatenating a skip, then a residual unit."""

    def __init__(self, cin: int, cskip: int, cout: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cout, 2, 2)
        self.fuse = _block(cout + cskip, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = self.up(x)
        if skip is not None:
            x = torch.cat([x, skip], 1)
        return self.fuse(x)


class CrossLatentGraph(nn.Module):
    """One GCN layer on segmentation node features, with edges from reconstruction node features.

    Why the reconstruction features: they are trained on every voxel (no labels needed), so their
    affinities say which regions look alike even where the scribbles say nothing; the segmentation
    features then borrow context from similar-looking regions anywhere in the crop (non-local).
    ``gamma`` starts at 0.1 so the untrained graph barely perturbs the U-Net path.
    """

    def __init__(self, seg_channels: int, k: int = 8, pool: int = 1) -> None:
        super().__init__()
        self.k = int(k)
        self.pool = int(pool)
        self.weight = nn.Linear(seg_channels, seg_channels, bias=False)
        self.gamma = nn.Parameter(torch.tensor(0.1))

    def adjacency(self, rec: torch.Tensor) -> torch.Tensor:
        """(B, N, N) normalised adjacency of top-k cosine affinities (+ self loops), symmetrised."""
        r = F.normalize(rec.flatten(2).transpose(1, 2), dim=-1)  # (B, N, C)
        sim = r @ r.transpose(1, 2)
        k = min(self.k, sim.shape[-1])
        vals, idx = sim.topk(k, dim=-1)
        a = torch.zeros_like(sim).scatter(-1, idx, vals.clamp_min(0.0))
        eye = torch.eye(a.shape[-1], device=a.device, dtype=a.dtype)
        a = 0.5 * (a + a.transpose(1, 2)) + eye
        d = a.sum(-1).clamp_min(1e-6).rsqrt()
        return d[:, :, None] * a * d[:, None, :]

    def forward(self, seg: torch.Tensor, rec: torch.Tensor) -> torch.Tensor:
        s, r = seg, rec
        if self.pool > 1:
            s, r = F.avg_pool2d(s, self.pool, ceil_mode=True), F.avg_pool2d(r, self.pool, ceil_mode=True)
        b, c, h, w = s.shape
        adj = self.adjacency(r)
        nodes = s.flatten(2).transpose(1, 2)  # (B, N, C)
        msg = F.relu(adj @ self.weight(nodes)).transpose(1, 2).reshape(b, c, h, w)
        if self.pool > 1:
            msg = F.interpolate(msg, size=seg.shape[-2:], mode="nearest")
        return seg + self.gamma * msg


@dataclass
class ClgVqFeatures:
    """What one forward pass gives the training step."""

    logits: torch.Tensor  # (B, K, H, W)
    recon: torch.Tensor  # (B, 1, H, W) reconstructed image channel
    texture: torch.Tensor  # (B, C0, H/2, W/2) shallow features (texture memory)
    deep: torch.Tensor  # (B, C3, H/8, W/8) graph-refined deep segmentation features (global memory)


class ClgVqNet(nn.Module):
    """Shared encoder -> segmentation decoder (+ graph at the bottleneck) and reconstruction decoder.

    The segmentation path has the default MONAI U-Net's shape (channels (16, 32, 64, 128), strides
    2, 2, 2, finest features at 1/2 resolution) so a step costs about the same; the reconstruction
    decoder is lighter.  ``in_channels`` = 1 image channel (+ K pseudo-label prior channels); with
    ``prior_residual`` the logits are ``head(features) + log(prior)`` with a zero-initialised head,
    as the default's :class:`~napari_sparseseg.models.networks.PriorResidual` does, so both start
    at the pseudo-labels.  Inputs need Y and X divisible by 8 (sliding-window inference pads).
    """

    def __init__(self, in_channels: int, out_channels: int, channels: tuple[int, int, int, int] = (16, 32, 64, 128),
                 prior_residual: bool = False, graph_k: int = 8, graph_pool: int = 1) -> None:
        super().__init__()
        c0, c1, c2, c3 = channels
        self.out_channels = out_channels
        self.prior_residual = prior_residual
        if prior_residual and in_channels != out_channels + 1:
            raise ValueError("prior_residual needs in_channels = 1 image + one prior channel per output")
        self.enc1, self.enc2, self.enc3 = _block(in_channels, c0, 2), _block(c0, c1, 2), _block(c1, c2, 2)
        self.bottom = _block(c2, c3, 1)
        self.graph = CrossLatentGraph(c3, graph_k, graph_pool)
        self.dec2, self.dec1 = _Up(c3 + c2, c1, c1), _Up(c1, c0, c0)
        self.up0 = nn.Sequential(nn.ConvTranspose2d(c0, c0, 2, 2), nn.PReLU())
        self.head = nn.Conv2d(c0, out_channels, 1)
        if prior_residual:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        # reconstruction branch: lighter, no skips (it must rebuild the image from the deep latent)
        cr = max(c1 // 2, 4)
        self.rec3 = _block(c3, c1)
        self.rec = nn.Sequential(
            nn.ConvTranspose2d(c1, cr, 2, 2), nn.PReLU(), nn.Conv2d(cr, cr, 3, 1, 1), nn.PReLU(),
            nn.ConvTranspose2d(cr, cr, 2, 2), nn.PReLU(), nn.ConvTranspose2d(cr, 1, 2, 2),
        )

    def features(self, x: torch.Tensor) -> ClgVqFeatures:
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        bot = self.bottom(e3)
        r3 = self.rec3(bot)
        g3 = self.graph(bot, r3)
        d = self.dec1(self.dec2(torch.cat([g3, e3], 1), e2), e1)
        logits = self.head(self.up0(d))
        if self.prior_residual:
            logits = logits + torch.log(x[:, 1:].clamp(0.01, 1.0))
        return ClgVqFeatures(logits, self.rec(r3), e1, g3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits only (what sliding-window inference needs)."""
        return self.features(x).logits


class VQMemory(nn.Module):
    """EMA vector-quantised codebook on the unit sphere, with a class histogram per code.

    Why EMA codes and not a learnt codebook: EMA needs no gradient through the quantiser, so the
    memory cannot fight the segmentation loss; codes simply track the mean of the features assigned
    to them (van den Oord et al. 2017, App. A.1).  ``class_mass[m, k]`` is a decayed count of
    labelled voxels of channel ``k`` assigned to code ``m``: the memory's label statistics.
    Decays are 0.95 (not VQ-VAE's 0.99) because a per-volume run is only a few hundred steps and the
    features still move: a slower EMA would keep codes and their statistics stale.
    """

    def __init__(self, n_codes: int, dim: int, n_classes: int, decay: float = 0.95, stat_decay: float = 0.95,
                 dead_threshold: float = 0.05) -> None:
        super().__init__()
        self.decay, self.stat_decay, self.dead_threshold = decay, stat_decay, dead_threshold
        self.register_buffer("codes", torch.zeros(n_codes, dim))
        self.register_buffer("cluster_size", torch.zeros(n_codes))
        self.register_buffer("embed_sum", torch.zeros(n_codes, dim))
        self.register_buffer("class_mass", torch.zeros(n_codes, n_classes))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    @property
    def n_codes(self) -> int:
        return int(self.codes.shape[0])

    @torch.no_grad()
    def assign(self, z: torch.Tensor) -> torch.Tensor:
        """Nearest code (max cosine) of each row of ``z`` (N, D), returns (N,) int64."""
        return (F.normalize(z, dim=-1) @ self.codes.t()).argmax(-1)

    @torch.no_grad()
    def update(self, z: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """EMA step of the codes on features ``z`` (N, D); returns the assignments before the step."""
        z = F.normalize(z.detach(), dim=-1)
        if not bool(self.initialised):
            pick = torch.randint(0, z.shape[0], (self.n_codes,), generator=gen).to(z.device)
            self.codes.copy_(z[pick])
            self.embed_sum.copy_(z[pick])
            self.cluster_size.fill_(1.0)
            self.initialised.fill_(True)
        idx = self.assign(z)
        onehot = F.one_hot(idx, self.n_codes).to(z.dtype)
        self.cluster_size.mul_(self.decay).add_(onehot.sum(0) * (1 - self.decay) / max(z.shape[0] / self.n_codes, 1.0))
        self.embed_sum.mul_(self.decay).add_(onehot.t() @ z * (1 - self.decay))
        self.codes.copy_(F.normalize(self.embed_sum, dim=-1))
        dead = self.cluster_size < self.dead_threshold
        if bool(dead.any()):  # restart unused codes on random features of this batch (no numpy: device-safe)
            pick = torch.randint(0, z.shape[0], (self.n_codes,), generator=gen).to(z.device)
            self.codes[dead] = z[pick][dead]
            self.embed_sum[dead] = z[pick][dead]
            self.cluster_size[dead] = 1.0
            self.class_mass[dead] = 0.0
        return idx

    @torch.no_grad()
    def update_stats(self, idx: torch.Tensor, label_mass: torch.Tensor) -> None:
        """Add ``label_mass`` (N, K): per-row class evidence (one-hot x weight, 0 where unlabelled)."""
        onehot = F.one_hot(idx, self.n_codes).to(label_mass.dtype)
        self.class_mass.mul_(self.stat_decay).add_(onehot.t() @ label_mass)

    @torch.no_grad()
    def class_probs(self, alpha: float = 1.0) -> torch.Tensor:
        """(M, K) per-code class distribution, Laplace-smoothed so little evidence stays uncertain."""
        k = self.class_mass.shape[1]
        return (self.class_mass + alpha) / (self.class_mass.sum(1, keepdim=True) + alpha * k)

    def commitment(self, z: torch.Tensor) -> torch.Tensor:
        """1 - cosine between features and their (frozen) nearest code: pulls features into clusters."""
        zn = F.normalize(z, dim=-1)
        idx = self.assign(zn.detach())
        return (1.0 - (zn * self.codes[idx]).sum(-1)).mean()


def pixels(f: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B*H*W, C)."""
    return f.permute(0, 2, 3, 1).reshape(-1, f.shape[1])


@torch.no_grad()
def memory_distribution(texture: VQMemory, glob: VQMemory, tex_feat: torch.Tensor, deep_feat: torch.Tensor,
                        size: tuple[int, int], alpha: float = 1.0) -> torch.Tensor:
    """(B, K, H, W) class distribution from the nearest texture and global codes (product of experts).

    Why a product: a texture code alone is "looks like bright blood pool", a global code alone is
    "in the middle of the heart"; a voxel is confidently class c only when both agree.  The global
    distributions (texture on the 1/2 grid, global on the 1/8 grid) are upsampled bilinearly to ``size``.
    """
    out = []
    for mem, feat in ((texture, tex_feat), (glob, deep_feat)):
        b, _, h, w = feat.shape
        p = mem.class_probs(alpha)[mem.assign(pixels(feat))].reshape(b, h, w, -1).permute(0, 3, 1, 2)
        out.append(F.interpolate(p, size=size, mode="bilinear", align_corners=False))
    p = out[0] * out[1]
    return p / p.sum(1, keepdim=True).clamp_min(1e-12)


@torch.no_grad()
def memory_targets(target: torch.Tensor, weight: torch.Tensor, mem_prob: torch.Tensor, valid: torch.Tensor,
                   tau: float, ignore_index: int = -1, marked: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fill unlabelled voxels whose memory distribution is at least ``tau`` confident.

    ``target`` (B, H, W) int64 with ``ignore_index`` where nothing is known, ``weight`` its weights,
    ``mem_prob`` (B, K, H, W), ``valid`` (B, H, W) bool (False in padding).  Returns new targets,
    new weights (the memory's confidence where filled) and the filled mask.  Known targets are never
    overwritten.  With ``marked`` (the user's marks) given, pseudo-label targets that the memory
    contradicts with confidence ``conf >= tau`` are also down-weighted by ``1 - conf`` (marks never).
    """
    conf, cls = mem_prob.max(1)
    sure = valid & (conf >= tau)
    fill = (target == ignore_index) & sure
    new_w = torch.where(fill, conf, weight)
    if marked is not None:
        doubt = sure & ~marked & (target != ignore_index) & (target != cls)
        new_w = torch.where(doubt, weight * (1.0 - conf), new_w)
    return torch.where(fill, cls, target), new_w, fill
