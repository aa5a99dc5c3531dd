"""DK-UXNet: kMaX head shapes/gradients, the dual query-distribution loss, mutual learning end to end.

Real data: a 3-slice x 64 x 64 crop of an ACDC volume around the heart with its human scribbles.
Tiny channels and few steps keep the whole file well under a minute on 2 cores.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sparseseg.annotations.sparse import IGNORE_INDEX, SparseAnnotation
from napari_sparseseg.io.volume import Volume
from napari_sparseseg.methods import dk_uxnet as dk
from napari_sparseseg.methods.base import SEGMENT_METHODS, make_context, run_method
from napari_sparseseg.models.kmax import KMaXLayer, KMaXUNet2d
from napari_sparseseg.training import TrainConfig

TINY = dict(batch=2, patch=(32, 32), channels=(4, 8, 16), threads=1, budget_seconds=60.0, seed=0)
TINY_OPTS = dict(queries_per_class=2, query_dim=16)


@pytest.fixture(scope="module")
def acdc_crop(shared_data):
    """(image Volume, SparseAnnotation, dense GT) of 3 slices x 64 x 64 around the heart."""
    from napari_sparseseg.benchmarking.cases import load_case, make_annotation

    case = load_case(shared_data, "acdc", "patient001_frame01")
    ann = make_annotation(case, "human-scribbles")
    z = int(np.argmax(((ann.labels > 0) & (ann.labels != 4)).sum((1, 2))))
    cy, cx = (int(v) for v in np.argwhere(case.gt[z] > 0).mean(0))
    z0 = min(max(z - 1, 0), case.gt.shape[0] - 3)
    sl = (slice(z0, z0 + 3), slice(cy - 32, cy + 32), slice(cx - 32, cx + 32))
    img = Volume(np.ascontiguousarray(case.image.array[sl]).astype(np.float32), affine=np.eye(4))
    labels = np.ascontiguousarray(ann.labels[sl])
    present = tuple(c for c in ann.classes if (labels == c).any())
    crop_ann = SparseAnnotation(labels, 4, present, {})
    return img, crop_ann, case.gt[sl]


def _walker_pseudo(img, ann):
    from napari_sparseseg.pseudo.api import make_pseudo_labels

    return make_pseudo_labels(img, ann, "random-walker")


def _prior_input(b=2, k=3, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 1 + k, size, size, generator=g)
    x[:, 1:] = torch.softmax(3 * torch.randn(b, k, size, size, generator=g), 1)
    return x


def test_kmax_net_shapes_and_distributions():
    net = KMaXUNet2d(4, 3, (4, 8, 16, 32), queries_per_class=2, dim=16)
    out = net.forward_all(_prior_input(size=40))
    assert out["logits"].shape == (2, 3, 40, 40)
    assert out["mask_logits"].shape == (2, 6, 40, 40)  # N = 2 queries x 3 classes, upsampled to the input
    assert out["class_logits"].shape == (2, 6, 3)
    assert [tuple(q.shape) for q in out["aux_qd"]] == [(2, 3, 5, 5), (2, 3, 10, 10)]  # one per kMaX layer (1/8, 1/4)
    for key in ("seg_prob", "qd"):  # both class maps are distributions over classes at every pixel
        assert torch.allclose(out[key].sum(1), torch.ones(2, 40, 40), atol=1e-5)


def test_prior_residual_starts_at_the_prior():
    torch.manual_seed(0)
    x = _prior_input()
    net = KMaXUNet2d(4, 3, (4, 8, 16), queries_per_class=2, dim=16, prior_residual=True).eval()
    agree = (net(x).argmax(1) == x[:, 1:].argmax(1)).float().mean()
    assert agree > 0.99
    with pytest.raises(ValueError):
        KMaXUNet2d(3, 3, prior_residual=True)


def test_kmeans_layer_updates_queries_with_cluster_means():
    """Cluster-wise argmax: every pixel goes to its best query; a query's update is its pixels' mean value."""
    torch.manual_seed(0)
    layer = KMaXLayer(8, 16).eval()
    feat, q = torch.randn(1, 8, 6, 6), torch.randn(1, 5, 16)
    captured = {}
    layer.update_norm.register_forward_hook(lambda mod, inp, out: captured.update(centre=inp[0]))
    q1, logits = layer(feat, q)
    assert logits.shape == (1, 5, 6, 6) and q1.shape == q.shape
    owner = logits.flatten(2).argmax(1)[0]
    value = layer.pixel_value(layer.pixel(feat)).flatten(2)[0]  # (D, 36)
    for n in range(5):
        sel = owner == n
        expected = value[:, sel].sum(1) / (sel.sum() + 1.0)
        assert torch.allclose(captured["centre"][0, n], expected, atol=1e-5)


def test_gradients_reach_every_parameter(acdc_crop):
    img, ann, _ = acdc_crop
    ctx = make_context(img, ann, None, TrainConfig(**TINY))
    data = ctx.prepared()
    from napari_sparseseg.training.data import crop_batch

    x, m, _, _ = crop_batch(data, (32, 32), 4, 2, np.random.default_rng(0))
    net = KMaXUNet2d(x.shape[1], ctx.n_channels_out, (4, 8, 16, 32), queries_per_class=2, dim=16)
    out = net.forward_all(x)
    loss = dk._supervised(out["logits"], m, None, None, ctx.config)
    loss = loss + sum(dk._qd_ce(q, m, None, None, ctx.config) for q in [out["qd"], *out["aux_qd"]])
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not missing, missing


def test_qd_ce_downsamples_targets_and_is_zero_for_a_perfect_distribution():
    t = torch.full((1, 8, 8), IGNORE_INDEX)
    t[0, 1::2, 1::2] = 1  # exactly the pixels the 2x nearest downsampling keeps
    perfect = torch.zeros(1, 2, 4, 4)
    perfect[:, 1] = 1.0
    cfg = TrainConfig()
    assert float(dk._qd_ce(perfect, t, None, None, cfg)) < 1e-4
    assert float(dk._qd_ce(1 - perfect, t, None, None, cfg)) > 5.0


def test_mutual_term_uses_only_confident_pixels():
    logits = torch.zeros(1, 2, 2, 2, requires_grad=True)
    other = torch.tensor([[[[0.95, 0.6], [0.6, 0.6]], [[0.05, 0.4], [0.4, 0.4]]]])
    loss = dk._mutual(logits, other, 0.8)
    loss.backward()
    g = logits.grad.abs().sum(1)[0]
    assert g[0, 0] > 0 and float(g.flatten()[1:].abs().sum()) == 0.0


def test_loss_falls_on_a_real_crop(acdc_crop):
    img, ann, _ = acdc_crop
    seen: list[dict[str, float]] = []
    cfg = TrainConfig(max_steps=60, **{**TINY, "batch": 4})
    ctx = make_context(img, ann, None, cfg, progress=lambda s, l: seen.append(l))
    _, _, info = dk.train_pair(ctx, dk.DKUXNetOptions(**TINY_OPTS))
    assert info["steps"] == 60 and len(seen) == 60
    sup = [d["sup_a"] + d["segc_b"] + d["qdc"] for d in seen]
    assert np.mean(sup[-10:]) < 0.8 * np.mean(sup[:10])
    qdc = [d["qdc"] for d in seen]  # the query distribution itself learns the marks
    assert np.mean(qdc[-10:]) < 0.9 * np.mean(qdc[:10])
    assert all(np.isfinite(list(d.values())).all() for d in seen)


@pytest.mark.parametrize("with_pseudo", [False, True])
def test_run_method_end_to_end(acdc_crop, with_pseudo):
    img, ann, gt = acdc_crop
    pseudo = _walker_pseudo(img, ann) if with_pseudo else None
    assert "dk-uxnet" in SEGMENT_METHODS
    out = run_method("dk-uxnet", make_context(img, ann, pseudo, TrainConfig(max_steps=6, **TINY)))
    assert out.labels.shape == img.shape and out.labels.dtype == np.int16
    assert set(np.unique(out.labels)) <= {0, *ann.classes}
    assert out.uncertainty is not None and out.uncertainty.shape == img.shape
    assert out.info["steps"] == 6 and out.info["final"] == "mean" and 0.0 <= out.info["volume_agreement_a_b"] <= 1.0
    if with_pseudo:  # prior-residual pair starts at the walker: after a few steps it still finds the heart
        from napari_sparseseg.evaluate.metrics import dice_per_class

        d = dice_per_class(out.labels, gt, ann.classes)
        assert np.mean(list(d.values())) > 0.5, d


def test_deterministic_for_a_fixed_seed_and_final_choice(acdc_crop):
    img, ann, _ = acdc_crop
    runs = [dk.run_dk_uxnet(make_context(img, ann, None, TrainConfig(max_steps=3, **TINY)), dk.DKUXNetOptions(**TINY_OPTS))
            for _ in range(2)]
    assert np.array_equal(runs[0].labels, runs[1].labels)
    with pytest.raises(ValueError):
        dk.run_dk_uxnet(make_context(img, ann, None, TrainConfig(max_steps=1, **TINY)), dk.DKUXNetOptions(final="best"))
