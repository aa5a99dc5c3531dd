"""SAM-based pseudo-labels through the public API on real ACDC scribbles (real LiteMedSAM)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sparseseg.annotations import SparseAnnotation
from napari_sparseseg.evaluate.metrics import dice_per_class
from napari_sparseseg.pseudo import make_pseudo_labels
from napari_sparseseg.pseudo.normalize import percentile_unit_range
from napari_sparseseg.sam import EmbeddingCache, load_backend


@pytest.fixture(scope="module")
def acdc_crop(shared_data):
    nib = pytest.importorskip("nibabel")
    case = "patient001_frame01"
    load = lambda sub: np.asarray(nib.load(shared_data / "acdc" / sub / f"{case}.nii.gz").dataobj).transpose(2, 1, 0)
    sl = slice(3, 6)
    return load("imagesTr")[sl], load("labelsTr")[sl].astype(np.int16), SparseAnnotation(load("scribblesTr")[sl], 4)


def test_fusion_and_sam_share_one_cache_and_respect_marks(acdc_crop, tmp_path):
    img, gt, ann = acdc_crop
    cache = EmbeddingCache(load_backend("litemedsam"), percentile_unit_range(img), cache_dir=tmp_path)
    fused = make_pseudo_labels(img, ann, "fusion", backend=cache)
    assert fused.info["nesting"] == {2: [3]}          # myocardium ring around the LV cavity found
    assert cache.stats["computed"] == 3
    sam = make_pseudo_labels(img, ann, "sam", backend=cache)
    assert cache.stats["computed"] == 3               # no re-encoding for the second method
    walker = make_pseudo_labels(img, ann, "random-walker")
    d = {name: np.mean(list(dice_per_class(p.labels, gt, (1, 2, 3)).values()))
         for name, p in (("fusion", fused), ("sam", sam), ("walker", walker))}
    assert d["fusion"] > 0.8, d
    assert d["sam"] > 0.4, d
    for p in (fused, sam):
        t = ann.to_targets()
        m = t >= 0
        assert np.all(p.labels[m] == t[m]) and np.all(p.confidence[m] == 1.0)
        assert p.probabilities.shape == (4,) + img.shape
        np.testing.assert_allclose(p.probabilities.sum(0), 1.0, atol=1e-4)
    # confidence means something: confident voxels are more often right than the rest
    right = fused.labels == gt
    conf = fused.confident(0.9)
    assert right[conf].mean() > right[~conf].mean()
