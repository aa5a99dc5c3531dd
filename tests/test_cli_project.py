"""``sparseseg project``, ``sparseseg train`` and ``segment --init`` without marks, on real hippocampus crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_sparseseg.annotations import save_annotation, simulate_slices
from napari_sparseseg.cli import main
from napari_sparseseg.io import (
    read_labels,
    read_volume,
    write_labels_nifti,
    write_volume_nifti,
)
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


def _marks_folder(tmp_path: Path, images: list[Path], labels: list[Path], which=(0, 1)) -> Path:
    """Three simulated labelled slices per chosen case (the hippocampus protocol), sidecar included."""
    d = tmp_path / "marks"
    d.mkdir(exist_ok=True)
    for i in which:
        img = read_volume(images[i])
        gt = np.asarray(read_labels(labels[i]).array)
        save_annotation(d / images[i].name, simulate_slices(gt, 3, background_label=3, seed=i), img)
    return d


def test_train_then_segment_with_and_without_marks(tmp_path, three_cases, capsys) -> None:
    images, labels = three_cases
    marks = _marks_folder(tmp_path, images, labels)
    model = tmp_path / "model.safetensors"
    # case2 has no marks file: skipped with a note, not an error
    assert main(["train", *map(str, images), "--annotations", str(marks), "-o", str(model), *TINY]) == 0
    assert model.is_file() and (tmp_path / "model.work" / "cohort_last.safetensors").is_file()
    from napari_sparseseg.training import load_checkpoint

    _state, meta = load_checkpoint(model)
    assert meta["classes"] == [1, 2] and sorted(meta["cohort"]["scans"]) == ["case0", "case1"]
    # the unmarked scan, from the image alone
    out, unc = tmp_path / "pred.nii.gz", tmp_path / "unc.nii.gz"
    assert main(["segment", str(images[2]), "--init", str(model), "-o", str(out), "--uncertainty", str(unc),
                 "--device", "cpu", "--quiet"]) == 0
    pred = read_labels(out, like=read_volume(images[2]))
    assert set(np.unique(pred.array).tolist()) <= {0, 1, 2}
    u = np.asarray(read_volume(unc).array)
    assert u.shape == pred.shape and 0.0 <= u.min() <= u.max() <= 1.0
    # with its own marks: the per-scan fine-tune, warm-started from the cohort model
    own = _marks_folder(tmp_path, images, labels, which=(2,)) / images[2].name
    out2, tuned = tmp_path / "pred2.nii.gz", tmp_path / "tuned.safetensors"
    assert main(["segment", str(images[2]), "-a", str(own), "--init", str(model), "-o", str(out2), "--budget-seconds",
                 "2", "--max-steps", "2", "--device", "cpu", "--threads", "1", "--quiet", "--save-model", str(tuned)]) == 0
    pred2 = np.asarray(read_labels(out2).array)
    assert pred2.shape == pred.shape
    marks_own = np.asarray(read_labels(own).array)
    np.testing.assert_array_equal(pred2[marks_own == 1], 1)  # the marks stay in the output
    assert load_checkpoint(tuned)[1]["steps"] == 2 and "cohort" in load_checkpoint(tuned)[1]  # the cohort fine-tune
    # no marks and no model: a one-line error
    capsys.readouterr()
    assert main(["segment", str(images[2]), "-o", str(tmp_path / "x.nii.gz")]) == 2
    assert "--init" in capsys.readouterr().err
    # an existing output is not replaced silently; nothing matched is an error
    assert main(["train", *map(str, images), "--annotations", str(marks), "-o", str(model), *TINY]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["train", *map(str, images), "--annotations", str(empty), "-o", str(tmp_path / "m2.safetensors"),
                 *TINY]) == 2


def test_ctrl_c_saves_and_resume_continues(tmp_path, three_cases) -> None:
    """A real process: the first Ctrl-C stops cleanly (exit 130, model + resumable checkpoint written)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    images, labels = three_cases
    marks = _marks_folder(tmp_path, images, labels)
    model = tmp_path / "model.safetensors"
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "napari_sparseseg.cli", "train", *map(str, images), "--annotations", str(marks),
           "-o", str(model), "--budget-seconds", "600", "--device", "cpu", "--threads", "1"]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    seen = ""
    deadline = time.monotonic() + 300
    while "training:" not in seen and time.monotonic() < deadline:  # wait until steps are running
        ch = proc.stderr.read(1)
        if not ch:
            break
        seen += ch
    assert "training:" in seen, seen[-2000:]
    proc.send_signal(signal.SIGINT)
    _out, rest = proc.communicate(timeout=120)
    assert proc.returncode == 130, (seen + rest)[-2000:]
    assert "continue with --resume" in rest
    assert model.is_file() and (tmp_path / "model.work" / "cohort_last.safetensors").is_file()
    from napari_sparseseg.training import load_checkpoint

    steps_before = load_checkpoint(tmp_path / "model.work" / "cohort_last.safetensors")[1]["resume"]["step"]
    assert main(["train", *map(str, images), "--annotations", str(marks), "-o", str(model), "--resume",
                 "--budget-seconds", "1e9", "--max-steps", str(steps_before + 2), "--device", "cpu", "--threads", "1",
                 "--quiet"]) == 0
    assert load_checkpoint(model)[1]["steps"] == steps_before + 2


def test_project_train_predict_next(tmp_path, three_cases, capsys) -> None:
    images, labels = three_cases
    d = tmp_path / "study"
    assert main(["project", "init", str(d), *map(str, images)]) == 0
    proj = Project.open(d)
    for i in (0, 1):
        img = proj.load_image(f"case{i}")
        gt = np.asarray(read_labels(labels[i]).array)
        proj.set_marks(f"case{i}", simulate_slices(gt, 3, background_label=3, seed=i), like=img)
    capsys.readouterr()
    assert main(["project", "predict", str(d)]) == 2  # no model yet
    assert "no model yet" in capsys.readouterr().err
    assert main(["project", "train", str(d), *TINY]) == 0
    proj = Project.open(d)
    assert proj.model_version == 1 and proj.current_model.scans == ["case0", "case1"]
    # training refreshed every scan's prediction and its quality signal
    assert all(s.prediction_model_version == 1 and s.foreground_uncertainty is not None for s in proj.scans)
    assert main(["project", "next", str(d)]) == 0
    assert capsys.readouterr().out.startswith("case2\t")  # the only unmarked scan
    assert main(["project", "predict", str(d), "--quiet"]) == 0  # nothing stale: nothing to do
    # a second run starts from version 1 and makes version 2
    assert main(["project", "train", str(d), *TINY, "--no-predict"]) == 0
    assert Project.open(d).model_version == 2
    assert main(["project", "predict", str(d), "--quiet"]) == 0
    assert all(s.prediction_model_version == 2 for s in Project.open(d).scans)
    # export: reviewed scans only, then their status says so
    out = tmp_path / "export"
    assert main(["project", "export", str(d), str(out)]) == 2  # nothing reviewed yet
    Project.open(d).set_status("case1", "reviewed")
    assert main(["project", "export", str(d), str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["case1.nii.gz"]
    assert read_labels(out / "case1.nii.gz", like=read_volume(images[1])).shape == read_volume(images[1]).shape
    assert Project.open(d).scan("case1").status == "exported"


def test_train_runs_unchanged_under_torchrun(tmp_path, three_cases) -> None:
    """The same `sparseseg train` command under `torchrun --nproc_per_node 2` (gloo on the CPU): each
    process makes the pseudo-labels of its share of the scans, one writes the model, which loads."""
    import os
    import subprocess
    import sys

    from napari_sparseseg.cohort import CohortModel

    images, labels = three_cases
    marks = _marks_folder(tmp_path, images, labels, which=(0, 1, 2))
    model = tmp_path / "ddp.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "napari_sparseseg.cli", "train", *map(str, images), "--annotations", str(marks), "-o", str(model),
           "--budget-seconds", "600", "--max-steps", "6", "--device", "cpu", "--threads", "1", "--quiet"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    m = CohortModel.load(model, device="cpu")
    assert m.meta["steps"] == 6 and sorted(m.meta["cohort"]["scans"]) == ["case0", "case1", "case2"]
    labels_pred, _ = m.predict(read_volume(images[2]))
    assert labels_pred.shape == read_volume(images[2]).shape
