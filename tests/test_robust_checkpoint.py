"""Checkpoints, devices and settings: one line, never a traceback, a huge allocation or a silent NaN map."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_sparseseg.annotations.sparse import SparseAnnotation
from napari_sparseseg.errors import CheckpointError, SparsesegError
from napari_sparseseg.io import Volume
from napari_sparseseg.training import TrainConfig, Trainer, load_checkpoint
from napari_sparseseg.training.checkpoint import FORMAT
from napari_sparseseg.training.trainer import pick_device

TINY = dict(channels=(4, 8), budget_seconds=0, threads=1, augment=False, network="unet2d")


def _case():
    rng = np.random.default_rng(0)
    img = Volume(rng.normal(size=(3, 16, 16)).astype(np.float32), np.eye(4))
    a = np.zeros(img.shape, np.int16)
    a[1, 2:4, 2:12], a[1, 12:14, 2:12] = 1, 2
    return img, SparseAnnotation(a, 2)


def _write_raw(path, meta, tensors=None):
    from safetensors.torch import save_file

    save_file(tensors or {"w": torch.zeros(2)}, str(path), metadata={"sparseseg": json.dumps(meta)})


GOOD_NET = {"dims": 2, "in_channels": 1, "out_channels": 2, "channels": [4, 8], "strides": [2]}


@pytest.mark.parametrize("meta, expect", [
    ({"format": FORMAT, "format_version": "x", "classes": [1], "network": GOOD_NET}, "version"),
    ({"format": FORMAT, "format_version": 1, "network": GOOD_NET}, "'classes'"),
    ({"format": FORMAT, "format_version": 1, "classes": [1]}, "'network'"),
    ({"format": FORMAT, "format_version": 1, "classes": [1], "network": {**GOOD_NET, "channels": [4, 10**9]}}, "channels"),
    ({"format": FORMAT, "format_version": 1, "classes": [1], "network": {**GOOD_NET, "bogus": 1}}, "unknown network"),
    ({"format": FORMAT, "format_version": 1, "classes": [1], "network": {**GOOD_NET, "dims": 7}}, "dims"),
    ([1, 2, 3], "JSON object"),
])
def test_bad_checkpoint_metadata_is_one_line(tmp_path, meta, expect) -> None:
    p = tmp_path / "m.safetensors"
    _write_raw(p, meta)
    with pytest.raises(CheckpointError, match=expect) as info:
        load_checkpoint(p)
    assert "\n" not in str(info.value)


def test_nan_weights_are_refused(tmp_path) -> None:
    p = tmp_path / "m.safetensors"
    meta = {"format": FORMAT, "format_version": 1, "classes": [1], "network": GOOD_NET}
    _write_raw(p, meta, {"w": torch.tensor([1.0, float("nan")])})
    with pytest.raises(CheckpointError, match="NaN"):
        load_checkpoint(p)


def test_nan_network_output_raises_instead_of_an_all_zero_map() -> None:
    img, ann = _case()
    tr = Trainer(img, ann, TrainConfig(**TINY))
    with torch.no_grad():
        for prm in tr.model.parameters():
            prm.fill_(float("nan"))
    with pytest.raises(CheckpointError, match="NaN"):
        tr.predict()


def test_wrong_shape_checkpoint_message_lists_every_mismatch(tmp_path) -> None:
    img, ann = _case()
    tr = Trainer(img, ann, TrainConfig(**TINY, pseudo_input=False))
    p = tr.save(tmp_path / "m.safetensors")
    state, meta = load_checkpoint(p)
    state = {k: (torch.zeros(v.shape[0] + 1, *v.shape[1:]) if v.ndim >= 1 and v.shape[0] > 1 else v)
             for k, v in state.items()}
    with pytest.raises(CheckpointError) as info:
        Trainer(img, ann, TrainConfig(**TINY, pseudo_input=False), init={"state_dict": state, "meta": meta})
    msg = str(info.value)
    assert "\n" not in msg and msg.count("size mismatch") > 1, msg


@pytest.mark.parametrize("device", ["banana", "cuda:99", "tpu"])
def test_bad_device_is_one_line(device) -> None:
    if device == "cuda:99" and torch.cuda.device_count() > 99:  # pragma: no cover
        pytest.skip("a machine with 100 GPUs")
    with pytest.raises(SparsesegError, match="device"):
        pick_device(device)


@pytest.mark.parametrize("kw, expect", [
    ({"budget_seconds": -1}, "budget"), ({"budget_seconds": float("nan")}, "budget"),
    ({"threshold": 1.5}, r"\[0, 1\]"), ({"threshold": -0.1}, r"\[0, 1\]"), ({"max_steps": -3}, "max_steps"),
])
def test_bad_settings_are_refused_at_construction(kw, expect) -> None:
    with pytest.raises(SparsesegError, match=expect):
        TrainConfig(**kw)


def test_cli_bad_device_and_negative_budget_exit_2_with_one_line(tmp_path, capsys) -> None:
    from napari_sparseseg.annotations.files import save_annotation
    from napari_sparseseg.cli import main
    from napari_sparseseg.io import write_volume_nifti

    img, ann = _case()
    write_volume_nifti(tmp_path / "img.nii.gz", img)
    save_annotation(tmp_path / "ann.nii.gz", ann, img)
    base = ["segment", str(tmp_path / "img.nii.gz"), "-a", str(tmp_path / "ann.nii.gz"), "-o", str(tmp_path / "p.nii.gz"),
            "--quiet", "--pseudo-method", "none"]
    for extra, expect in ((["--device", "banana"], "device"), (["--budget-seconds", "-5"], "budget"),
                          (["--threshold", "7"], "[0, 1]")):
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert expect in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert not (tmp_path / "p.nii.gz").exists()
