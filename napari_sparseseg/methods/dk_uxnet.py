"""DK-UXNet (Wu, Li, Zhang: "Semi-supervised Medical Image Segmentation via Query Distribution
Consistency"; code Rows21/DK-UXNet) adapted to
one volume with sparse marks.

What the paper does -> what runs here:

* Mutual learning between two networks (Fig. 1): network A is the engine's default 2D U-Net (1x1
  conv head, prior-residual when pseudo-labels are given), network B is a 2D U-Net with a kMaX decoder
  head (:class:`~napari_sparseseg.models.kmax.KMaXUNet2d`).  Each sees the same crops under its own
  intensity augmentation and is supervised by the marks + confident pseudo-labels (the default's
  partial CE + confidence-weighted CE + soft Dice), plus a mutual term: cross-entropy to the *other*
  network's argmax where the other's probability >= ``mutual_threshold`` (other side detached),
  ramped in over the first ``mutual_ramp`` of the steps.
* 3D UX-Net backbone (Sec. 2, Fig. 2): replaced by a 2D conv U-Net of the default's size, slice-wise
  along array axis 0 (also on near-isotropic volumes such as hippocampus).
* kMaX decoder (Fig. 3): N learnable queries updated by cluster-wise argmax attention over the
  decoder features at 1/4 and 1/2 resolution; mask logits = query kernel . pixel embedding; per-query
  class logits; per-class maps = sum over queries of p(class|query) x softmax_queries(mask logits).
* Dual contrastive loss (L_segc + L_qdc): the paper text we have gives only the names; the released
  code trains ``DiceCE(seg, y) + 0.1 * CE(query distribution, y)``, where the query distribution sums
  query responses over fixed per-class query groups.  Here: L_segc = the supervised loss on B's
  per-class maps; L_qdc = CE of the query distribution against the same marks/pseudo targets at the
  final layer and (deep supervision, as kMaX does) at each kMaX layer, plus a consistency term (MSE)
  between the query distribution and B's segmentation output on *every* pixel, unlabelled ones
  included -- our closest honest reading of "keeps the query distribution consistent with the
  segmentation output".  No negative pairs: nothing in the released code is contrastive in the
  InfoNCE sense.
* Final prediction: mean of the two networks' softmax (``final="mean"``); ``"a"``/``"b"`` pick one.
  Network B's queries summarise the whole window, so ``b_window="patch"`` evaluates it on windows of
  the training crop size; on two ACDC volumes (150 steps) that changed mean Dice by < 0.001 against
  the engine's default window, which needs fewer windows, so the default window is the default.

One step = one AdamW step of both networks on one batch of crops (B runs on the same batch; the
default's second consistency view is not run, the mutual term plays that role).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..models.kmax import KMaXUNet2d
from ..models.networks import build_network, default_spec
from ..training import augment as aug
from ..training.data import crop_batch
from ..training.inference import predict_probabilities
from ..training.losses import consistency, partial_ce, soft_dice, weighted_ce
from .base import MethodContext, MethodOutput, register


@dataclass
class DKUXNetOptions:
    """Knobs of the method (defaults are what ``--method dk-uxnet`` runs)."""

    queries_per_class: int = 4  # N = queries_per_class * (classes + 1)
    query_dim: int = 64
    w_qdc: float = 0.3  # query distribution CE vs marks/pseudo (final + per-layer mean)
    w_qd_seg: float = 0.1  # query distribution vs segmentation output, every pixel
    w_mutual: float = 0.5  # CE to the other network's confident predictions
    mutual_threshold: float = 0.8
    mutual_ramp: float = 0.2  # fraction of max_steps over which w_mutual ramps up linearly
    final: str = "mean"  # "mean", "a" (default U-Net) or "b" (kMaX net)
    b_window: str = "default"  # inference window of net B: "default" (the engine's) or "patch" (crop size)


def _supervised(logits: torch.Tensor, m: torch.Tensor, p: torch.Tensor | None, w: torch.Tensor | None, cfg: Any) -> torch.Tensor:
    """The default trainer's loss: marks CE + confidence-weighted pseudo CE + pseudo soft Dice."""
    loss = cfg.w_marks * partial_ce(logits, m)
    if p is not None and w is not None and cfg.w_pseudo > 0:
        loss = loss + cfg.w_pseudo * (weighted_ce(logits, p, w) + cfg.w_dice * soft_dice(logits, p, w))
    return loss


def _qd_ce(qd: torch.Tensor, m: torch.Tensor, p: torch.Tensor | None, w: torch.Tensor | None, cfg: Any) -> torch.Tensor:
    """L_qdc at the query distribution's resolution: marks CE + confidence-weighted pseudo CE.

    ``cross_entropy(log q)`` is ``-log q`` because ``q`` already sums to one over classes.
    """
    s = m.shape[-1] // qd.shape[-1]
    if s > 1:  # nearest downsampling of the targets to a coarse kMaX layer
        m = m[..., s // 2 :: s, s // 2 :: s]
        p = p[..., s // 2 :: s, s // 2 :: s] if p is not None else None
        w = w[..., s // 2 :: s, s // 2 :: s] if w is not None else None
    lq = torch.log(qd.clamp_min(1e-6))
    loss = cfg.w_marks * partial_ce(lq, m)
    if p is not None and w is not None and cfg.w_pseudo > 0:
        loss = loss + cfg.w_pseudo * weighted_ce(lq, p, w)
    return loss


def _mutual(logits: torch.Tensor, other_prob: torch.Tensor, threshold: float) -> torch.Tensor:
    """CE to the other network's argmax where it is confident (``other_prob`` detached)."""
    conf, lab = other_prob.max(1)
    return weighted_ce(logits, lab, (conf >= threshold).to(logits.dtype))


def train_pair(ctx: MethodContext, opts: DKUXNetOptions) -> tuple[torch.nn.Module, KMaXUNet2d, dict[str, Any]]:
    """Train networks A (default U-Net) and B (kMaX U-Net) together; returns both and a summary."""
    cfg = ctx.config
    gen = ctx.seed_torch()
    rng = ctx.rng()
    device = ctx.device
    data = ctx.prepared()
    in_ch, k = int(data.x.shape[0]), ctx.n_channels_out
    prior = bool(cfg.pseudo_input and ctx.pseudo is not None and cfg.prior_residual)
    spec = default_spec(2, in_ch, k, channels=cfg.channels)
    spec.prior_residual = prior
    net_a = build_network(spec).to(device)
    net_b = KMaXUNet2d(in_ch, k, tuple(spec.channels), opts.queries_per_class, opts.query_dim, prior_residual=prior).to(device)
    params = list(net_a.parameters()) + list(net_b.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    patch = tuple(cfg.patch) if cfg.patch is not None else (96, 96)
    batch = int(cfg.batch) if cfg.batch is not None else 8
    total_steps = cfg.max_steps or 200
    net_a.train()
    net_b.train()
    last: dict[str, float] = {}
    n = 0
    for step in ctx.steps():
        x, m, p, w = crop_batch(data, patch, batch, 2, rng)
        if cfg.augment:
            x, m, p, w = aug.geometric(x, m, p, w, 2, gen)
            xa, xb = aug.intensity(x, gen), aug.intensity(x, gen)
        else:
            xa = xb = x
        xa, xb, m = xa.to(device), xb.to(device), m.to(device)
        p = p.to(device) if p is not None else None
        w = w.to(device) if w is not None else None
        for g in opt.param_groups:
            g["lr"] = ctx.lr_at(step)
        la = net_a(xa)
        out_b = net_b.forward_all(xb)
        lb = out_b["logits"]
        qd, aux_qd = out_b["qd"], out_b["aux_qd"]
        terms = {"sup_a": _supervised(la, m, p, w, cfg), "segc_b": _supervised(lb, m, p, w, cfg)}
        qdc = _qd_ce(qd, m, p, w, cfg)
        aux = torch.stack([_qd_ce(q, m, p, w, cfg) for q in aux_qd]).mean() if aux_qd else qdc * 0.0
        terms["qdc"] = 0.5 * (qdc + aux)
        terms["qd_seg"] = consistency(torch.log(qd.clamp_min(1e-6)), lb)
        pa, pb = torch.softmax(la, 1), torch.softmax(lb, 1)
        terms["mutual_a"] = _mutual(la, pb.detach(), opts.mutual_threshold)
        terms["mutual_b"] = _mutual(lb, pa.detach(), opts.mutual_threshold)
        ramp = min(1.0, step / max(opts.mutual_ramp * total_steps, 1.0))
        loss = (terms["sup_a"] + terms["segc_b"] + opts.w_qdc * terms["qdc"] + opts.w_qd_seg * terms["qd_seg"]
                + opts.w_mutual * ramp * (terms["mutual_a"] + terms["mutual_b"]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n = step + 1
        last = {key: float(v.detach()) for key, v in terms.items()}
        last["agree"] = float((pa.argmax(1) == pb.argmax(1)).float().mean())
        last["total"] = float(loss.detach())
        ctx.report(step, dict(last))
    info = {"steps": n, "step": "one AdamW step of both networks (A: default U-Net, B: kMaX U-Net) on one batch",
            "network": "unet2d + kmax-unet2d", "queries": opts.queries_per_class * k, **{f"last_{k_}": v for k_, v in last.items()}}
    return net_a, net_b, info


def predict_pair(ctx: MethodContext, net_a: torch.nn.Module, net_b: KMaXUNet2d, opts: DKUXNetOptions) -> dict[str, torch.Tensor]:
    """Softmax ``(K, Z, Y, X)`` of A, B and their mean on the whole volume, slice-wise."""
    cfg, data = ctx.config, ctx.prepared()
    roi_b = (tuple(cfg.patch) if cfg.patch is not None else (96, 96)) if opts.b_window == "patch" else cfg.sw_roi
    pa = predict_probabilities(net_a, data.x, 2, ctx.device, cfg.sw_roi, ctx.should_stop)
    pb = predict_probabilities(net_b, data.x, 2, ctx.device, roi_b, ctx.should_stop)
    if pa is None or pb is None:
        from ..errors import SparsesegError

        raise SparsesegError("dk-uxnet: cancelled during prediction")
    return {"a": pa, "b": pb, "mean": 0.5 * (pa + pb)}


@register("dk-uxnet", paper="dk-uxnet-query-distribution.txt",
          description="mutual learning of a U-Net and a kMaX-head U-Net with the query-distribution loss (2D)")
def run_dk_uxnet(ctx: MethodContext, opts: DKUXNetOptions | None = None) -> MethodOutput:
    opts = opts or DKUXNetOptions()
    if opts.final not in ("mean", "a", "b"):
        raise ValueError(f"final must be mean, a or b, not {opts.final!r}")
    net_a, net_b, info = train_pair(ctx, opts)
    probs = predict_pair(ctx, net_a, net_b, opts)
    agree = float((probs["a"].argmax(0) == probs["b"].argmax(0)).float().mean())
    info.update({"final": opts.final, "volume_agreement_a_b": agree})
    return ctx.outputs(probs[opts.final], info)
