"""Cohort pretraining: a network trained on other volumes' labels loads as ``segment --init``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_sparseseg.cli import main

CASES = ("hippocampus_001", "hippocampus_003", "hippocampus_004", "hippocampus_006")


@pytest.fixture(scope="module")
def cohort(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Four real hippocampus crops, three simulated labelled slices each (background mark 3)."""
    from napari_sparseseg.annotations.files import save_annotation
    from napari_sparseseg.annotations.simulate import simulate_slices
    from napari_sparseseg.io import read_labels, read_volume

    tmp = tmp_path_factory.mktemp("cohort")
    (tmp / "ann").mkdir()
    root = shared_data / "hippocampus"
    names = [c for c in CASES if (root / "imagesTr" / f"{c}.nii.gz").exists()]
    if len(names) < 3:
        pytest.skip("needs three hippocampus cases")
    for n in names:
        vol = read_volume(root / "imagesTr" / f"{n}.nii.gz")
        dense = np.asarray(read_labels(root / "labelsTr" / f"{n}.nii.gz", like=vol).array)
        save_annotation(tmp / "ann" / f"{n}.nii.gz", simulate_slices(dense, 3, axis=0, background_label=3, seed=0), vol)
    return {"root": root, "tmp": tmp, "names": names}


def test_pretrain_loss_falls_on_real_volumes(cohort: dict) -> None:
    from napari_sparseseg.io import read_labels, read_volume
    from napari_sparseseg.training import TrainConfig
    from napari_sparseseg.training.cohort import dense_item, pretrain_cohort

    items = []
    for n in cohort["names"][:3]:
        vol = read_volume(cohort["root"] / "imagesTr" / f"{n}.nii.gz")
        dense = np.asarray(read_labels(cohort["root"] / "labelsTr" / f"{n}.nii.gz", like=vol).array)
        items.append(dense_item(vol, dense, 3, (1, 2)))
    losses: list[float] = []
    cfg = TrainConfig(device="cpu", network="unet2d", channels=(8, 16, 32), batch=4, patch=(32, 32), threads=2)
    pretrain_cohort(items, cfg, 60, progress=lambda s, l: losses.append(l["total"]))
    assert len(losses) == 60 and all(np.isfinite(losses))
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10]), (losses[:10], losses[-10:])


def test_pretrain_cli_then_segment_init(cohort: dict, capsys: pytest.CaptureFixture) -> None:
    from napari_sparseseg.training import load_checkpoint

    tmp, root, names = cohort["tmp"], cohort["root"], cohort["names"]
    model = tmp / "cohort.safetensors"
    imgs = [str(root / "imagesTr" / f"{n}.nii.gz") for n in names[:-1]]
    rc = main(["pretrain", *imgs, "--labels", str(root / "labelsTr"), "--annotations", str(tmp / "ann"),
               "--pseudo-method", "random-walker", "-o", str(model), "--steps", "5", "--network", "unet2d", "--quiet"])
    assert rc == 0
    _, meta = load_checkpoint(model)
    assert meta["classes"] == [1, 2] and meta["pseudo_input"] is True and meta["steps"] == 5
    held_out = names[-1]
    out = tmp / "pred.nii.gz"
    rc = main(["segment", str(root / "imagesTr" / f"{held_out}.nii.gz"), "--annotations", str(tmp / "ann" / f"{held_out}.nii.gz"),
               "--pseudo-method", "random-walker", "--init", str(model), "--max-steps", "3", "-o", str(out), "--quiet"])
    assert rc == 0 and out.exists()
    out0 = tmp / "pred0.nii.gz"  # --budget-seconds 0: the cohort model's prediction, no per-volume training
    rc = main(["segment", str(root / "imagesTr" / f"{held_out}.nii.gz"), "--annotations", str(tmp / "ann" / f"{held_out}.nii.gz"),
               "--pseudo-method", "random-walker", "--init", str(model), "--budget-seconds", "0", "-o", str(out0), "--quiet"])
    assert rc == 0 and out0.exists()
    # an image-only model does not fit segment's pseudo-label input: a clear error, nothing written
    img_only = tmp / "img_only.safetensors"
    assert main(["pretrain", *imgs, "--labels", str(root / "labelsTr"), "-o", str(img_only), "--steps", "2",
                 "--network", "unet2d", "--quiet"]) == 0
    out2 = tmp / "pred2.nii.gz"
    rc = main(["segment", str(root / "imagesTr" / f"{held_out}.nii.gz"), "--annotations", str(tmp / "ann" / f"{held_out}.nii.gz"),
               "--pseudo-method", "random-walker", "--init", str(img_only), "--max-steps", "3", "-o", str(out2), "--quiet"])
    assert rc == 2 and not out2.exists()
    assert "channel" in capsys.readouterr().err.lower()
    # missing label map: one line, exit 2
    rc = main(["pretrain", imgs[0], "--labels", str(tmp), "-o", str(tmp / "x.safetensors"), "--quiet"])
    assert rc == 2 and "no label map" in capsys.readouterr().err
