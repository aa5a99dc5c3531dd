"""``sparseseg project``, ``sparseseg train`` and ``segment --init`` without marks, on real hippocampus crops."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_sparseseg.annotations import save_annotation, simulate_slices
from napari_sparseseg.cli import main
from napari_sparseseg.io import read_labels, read_volume, write_labels_nifti, write_volume_nifti
from napari_sparseseg.project import Project

TINY = ["--budget-seconds", "3", "--max-steps", "4", "--device", "cpu", "--threads", "1", "--quiet"]


@pytest.fixture
def three_cases(tmp_path, sample_dir) -> tuple[list[Path], list[Path]]:
    """Three real scans: the bundled hippocampus case and two crops of it (each a different field of view)."""
    img = read_volume(sample_dir / "hippocampus" / "imagesTr" / "hippocampus_001.nii.gz")
    gt = read_labels(sample_dir / "hippocampus" / "labelsTr" / "hippocampus_001.nii.gz")
    images, labels = [], []
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for i, (a, b) in enumerate([(0, 35), (2, 33), (4, 31)]):
        aff = img.affine.copy()
        aff[:3, 3] = aff[:3, :3] @ np.array([a, 0, 0]) + aff[:3, 3]
        crop = img.with_array(np.asarray(img.array)[a:b].copy()) if i == 0 else \
            type(img)(np.asarray(img.array)[a:b].copy(), aff, name=f"case{i}")
        lab = np.asarray(gt.array)[a:b].copy()
        p = tmp_path / "images" / f"case{i}.nii.gz"
        write_volume_nifti(p, crop)
        write_labels_nifti(tmp_path / "labels" / f"case{i}.nii.gz", lab, crop)
        images.append(p)
        labels.append(tmp_path / "labels" / f"case{i}.nii.gz")
    return images, labels


def test_project_init_status_next(tmp_path, three_cases, capsys) -> None:
    images, _ = three_cases
    d = tmp_path / "study"
    assert main(["project", "init", str(d), *map(str, images)]) == 0
    assert main(["project", "init", str(d), str(images[0])]) == 0  # again: nothing added twice
    assert len(Project.open(d).scans) == 3
    capsys.readouterr()
    assert main(["project", "status", str(d)]) == 0
    out = capsys.readouterr().out
    assert "model version 0" in out and "unmarked 3" in out and "case2" in out
    assert main(["project", "next", str(d), "--strategy", "sequential"]) == 0
    assert capsys.readouterr().out.startswith("case0\t")
    assert main(["project", "next", str(d)]) == 0  # uncertainty: cold start by diversity
    assert capsys.readouterr().out.split("\t")[0] in {"case0", "case1", "case2"}
    # a corrupt index: one line, exit 2
    (d / "project.json").write_text("{")
    assert main(["project", "status", str(d)]) == 2
    err = capsys.readouterr().err
    assert "corrupt project file" in err and err.count("\n") == 1
