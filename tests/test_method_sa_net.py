"""SA-Net method: slicing views, agreement targets, gradients, a falling loss on a real ACDC crop, end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sparseseg.annotations.sparse import IGNORE_INDEX, SparseAnnotation
from napari_sparseseg.io.volume import Volume
from napari_sparseseg.methods import make_context, run_method
from napari_sparseseg.methods.sa_net import SANetOptions, step_losses, train_sa_net
from napari_sparseseg.models.sa_net import (
    agreement_targets,
    build_sa_nets,
    from_coronal,
    from_transverse,
    plan_geometry,
    to_coronal,
    to_transverse,
)
from napari_sparseseg.training import TrainConfig
from napari_sparseseg.training.data import crop_batch

TINY = dict(channels=(4, 8, 16), threads=1, budget_seconds=60.0, first_preview_seconds=1e9,
            preview_every_seconds=1e9, batch=2, patch=(4, 32, 32))


@pytest.fixture(scope="module")
def acdc_crop(shared_data):
    """4 slices x 64 x 64 of ACDC patient001 ED around the heart, its human scribbles and GT."""
    from napari_sparseseg.benchmarking.cases import load_case, make_annotation

    case = load_case(shared_data, "acdc", "patient001_frame01")
    ann = make_annotation(case, "human-scribbles")
    sl = (slice(3, 7), slice(104, 168), slice(64, 128))
    img = Volume(np.ascontiguousarray(case.image.array[sl]), np.eye(4))
    labels = np.ascontiguousarray(ann.labels[sl])
    classes = tuple(int(c) for c in (1, 2, 3) if (labels == c).any())
    crop_ann = SparseAnnotation(labels, 4, classes, {})
    gt = case.gt[sl]
    return img, crop_ann, gt


@pytest.fixture(scope="module")
def acdc_pseudo(acdc_crop):
    from napari_sparseseg.pseudo.api import make_pseudo_labels

    img, ann, _ = acdc_crop
    return make_pseudo_labels(img, ann, "random-walker")


def test_views_round_trip_and_orientation():
    t = torch.arange(2 * 3 * 4 * 5 * 6, dtype=torch.float32).reshape(2, 3, 4, 5, 6)  # B, C, D, H, W
    tr = to_transverse(t)
    assert tr.shape == (2 * 4, 3, 5, 6)
    assert torch.equal(tr[1 * 4 + 2], t[1, :, 2])  # transverse image = one slice along axis 0
    co = to_coronal(t)
    assert co.shape == (2 * 5, 3, 4, 6)
    assert torch.equal(co[1 * 5 + 3], t[1, :, :, 3])  # coronal image = one row of axis 1: (slice, x)
    assert torch.equal(from_transverse(tr, 2), t)
    assert torch.equal(from_coronal(co, 2), t)
    m = torch.arange(2 * 4 * 5 * 6).reshape(2, 4, 5, 6)
    assert torch.equal(to_transverse(m)[3], m[0, 3])
    assert torch.equal(to_coronal(m)[7], m[1, :, 2])


def test_agreement_needs_same_label_and_confidence_and_marks_win():
    # 4 voxels, 2 channels: agree+confident, disagree, agree but unsure, marked (overrides)
    pa = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.9, 0.1]]).T[None]  # (1, 2, 4)
    pb = torch.tensor([[0.8, 0.2], [0.2, 0.8], [0.45, 0.55], [0.9, 0.1]]).T[None]
    marks = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, 1]])
    t, w = agreement_targets(pa, pb, 0.58, marks)
    assert t.tolist() == [[0, IGNORE_INDEX, IGNORE_INDEX, 1]]
    assert w[0, 0] == pytest.approx(0.8) and w[0, 1] == 0 and w[0, 2] == 0 and w[0, 3] == 1
    valid = torch.tensor([[False, True, True, True]])
    t2, _ = agreement_targets(pa, pb, 0.58, marks, valid)
    assert t2[0, 0] == IGNORE_INDEX  # voxels padded outside the image never become targets


def test_geometry_few_slices_and_isotropic():
    g = plan_geometry((6, 256, 216), (1.0, 1.0, 1.0))
    assert g.anisotropic and g.patch == (6, 64, 64)  # ACDC: identity affine, few slices
    assert plan_geometry((22, 512, 512), (6.5, 0.5, 0.5)).anisotropic  # thick slices
    iso = plan_geometry((35, 50, 35), (1.0, 1.0, 1.0))
    assert not iso.anisotropic and all(p % 8 == 0 for p in iso.patch)
    nets = build_sa_nets(g, 5, 4, prior_residual=False, channels_2d=(4, 8, 16), channels_3d=(2, 4, 8))
    x = torch.randn(2, 5, 3, 32, 32)  # a 3-slice crop: no pooling along the slice axis
    assert nets["volume"](x).shape == (2, 4, 3, 32, 32)
    assert nets["coronal"](to_coronal(x)).shape == (2 * 32, 4, 3, 32)
    assert nets["transverse"](to_transverse(x)).shape == (2 * 3, 4, 32, 32)


def _batch(ctx, geo, seed=0):
    data = ctx.prepared()
    x, m, p, w = crop_batch(data, geo.patch, geo.batch, 3, np.random.default_rng(seed))
    return x, m, p, w, torch.ones_like(m, dtype=torch.bool)


@pytest.mark.parametrize("use_agreement", [False, True])
def test_gradients_reach_every_network(acdc_crop, acdc_pseudo, use_agreement):
    img, ann, _ = acdc_crop
    ctx = make_context(img, ann, acdc_pseudo, TrainConfig(**TINY))
    torch.manual_seed(0)
    geo = plan_geometry(img.shape, img.spacing, (4, 32, 32), 2)
    nets = build_sa_nets(geo, ctx.prepared().x.shape[0], ctx.n_channels_out, True, (4, 8, 16), (2, 4, 8))
    x, m, p, w, valid = _batch(ctx, geo)
    losses, agree = step_losses(nets, x, m, p, w, valid, ctx, SANetOptions(), use_agreement)
    sum(losses.values()).backward()
    for name, net in nets.items():
        grads = [q.grad for q in net.parameters() if q.requires_grad]
        assert all(g is not None for g in grads), name
        assert sum(float(g.abs().sum()) for g in grads) > 0, name
    assert agree.shape == m.shape


def test_agreement_loss_does_not_train_the_2d_nets(acdc_crop, acdc_pseudo):
    """The 3D net's loss must not push gradients into the 2D nets (their predictions are targets)."""
    img, ann, _ = acdc_crop
    ctx = make_context(img, ann, acdc_pseudo, TrainConfig(**TINY))
    geo = plan_geometry(img.shape, img.spacing, (4, 32, 32), 2)
    nets = build_sa_nets(geo, ctx.prepared().x.shape[0], ctx.n_channels_out, True, (4, 8, 16), (2, 4, 8))
    x, m, p, w, valid = _batch(ctx, geo)
    losses, _ = step_losses(nets, x, m, p, w, valid, ctx, SANetOptions(), True)
    losses["volume"].backward()
    assert all(q.grad is None for q in nets["transverse"].parameters())
    assert all(q.grad is None for q in nets["coronal"].parameters())


def test_losses_fall_on_a_real_acdc_crop(acdc_crop):
    """Marks only (all nets start random): the 2D losses fall, and the 3D net ends up fitting the
    trained 2D nets' agreement targets far better than its initial weights did."""
    img, ann, _ = acdc_crop
    seen: list[dict[str, float]] = []
    cfg = TrainConfig(**{**TINY, "max_steps": 40, "augment": False})
    ctx = make_context(img, ann, None, cfg, progress=lambda s, l: seen.append(l))
    models = train_sa_net(ctx, SANetOptions(warmup_frac=0.25))
    assert len(seen) == 40
    for k in ("transverse", "coronal"):
        first, last = np.mean([s[k] for s in seen[:5]]), np.mean([s[k] for s in seen[-5:]])
        assert last < 0.8 * first, (k, first, last)
    ctx.seed_torch()  # the same initial weights train_sa_net started from
    init = build_sa_nets(models.geometry, models.x.shape[0], ctx.n_channels_out, False, (4, 8, 16), (2, 4, 8))
    x = models.x[None]
    m = ctx.prepared().marks[None]
    valid = torch.ones_like(m, dtype=torch.bool)
    loss = {}
    for name, vol in (("init", init["volume"]), ("trained", models.nets["volume"])):
        nets = torch.nn.ModuleDict({"transverse": models.nets["transverse"], "coronal": models.nets["coronal"], "volume": vol}).eval()
        with torch.no_grad():
            losses, agree = step_losses(nets, x, m, None, None, valid, ctx, SANetOptions(), True)
        loss[name] = float(losses["volume"])
        assert float((agree != IGNORE_INDEX).float().mean()) > 0.3  # the 2D nets agree on a good part of the crop
    assert loss["trained"] < 0.5 * loss["init"], loss


@pytest.mark.parametrize("with_pseudo", [True, False])
def test_run_method_end_to_end(acdc_crop, acdc_pseudo, with_pseudo):
    img, ann, gt = acdc_crop
    pseudo = acdc_pseudo if with_pseudo else None
    out = run_method("sa-net", make_context(img, ann, pseudo, TrainConfig(**{**TINY, "max_steps": 12})))
    assert out.labels.shape == img.shape and out.labels.dtype == np.int16
    assert set(np.unique(out.labels)) <= {0, *ann.classes}
    assert out.uncertainty is not None and out.uncertainty.shape == img.shape
    assert out.info["steps"] == 12 and out.info["method"] == "sa-net" and out.info["anisotropic"]


def test_few_slice_volume_and_ensemble_output(acdc_crop, acdc_pseudo):
    """A 2-slice volume (fewer slices than the crop) trains and predicts; the ensemble output works."""
    img, ann, _ = acdc_crop
    img2 = Volume(np.ascontiguousarray(img.array[:2]), np.eye(4))
    ann2 = SparseAnnotation(np.ascontiguousarray(ann.labels[:2]), 4,
                            tuple(c for c in ann.classes if (ann.labels[:2] == c).any()), {})
    cfg = TrainConfig(**{**TINY, "max_steps": 4, "patch": None})
    out = run_method("sa-net", make_context(img2, ann2, None, cfg))
    assert out.labels.shape == img2.shape and out.info["patch"][0] == 2
    from napari_sparseseg.methods.sa_net import run_sa_net

    ens = run_sa_net(make_context(img2, ann2, None, cfg), SANetOptions(output="ensemble"))
    assert ens.labels.shape == img2.shape


def test_deterministic_for_a_fixed_seed(acdc_crop, acdc_pseudo):
    img, ann, _ = acdc_crop
    runs = [run_method("sa-net", make_context(img, ann, acdc_pseudo, TrainConfig(**{**TINY, "max_steps": 5}))) for _ in range(2)]
    assert np.array_equal(runs[0].labels, runs[1].labels)
    assert np.allclose(runs[0].uncertainty, runs[1].uncertainty)
