"""Scan-level active learning: uncertainty with a diversity penalty, random and sequential baselines."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from napari_sparseseg.active import SCAN_STRATEGIES, get_scan_strategy, rank_scans
from napari_sparseseg.active.scans import (
    image_features,
    scan_context,
    similarity_to,
    uncertainty_summary,
)
from napari_sparseseg.io import Volume, write_volume_nifti
from napari_sparseseg.project import Project


def _rec(id, status="unmarked", unc=None, feats=None):
    return SimpleNamespace(id=id, status=status, mean_uncertainty=unc, foreground_uncertainty=unc, features=feats)


def test_uncertainty_summary_focuses_on_the_structure() -> None:
    labels = np.zeros((10, 20, 20), np.int16)
    labels[4:6, 8:10, 8:10] = 1
    unc = np.zeros(labels.shape, np.float32)
    unc[3:7, 6:12, 6:12] = 0.8
    mean, focus = uncertainty_summary(labels, unc)
    assert mean == pytest.approx(unc.mean())
    assert focus > 0.5 > mean  # the plain mean is diluted by easy background
    # nothing predicted: the top 2 % of voxels
    _, focus_empty = uncertainty_summary(np.zeros_like(labels), unc)
    assert focus_empty == pytest.approx(0.8)


def test_most_uncertain_first_and_done_scans_never_suggested() -> None:
    recs = [_rec("a", unc=0.2), _rec("b", unc=0.7), _rec("c", "reviewed", unc=0.9), _rec("d", unc=0.4)]
    ctx = scan_context(recs, with_features=False)
    assert rank_scans(get_scan_strategy("uncertainty"), ctx) == ["b", "d", "a"]


def test_diversity_demotes_a_scan_like_a_reviewed_one() -> None:
    f_like = [1.0, 0.0, 0.0]
    f_other = [0.0, 1.0, 3.0]
    recs = [
        _rec("twin", unc=0.60, feats=[1.0, 0.05, 0.0]),  # most uncertain but a near copy of "done"
        _rec("novel", unc=0.50, feats=f_other),
        _rec("done", "reviewed", unc=0.1, feats=f_like),
        _rec("mid", unc=0.3, feats=[0.5, 0.5, 1.5]),
    ]
    ctx = scan_context(recs)
    assert rank_scans(get_scan_strategy("uncertainty", diversity=0.0), ctx)[0] == "twin"
    assert rank_scans(get_scan_strategy("uncertainty", diversity=0.5), ctx)[0] == "novel"
    sim = similarity_to(ctx.features, ctx.learnt_features)
    assert sim[0] > 0.9 and sim[1] < sim[0]


def test_cold_start_picks_the_least_familiar_scan() -> None:
    recs = [_rec("a", feats=[0, 0]), _rec("b", feats=[5, 5]), _rec("m", "marked", feats=[0.1, 0])]
    ctx = scan_context(recs)
    assert rank_scans(get_scan_strategy("uncertainty"), ctx)[0] == "b"


def test_baselines() -> None:
    recs = [_rec(i) for i in "abcde"]
    recs[1].status = "reviewed"
    ctx = scan_context(recs, current="c", with_features=False)
    assert rank_scans(get_scan_strategy("sequential"), ctx) == ["d", "e", "a", "c"]
    r1 = rank_scans(get_scan_strategy("random", seed=1), ctx)
    assert sorted(r1) == ["a", "c", "d", "e"] and r1 == rank_scans(get_scan_strategy("random", seed=1), ctx)
    assert set(SCAN_STRATEGIES) == {"uncertainty", "random", "sequential"}
    with pytest.raises(ValueError, match="unknown scan strategy"):
        get_scan_strategy("bald")


def test_image_features_tell_different_scans_apart(sample_dir) -> None:
    from napari_sparseseg.io import read_volume

    hip = read_volume(sample_dir / "hippocampus" / "imagesTr" / "hippocampus_001.nii.gz")
    f1 = image_features(hip)
    f2 = image_features(hip.with_array(hip.array[:, ::-1].copy()))  # same content, mirrored
    crop = Volume(np.asarray(hip.array)[5:25, 10:40, 5:25], hip.affine)
    f3 = image_features(crop)
    assert f1.shape == (22,) and np.isfinite(f1).all()
    assert np.linalg.norm(f1 - f2) < 1e-6 < np.linalg.norm(f1 - f3)


def test_project_next_scan_end_to_end(tmp_path) -> None:
    proj = Project.create(tmp_path / "p")
    paths = []
    for i, mean in enumerate((100, 100, 400)):
        arr = np.random.default_rng(i).normal(mean, 10 + 30 * (i == 2), (6, 10, 10)).astype(np.float32)
        p = tmp_path / f"s{i}.nii.gz"
        write_volume_nifti(p, Volume(arr, np.eye(4)))
        paths.append(p)
    proj.add_scans(paths)
    assert proj.next_scan("sequential").id == "s0"
    assert all(s.features is not None for s in Project.open(tmp_path / "p").scans) is False
    first = proj.next_scan("uncertainty")  # computes and caches the descriptors
    assert first is not None and all(s.features is not None for s in Project.open(tmp_path / "p").scans)
    for s in proj.scans:
        proj.set_status(s.id, "reviewed")
    assert proj.next_scan() is None
