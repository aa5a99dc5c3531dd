"""``sparseseg evaluate``: per-class table or JSON, spacing from the header, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_sparseseg.cli import main
from napari_sparseseg.io import Volume, write_labels_nifti

AFF = np.diag([1.5, 1.5, 5.0, 1.0])[:, [2, 1, 0, 3]]  # array spacing (5, 1.5, 1.5) mm


def _write(path: Path, arr: np.ndarray, aff=AFF) -> Path:
    write_labels_nifti(path, arr, Volume(arr, aff))
    return path


@pytest.fixture
def pair(tmp_path) -> tuple[Path, Path]:
    gt = np.zeros((8, 12, 12), np.uint8)
    gt[2, 2:8, 2:8] = 1  # a sheet ...
    gt[5:7, 2:6, 2:6] = 2
    pred = np.zeros_like(gt)
    pred[3, 2:8, 2:8] = 1  # ... one slice (5 mm) off: Dice 0, HD95 = ASSD = 5 mm
    pred[5:7, 2:6, 2:6] = 2  # perfect
    return _write(tmp_path / "pred.nii.gz", pred), _write(tmp_path / "gt.nii.gz", gt)


def test_evaluate_json_uses_header_spacing(pair, capsys):
    assert main(["evaluate", str(pair[0]), str(pair[1]), "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    c1, c2 = rec["classes"]["1"], rec["classes"]["2"]
    assert c1["dice"] == 0.0 and c1["hd95_mm"] == pytest.approx(5.0) and c1["assd_mm"] == pytest.approx(5.0)
    assert c2["dice"] == 1.0 and c2["hd95_mm"] == 0.0
    assert rec["mean"]["dice"] == pytest.approx(0.5)
    assert rec["spacing_mm"] == pytest.approx([5.0, 1.5, 1.5])


def test_evaluate_table_classes_names_and_spacing_override(pair, capsys):
    argv = ["evaluate", str(pair[0]), str(pair[1]), "--classes", "1", "2", "3", "--names", "RV", "MYO", "LV",
            "--spacing", "2", "1", "1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert lines[0].split()[:2] == ["class", "Dice"]
    row1 = lines[1].split()
    assert row1[:5] == ["1", "RV", "0.0000", "2.00", "2.00"]  # one slice = 2 mm with the override
    assert lines[3].split()[:3] == ["3", "LV", "n/a"]  # absent from both: excluded, not a perfect 1.0
    assert lines[4].startswith("mean") and "spacing (2, 1, 1) mm" in out


def test_evaluate_dice_only_and_undefined_note(tmp_path, capsys):
    gt = np.zeros((4, 6, 6), np.uint8)
    gt[1, 1:3, 1:3] = 1
    gt[2, 4, 4] = 2
    pred = np.where(gt == 1, 1, 0).astype(np.uint8)
    p, g = _write(tmp_path / "p.nii.gz", pred), _write(tmp_path / "g.nii.gz", gt)
    assert main(["evaluate", str(p), str(g)]) == 0
    out = capsys.readouterr().out
    assert "n/a" in out and "1 distance(s) undefined" in out
    assert main(["evaluate", str(p), str(g), "--dice-only", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["classes"]["2"]["dice"] == 0.0 and rec["classes"]["2"]["hd95_mm"] is None


def test_evaluate_errors_one_line_exit_2(pair, tmp_path, capsys):
    other = _write(tmp_path / "other.nii.gz", np.zeros((8, 12, 13), np.uint8))
    shifted = AFF.copy()
    shifted[0, 3] = 10.0
    moved = _write(tmp_path / "moved.nii.gz", np.zeros((8, 12, 12), np.uint8), shifted)
    empty = _write(tmp_path / "empty.nii.gz", np.zeros((8, 12, 12), np.uint8))
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not a nifti at all")
    cases = [
        (["evaluate", str(other), str(pair[1])], "is not on the ground truth's grid gt.nii.gz (shape (8, 12, 12)"),
        (["evaluate", str(moved), str(pair[1])], "same shape but a different position"),
        (["evaluate", str(tmp_path / "missing.nii.gz"), str(pair[1])], "No such file"),
        (["evaluate", str(bad), str(pair[1])], "bad.nii.gz"),
        (["evaluate", str(empty), str(empty)], "--classes"),
        (["evaluate", str(pair[0]), str(pair[1]), "--names", "RV"], "--names needs --classes"),
        (["evaluate", str(pair[0]), str(pair[1]), "--spacing", "0", "1", "1"], "positive"),
    ]
    for argv, msg in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1 and err.startswith("sparseseg evaluate: error:"), err
