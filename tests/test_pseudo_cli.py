"""``sparseseg pseudo`` on a shared case: outputs on the image grid, clear one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sparseseg.cli import main


def _case(shared_data, tmp_path):
    """A small hippocampus case with 3 simulated labelled slices (no sidecar: background label 3)."""
    from napari_sparseseg.annotations.simulate import simulate_slices
    from napari_sparseseg.io import read_labels, read_volume, write_labels_nifti

    d = shared_data / "hippocampus"
    img = sorted((d / "imagesTr").glob("*.nii.gz"))[1]
    gt = d / "labelsTr" / img.name
    image = read_volume(img)
    ann = simulate_slices(np.asarray(read_labels(gt, like=image).array), 3, axis=0, background_label=3, seed=0)
    ann_path = tmp_path / "marks.nii.gz"
    write_labels_nifti(ann_path, ann.labels, image)
    return img, ann_path, gt


def test_cli_writes_pseudo_labels_and_confidence_on_the_image_grid(shared_data, tmp_path, capsys):
    from napari_sparseseg.evaluate.metrics import dice_per_class
    from napari_sparseseg.io import read_labels, read_volume

    img, ann, gt = _case(shared_data, tmp_path)
    out, conf = tmp_path / "p.nii.gz", tmp_path / "c.nii.gz"
    rc = main(["pseudo", str(img), "--annotations", str(ann), "--background-label", "3", "-o", str(out),
               "--confidence", str(conf), "--method", "random-walker", "--threshold", "0.6"])
    assert rc == 0
    assert "confident" in capsys.readouterr().out
    image = read_volume(img)
    p = read_labels(out, like=image)
    c = read_volume(conf)
    assert p.shape == image.shape and np.allclose(p.affine, image.affine)
    assert c.same_grid(image)
    cv = np.asarray(c.array)
    assert cv.min() >= 0 and cv.max() <= 1 and np.all((cv == 0) | (cv >= 0.6))
    d = dice_per_class(np.asarray(p.array), np.asarray(read_labels(gt).array), (1, 2))
    assert np.mean(list(d.values())) > 0.5, d


def test_cli_errors_are_one_line(shared_data, tmp_path, capsys):
    img, ann, _ = _case(shared_data, tmp_path)
    out, conf = tmp_path / "p.nii.gz", tmp_path / "c.nii.gz"
    base = ["pseudo", str(img), "--annotations", str(ann), "-o", str(out), "--confidence", str(conf)]
    assert main(base) == 2                      # no sidecar, no --background-label
    err = capsys.readouterr().err
    assert "--background-label" in err and err.count("\n") == 1
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"nope")
    assert main(base + ["--background-label", "3", "--method", "fusion", "--backend", f"sam-vit_b:{bad}"]) == 2
    assert "cannot read checkpoint" in capsys.readouterr().err
    assert not out.exists() and not conf.exists()
    out.write_bytes(b"keep me")
    assert main(base + ["--background-label", "3"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"


@pytest.mark.slow
def test_cli_fusion_on_a_hippocampus_case(shared_data, tmp_path):
    from napari_sparseseg.annotations import save_annotation
    from napari_sparseseg.annotations.simulate import simulate_slices
    from napari_sparseseg.io import read_labels, read_volume

    d = shared_data / "hippocampus"
    case = sorted((d / "imagesTr").glob("*.nii.gz"))[0]
    image = read_volume(case)
    gt = read_labels(d / "labelsTr" / case.name, like=image)
    ann = simulate_slices(np.asarray(gt.array), 3, axis=0, background_label=3, seed=0)
    ann_path = tmp_path / "ann.nii.gz"
    save_annotation(ann_path, ann, image)
    out, conf = tmp_path / "p.nii.gz", tmp_path / "c.nii.gz"
    rc = main(["pseudo", str(case), "--annotations", str(ann_path), "-o", str(out), "--confidence", str(conf),
               "--method", "fusion", "--cache", str(tmp_path / "cache")])
    assert rc == 0 and out.exists() and conf.exists()
    assert any((tmp_path / "cache").rglob("*.zarr"))
