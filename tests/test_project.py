"""Projects: one folder, an atomic versioned index, marks/predictions/models on disk, crash recovery."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from napari_sparseseg.annotations import SparseAnnotation, simulate_slices
from napari_sparseseg.io import Volume, read_labels, read_volume, write_volume_nifti
from napari_sparseseg.io.atomic import leftover_temporaries
from napari_sparseseg.project import PROJECT_FILE, Project, ProjectError


def _scan(path: Path, seed: int, shape=(8, 12, 10)) -> Path:
    rng = np.random.default_rng(seed)
    arr = rng.normal(100 + 10 * seed, 20, shape).astype(np.float32)
    write_volume_nifti(path, Volume(arr, np.diag([1.0, 1.5, 1.5, 1.0]), name=path.name))
    return path


def _marks(shape, bg=3) -> SparseAnnotation:
    lab = np.zeros(shape, np.int16)
    lab[2, 3:5, 3:5] = 1
    lab[2, 8:10, 6:8] = 2
    lab[2, 0, :] = bg
    return SparseAnnotation(lab, bg, (1, 2), {1: "anterior", 2: "posterior"})


@pytest.fixture
def scans(tmp_path) -> list[Path]:
    inside = tmp_path / "study" / "images"
    inside.mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    return [_scan(inside / "a.nii.gz", 0), _scan(inside / "b.nii.gz", 1), _scan(outside / "a.nii.gz", 2)]


def test_create_add_reopen_paths_and_ids(tmp_path, scans) -> None:
    proj = Project.create(tmp_path / "study")
    added = proj.add_scans(scans)
    assert [s.id for s in added] == ["a", "b", "a_2"]  # a clash of stems gets a suffix
    assert [s.status for s in added] == ["unmarked"] * 3
    # inside the folder: relative (the study folder can move); outside: absolute
    assert added[0].path == "images/a.nii.gz" and not Path(added[0].path).is_absolute()
    assert Path(added[2].path).is_absolute()
    # adding the same file again keeps one entry
    again = proj.add_scans([scans[0]])
    assert again[0].id == "a" and len(proj.scans) == 3
    data = json.loads((tmp_path / "study" / PROJECT_FILE).read_text())
    assert data["format"] == "napari-sparseseg project" and data["version"] == 1
    reopened = Project.open(tmp_path / "study")
    assert [s.id for s in reopened.scans] == ["a", "b", "a_2"]
    assert reopened.image_path("a_2") == scans[2]
    assert reopened.scan(str(scans[1])).id == "b"  # by path too
    assert reopened.load_image("b").shape == (8, 12, 10)
    assert leftover_temporaries(tmp_path / "study") == []


def test_marks_prediction_status_models(tmp_path, scans) -> None:
    proj = Project.create(tmp_path / "study")
    proj.add_scans(scans)
    img = proj.load_image("a")
    ann = _marks(img.shape)
    path = proj.set_marks("a", ann, like=img)
    assert path == tmp_path / "study" / "annotations" / "a.nii.gz"
    assert (tmp_path / "study" / "annotations" / "a.json").is_file()  # the one annotation convention's sidecar
    assert proj.scan("a").status == "marked"
    assert proj.labels.background_label == 3 and proj.labels.classes == [1, 2]
    back = Project.open(tmp_path / "study").load_marks("a", like=img)
    np.testing.assert_array_equal(back.labels, ann.labels)
    assert back.background_label == 3 and back.classes == (1, 2)
    # another background label in the same project would make the shared model meaningless
    with pytest.raises(ProjectError, match="background label"):
        proj.set_marks("b", _marks(img.shape, bg=4))
    # a prediction and its Dice-free quality signal
    labels = np.zeros(img.shape, np.int16)
    labels[2:4, 3:6, 3:6] = 1
    unc = np.full(img.shape, 0.1, np.float32)
    unc[2:4, 3:6, 3:6] = 0.6
    proj.set_prediction("a", labels, unc, like=img, model_version=2)
    s = Project.open(tmp_path / "study").scan("a")
    assert s.prediction == "predictions/a_pred.nii.gz" and s.prediction_model_version == 2
    assert 0.1 < s.mean_uncertainty < s.foreground_uncertainty <= 0.6
    lab_back, unc_back = proj.load_prediction("a", like=img)
    np.testing.assert_array_equal(lab_back, labels)
    np.testing.assert_allclose(unc_back, unc)
    with pytest.raises(ProjectError, match="grid"):
        proj.set_prediction("b", labels[:-1], None, like=proj.load_image("b"))
    proj.set_status("a", "reviewed")
    with pytest.raises(ProjectError, match="unknown status"):
        proj.set_status("a", "done")
    with pytest.raises(ProjectError, match="no marks"):
        proj.set_status("b", "marked")
    assert proj.counts() == {"unmarked": 2, "marked": 0, "reviewed": 1, "exported": 0}
    assert [s.id for s in proj.marked_scans()] == ["a"]
    # models: versioned files, counter moves by one per model
    src = tmp_path / "w.safetensors"
    src.write_bytes(b"not really a model, just bytes to copy")
    m1 = proj.add_model(src, scans=["a"])
    m2 = proj.add_model(lambda p: Path(p).write_bytes(b"second"), scans=["a"], info={"steps": 5})
    assert (m1.version, m2.version) == (1, 2) and proj.model_version == 2
    assert proj.current_model_path() == tmp_path / "study" / "models" / "model_v0002.safetensors"
    assert Project.open(tmp_path / "study").current_model.info == {"steps": 5}


def test_corrupt_foreign_and_newer_files_fail_in_one_line(tmp_path) -> None:
    d = tmp_path / "p"
    d.mkdir()
    with pytest.raises(ProjectError, match="not a project"):
        Project.open(d)
    (d / PROJECT_FILE).write_text('{"scans": [', encoding="utf-8")
    with pytest.raises(ProjectError, match="corrupt project file") as e:
        Project.open(d)
    assert "\n" not in str(e.value)
    (d / PROJECT_FILE).write_text(json.dumps({"hello": "world"}))
    with pytest.raises(ProjectError, match="not a napari-sparseseg project"):
        Project.open(d)
    (d / PROJECT_FILE).write_text(json.dumps({"format": "napari-sparseseg project", "version": 99}))
    with pytest.raises(ProjectError, match="newer"):
        Project.open(d)
    (d / PROJECT_FILE).write_text(json.dumps({"format": "napari-sparseseg project", "version": 1,
                                              "scans": [{"id": "x", "path": "x.nii.gz", "status": "weird"}]}))
    with pytest.raises(ProjectError, match="unknown status"):
        Project.open(d)
    with pytest.raises(ProjectError, match="already a project"):
        Project.create(d)
    with pytest.raises(FileNotFoundError):
        Project.open(tmp_path / "missing")


def test_reopen_after_a_crash_adopts_orphans_and_forgets_missing_files(tmp_path, scans) -> None:
    proj = Project.create(tmp_path / "study")
    proj.add_scans(scans)
    img = proj.load_image("b")
    index_before = (tmp_path / "study" / PROJECT_FILE).read_text()
    proj.set_marks("b", _marks(img.shape), like=img)
    proj.add_model(lambda p: Path(p).write_bytes(b"weights"))
    proj.set_prediction("a", np.zeros(img.shape, np.int16), np.zeros(img.shape, np.float32))
    # simulate a crash after the data files were written but before the index named them
    (tmp_path / "study" / PROJECT_FILE).write_text(index_before)
    os.remove(tmp_path / "study" / "predictions" / "a_unc.nii.gz")
    back = Project.open(tmp_path / "study")
    assert back.scan("b").status == "marked" and back.scan("b").marks == "annotations/b.nii.gz"
    assert back.model_version == 1 and back.current_model.info == {"recovered": True}
    assert any("adopted marks" in r for r in back.repairs)
    # a prediction file the index names but that vanished is forgotten
    data = json.loads((tmp_path / "study" / PROJECT_FILE).read_text())
    data["scans"][0]["uncertainty"] = "predictions/a_unc.nii.gz"
    (tmp_path / "study" / PROJECT_FILE).write_text(json.dumps(data))
    again = Project.open(tmp_path / "study")
    assert again.scan("a").uncertainty is None
    assert any("missing" in r for r in again.repairs)


def test_two_handles_do_not_overwrite_each_other(tmp_path, scans) -> None:
    """The widget and a CLI process share a project: each change re-reads the index first."""
    one = Project.create(tmp_path / "study")
    one.add_scans(scans[:2])
    two = Project.open(tmp_path / "study")
    img = one.load_image("a")
    one.set_marks("a", _marks(img.shape), like=img)
    two.set_status("b", "reviewed")  # two has not seen the marks of "a"; it must not erase them
    final = Project.open(tmp_path / "study")
    assert final.scan("a").status == "marked" and final.scan("b").status == "reviewed"


def test_real_scan_marks_round_trip(tmp_path, sample_dir) -> None:
    """A real hippocampus case: simulated labelled slices saved into a project load back identically."""
    image_path = sample_dir / "hippocampus" / "imagesTr" / "hippocampus_001.nii.gz"
    gt = np.asarray(read_labels(sample_dir / "hippocampus" / "labelsTr" / "hippocampus_001.nii.gz").array)
    proj = Project.create(tmp_path / "study")
    (rec,) = proj.add_scans([image_path])
    assert Path(rec.path).is_absolute()
    img = proj.load_image(rec)
    ann = simulate_slices(gt, 3, background_label=3, seed=0)
    proj.set_marks(rec, ann, like=img)
    back = Project.open(tmp_path / "study").load_marks(rec.id, like=read_volume(image_path))
    np.testing.assert_array_equal(back.labels, ann.labels)


def test_zarr_scans_and_a_moved_project_folder(tmp_path) -> None:
    """Scans inside the folder are stored relative to it, so the study folder can move with them."""
    import shutil

    from napari_sparseseg.io import write_zarr

    root = tmp_path / "a" / "study"
    (root / "scans").mkdir(parents=True)
    _scan(root / "scans" / "n.nii.gz", 0)
    arr = np.random.default_rng(1).normal(size=(6, 8, 8)).astype(np.float32)
    write_zarr(root / "scans" / "z.zarr", arr, Volume(arr, np.eye(4)))
    proj = Project.create(root)
    recs = proj.add_scans([root / "scans" / "n.nii.gz", root / "scans" / "z.zarr"])
    assert [r.id for r in recs] == ["n", "z"] and [r.path for r in recs] == ["scans/n.nii.gz", "scans/z.zarr"]
    with pytest.raises(ProjectError, match="not a NIfTI"):
        (root / "notes.txt").write_text("hi")
        proj.add_scans([root / "notes.txt"])
    shutil.move(str(tmp_path / "a"), str(tmp_path / "b"))
    moved = Project.open(tmp_path / "b" / "study")
    assert moved.load_image("z").shape == (6, 8, 8)
    assert moved.image_path("n") == tmp_path / "b" / "study" / "scans" / "n.nii.gz"
