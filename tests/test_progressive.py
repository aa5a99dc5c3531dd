"""Streaming start: the walker's map first, SAM-fused slices folded in, the first prediction on disk.

Real LiteMedSAM on the bundled hippocampus case; a tiny trainer for the schedule checks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _training_helpers import blobs, marks, tiny_config

from napari_sparseseg.training import Trainer


@pytest.fixture(scope="module")
def hippo(sample_dir: Path):
    from napari_sparseseg.annotations.simulate import simulate_slices
    from napari_sparseseg.io import read_labels, read_volume

    vol = read_volume(sample_dir / "hippocampus" / "imagesTr" / "hippocampus_001.nii.gz")
    gt = np.asarray(read_labels(sample_dir / "hippocampus" / "labelsTr" / "hippocampus_001.nii.gz", like=vol).array)
    return vol, gt, simulate_slices(gt, 3, axis=0, background_label=3, seed=0)


def test_progressive_hands_over_the_walker_then_parts_then_the_same_fusion(hippo, tmp_path) -> None:
    from napari_sparseseg.pseudo import make_pseudo_labels
    from napari_sparseseg.pseudo.progressive import ProgressivePseudo

    vol, gt, ann = hippo
    prog = ProgressivePseudo(vol, ann, "auto", cache_dir=tmp_path, update_every_seconds=0.0)
    first = prog.first()
    walker = make_pseudo_labels(vol, ann, "random-walker")
    assert np.array_equal(first.labels, walker.labels)
    got: list[tuple[object, bool]] = []
    prog.refine(lambda p, final: got.append((p, final)))
    assert [f for _, f in got] == [False] * (len(got) - 1) + [True] and len(got) > 2
    part = got[0][0]
    n_fused = part.info["fused_slices"]
    assert 0 < n_fused < part.info["sam_slices"]
    assert not np.array_equal(part.labels, got[-1][0].labels)  # later parts change the map
    # the final hand-over is the ordinary fusion (read back from the same on-disk embedding cache)
    full = make_pseudo_labels(vol, ann, "fusion", cache_dir=tmp_path)
    assert np.array_equal(got[-1][0].labels, full.labels)
    # (the disk cache stores float16 embeddings, hence not bit-identical confidences)
    assert np.abs(got[-1][0].confidence - full.confidence).max() < 0.02
    assert full.info["cache"]["computed"] == 0  # every embedding came from the first run's cache
    # slices without any structure in the walker's map were never embedded
    assert prog.final.info["sam_slices"] < vol.shape[0]


@pytest.mark.parametrize("restart", [False, True])
def test_update_without_restart_keeps_the_schedule(restart: bool) -> None:
    vol, truth = blobs()
    ann = marks(truth)
    cfg = tiny_config(max_steps=6, step_event_every_seconds=0.0, lr=1e-2, warm_lr_scale=0.25)
    tr = Trainer(vol, ann, cfg)
    lrs = []
    for ev in tr.run():
        if ev.kind == "step":
            lrs.append(ev.lr)
            if ev.step == 3:
                tr.update_annotation(ann, restart=restart)
    assert len(lrs) == 6
    if restart:
        assert lrs[3] == pytest.approx(0.25e-2, rel=0.05)  # the cosine restarts at the warm scale
    else:
        assert all(b < a for a, b in zip(lrs, lrs[1:]))  # one cosine from start to end


def test_segment_preview_writes_the_first_prediction(sample_dir: Path, hippo, tmp_path, monkeypatch, capsys) -> None:
    from napari_sparseseg.annotations.files import save_annotation
    from napari_sparseseg.cli import main
    from napari_sparseseg.io import read_labels

    vol, gt, ann = hippo
    monkeypatch.setenv("SPARSESEG_CACHE", str(tmp_path / "cache"))
    ann_path, _ = save_annotation(tmp_path / "ann.nii.gz", ann, vol)
    img = sample_dir / "hippocampus" / "imagesTr" / "hippocampus_001.nii.gz"
    prev, out = tmp_path / "first.nii.gz", tmp_path / "pred.nii.gz"
    rc = main(["segment", str(img), "-a", str(ann_path), "-o", str(out), "--preview", str(prev),
               "--budget-seconds", "3"])
    err = capsys.readouterr().err
    assert rc == 0 and "first prediction written" in err
    p = np.asarray(read_labels(prev, like=vol).array)  # on the image grid, or this raises
    assert set(np.unique(p)) <= {0, 1, 2} and (p > 0).any()
    # an existing preview file is not overwritten without --overwrite
    rc = main(["segment", str(img), "-a", str(ann_path), "-o", str(tmp_path / "p2.nii.gz"), "--preview", str(prev),
               "--budget-seconds", "1", "--quiet"])
    assert rc == 2 and "--overwrite" in capsys.readouterr().err
