"""``clg-vq``: cross-latent graph + vector-quantised memory (Xu et al. 2026), slice-wise 2D.

Paper: "Annotation-efficient medical image segmentation via cross-latent graphs and vector-quantized
memory".  Only the abstract is available, so
there are no section or equation numbers to cite; each component below maps to one of the
abstract's three "key principles", and every design detail the abstract leaves open is ours:

1. *Auxiliary reconstruction branch* -> :class:`~napari_sparseseg.models.clg_vq.ClgVqNet` has a
   second decoder that rebuilds the (un-augmented) image channel from the shared encoder's deepest
   features; L1 loss on every voxel, so unlabelled voxels also shape the encoder.
2. *VQ memory bank of texture and global features, refined to give reliable pseudo-labels* ->
   two :class:`~napari_sparseseg.models.clg_vq.VQMemory` codebooks with EMA codes: texture = the
   shallow first-level encoder features (1/2 grid), global = the graph-refined deepest features (1/8 grid).
   Each code keeps a decayed class histogram of the labelled voxels assigned to it (marks weight 1,
   confident pseudo-labels ``mem_pseudo_weight`` x confidence).  After a warm-up, unlabelled voxels
   whose nearest texture and global codes jointly say "class c" with probability >= ``mem_tau``
   get target c (weight = that probability).  A commitment loss (VQ-VAE's third term, cosine form)
   pulls features towards their codes.  Substitute: the quantised features are *not* fed back to
   the decoders (the abstract does not say they are; it keeps the step cheap).
3. *Cross-latent GNN from reconstruction features to segmentation features* ->
   :class:`~napari_sparseseg.models.clg_vq.CrossLatentGraph`: nodes = cells of the 1/8 feature map
   (8x8-pixel patches), edges = top-k cosine affinities of the reconstruction branch's node
   features, one GCN layer on the segmentation bottleneck features (residual, learnable gain).

Substituted / left out: 2D slice-wise only (the default is 2D on ACDC; the paper's 3D data sets
are not reproduced); one GCN layer; no quantised-feature decoding; the same inputs, prior-residual
head, MIX targets, Dice and two-view consistency terms as the engine's default, so the ablation
measures what the paper adds.  Works from scribbles and from points alone, with or without
pseudo-labels (without them the memory is the only source of targets beyond the marks).

One *step* = one AdamW step of the whole network (encoder, both decoders, graph) on a batch of
crops (x2 intensity views when ``w_consistency`` > 0) plus one EMA update of both memories.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..annotations.sparse import IGNORE_INDEX
from ..models.clg_vq import ClgVqNet, VQMemory, memory_distribution, memory_targets, pixels
from ..training import augment as aug
from ..training.data import crop_batch
from ..training.inference import predict_probabilities
from ..training.losses import consistency, partial_ce, soft_dice, weighted_ce
from .base import MethodContext, MethodOutput, register


@dataclass
class ClgVqOptions:
    """Knobs of the method (defaults = the registered ``clg-vq``).

    channels: encoder widths at 1/2, 1/4, 1/8 and the 1/8 bottleneck (``None`` = config.channels if it has 4 entries,
        else the default's (16, 32, 64, 128)).
    graph_k / graph_pool: edges per node; pooling of the 1/8 map into nodes (1 = every cell a node).
    n_texture_codes / n_global_codes: memory sizes.
    memory: refine targets with the memory (False = memory still trained, targets untouched:
        the ablation switch).  mem_tau: joint confidence needed to fill a voxel.  mem_warmup: fraction
        of the step budget before filling starts (codes are meaningless at first).
    mem_pseudo_weight: weight of confident pseudo-labels (x confidence) in the code class statistics.
    mem_doubt: also down-weight pseudo-labels the memory contradicts (>= mem_tau), marks never.
    w_recon, w_commit: loss weights of the reconstruction (L1) and commitment terms.
    """

    channels: tuple[int, int, int, int] | None = None
    graph_k: int = 8
    graph_pool: int = 1
    n_texture_codes: int = 64
    n_global_codes: int = 64
    memory: bool = True
    mem_tau: float = 0.9
    mem_warmup: float = 0.3
    mem_pseudo_weight: float = 0.5
    mem_doubt: bool = False
    w_recon: float = 0.5
    w_commit: float = 0.05


def _channels(ctx: MethodContext, opts: ClgVqOptions) -> tuple[int, int, int, int]:
    if opts.channels is not None:
        return tuple(int(c) for c in opts.channels)  # type: ignore[return-value]
    ch = ctx.config.channels
    if ch is not None and len(ch) == 4:
        return tuple(int(c) for c in ch)  # type: ignore[return-value]
    return (16, 32, 64, 128)


def _patch(ctx: MethodContext) -> tuple[int, int]:
    """2D crop, rounded up to a multiple of 8 (three stride-2 levels)."""
    p = ctx.config.patch if ctx.config.patch is not None and len(ctx.config.patch) == 2 else (96, 96)
    return tuple(int(-(-int(s) // 8) * 8) for s in p)  # type: ignore[return-value]


class ClgVqTrainer:
    """The training state of one run; :meth:`step` is one optimisation step (see module docstring)."""

    def __init__(self, ctx: MethodContext, opts: ClgVqOptions | None = None) -> None:
        self.ctx, self.opts = ctx, opts or ClgVqOptions()
        cfg = ctx.config
        self.gen = ctx.seed_torch()
        self.rng = ctx.rng()
        self.device = ctx.device
        data = ctx.prepared()
        # one extra all-ones channel rides along through cropping/rotation and marks the real image
        # (vs padding), so the memory never fills targets outside the scan
        self.data = dataclasses.replace(data, x=torch.cat([data.x, torch.ones_like(data.x[:1])]))
        self.k = ctx.n_channels_out
        ch = _channels(ctx, self.opts)
        prior = bool(data.x.shape[0] > 1 and cfg.prior_residual)
        self.model = ClgVqNet(data.x.shape[0], self.k, ch, prior_residual=prior, graph_k=self.opts.graph_k,
                              graph_pool=self.opts.graph_pool).to(self.device)
        self.texture = VQMemory(self.opts.n_texture_codes, ch[0], self.k).to(self.device)
        self.glob = VQMemory(self.opts.n_global_codes, ch[3], self.k).to(self.device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.patch = _patch(ctx)
        self.batch = int(cfg.batch) if cfg.batch is not None else 8
        self.warmup_steps = int(self.opts.mem_warmup * (cfg.max_steps or 200))
        self.filled: list[float] = []

    def _crops(self) -> tuple[torch.Tensor, ...]:
        cfg = self.ctx.config
        x, m, p, w = crop_batch(self.data, self.patch, self.batch, 2, self.rng)
        if p is None or w is None:  # marks only: the memory may still add targets
            p, w = torch.full_like(m, IGNORE_INDEX), torch.zeros(m.shape, dtype=torch.float32)
        if cfg.augment:
            x, m, p, w = aug.geometric(x, m, p, w, 2, self.gen)
        valid = x[:, -1] > 0.5
        x = x[:, :-1]
        clean = x[:, :1].clone()
        views = [aug.intensity(x, self.gen) if cfg.augment else x]
        if cfg.w_consistency > 0:
            views.append(aug.intensity(x, self.gen))
        dev = self.device
        return (torch.cat(views).to(dev), clean.to(dev), m.to(dev), p.to(dev), w.to(dev), valid.to(dev))

    def _label_mass(self, m: torch.Tensor, p: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """(B, K, H, W) class evidence for the code statistics: marks 1, pseudo-labels scaled confidence."""
        marked = m != IGNORE_INDEX
        lab = torch.where(marked, m, p)
        lw = torch.where(marked, torch.ones_like(w), self.opts.mem_pseudo_weight * w) * (lab != IGNORE_INDEX)
        return F.one_hot(lab.clamp_min(0), self.k).permute(0, 3, 1, 2).to(w.dtype) * lw[:, None]

    def step(self, step: int) -> dict[str, float]:
        cfg, opts = self.ctx.config, self.opts
        xin, clean, m, p, w, valid = self._crops()
        b = m.shape[0]
        for g in self.optimizer.param_groups:
            g["lr"] = self.ctx.lr_at(step)
        self.model.train()
        f = self.model.features(xin)
        la, tex, deep = f.logits[:b], f.texture[:b], f.deep[:b]
        # memory: EMA codes, then class statistics from what is known (marks, confident pseudo-labels)
        idx_t = self.texture.update(pixels(tex), self.gen)
        idx_g = self.glob.update(pixels(deep), self.gen)
        mass = self._label_mass(m, p, w)
        for mem, idx, feat in ((self.texture, idx_t, tex), (self.glob, idx_g, deep)):
            cell = m.shape[-1] // feat.shape[-1]  # labelled-voxel counts per feature cell
            mem.update_stats(idx, pixels(F.avg_pool2d(mass, cell) * cell * cell))
        filled = torch.zeros((), device=m.device)
        if opts.memory and step >= self.warmup_steps:
            prob = memory_distribution(self.texture, self.glob, tex.detach(), deep.detach(), tuple(m.shape[-2:]))
            p, w, fill = memory_targets(p, w, prob, valid, opts.mem_tau,
                                        marked=(m != IGNORE_INDEX) if opts.mem_doubt else None)
            filled = fill.float().mean()
        losses: dict[str, torch.Tensor] = {"marks": partial_ce(la, m)}
        total = cfg.w_marks * losses["marks"]
        if cfg.w_pseudo > 0:
            losses["pseudo_ce"] = weighted_ce(la, p, w)
            losses["pseudo_dice"] = soft_dice(la, p, w)
            total = total + cfg.w_pseudo * (losses["pseudo_ce"] + cfg.w_dice * losses["pseudo_dice"])
        losses["recon"] = F.l1_loss(f.recon, clean.repeat(f.recon.shape[0] // b, 1, 1, 1))
        losses["commit"] = self.texture.commitment(pixels(tex)) + self.glob.commitment(pixels(deep))
        total = total + opts.w_recon * losses["recon"] + opts.w_commit * losses["commit"]
        if f.logits.shape[0] > b:
            losses["consistency"] = consistency(la, f.logits[b:])
            total = total + cfg.w_consistency * losses["consistency"]
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        out = {k: float(v.detach()) for k, v in losses.items()}
        out["total"] = float(total.detach())
        out["mem_filled"] = float(filled)
        self.filled.append(out["mem_filled"])
        return out

    def predict(self) -> torch.Tensor:
        """Softmax (K, Z, Y, X) over the whole volume, slice by slice."""
        prob = predict_probabilities(self.model, self.ctx.prepared().x, 2, self.device, self.ctx.config.sw_roi,
                                     self.ctx.should_stop)
        if prob is None:  # stopped during inference: finish it, the caller wants a result
            prob = predict_probabilities(self.model, self.ctx.prepared().x, 2, self.device, self.ctx.config.sw_roi)
        return prob


def run_clg_vq(ctx: MethodContext, opts: ClgVqOptions | None = None) -> MethodOutput:
    """Train :class:`ClgVqTrainer` for the context's budget, predict the volume."""
    tr = ClgVqTrainer(ctx, opts)
    n = 0
    last: dict[str, float] = {}
    for step in ctx.steps():
        last = tr.step(step)
        ctx.report(step, last)
        n = step + 1
    after = tr.filled[tr.warmup_steps:] if tr.opts.memory else []
    info: dict[str, Any] = {
        "steps": n, "network": "clg-vq 2D", "dims": 2,
        "step": f"one AdamW step on {tr.batch} crops {tr.patch} (x2 views if consistency) + EMA of both memories",
        "memory_filled_fraction": float(sum(after) / len(after)) if after else 0.0,
        "final_losses": last, "options": dataclasses.asdict(tr.opts),
    }
    return ctx.outputs(tr.predict(), info)


@register("clg-vq", paper="cross-latent-graph-vq-memory.txt",
          description="reconstruction branch + EMA VQ memory (texture/global) filling targets + cross-latent GCN (2D)")
def _run(ctx: MethodContext) -> MethodOutput:
    return run_clg_vq(ctx)
