"""``sparseseg simulate``: writes annotation + sidecar atomically, prints the effort, clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_sparseseg.annotations import load_annotation
from napari_sparseseg.cli import main
from napari_sparseseg.commands.simulate import Mode, parse_mode
from napari_sparseseg.errors import AnnotationError
from napari_sparseseg.io import Volume, read_labels, write_labels_nifti


@pytest.fixture
def gt_file(tmp_path) -> Path:
    dense = np.zeros((6, 40, 40), np.uint8)
    yy, xx = np.mgrid[:40, :40]
    r = np.hypot(yy - 20, xx - 20)
    dense[1:5][:, r < 12] = 1
    dense[1:5][:, r < 6] = 2
    aff = np.diag([2.0, 1.0, 5.0, 1.0])[:, [2, 1, 0, 3]]
    p = tmp_path / "gt.nii.gz"
    write_labels_nifti(p, dense, Volume(dense, aff))
    return p


def test_parse_mode():
    assert parse_mode("scribbles") == Mode("scribbles", 0, 0)
    assert parse_mode("scribbles:2") == Mode("scribbles", 0, 2)
    assert parse_mode("points:5") == Mode("points", 5, 0)
    assert parse_mode("slices:3") == Mode("slices", 3, 0)
    assert parse_mode("Slices:3:1") == Mode("slices", 3, 1)
    for bad in ("points", "points:0", "slices:x", "dots:3", "slices:1:2:3"):
        with pytest.raises(AnnotationError):
            parse_mode(bad)


@pytest.mark.parametrize("mode", ["scribbles", "points:3", "slices:2", "slices:1:2"])
def test_simulate_writes_annotation_and_sidecar(gt_file, tmp_path, capsys, mode):
    out = tmp_path / "ann.nii.gz"
    assert main(["simulate", str(gt_file), "--mode", mode, "-o", str(out), "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    assert "marked" in printed and "%" in printed
    meta = json.loads((tmp_path / "ann.json").read_text())
    assert meta["background_label"] == 3 and meta["classes"] == [1, 2]
    gt = read_labels(gt_file)
    ann = load_annotation(out, gt)
    ann.validate(gt.shape)
    dense = gt.array
    for c in (1, 2):
        assert np.all(dense[ann.labels == c] == c)
    assert np.all(dense[ann.labels == 3] == 0)
    assert f"{100 * ann.marked_fraction():.3f}%" in printed
    if mode == "slices:1:2":
        assert ann.annotated_slices(2) and len(ann.annotated_slices(2)) == 1


def test_simulate_seed_and_background_label(gt_file, tmp_path):
    a, b = tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"
    assert main(["simulate", str(gt_file), "--mode", "points:2", "-o", str(a), "--seed", "1",
                 "--background-label", "9"]) == 0
    assert main(["simulate", str(gt_file), "--mode", "points:2", "-o", str(b), "--seed", "1",
                 "--background-label", "9"]) == 0
    gt = read_labels(gt_file)
    la, lb = load_annotation(a, gt), load_annotation(b, gt)
    assert la.background_label == 9 and np.array_equal(la.labels, lb.labels)


def test_simulate_errors_one_line_exit_2(gt_file, tmp_path, capsys):
    out = tmp_path / "ann.nii.gz"
    cases = [
        (["simulate", str(tmp_path / "missing.nii.gz"), "--mode", "scribbles", "-o", str(out)], "No such file"),
        (["simulate", str(gt_file), "--mode", "dots:3", "-o", str(out)], "not understood"),
        (["simulate", str(gt_file), "--mode", "slices:2:5", "-o", str(out)], "axis 5"),
        (["simulate", str(gt_file), "--mode", "scribbles", "-o", str(out), "--background-label", "2"], "also a class"),
        (["simulate", str(gt_file), "--mode", "scribbles", "-o", str(tmp_path / "ann.txt")], ".nii.gz"),
        (["simulate", str(gt_file), "--mode", "scribbles", "-o", str(gt_file)], "input of this run"),
    ]
    for argv, msg in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1 and err.startswith("sparseseg simulate: error:"), err
    assert not out.exists()
    empty = tmp_path / "empty.nii.gz"
    write_labels_nifti(empty, np.zeros((3, 4, 5), np.uint8), Volume(np.zeros((3, 4, 5))))
    assert main(["simulate", str(empty), "--mode", "points:1", "-o", str(out)]) == 2
    assert "no foreground" in capsys.readouterr().err


def test_simulate_refuses_to_overwrite_without_flag(gt_file, tmp_path, capsys):
    out = tmp_path / "ann.nii.gz"
    assert main(["simulate", str(gt_file), "--mode", "points:1", "-o", str(out)]) == 0
    before = out.read_bytes()
    assert main(["simulate", str(gt_file), "--mode", "points:2", "-o", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_bytes() == before
    assert main(["simulate", str(gt_file), "--mode", "points:2", "-o", str(out), "--overwrite"]) == 0
    assert out.read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ann.json", "ann.nii.gz", "gt.nii.gz"]


def test_console_script_simulate_and_evaluate(gt_file, tmp_path):
    """The installed ``sparseseg`` entry point, end to end in a real subprocess."""
    exe = Path(sys.executable).parent / "sparseseg"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "napari_sparseseg.cli"]
    out = tmp_path / "ann.nii.gz"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    r = subprocess.run(cmd + ["simulate", str(gt_file), "--mode", "slices:2", "-o", str(out)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "marked" in r.stdout
    r = subprocess.run(cmd + ["evaluate", str(gt_file), str(gt_file), "--json"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)
    assert rec["mean"]["dice"] == 1.0 and rec["mean"]["hd95_mm"] == 0.0
    r = subprocess.run(cmd + ["evaluate", str(tmp_path / "nope.nii.gz"), str(gt_file)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "No such file" in r.stderr
