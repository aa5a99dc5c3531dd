"""End to end: ``sparseseg segment`` on the bundled real hippocampus case, and its error paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_sparseseg.cli import main


@pytest.fixture(scope="module")
def hippo(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from napari_sparseseg.annotations.files import save_annotation
    from napari_sparseseg.annotations.simulate import simulate_slices
    from napari_sparseseg.io import read_labels, read_volume

    img = sample_dir / "hippocampus" / "imagesTr" / "hippocampus_001.nii.gz"
    gt = sample_dir / "hippocampus" / "labelsTr" / "hippocampus_001.nii.gz"
    vol = read_volume(img)
    dense = np.asarray(read_labels(gt, like=vol).array)
    tmp = tmp_path_factory.mktemp("seg")
    ann_path, _ = save_annotation(tmp / "ann.nii.gz", simulate_slices(dense, 3, axis=0, background_label=3, seed=0), vol)
    return {"image": img, "gt": gt, "ann": ann_path, "tmp": tmp}


def test_segment_real_hippocampus_beats_chance(hippo: dict[str, Path]) -> None:
    from napari_sparseseg.evaluate import dice_per_class
    from napari_sparseseg.io import read_labels, read_volume
    from napari_sparseseg.training import load_checkpoint

    out, model, unc = hippo["tmp"] / "pred.nii.gz", hippo["tmp"] / "m.safetensors", hippo["tmp"] / "unc.nii.gz"
    rc = main(["segment", str(hippo["image"]), "--annotations", str(hippo["ann"]), "-o", str(out),
               "--budget-seconds", "6", "--save-model", str(model), "--uncertainty", str(unc), "--quiet"])
    assert rc == 0
    vol = read_volume(hippo["image"])
    pred = read_labels(out, like=vol)  # same grid, or this raises
    assert np.allclose(pred.affine, vol.affine)
    gt = np.asarray(read_labels(hippo["gt"], like=vol).array)
    dice = dice_per_class(np.asarray(pred.array), gt, (1, 2))
    assert min(dice.values()) > 0.5, dice  # chance level (a random 3-class map) is ~0.05
    _, meta = load_checkpoint(model)
    assert meta["classes"] == [1, 2] and meta["background_label"] == 3
    u = np.asarray(read_volume(unc).array)
    assert u.shape == vol.shape and 0 <= u.min() <= u.max() <= 1


def test_segment_refuses_to_overwrite_and_bad_checkpoint(hippo: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    out = hippo["tmp"] / "exists.nii.gz"
    out.write_bytes(b"keep me")
    rc = main(["segment", str(hippo["image"]), "--annotations", str(hippo["ann"]), "-o", str(out), "--quiet"])
    assert rc == 2 and "--overwrite" in capsys.readouterr().err and out.read_bytes() == b"keep me"
    bad = hippo["tmp"] / "bad.safetensors"
    bad.write_bytes(b"garbage")
    rc = main(["segment", str(hippo["image"]), "--annotations", str(hippo["ann"]), "-o", str(hippo["tmp"] / "p2.nii.gz"),
               "--init", str(bad), "--budget-seconds", "1", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "not a readable" in err
    assert not (hippo["tmp"] / "p2.nii.gz").exists()


def test_segment_method_switch(hippo: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    """--method runs a registered method through the same inputs/outputs; unknown names and
    checkpoint flags with a non-default method are one-line errors that write nothing."""
    from napari_sparseseg.io import read_labels, read_volume

    out = hippo["tmp"] / "m_default.nii.gz"
    rc = main(["segment", str(hippo["image"]), "--annotations", str(hippo["ann"]), "-o", str(out), "--method",
               "default", "--max-steps", "3", "--pseudo-method", "random-walker", "--quiet"])
    assert rc == 0 and read_labels(out, like=read_volume(hippo["image"])).array.shape == read_volume(hippo["image"]).shape
    bad = hippo["tmp"] / "m_bad.nii.gz"
    rc = main(["segment", str(hippo["image"]), "--annotations", str(hippo["ann"]), "-o", str(bad), "--method", "nope"])
    assert rc == 2 and "unknown method 'nope'" in capsys.readouterr().err and not bad.exists()


@pytest.mark.parametrize("method", ["sa-net", "clg-vq", "rada", "dk-uxnet"])
def test_segment_runs_each_seed_paper_method(hippo: dict[str, Path], method: str) -> None:
    """Every seed-paper method runs from the CLI and writes a label map on the image grid."""
    from napari_sparseseg.io import read_labels, read_volume

    out, unc = hippo["tmp"] / f"m_{method}.nii.gz", hippo["tmp"] / f"u_{method}.nii.gz"
    rc = main(["segment", str(hippo["image"]), "--annotations", str(hippo["ann"]), "-o", str(out), "--method", method,
               "--max-steps", "2", "--pseudo-method", "random-walker", "--uncertainty", str(unc), "--quiet"])
    assert rc == 0
    vol = read_volume(hippo["image"])
    pred = np.asarray(read_labels(out, like=vol).array)
    assert pred.shape == vol.shape and set(np.unique(pred)) <= {0, 1, 2} and (pred > 0).any()
