"""Checkpoint round trip and the refusals (wrong classes, wrong input channels, foreign files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_sparseseg.annotations.sparse import SparseAnnotation
from napari_sparseseg.errors import CheckpointError
from napari_sparseseg.io.volume import Volume
from napari_sparseseg.training import TrainConfig, Trainer, load_checkpoint


def _small(classes=(1, 2)) -> tuple[Volume, SparseAnnotation]:
    rng = np.random.default_rng(0)
    img = rng.normal(size=(4, 24, 24)).astype(np.float32)
    lab = np.zeros(img.shape, np.int16)
    lab[:, 2, 2] = 9
    for i, c in enumerate(classes):
        lab[:, 10 + 2 * i, 10] = c
    return Volume(img), SparseAnnotation(lab, 9, classes)


CFG = TrainConfig(max_steps=2, batch=2, patch=(16, 16), budget_seconds=60, threads=1, first_preview_seconds=1e9)


def test_round_trip(tmp_path: Path) -> None:
    vol, ann = _small()
    tr = Trainer(vol, ann, CFG)
    list(tr.run())
    path = tr.save(tmp_path / "m.safetensors")
    state, meta = load_checkpoint(path)
    assert meta["classes"] == [1, 2] and meta["background_label"] == 9
    assert meta["network"]["dims"] == 2 and meta["normalisation"]["method"] == "percentile_zscore"
    tr2 = Trainer(vol, ann, CFG, init=path)
    for k, v in tr.model.state_dict().items():
        assert torch.equal(v, tr2.model.state_dict()[k]), k
    assert np.array_equal(tr.predict()[0], tr2.predict()[0])


def test_refuses_other_classes(tmp_path: Path) -> None:
    vol, ann = _small()
    path = Trainer(vol, ann, CFG).save(tmp_path / "m.safetensors")
    vol3, ann3 = _small((1, 2, 3))
    with pytest.raises(CheckpointError, match=r"classes \[1, 2\].*classes \[1, 2, 3\]"):
        Trainer(vol3, ann3, CFG, init=path)


def test_refuses_other_input_channels(tmp_path: Path) -> None:
    from napari_sparseseg.pseudo import PseudoLabels

    vol, ann = _small()
    path = Trainer(vol, ann, CFG).save(tmp_path / "m.safetensors")  # no pseudo: 1 input channel
    pl = PseudoLabels(np.zeros(vol.shape, np.int16), np.ones(vol.shape, np.float32), None, (1, 2))
    with pytest.raises(CheckpointError, match="expects 1 input channel.*gives 4"):
        Trainer(vol, ann, CFG, pseudo=pl, init=path)


def test_refuses_foreign_and_corrupt_files(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(CheckpointError, match="no napari-sparseseg metadata"):
        load_checkpoint(tmp_path / "foreign.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00\x01 not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(tmp_path / "junk.safetensors")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.safetensors")
