"""SA-Net: cross-supervision of a 3D network by two 2D networks and SAM (Su et al., MICCAI 2025).

Mapping to the paper:

* Sec. 2.1 / eq. 1, MIX(G, P) with SAM's threshold ``t``: the 2D nets' targets are
  ``ctx.prepared().pseudo`` -- the shared pseudo-labels (LiteMedSAM/walker fusion, computed once per
  case by the engine) kept where their confidence >= ``config.threshold``, overwritten by the marks.
* Sec. 2.1 / Fig. 1, "the data were sliced in two directions, generating transverse and coronal plane
  slices, which were employed to train the 2D segmentation networks": two 2D U-Nets, one on the
  transverse slices of each 3D crop (array axis 0 = slice axis), one on its coronal slices (images of
  (slice, x), one per row of axis 1).
* Sec. 2.1, "the 2D network ... generates pseudo labels for the 3D network by making consistent
  predictions on the same input sample": the 3D U-Net sees the same crop; where both 2D nets give the
  same argmax with confidence >= ``agree_threshold`` that label is its target (weight = the weaker
  confidence), marks win where present (MIX again).  The three nets train jointly; for the first
  ``warmup_frac`` of the steps the 3D net learns from MIX(marks, SAM) while the 2D nets warm up.
* The 3D net is the output (``output="3d"``); ``"ensemble"`` (mean of the three) and
  ``"transverse"`` are options for the ablation.

Substituted or left out, honestly:

* SAM-Med3D and the paper's ResNet-50 encoders are not available offline / too slow on a laptop CPU:
  pseudo-labels come from the project's LiteMedSAM + random-walker fusion and all three networks are
  the engine's small MONAI U-Nets (with its prior-residual head when pseudo-labels are an input).
* The bilateral graph convolution (BGC, Sec. 2.2), multi-scale attention (MSA, Sec. 2.3) and recovery
  module (RM) are not built: the brief makes them optional refinements to include only if they measure
  better, and the time box did not allow building and measuring them.  See docs/methods/sa-net.md.
* Thick/few-slice volumes (ACDC: 6-17 slices, identity affine) get anisotropic geometry: no pooling
  along axis 0, crops of at most 8 slices (see ``models/sa_net.py``).

One step = one AdamW step of each of the three networks on one batch of 3D crops.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from ..annotations.sparse import IGNORE_INDEX
from ..models.sa_net import (
    CHANNELS_2D,
    CHANNELS_3D,
    Geometry,
    agreement_targets,
    build_sa_nets,
    from_coronal,
    from_transverse,
    plan_geometry,
    to_coronal,
    to_transverse,
)
from ..training import augment as aug
from ..training.data import TrainingData, crop_batch
from ..training.inference import predict_probabilities
from ..training.losses import partial_ce, soft_dice, weighted_ce
from .base import MethodContext, MethodOutput, register


@dataclass
class SANetOptions:
    """Knobs of the SA-Net method (defaults are the ones measured in the report)."""

    agree_threshold: float = 0.5  # both 2D nets at least this confident for a 3D target
    warmup_frac: float = 0.2  # first part of the steps: 3D net on MIX(marks, SAM) instead of agreement
    w_sam_3d: float = 0.0  # keep MIX(marks, SAM) as an extra 3D target after the warm-up (0 = paper)
    output: str = "3d"  # "3d", "ensemble" (mean of the three nets) or "transverse"


@dataclass
class SANetModels:
    """The trained networks plus what is needed to predict with them."""

    nets: torch.nn.ModuleDict
    geometry: Geometry
    x: torch.Tensor  # (C, Z, Y, X) network input on the CPU
    device: torch.device
    steps: int
    agree_fraction: float  # last step: share of valid crop voxels with an agreement (or mark) target


def _with_valid_channel(data: TrainingData) -> TrainingData:
    """Append a channel of ones: crops pad it with 0, so it marks which crop voxels are in the image."""
    x = torch.cat([data.x, torch.ones_like(data.x[:1])])
    return TrainingData(x, data.marks, data.pseudo, data.weight, data.centres, data.centre_weights)


def _supervised(logits: torch.Tensor, marks: torch.Tensor, target: torch.Tensor | None, weight: torch.Tensor | None,
                ctx: MethodContext) -> torch.Tensor:
    """The default's loss: marks CE + confidence-weighted CE and Dice on MIX targets."""
    cfg = ctx.config
    loss = cfg.w_marks * partial_ce(logits, marks)
    if target is not None and weight is not None and cfg.w_pseudo > 0:
        loss = loss + cfg.w_pseudo * (weighted_ce(logits, target, weight) + cfg.w_dice * soft_dice(logits, target, weight))
    return loss


def step_losses(nets: torch.nn.ModuleDict, x: torch.Tensor, m: torch.Tensor, p: torch.Tensor | None,
                w: torch.Tensor | None, valid: torch.Tensor, ctx: MethodContext, opts: SANetOptions,
                use_agreement: bool) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Loss of each network on one batch of 3D crops ``x`` (B, C, D, H, W); also the 3D targets used.

    The 2D nets learn from the marks and MIX(marks, SAM > t) (``p``, ``w``) on their slices; the 3D
    net from the marks and, once ``use_agreement``, from where the two 2D nets agree (before that,
    from MIX like the 2D nets: the warm-up).  The 2D predictions are detached: they are targets.
    """
    cfg = ctx.config
    b = x.shape[0]
    lt = nets["transverse"](to_transverse(x))
    lc = nets["coronal"](to_coronal(x))
    lv = nets["volume"](x)
    has_p = p is not None and w is not None
    loss_t = _supervised(lt, to_transverse(m), to_transverse(p) if has_p else None, to_transverse(w) if has_p else None, ctx)
    loss_c = _supervised(lc, to_coronal(m), to_coronal(p) if has_p else None, to_coronal(w) if has_p else None, ctx)
    with torch.no_grad():
        prob_t = from_transverse(torch.softmax(lt.detach(), 1), b)
        prob_c = from_coronal(torch.softmax(lc.detach(), 1), b)
        agree_t, agree_w = agreement_targets(prob_t, prob_c, opts.agree_threshold, m, valid)
    if not use_agreement:
        loss_v = _supervised(lv, m, p, w, ctx)
    else:
        loss_v = cfg.w_marks * partial_ce(lv, m) + weighted_ce(lv, agree_t, agree_w) + cfg.w_dice * soft_dice(lv, agree_t, agree_w)
        if opts.w_sam_3d > 0 and p is not None and w is not None:
            loss_v = loss_v + opts.w_sam_3d * (weighted_ce(lv, p, w) + cfg.w_dice * soft_dice(lv, p, w))
    return {"transverse": loss_t, "coronal": loss_c, "volume": loss_v}, agree_t


def train_sa_net(ctx: MethodContext, opts: SANetOptions | None = None) -> SANetModels:
    """Train the transverse, coronal and 3D networks jointly within ``ctx.steps()``."""
    opts = opts or SANetOptions()
    cfg = ctx.config
    device = ctx.device
    gen = ctx.seed_torch()
    rng = ctx.rng()
    data = ctx.prepared()
    cropped = _with_valid_channel(data)
    geo = plan_geometry(ctx.image.shape, ctx.image.spacing, cfg.patch, cfg.batch)
    prior = bool(cfg.pseudo_input and cfg.prior_residual and ctx.pseudo is not None)
    ch2 = tuple(cfg.channels or CHANNELS_2D)
    ch3 = CHANNELS_3D if cfg.channels is None else tuple(max(2, c // 2) for c in ch2)  # the default's 3D rule
    nets = build_sa_nets(geo, data.x.shape[0], ctx.n_channels_out, prior, ch2, ch3).to(device)
    opt = torch.optim.AdamW(nets.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    total_steps = cfg.max_steps or 200
    warmup = int(round(opts.warmup_frac * total_steps))
    agree_frac = 0.0
    nets.train()
    step = -1
    for step in ctx.steps():
        x, m, p, w = crop_batch(cropped, geo.patch, geo.batch, 3, rng)
        if cfg.augment:
            x, m, p, w = aug.geometric(x, m, p, w, 3, gen)
            x = aug.intensity(x, gen)
        valid = (x[:, -1] > 0.5).to(device)
        x, m = x[:, :-1].to(device), m.to(device)
        p = p.to(device) if p is not None else None
        w = w.to(device) if w is not None else None
        for g in opt.param_groups:
            g["lr"] = ctx.lr_at(step)

        losses, agree_t = step_losses(nets, x, m, p, w, valid, ctx, opts, use_agreement=step >= warmup)
        total = losses["transverse"] + losses["coronal"] + losses["volume"]
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        n_valid = valid.sum().clamp_min(1)
        agree_frac = float(((agree_t != IGNORE_INDEX) & valid).sum() / n_valid)
        ctx.report(step, {"loss": float(total.detach()), **{k: float(v.detach()) for k, v in losses.items()},
                          "agree": agree_frac})
    return SANetModels(nets, geo, data.x, device, step + 1, agree_frac)


def predict_view(models: SANetModels, view: str, should_stop: Any = None) -> torch.Tensor | None:
    """Softmax ``(K, Z, Y, X)`` of one network over the whole volume (None if stopped)."""
    net, x, dev = models.nets[view], models.x, models.device
    if view == "volume":
        return predict_probabilities(net, x, 3, dev, models.geometry.roi_3d(x.shape[1:]), should_stop)
    if view == "transverse":
        return predict_probabilities(net, x, 2, dev, None, should_stop)
    prob = predict_probabilities(net, x.permute(0, 2, 1, 3), 2, dev, (256, 256), should_stop)  # slices along axis 1
    return None if prob is None else prob.permute(0, 2, 1, 3).contiguous()


def predict_output(models: SANetModels, output: str, should_stop: Any = None) -> torch.Tensor | None:
    if output == "3d":
        return predict_view(models, "volume", should_stop)
    if output == "transverse":
        return predict_view(models, "transverse", should_stop)
    if output == "ensemble":
        probs = [predict_view(models, v, should_stop) for v in ("transverse", "coronal", "volume")]
        return None if any(p is None for p in probs) else torch.stack(probs).mean(0)  # type: ignore[arg-type]
    raise ValueError(f"unknown SA-Net output {output!r}: use 3d, ensemble or transverse")


@register("sa-net", paper="sa-net-sam-sparse-annotation.txt",
          description="SA-Net: transverse + coronal 2D nets on MIX(marks, SAM>t) supervise a 3D net where they agree")
def run_sa_net(ctx: MethodContext, opts: SANetOptions | None = None) -> MethodOutput:
    opts = opts or SANetOptions()
    models = train_sa_net(ctx, opts)
    prob = predict_output(models, opts.output, ctx.should_stop)
    if prob is None:
        from ..errors import SparsesegError

        raise SparsesegError("sa-net: cancelled during the final prediction")
    info = {"steps": models.steps, "step": "one AdamW step of each of 3 nets (transverse 2D, coronal 2D, 3D)",
            "network": f"sa-net:{opts.output}", "patch": list(models.geometry.patch), "batch": models.geometry.batch,
            "anisotropic": models.geometry.anisotropic, "agree_fraction": models.agree_fraction, **asdict(opts)}
    return ctx.outputs(prob, info)
