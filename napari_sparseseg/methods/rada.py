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
  The slice axis is stretched for the through-plane views by the spacing ratio (at most 4x).  Extra
  one-slice axial crops (``axial_crops``) keep the supervised pixels per step near the default's when
  only 3 slices are labelled (a block of 8 slices then holds 1-2 labelled ones).  BatchNorm running
  statistics come from the axial view only (the strips' statistics differ; letting them in broke
  marks-only predictions).  Frozen features exist for axial slices only (the encoder saw 2D images).
* Inference: the axial view (``infer_views="axial"``) or the mean of the three views (``"tri"``).

One step = one AdamW step of the shared net on ``blocks`` blocks, all three views (see ``info``).
Not built: the paper's pseudo-label propagation for barely-supervised data (the engine gives every
method the same precomputed pseudo-labels), Alpha-CLIP itself.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..models.rada import (
    TriViewNet,
    ViewModel,
    align_loss,
    choose_encoded_slices,
    encode_slices,
    region_pool,
    sample_frozen,
    z_scale,
)
from ..training.inference import predict_probabilities
from ..training.losses import partial_ce, soft_dice, weighted_ce
from .base import MethodContext, MethodOutput, register


@dataclass
class RadaOptions:
    """Knobs of the RADA substitute (defaults: see ``docs/methods/rada.md``)."""

    block: tuple[int, int, int] = (8, 64, 64)  # (slices, rows, columns) of one training block
    blocks: int = 2  # blocks per step (all three views)
    axial_crops: int = 4  # extra one-slice crops per step (axial view + alignment only)
    through_slices: int = 4  # coronal and sagittal slices taken from each block
    feat: int = 16  # per-pixel feature width of the shared net
    align: str = "cosine"  # "cosine" or "infonce"
    tau: float = 0.1  # InfoNCE temperature
    w_align: float = 0.1
    w_views: float = 0.5  # cross-view consistency
    w_through: float = 0.5  # supervised loss of the coronal + sagittal views (each), axial = 1
    max_encoded: int = 8  # axial slices run through the frozen encoder (CPU cost: ~0.3-1.6 s each)
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


@dataclass
class _Volume:
    """The training tensors on the device plus the frozen embeddings (what a crop is cut from)."""

    x: torch.Tensor  # (C, Z, Y, X)
    marks: torch.Tensor
    pseudo: torch.Tensor | None
    weight: torch.Tensor | None
    regions: torch.Tensor  # targets whose classes are the regions (pseudo MIX marks, else marks)
    inside: torch.Tensor  # bool, all True: padded crops mark what lies outside the image
    emb: torch.Tensor  # (n, 256, 64, 64) frozen tokens of the encoded slices
    rows: torch.Tensor  # (Z,) slice -> embedding row or -1
    input_size: tuple[int, int]
    encoder_size: int


def _draw(v: _Volume, ctr, size, rng, gen, k: int, opt: RadaOptions, augment: bool) -> dict[str, Any]:
    """One block (or one-slice crop) around ``ctr``: tensors, flips + intensity augmentation, and the
    frozen region vectors of its encoded slices (pooled before the flip: pooling ignores positions)."""
    Z, Y, X = v.x.shape[1:]
    start = [int(c) - s // 2 + int(rng.integers(-(s // 4), s // 4 + 1)) for c, s in zip(ctr, size)]
    xb = _crop(v.x, start, size, 0.0)
    t = [_crop(t, start, size, -1) if t is not None else None for t in (v.marks, v.pseudo, v.regions)]
    wb = _crop(v.weight, start, size, 0.0) if v.weight is not None else None
    inside = _crop(v.inside, start, size, False)
    zi = torch.arange(start[0], start[0] + size[0], device=v.x.device)
    ok = (zi >= 0) & (zi < Z)
    r = torch.full_like(zi, -1)
    r[ok] = v.rows[zi[ok]]
    sel = torch.nonzero(r >= 0).flatten()
    out: dict[str, Any] = {"sel": sel}
    if len(sel):
        fz = sample_frozen(v.emb, r[sel], start[1:], size[1:], (Y, X), v.input_size, v.encoder_size, opt.stride)
        out["frozen"], cnt = region_pool(fz, t[2][sel], k, opt.stride)
        out["valid"] = cnt >= opt.min_region
    flip = [d for d, f in zip((-2, -1), rng.random(2) < 0.5) if f and augment]
    if flip:
        xb, inside, wb = xb.flip(flip), inside.flip(flip), wb.flip(flip) if wb is not None else None
        t = [tt.flip(flip) if tt is not None else None for tt in t]
    if augment:
        sc = 1 + 0.15 * (2 * torch.rand((), generator=gen, device=xb.device) - 1)
        sh = 0.15 * (2 * torch.rand((), generator=gen, device=xb.device) - 1)
        img = xb[0] * sc + sh + 0.05 * torch.randn(xb[0].shape, generator=gen, device=xb.device)
        xb = torch.cat([img[None], xb[1:]])
    out.update(x=xb, tgt=(t[0], t[1], wb), regions=t[2], inside=inside)
    return out


@register("rada", paper="rada-barely-supervised.txt",
          description="tri-view shared 2D U-Net + region alignment with frozen LiteMedSAM features (Alpha-CLIP substitute)")
def run_rada(ctx: MethodContext, options: RadaOptions | None = None) -> MethodOutput:
    from ..pseudo.normalize import percentile_unit_range
    from ..sam.loaders import load_backend

    opt = options or RadaOptions()
    cfg = ctx.config
    ctx.seed_torch()
    rng = ctx.rng(1)
    dev = ctx.device
    data = ctx.prepared()
    k = ctx.n_channels_out
    C, Z, Y, X = data.x.shape
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
    emb, rows, input_size = encode_slices(backend, percentile_unit_range(ctx.image.array), enc_slices, dev, opt.cache_dir)
    encode_seconds = time.perf_counter() - t0

    marks = data.marks.to(dev)
    pt = data.pseudo.to(dev) if data.pseudo is not None else None
    vol = _Volume(data.x.to(dev), marks, pt, data.weight.to(dev) if data.weight is not None else None,
                  pt if pt is not None else marks, torch.ones((Z, Y, X), dtype=torch.bool, device=dev),
                  emb, rows, input_size, backend.image_size)
    m = net.multiple
    zs = z_scale(ctx.image.spacing, opt.z_cap)
    bz = _ceil(opt.block[0], m)
    size = (bz, min(opt.block[1], _ceil(Y, m)), min(opt.block[2], _ceil(X, m)))
    nsub = opt.through_slices
    last: dict[str, float] = {}
    for step in ctx.steps():
        for g in optim.param_groups:
            g["lr"] = ctx.lr_at(step)
        centres = data.centres[rng.choice(len(data.centres), size=opt.blocks + opt.axial_crops, p=data.centre_weights)]
        draws = [_draw(vol, c, size if i < opt.blocks else (1, *size[1:]), rng, gen, k, opt, cfg.augment)
                 for i, c in enumerate(centres)]
        blocks = draws[: opt.blocks]
        # coronal / sagittal slices of each block: rows / columns that hold image voxels
        cuts = [(torch.multinomial(d["inside"].any(2).any(0).float(), nsub, replacement=True, generator=gen),
                 torch.multinomial(d["inside"].any(1).any(0).float(), nsub, replacement=True, generator=gen))
                for d in blocks]
        net.train()
        la, fa = net(torch.cat([d["x"].permute(1, 0, 2, 3) for d in draws]), 0)
        lc = _through(net, torch.cat([d["x"][:, :, ys, :].permute(2, 0, 1, 3) for d, (ys, _) in zip(blocks, cuts)]), 1, zs, bz)
        ls = _through(net, torch.cat([d["x"][:, :, :, xs].permute(3, 0, 1, 2) for d, (_, xs) in zip(blocks, cuts)]), 2, zs, bz)
        ax_t = [d["tgt"] for d in draws]
        cor_t = [tuple(t[:, ys, :].permute(1, 0, 2) if t is not None else None for t in d["tgt"]) for d, (ys, _) in zip(blocks, cuts)]
        sag_t = [tuple(t[:, :, xs].permute(2, 0, 1) if t is not None else None for t in d["tgt"]) for d, (_, xs) in zip(blocks, cuts)]
        losses = {"axial": _view_loss(la, *_cat(ax_t), cfg), "coronal": _view_loss(lc, *_cat(cor_t), cfg),
                  "sagittal": _view_loss(ls, *_cat(sag_t), cfg)}
        pa, pc, ps = torch.softmax(la, 1), torch.softmax(lc, 1), torch.softmax(ls, 1)
        cons = []
        for b, (d, (ys, xs)) in enumerate(zip(blocks, cuts)):
            pab = pa[b * bz:(b + 1) * bz]  # (bz, K, by, bx)
            pcb = pc[b * nsub:(b + 1) * nsub].permute(2, 1, 0, 3)  # -> (bz, K, nsub, bx)
            psb = ps[b * nsub:(b + 1) * nsub].permute(2, 1, 3, 0)  # -> (bz, K, by, nsub)
            cons.append(_masked_mse(pab[:, :, ys, :], pcb, d["inside"][:, ys, :]))
            cons.append(_masked_mse(pab[:, :, :, xs], psb, d["inside"][:, :, xs]))
        losses["views"] = torch.stack(cons).mean()
        # region alignment on the encoded axial slices of every draw
        offsets = np.cumsum([0] + [d["x"].shape[1] for d in draws])
        with_frozen = [(o, d) for o, d in zip(offsets, draws) if "frozen" in d]
        if with_frozen:
            idx = torch.cat([d["sel"] + int(o) for o, d in with_frozen])
            seg_pool, _ = region_pool(fa[idx], torch.cat([d["regions"][d["sel"]] for _, d in with_frozen]), k)
            losses["align"] = align_loss(net.proj(seg_pool), torch.cat([d["frozen"] for _, d in with_frozen]),
                                         torch.cat([d["valid"] for _, d in with_frozen]), opt.align, opt.tau)
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
    info = {"steps": steps, "network": "tri-view unet2d (shared)",
            "step": f"one AdamW step on {opt.blocks} blocks {size} x 3 views + {opt.axial_crops} axial crops",
            "encoded_slices": len(enc_slices), "encode_seconds": encode_seconds, "z_scale": zs,
            "options": {kk: v for kk, v in asdict(opt).items() if kk not in ("backend", "cache_dir")}, "last_losses": last}
    return ctx.outputs(prob, info)


def _cat(ts: list[tuple]) -> tuple:
    """Concatenate per-draw (marks, pseudo, weight) targets; None stays None."""
    return tuple(torch.cat([t[i] for t in ts]) if ts[0][i] is not None else None for i in range(3))


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
