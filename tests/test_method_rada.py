"""RADA substitute: tri-view shared net, frozen LiteMedSAM region features, alignment losses, end to end.

The end-to-end tests use the real bundled LiteMedSAM encoder on a 4 x 64 x 64 crop of a real ACDC
volume with its human scribbles (4 slices to encode, a few seconds on 2 cores).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sparseseg.annotations.sparse import SparseAnnotation
from napari_sparseseg.io.volume import Volume
from napari_sparseseg.methods import make_context, run_method
from napari_sparseseg.methods.rada import RadaOptions, run_rada
from napari_sparseseg.models.rada import (
    TriViewNet,
    align_loss,
    choose_encoded_slices,
    region_pool,
    sample_frozen,
    z_scale,
)
from napari_sparseseg.training import TrainConfig

TINY = dict(channels=(4, 8, 16), threads=2, budget_seconds=120.0, lr=3e-3)
OPTS = dict(block=(8, 32, 32), blocks=1, axial_crops=2, through_slices=2, feat=8)


# ------------------------------------------------------------------------------ units
def test_shapes_and_gradients_reach_every_new_module():
    torch.manual_seed(0)
    net = TriViewNet(1, 3, feat=8, channels=(4, 8, 16))
    x = torch.randn(2, 1, 16, 24)
    tgt = torch.randint(0, 3, (2, 16, 24))
    total = 0.0
    for view in (0, 1, 2):
        logits, feats = net(x, view)
        assert logits.shape == (2, 3, 16, 24) and feats.shape == (2, 8, 16, 24)
        pooled, counts = region_pool(feats, tgt, 3)
        assert pooled.shape == (2, 3, 8) and counts.shape == (2, 3)
        frozen = torch.randn(2, 3, 256)
        total = total + torch.nn.functional.cross_entropy(logits, tgt) + align_loss(net.proj(pooled), frozen, counts > 0)
    total.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name
    # views are told apart: the same input gives other features once the view embedding is not zero
    with torch.no_grad():
        net.view_shift[2].fill_(1.0)
        assert not torch.allclose(net(x, 0)[1], net(x, 2)[1])


def test_only_the_axial_view_moves_batchnorm_running_statistics():
    net = TriViewNet(1, 3, feat=8, channels=(4, 8, 16)).train()
    bn = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = bn.running_mean.clone()
    net(torch.randn(2, 1, 8, 16) + 3.0, 1)
    net(torch.randn(2, 1, 8, 16) + 3.0, 2)
    assert torch.equal(bn.running_mean, before) and bn.momentum == 0.3
    net(torch.randn(2, 1, 8, 16) + 3.0, 0)
    assert not torch.equal(bn.running_mean, before)


def test_prior_net_starts_at_the_prior():
    net = TriViewNet(4, 3, feat=8, channels=(4, 8, 16), prior=True)
    prior = torch.softmax(torch.randn(1, 3, 16, 16), 1)
    x = torch.cat([torch.randn(1, 1, 16, 16), prior], 1)
    logits, _ = net(x, 1)
    assert torch.allclose(torch.softmax(logits, 1), prior.clamp(0.01, 1) / prior.clamp(0.01, 1).sum(1, keepdim=True), atol=1e-5)


def test_region_pool_averages_each_class_and_ignores_unmarked():
    feats = torch.zeros(1, 2, 8, 8)
    feats[0, 0, :, :4] = 1.0  # channel 0: 1 on the left half
    feats[0, 1] = torch.arange(8.0).view(1, 8)  # channel 1: column index
    tgt = torch.full((1, 8, 8), -1)
    tgt[0, :, :4] = 1
    tgt[0, :2, 4:] = 0
    pooled, counts = region_pool(feats, tgt, 3)
    assert counts.tolist() == [[8.0, 32.0, 0.0]]
    assert torch.allclose(pooled[0, 1], torch.tensor([1.0, 1.5]))
    assert torch.allclose(pooled[0, 0], torch.tensor([0.0, 5.5]))
    # stride 2: features on a 4 x 4 grid, weights = area fractions of the full-resolution target
    coarse = torch.nn.functional.avg_pool2d(feats, 2)
    pooled2, _ = region_pool(coarse, tgt, 3, stride=2)
    assert torch.allclose(pooled2[0, :2], pooled[0, :2])


def test_sample_frozen_maps_slice_pixels_to_their_tokens():
    # token map whose channels hold the token's own (x, y) centre in token units
    h = 64
    grid = torch.arange(h, dtype=torch.float32) + 0.5
    emb = torch.stack([grid.view(1, h).expand(h, h), grid.view(h, 1).expand(h, h)])[None]
    rows = torch.zeros(1, dtype=torch.long)
    # a 128 x 64 slice fills encoder rows 0..255 and columns 0..127 (longest side -> 256, padded right)
    out = sample_frozen(emb, rows, (32, 16), (16, 16), (128, 64), (256, 128), 256, 4)
    assert out.shape == (1, 2, 4, 4)
    # block pixel (32 + 4i + 1.5) -> encoder (y + .5) * 2 -> token / 4
    ys = (32 + 4 * torch.arange(4.0) + 1.5 + 0.5) * 2 / 4
    xs = (16 + 4 * torch.arange(4.0) + 1.5 + 0.5) * 2 / 4
    assert torch.allclose(out[0, 1, :, 0], ys, atol=1e-4)
    assert torch.allclose(out[0, 0, 0, :], xs, atol=1e-4)


def test_align_losses():
    a = torch.randn(3, 4, 16)
    valid = torch.ones(3, 4, dtype=torch.bool)
    assert float(align_loss(a, a, valid)) < 1e-5
    assert float(align_loss(a, -a, valid)) == pytest.approx(2.0, abs=1e-5)
    match = align_loss(a, a, valid, "infonce")
    shuffled = align_loss(a, a[:, [1, 2, 3, 0]], valid, "infonce")
    assert float(match) < float(shuffled)
    one = torch.zeros(3, 4, dtype=torch.bool)
    one[:, 0] = True  # a single class per slice: nothing to contrast
    assert float(align_loss(a, a, one, "infonce")) == 0.0
    assert float(align_loss(a, a, one & False)) == 0.0


def test_choose_encoded_slices_marked_first_and_bounded():
    marks = np.full((10, 4, 4), -1)
    marks[[2, 7]] = 0
    assert choose_encoded_slices(marks, None, 2) == [2, 7]
    got = choose_encoded_slices(marks, None, 5)
    assert len(got) == 5 and {2, 7} <= set(got)
    assert z_scale((6.5, 0.5, 0.5)) == 4 and z_scale((1, 1, 1)) == 1 and z_scale((3.0, 1.0, 1.0)) == 3


# ------------------------------------------------------------------------------ real data
@pytest.fixture(scope="module")
def acdc_crop(shared_data):
    from napari_sparseseg.benchmarking.cases import load_case, make_annotation

    case = load_case(shared_data, "acdc", "patient001_frame01")
    ann = make_annotation(case, "human-scribbles")
    sl = (slice(3, 7), slice(96, 160), slice(64, 128))
    img = Volume(np.ascontiguousarray(case.image.array[sl]), affine=np.eye(4))
    crop = SparseAnnotation(np.ascontiguousarray(ann.labels[sl]), ann.background_label, ann.classes, ann.class_names)
    return img, crop, case.gt[sl]


@pytest.fixture(scope="module")
def walker(acdc_crop):
    from napari_sparseseg.pseudo.api import make_pseudo_labels

    img, ann, _ = acdc_crop
    return make_pseudo_labels(img, ann, "random-walker")


def _run(img, ann, pseudo, steps, opts=None, **cfg):
    losses: list[dict[str, float]] = []
    ctx = make_context(img, ann, pseudo, TrainConfig(max_steps=steps, **{**TINY, **cfg}),
                       progress=lambda s, l: losses.append(l))
    return run_rada(ctx, RadaOptions(**{**OPTS, **(opts or {})})), losses


def test_loss_falls_on_a_real_acdc_crop(acdc_crop):
    img, ann, _ = acdc_crop
    out, losses = _run(img, ann, None, 25, lr=1e-2, augment=False)
    assert len(losses) == 25 and out.info["encoded_slices"] == 4
    # block sampling makes single steps noisy: compare the first steps with the mean of the last ten
    first = np.mean([l["total"] for l in losses[:3]])
    last = np.mean([l["total"] for l in losses[-10:]])
    assert last < 0.8 * first, (first, last)
    assert np.mean([l["align"] for l in losses[-10:]]) < 0.5 * np.mean([l["align"] for l in losses[:3]])


def test_run_method_end_to_end_with_pseudo_labels_and_deterministic(acdc_crop, walker):
    img, ann, gt = acdc_crop
    ctx = make_context(img, ann, walker, TrainConfig(max_steps=3, **TINY))
    out = run_method("rada", ctx)
    assert out.labels.shape == img.shape and out.uncertainty.shape == img.shape
    assert set(np.unique(out.labels)) <= {0, 1, 2, 3} and out.info["steps"] == 3
    again = run_rada(make_context(img, ann, walker, TrainConfig(max_steps=3, **TINY)))
    assert np.array_equal(out.labels, again.labels)
    assert np.array_equal(out.uncertainty, again.uncertainty)
    # the prior-residual start predicts close to the pseudo-labels (3 steps cannot move far)
    assert (out.labels == walker.labels).mean() > 0.8


def test_without_pseudo_labels_anisotropic_tri_view_and_infonce(acdc_crop):
    img, ann, _ = acdc_crop
    aniso = Volume(img.array, affine=np.diag([3.0, 1.0, 1.0, 1.0]))
    out, losses = _run(aniso, ann, None, 3, opts=dict(infer_views="tri", align="infonce"))
    assert out.info["z_scale"] == 3 and out.labels.shape == img.shape
    assert all(np.isfinite(l["total"]) for l in losses) and losses[-1]["align"] > 0
