"""``sparseseg info``: text and JSON descriptions, NaN files inspected (not rejected), clean errors."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_sparseseg.cli import main


def test_info_json_matches_nibabel(sample_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = sample_dir / "brain_tumor/imagesTr/PGBM-008_1993-06-10.nii.gz"
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    img = nib.load(str(path))
    assert info["shape"] == list(reversed(img.shape))
    np.testing.assert_allclose(info["spacing_mm"], list(reversed(img.header.get_zooms())), rtol=1e-5)
    np.testing.assert_allclose(info["origin_mm"], img.affine[:3, 3], atol=1e-5)
    data = np.asanyarray(img.dataobj)
    assert (info["min"], info["max"]) == (float(data.min()), float(data.max()))
    assert "affine" in info["napari"] and info["format"] == "nifti"


def test_info_text_and_labels(sample_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = sample_dir / "hippocampus/labelsTr/hippocampus_001.nii.gz"
    assert main(["info", str(path), "--labels"]) == 0
    out = capsys.readouterr().out
    assert "shape:     (35, 51, 35)" in out and "spacing:   (1, 1, 1) mm" in out
    counts = np.unique(np.asanyarray(nib.load(str(path)).dataobj), return_counts=True)[1]
    assert f"labels:    0: {counts[0]}, 1: {counts[1]}, 2: {counts[2]}" in out


def test_info_counts_nan_and_reports_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = np.ones((3, 4, 5), np.float32)
    data[0, 0, :2] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "nan.nii.gz"))
    assert main(["info", str(tmp_path / "nan.nii.gz")]) == 0
    assert "NaN/inf:   2 voxels" in capsys.readouterr().out
    assert main(["info", str(tmp_path / "missing.nii.gz")]) == 2
    assert "No such file" in capsys.readouterr().err
    (tmp_path / "bad.nii.gz").write_bytes(b"\x1f\x8b garbage")
    assert main(["info", str(tmp_path / "bad.nii.gz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sparseseg info: error: bad.nii.gz") and "\n" not in err
