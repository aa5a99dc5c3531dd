"""Parity of the ONNX Runtime encoder with eager torch (tiny random SAM and the real LiteMedSAM)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sparseseg.sam import load_litemedsam, tiny_random_sam
from napari_sparseseg.sam.fast import enable_fast_encoder, onnx_available

pytestmark = pytest.mark.skipif(not onnx_available(), reason="onnxruntime missing")


def _dice(a, b):
    return 2 * (a & b).sum() / max(1, a.sum() + b.sum())


def test_onnx_encoder_matches_eager_on_tiny_sam(tmp_path):
    b = tiny_random_sam()
    img = np.random.default_rng(1).random((40, 50)).astype(np.float32)
    eager = b.encode(img, use_fast=False)
    assert enable_fast_encoder(b, tmp_path)
    assert any(tmp_path.glob("*.onnx"))
    fast = b.encode(img)
    np.testing.assert_allclose(fast.features, eager.features, atol=1e-4)


def test_onnx_litemedsam_masks_match_eager(tmp_path, shared_data):
    nib = pytest.importorskip("nibabel")
    from napari_sparseseg.pseudo.normalize import percentile_unit_range

    case = shared_data / "acdc" / "imagesTr" / "patient002_frame01.nii.gz"
    img = percentile_unit_range(np.asarray(nib.load(case).dataobj).transpose(2, 1, 0))
    gt = np.asarray(nib.load(str(case).replace("imagesTr", "labelsTr")).dataobj).transpose(2, 1, 0)
    b = load_litemedsam()
    z = 5
    eager = b.encode(img[z], use_fast=False)
    assert enable_fast_encoder(b, tmp_path)
    fast = b.encode(img[z])
    for c in (1, 3):
        ys, xs = np.nonzero(gt[z] == c)
        box = np.array([[xs.min(), ys.min(), xs.max(), ys.max()]])
        m_e = b.decode(eager, boxes=box)[0][0, 0] > 0
        m_f = b.decode(fast, boxes=box)[0][0, 0] > 0
        assert _dice(m_e, m_f) >= 0.99


def test_onnx_decoder_matches_eager_for_boxes_points_and_multimask(tmp_path):
    b = tiny_random_sam(seed=3)
    img = np.random.default_rng(2).random((40, 50)).astype(np.float32)
    assert enable_fast_encoder(b, tmp_path)
    assert b.fast_decoder is not None
    emb = b.encode(img)
    boxes = np.array([[2, 3, 30, 25], [10, 10, 45, 38]], np.float32)
    pts = np.array([[[5, 5], [20, 20]], [[30, 30], [8, 33]]], np.float32)
    labs = np.array([[1, 0], [1, 1]])
    for kw in ({"boxes": boxes}, {"boxes": boxes, "points": pts, "point_labels": labs},
               {"points": pts, "point_labels": labs, "multimask": True}):
        lf, sf = b.decode(emb, **kw)
        le, se = b.decode(emb, use_fast=False, **kw)
        np.testing.assert_allclose(lf, le, atol=1e-3)
        np.testing.assert_allclose(sf, se, atol=1e-4)
