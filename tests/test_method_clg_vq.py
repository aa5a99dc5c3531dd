"""clg-vq (cross-latent graph + VQ memory): shapes, graph, memory, gradients, a falling loss on a real
ACDC crop, and run_method end to end from scribbles and from points alone, with and without pseudo-labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _training_helpers import blobs, marks, tiny_config

from napari_sparseseg.annotations.simulate import simulate_points
from napari_sparseseg.annotations.sparse import IGNORE_INDEX, SparseAnnotation
from napari_sparseseg.io.volume import Volume
from napari_sparseseg.methods import SEGMENT_METHODS, load_all, make_context, run_method
from napari_sparseseg.methods.clg_vq import ClgVqOptions, ClgVqTrainer, run_clg_vq
from napari_sparseseg.models.clg_vq import ClgVqNet, CrossLatentGraph, VQMemory, memory_distribution, memory_targets
from napari_sparseseg.pseudo.api import make_pseudo_labels

TINY = (4, 8, 16, 32)


def test_registered() -> None:
    load_all()
    assert "clg-vq" in SEGMENT_METHODS
    assert SEGMENT_METHODS["clg-vq"].paper == "cross-latent-graph-vq-memory.txt"


@pytest.mark.parametrize("prior", [False, True])
def test_network_shapes(prior: bool) -> None:
    k = 4
    net = ClgVqNet(1 + (k if prior else 0), k, TINY, prior_residual=prior)
    x = torch.rand(2, 1 + (k if prior else 0), 48, 40)
    if prior:
        x[:, 1:] = torch.softmax(x[:, 1:] * 5, 1)
    f = net.features(x)
    assert f.logits.shape == (2, k, 48, 40)
    assert f.recon.shape == (2, 1, 48, 40)
    assert f.texture.shape == (2, TINY[0], 24, 20)
    assert f.deep.shape == (2, TINY[3], 6, 5)
    if prior:  # zero-initialised head: the untrained net predicts the prior exactly
        torch.testing.assert_close(torch.softmax(f.logits, 1), x[:, 1:].clamp(0.01, 1) / x[:, 1:].clamp(0.01, 1).sum(1, keepdim=True))
    assert torch.equal(net(x), f.logits)


def test_graph_edges_follow_reconstruction_features() -> None:
    """Two groups of nodes with orthogonal reconstruction features: no edges between the groups."""
    g = CrossLatentGraph(3, k=4)
    rec = torch.zeros(1, 2, 2, 4)
    rec[0, 0, :, :2] = 1.0  # left half: feature (1, 0)
    rec[0, 1, :, 2:] = 1.0  # right half: feature (0, 1)
    rec = rec + 0.01 * torch.rand(rec.shape, generator=torch.Generator().manual_seed(0))
    adj = g.adjacency(rec)[0]
    torch.testing.assert_close(adj, adj.t())
    left = torch.tensor([c < 2 for _ in range(2) for c in range(4)])
    assert float(adj[left][:, ~left].abs().max()) < 0.05
    assert float(adj[left][:, left].min()) > 0.1
    # message passing changes the segmentation features only through gamma * messages
    seg = torch.rand(1, 3, 2, 4)
    with torch.no_grad():
        g.gamma.zero_()
    torch.testing.assert_close(g(seg, rec), seg)


def test_memory_ema_codes_and_class_statistics() -> None:
    """Two feature clusters, labelled 1 and 2: codes settle on them and the memory fills by cluster."""
    gen = torch.Generator().manual_seed(0)
    mem = VQMemory(n_codes=4, dim=2, n_classes=3)
    a = torch.tensor([1.0, 0.0]) + 0.05 * torch.randn(200, 2, generator=gen)
    b = torch.tensor([0.0, 1.0]) + 0.05 * torch.randn(200, 2, generator=gen)
    z = torch.cat([a, b])
    labels = torch.cat([torch.full((200,), 1), torch.full((200,), 2)])
    mass = torch.nn.functional.one_hot(labels, 3).float()
    mass[::2] = 0.0  # half the voxels unlabelled: they carry no class evidence
    for _ in range(60):
        idx = mem.update(z, gen)
        mem.update_stats(idx, mass)
    probs = mem.class_probs()
    ia, ib = mem.assign(a[:1]), mem.assign(b[:1])
    assert float(probs[ia, 1]) > 0.95 and float(probs[ib, 2]) > 0.95
    assert float(torch.nn.functional.cosine_similarity(mem.codes[ia], torch.tensor([[1.0, 0.0]]))) > 0.99
    # fill: a (1, 2, 2) "image" whose top row looks like cluster a and bottom row like cluster b
    feat = torch.stack([a[:2], b[:2]]).permute(2, 0, 1)[None]  # (1, 2, 2, 2)
    prob = memory_distribution(mem, mem, feat, feat, (2, 2))
    target = torch.tensor([[[IGNORE_INDEX, 0], [IGNORE_INDEX, IGNORE_INDEX]]])
    weight = torch.tensor([[[0.0, 1.0], [0.0, 0.0]]])
    valid = torch.tensor([[[True, True], [True, False]]])
    t, w, fill = memory_targets(target, weight, prob, valid, tau=0.9)
    assert t.tolist() == [[[1, 0], [2, IGNORE_INDEX]]]  # known target kept, padding left alone
    assert fill.tolist() == [[[True, False], [True, False]]]
    assert float(w[0, 0, 0]) > 0.9 and float(w[0, 0, 1]) == 1.0
    # doubt: a pseudo-label the memory contradicts is down-weighted, the same label as a mark is not
    t2, w2, _ = memory_targets(torch.tensor([[[2, 2], [1, 1]]]), torch.ones(1, 2, 2), prob, valid, tau=0.9,
                               marked=torch.tensor([[[False, True], [False, False]]]))
    assert t2.tolist() == [[[2, 2], [1, 1]]]
    assert float(w2[0, 0, 0]) < 0.1 and float(w2[0, 0, 1]) == 1.0 and float(w2[0, 1, 1]) == 1.0
    assert float(w2[0, 1, 0]) < 0.1  # memory says 2 there, pseudo-label says 1


@pytest.mark.parametrize("with_pseudo", [False, True])
def test_gradients_reach_every_module(with_pseudo: bool) -> None:
    vol, truth = blobs((4, 32, 32))
    ann = marks(truth, every=5)
    pseudo = make_pseudo_labels(vol, ann, "random-walker") if with_pseudo else None
    ctx = make_context(vol, ann, pseudo, tiny_config(max_steps=4, channels=TINY, batch=2, patch=(32, 32), w_consistency=0.1))
    tr = ClgVqTrainer(ctx, ClgVqOptions(mem_warmup=0.0))
    for step in range(2):  # the prior head is zero at step 0: its inputs get gradients from step 1
        tr.step(step)
    for name, p in tr.model.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name
    assert bool(tr.texture.initialised) and bool(tr.glob.initialised)
    assert float(tr.texture.class_mass.sum()) > 0 and float(tr.glob.class_mass.sum()) > 0


def _acdc_crop(shared_data) -> tuple[Volume, SparseAnnotation]:
    from napari_sparseseg.benchmarking.cases import load_case, make_annotation

    case = load_case(shared_data, "acdc", "patient001_frame01")
    ann = make_annotation(case, "human-scribbles")
    sl = (slice(3, 6), slice(104, 168), slice(64, 128))  # 3 slices x 64 x 64 over the heart
    img = Volume(np.ascontiguousarray(case.image.array[sl]), affine=np.eye(4))
    lab = np.ascontiguousarray(ann.labels[sl])
    return img, SparseAnnotation(lab, ann.background_label, tuple(int(c) for c in np.unique(lab) if 0 < c != ann.background_label))


def test_loss_falls_on_real_acdc_crop(shared_data) -> None:
    img, ann = _acdc_crop(shared_data)
    assert len(ann.classes) >= 2
    losses: list[dict[str, float]] = []
    cfg = tiny_config(max_steps=50, channels=(8, 16, 32, 64), batch=4, patch=(48, 48), lr=3e-3)
    ctx = make_context(img, ann, None, cfg, progress=lambda s, l: losses.append(l))
    out = run_clg_vq(ctx, ClgVqOptions())
    assert len(losses) == 50
    first = np.mean([l["marks"] + l["recon"] for l in losses[:5]])
    last = np.mean([l["marks"] + l["recon"] for l in losses[-5:]])
    assert last < 0.7 * first, (first, last)
    assert out.labels.shape == img.shape


def test_run_method_scribbles_with_and_without_pseudo() -> None:
    vol, truth = blobs((4, 32, 32))
    ann = marks(truth, every=11)
    pseudo = make_pseudo_labels(vol, ann, "random-walker")
    labels = {}
    for name, ps in (("none", None), ("walker", pseudo)):
        cfg = tiny_config(max_steps=12, channels=TINY, batch=2, patch=(32, 32))
        out = run_method("clg-vq", make_context(vol, ann, ps, cfg))
        assert out.labels.shape == vol.shape and out.labels.dtype == np.int16
        assert set(np.unique(out.labels)) <= {0, 1, 2}
        assert out.uncertainty is not None and out.uncertainty.shape == vol.shape
        assert out.info["steps"] == 12 and out.info["method"] == "clg-vq"
        labels[name] = out.labels
    # with walker pseudo-labels and the prior-residual head the prediction starts at the pseudo-labels
    agree = float((labels["walker"] == np.asarray(pseudo.labels)).mean())
    assert agree > 0.9, agree


def test_points_only_annotation_runs_and_is_deterministic() -> None:
    vol, truth = blobs((4, 32, 32))
    ann = simulate_points(truth, 2, background_label=3, seed=0)
    assert int((ann.labels > 0).sum()) <= 6  # a handful of clicks, nothing else
    outs = []
    for _ in range(2):
        cfg = tiny_config(max_steps=10, channels=TINY, batch=2, patch=(32, 32), seed=3)
        outs.append(run_method("clg-vq", make_context(vol, ann, None, cfg)))
    assert outs[0].labels.shape == vol.shape
    np.testing.assert_array_equal(outs[0].labels, outs[1].labels)
    pseudo = make_pseudo_labels(vol, ann, "random-walker")
    out = run_method("clg-vq", make_context(vol, ann, pseudo, tiny_config(max_steps=10, channels=TINY, batch=2, patch=(32, 32))))
    assert out.labels.shape == vol.shape
