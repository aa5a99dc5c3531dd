"""RADA (``rada-barely-supervised.txt``): region-aware guidance from a frozen encoder + tri-view training.

**This is a substitute for the paper's Alpha-CLIP dual encoder, not the paper's method.**  RADA feeds
the image and the sparse annotation's regions to a pretrained Alpha-CLIP (image + text encoders) and
aligns the segmentation network with those region-specific features and with text prompts, inside a
triple-view (axial / coronal / sagittal) training framework.  Alpha-CLIP's weights cannot be had
offline, so here:

* Region-aware image guidance (the paper's Alpha-CLIP image encoder on a region mask) -> the FROZEN
  LiteMedSAM image encoder (the bundled medical SAM, ``sam.loaders.load_backend("litemedsam")``).
  Its 256 x 64 x 64 token map of each needed axial slice is computed ONCE before training, on
  ``ctx.device`` (:func:`~napari_sparseseg.models.rada.encode_slices`).  Only a subset of axial slices
  is encoded (every marked slice first, then slices with confident pseudo-foreground, at most
  ``RadaOptions.max_encoded``): the encoder costs ~0.3-1.6 s per slice on 2 CPU cores.
* Regions = the classes of the current targets (marks, mixed with confident pseudo-labels as SA-Net's
  MIX when pseudo-labels are given), background included.  Per (axial slice, class) the segmentation
  net's per-pixel features and the frozen tokens (resampled at the block's pixels) are averaged over
  the region; the loss is ``1 - cos`` between a small learnable projection (MLP 16 -> 64 -> 256) of the
  seg region vector and the frozen one, or an InfoNCE over the classes of a slice (``align``).
* Text-level semantic guidance (Alpha-CLIP's text encoder, class-name prompts): LEFT OUT; there is
  no medical text encoder offline, and the class names here are arbitrary.
* Triple-view training: ONE shared 2D U-Net (a learned per-view feature scale/shift tells it the view;
  three nets would triple the cost) on blocks of the volume seen as axial slices (array axis 0),
  coronal slices (axis 1) and sagittal slices (axis 2; a few of each per block).  Each view is trained
  on the block's targets (the default's losses: marks CE, confidence-weighted pseudo CE + Dice) and the
  coronal/sagittal predictions must agree with the axial ones on the same voxels (MSE of softmax).
  The slice axis is stretched for the through-plane views by the spacing ratio (at most 4x).
* Inference: the axial view (``infer_views="axial"``) or the mean of the three views (``"tri"``).

One step = one AdamW step of the shared net on ``blocks`` blocks, all three views (see ``info``).
Not built: the paper's pseudo-label propagation for barely-supervised data (the lead gives every
method the same precomputed pseudo-labels), Alpha-CLIP itself.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..models.rada import (TriViewNet, ViewModel, align_loss, choose_encoded_slices, encode_slices, region_pool,
                           sample_frozen, z_scale)
from ..training.inference import predict_probabilities
from ..training.losses import partial_ce, soft_dice, weighted_ce
from .base import MethodContext, MethodOutput, register


@dataclass
class RadaOptions:
    """Knobs of the RADA substitute (defaults: see ``docs/methods/rada.md``)."""

    block: tuple[int, int, int] = (8, 64, 64)  # (slices, rows, columns) of one training block
    blocks: int = 2  # blocks per step
    through_slices: int = 4  # coronal and sagittal slices taken from each block
    feat: int = 16  # per-pixel feature width of the shared net
    align: str = "cosine"  # "cosine" or "infonce"
    tau: float = 0.1  # InfoNCE temperature
    w_align: float = 0.1
    w_views: float = 0.5  # cross-view consistency
    w_through: float = 0.5  # supervised loss of the coronal + sagittal views (each), axial = 1
    max_encoded: int = 16  # axial slices run through the frozen encoder
    stride: int = 4  # frozen tokens are resampled every ``stride`` pixels (LiteMedSAM token = 4 px)
    min_region: int = 8  # pixels a region needs in a slice of a block to be aligned
    z_cap: int = 4  # at most this slice-axis stretch for the through-plane views
    infer_views: str = "axial"  # "axial" or "tri"
    backend: Any = "litemedsam"
    cache_dir: Any = None  # EmbeddingCache folder (None: memory only)


def _ceil(v: int, m: int) -> int:
    return int(-(-int(v) // m) * m)


def _crop(t: torch.Tensor, start: list[int], size: tuple[int, ...], value: float) -> torch.Tensor:
    """``t[..., z, y, x]`` block at ``start`` (may stick out: padded with ``value``)."""
    dims = t.shape[-3:]
    sl, pads = [], []
    for s, n, d in zip(start, size, dims):
        lo, hi = max(s, 0), min(s + n, d)
        sl.append(slice(lo, hi))
        pads += [lo - s, s + n - hi]
    out = t[(..., *sl)]
    flat = [pads[4], pads[5], pads[2], pads[3], pads[0], pads[1]]
    return F.pad(out, flat, value=value) if any(flat) else out


def _view_loss(logits: torch.Tensor, marks: torch.Tensor, pt: torch.Tensor | None, pw: torch.Tensor | None,
               cfg) -> torch.Tensor:
    """The default trainer's supervised losses on one view."""
    loss = cfg.w_marks * partial_ce(logits, marks)
    if pt is not None and pw is not None and cfg.w_pseudo > 0:
        loss = loss + cfg.w_pseudo * (weighted_ce(logits, pt, pw) + cfg.w_dice * soft_dice(logits, pt, pw))
    return loss


def _masked_mse(pa: torch.Tensor, pb: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    """MSE of two softmax maps ``(B, K, ...)`` over voxels ``inside`` ``(B, ...)`` the image."""
    m = inside.unsqueeze(1).to(pa.dtype)
    return ((pa - pb) ** 2 * m).sum() / (m.sum() * pa.shape[1]).clamp_min(1.0)


@register("rada", paper="rada-barely-supervised.txt",
          description="tri-view shared 2D U-Net + region alignment with frozen LiteMedSAM features (Alpha-CLIP substitute)")
def run_rada(ctx: MethodContext, options: RadaOptions | None = None) -> MethodOutput:
    from ..pseudo.normalize import normalize_intensity
    from ..sam.loaders import load_backend

    opt = options or RadaOptions()
    cfg = ctx.config
    ctx.seed_torch()
    rng = ctx.rng(1)
    dev = ctx.device
    data = ctx.prepared()
    k = ctx.n_channels_out
    x = data.x.to(dev)
    C, Z, Y, X = x.shape
    marks = data.marks.to(dev)
    pt = data.pseudo.to(dev) if data.pseudo is not None else None
    pw = data.weight.to(dev) if data.weight is not None else None
    regions = pt if pt is not None else marks  # targets whose classes are the regions
    prior = bool(cfg.pseudo_input and ctx.pseudo is not None and cfg.prior_residual)
    net = TriViewNet(C, k, feat=opt.feat, channels=cfg.channels or (16, 32, 64, 128), prior=prior).to(dev)
    optim = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator(device=dev).manual_seed(cfg.seed + 7)

    # frozen encoder, once, before training
    t0 = time.perf_counter()
    enc_slices = choose_encoded_slices(data.marks.numpy(), None if data.pseudo is None else data.pseudo.numpy(),
                                       opt.max_encoded)
    backend = load_backend(opt.backend, device=str(dev))
    if dev.type == "cpu":
        from ..sam.fast import enable_fast_encoder

        enable_fast_encoder(backend)
    emb, rows, input_size = encode_slices(backend, normalize_intensity(ctx.image.array), enc_slices, dev, opt.cache_dir)
    encode_seconds = time.perf_counter() - t0

    m = net.multiple
    zs = z_scale(ctx.image.spacing, opt.z_cap)
    bz = _ceil(opt.block[0], m)
    size = (bz, min(opt.block[1], _ceil(Y, m)), min(opt.block[2], _ceil(X, m)))
    inside_full = torch.ones((Z, Y, X), dtype=torch.bool, device=dev)
    nsub = opt.through_slices
    last: dict[str, float] = {}
    for step in ctx.steps():
        for g in optim.param_groups:
            g["lr"] = ctx.lr_at(step)
        ax_x, ax_t, ax_r, cor_x, cor_t, sag_x, sag_t, pairs, frozen_pool, frozen_valid, seg_sel = ([] for _ in range(11))
        for b in range(opt.blocks):
            ctr = data.centres[rng.choice(len(data.centres), p=data.centre_weights)]
            start = [int(c) - s // 2 + int(rng.integers(-(s // 4), s // 4 + 1)) for c, s in zip(ctr, size)]
            xb = _crop(x, start, size, 0.0)
            tb = [_crop(t, start, size, -1) if t is not None else None for t in (marks, pt, regions)]
            wb = _crop(pw, start, size, 0.0) if pw is not None else None
            inside = _crop(inside_full, start, size, False)
            # frozen region vectors of the block's encoded axial slices (flip-invariant: pooled)
            zi = torch.arange(start[0], start[0] + bz, device=dev)
            ok = (zi >= 0) & (zi < Z)
            r = torch.full_like(zi, -1)
            r[ok] = rows[zi[ok]]
            sel = torch.nonzero(r >= 0).flatten()
            if len(sel):
                fz = sample_frozen(emb, r[sel], start[1:], size[1:], (Y, X), input_size, backend.image_size, opt.stride)
                fp, cnt = region_pool(fz, tb[2][sel], k, opt.stride)
                frozen_pool.append(fp)
                frozen_valid.append(cnt >= opt.min_region)
                seg_sel.append(sel + b * bz)
            # augment: flips (y, x), intensity on the image channel
            flip = [d for d, f in zip((-2, -1), rng.random(2) < 0.5) if f and cfg.augment]
            if flip:
                xb, inside = xb.flip(flip), inside.flip(flip)
                tb = [t.flip(flip) if t is not None else None for t in tb]
                wb = wb.flip(flip) if wb is not None else None
            if cfg.augment:
                sc = 1 + 0.15 * (2 * torch.rand((), generator=gen, device=dev) - 1)
                sh = 0.15 * (2 * torch.rand((), generator=gen, device=dev) - 1)
                img = xb[0] * sc + sh + 0.05 * torch.randn(xb[0].shape, generator=gen, device=dev)
                xb = torch.cat([img[None], xb[1:]])
            tgt = (tb[0], tb[1], wb)
            ax_x.append(xb.permute(1, 0, 2, 3))
            ax_t.append(tgt)
            ax_r.append(tb[2])
            # through-plane slices: rows / columns that hold image voxels
            ys = torch.multinomial(inside.any(2).any(0).float(), nsub, replacement=True, generator=gen)
            xs = torch.multinomial(inside.any(1).any(0).float(), nsub, replacement=True, generator=gen)
            cor_x.append(xb[:, :, ys, :].permute(2, 0, 1, 3))
            cor_t.append(tuple(t[:, ys, :].permute(1, 0, 2) if t is not None else None for t in tgt))
            sag_x.append(xb[:, :, :, xs].permute(3, 0, 1, 2))
            sag_t.append(tuple(t[:, :, xs].permute(2, 0, 1) if t is not None else None for t in tgt))
            pairs.append((ys, xs, inside))
        net.train()
        la, fa = net(torch.cat(ax_x), 0)
        lc = _through(net, torch.cat(cor_x), 1, zs, bz)
        ls = _through(net, torch.cat(sag_x), 2, zs, bz)
        cat = lambda ts, i: torch.cat([t[i] for t in ts]) if ts[0][i] is not None else None  # noqa: E731
        losses = {"axial": _view_loss(la, cat(ax_t, 0), cat(ax_t, 1), cat(ax_t, 2), cfg),
                  "coronal": _view_loss(lc, cat(cor_t, 0), cat(cor_t, 1), cat(cor_t, 2), cfg),
                  "sagittal": _view_loss(ls, cat(sag_t, 0), cat(sag_t, 1), cat(sag_t, 2), cfg)}
        pa, pc, ps = torch.softmax(la, 1), torch.softmax(lc, 1), torch.softmax(ls, 1)
        cons = []
        for b, (ys, xs, inside) in enumerate(pairs):
            pab = pa[b * bz:(b + 1) * bz]  # (bz, K, by, bx)
            pcb = pc[b * nsub:(b + 1) * nsub].permute(2, 1, 0, 3)  # -> (bz, K, nsub, bx)
            psb = ps[b * nsub:(b + 1) * nsub].permute(2, 1, 3, 0)  # -> (bz, K, by, nsub)
            cons.append(_masked_mse(pab[:, :, ys, :], pcb, inside[:, ys, :]))
            cons.append(_masked_mse(pab[:, :, :, xs], psb, inside[:, :, xs]))
        losses["views"] = torch.stack(cons).mean()
        if frozen_pool:
            idx = torch.cat(seg_sel)
            seg_pool, _ = region_pool(fa[idx], torch.cat(ax_r)[idx], k)
            losses["align"] = align_loss(net.proj(seg_pool), torch.cat(frozen_pool), torch.cat(frozen_valid),
                                         opt.align, opt.tau)
        else:
            losses["align"] = la.sum() * 0.0
        total = (losses["axial"] + opt.w_through * (losses["coronal"] + losses["sagittal"])
                 + opt.w_views * losses["views"] + opt.w_align * losses["align"])
        optim.zero_grad(set_to_none=True)
        total.backward()
        optim.step()
        last = {kk: float(v.detach()) for kk, v in losses.items()}
        last["total"] = float(total.detach())
        ctx.report(step, last)
    steps = (step + 1) if last else 0
    prob = _predict(net, data.x, dev, zs, opt.infer_views, cfg.sw_roi)
    info = {"steps": steps, "network": "tri-view unet2d (shared)", "step": "one AdamW step on "
            f"{opt.blocks} blocks {size} x 3 views", "encoded_slices": len(enc_slices), "encode_seconds": encode_seconds,
            "z_scale": zs, "options": {kk: v for kk, v in asdict(opt).items() if kk not in ("backend", "cache_dir")},
            "last_losses": last}
    return ctx.outputs(prob, info)


def _through(net: TriViewNet, xv: torch.Tensor, view: int, zs: int, bz: int) -> torch.Tensor:
    """Logits of coronal/sagittal slices ``(n, C, bz, w)``: slice axis stretched ``zs``x for the net,
    then averaged back to the block grid so every view's logits sit on the same voxels."""
    if zs > 1:
        xv = F.interpolate(xv, scale_factor=(zs, 1), mode="bilinear", align_corners=False)
    logits, _ = net(xv, view)
    if zs > 1:
        n, kk, _, w = logits.shape
        logits = logits.view(n, kk, bz, zs, w).mean(3)
    return logits


def _predict(net: TriViewNet, x: torch.Tensor, dev: torch.device, zs: int, views: str, roi) -> torch.Tensor:
    """Softmax ``(K, Z, Y, X)`` of the axial view, or the mean of the three views (``"tri"``)."""
    if views not in ("axial", "tri"):
        raise ValueError(f"infer_views must be 'axial' or 'tri', got {views!r}")
    prob = predict_probabilities(ViewModel(net, 0), x, 2, dev, roi)
    if views == "axial":
        return prob
    Z = x.shape[1]
    for view, perm, back in ((1, (0, 2, 1, 3), (0, 2, 1, 3)), (2, (0, 3, 1, 2), (0, 2, 3, 1))):
        xv = x.permute(*perm)  # (C, S, Z, W): slices of the view along axis 1
        if zs > 1:
            xv = F.interpolate(xv, scale_factor=(zs, 1), mode="bilinear", align_corners=False)
        pv = predict_probabilities(ViewModel(net, view), xv.contiguous(), 2, dev, roi)
        if zs > 1:
            pv = F.adaptive_avg_pool2d(pv, (Z, pv.shape[-1])) if pv.shape[2] != Z else pv
        prob = prob + pv.permute(*back)
    return prob / 3.0
