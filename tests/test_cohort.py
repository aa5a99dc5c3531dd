"""The study model: learns across scans from sparse marks, segments an unseen scan without marks,
resumes, pauses, cancels, and loads into the per-scan Trainer for fine-tuning."""

from __future__ import annotations

import numpy as np
import pytest
from _study_helpers import BG, synthetic_scan, synthetic_study

from napari_sparseseg.annotations.sparse import SparseAnnotation
from napari_sparseseg.cohort import CohortConfig, CohortModel, CohortScan, CohortTrainer
from napari_sparseseg.errors import AnnotationError, CheckpointError
from napari_sparseseg.evaluate.metrics import dice_per_class

FAST = dict(budget_seconds=1e9, batch=8, patch=(48, 48), channels=(8, 16, 32), threads=1, device="cpu",
            checkpoint_every_seconds=1e9, refresh_at=())


def _mean_dice(pred: np.ndarray, gt: np.ndarray) -> float:
    d = dice_per_class(pred, gt, (1, 2))
    return float(np.mean([d[1], d[2]]))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    study = synthetic_study(4)
    trainer = CohortTrainer([s for s, _ in study], CohortConfig(max_steps=120, **FAST))
    kinds = [ev.kind for ev in trainer.run()]
    path = trainer.save(tmp_path_factory.mktemp("m") / "study.safetensors")
    return trainer, path, kinds


def test_learns_across_scans_and_segments_an_unmarked_scan(trained):
    trainer, path, kinds = trained
    assert kinds.count("pseudo") == 4 and kinds[-1] == "done"
    model = CohortModel.load(path, device="cpu")
    vol, gt = synthetic_scan(99)  # never trained on
    pred, unc = model.predict(vol)  # no marks at all
    assert pred.shape == gt.shape and unc.shape == gt.shape
    assert _mean_dice(pred, gt) > 0.8
    untrained = CohortTrainer([s for s, _ in synthetic_study(4)], CohortConfig(max_steps=1, **FAST))
    raw = CohortModel(untrained.model, untrained.spec, untrained.metadata(), untrained.device)
    assert _mean_dice(raw.predict(vol)[0], gt) < 0.5  # the test can fail: an untrained net does not pass


def test_marks_are_kept_and_classes_checked(trained):
    _, path, _ = trained
    model = CohortModel.load(path, device="cpu")
    vol, gt = synthetic_scan(98)
    labels = np.zeros(gt.shape, np.int16)
    labels[2, :5, :5] = 1  # a (wrong) mark of class 1 in a corner: the user's word wins
    labels[3] = np.where(gt[3] > 0, gt[3], BG)
    ann = SparseAnnotation(labels, BG, (1, 2))
    pred, unc = model.predict(vol, ann)
    assert (pred[2, :5, :5] == 1).all() and (unc[2, :5, :5] == 0).all()
    assert _mean_dice(pred, gt) > 0.8
    with pytest.raises(CheckpointError):
        model.predict(vol, SparseAnnotation(np.where(labels == 2, 1, labels), BG, (1,)))


def test_fine_tune_in_the_per_scan_trainer(trained):
    from napari_sparseseg.pseudo import make_pseudo_labels
    from napari_sparseseg.training import TrainConfig, Trainer

    _, path, _ = trained
    scan, gt = synthetic_study(1, seed0=50)[0]
    pseudo = make_pseudo_labels(scan.image, scan.annotation, method="random-walker")
    t = Trainer(scan.image, scan.annotation, TrainConfig(max_steps=2, budget_seconds=1e9, threads=1, device="cpu"),
                pseudo=pseudo, init=path)
    assert [ev.kind for ev in t.run()][-1] == "done"


def test_resume_continues_from_the_checkpoint(tmp_path):
    scans = [s for s, _ in synthetic_study(2)]
    cfg = CohortConfig(max_steps=6, **{**FAST, "checkpoint_every_seconds": 0.0})
    first = CohortTrainer(scans, cfg, workdir=tmp_path)
    for ev in first.run():
        if ev.kind == "step" and ev.step >= 3:
            first.cancel()
    assert (tmp_path / "cohort_last.safetensors").is_file()
    stopped_at = first.step
    again = CohortTrainer(scans, cfg, workdir=tmp_path, resume=True)
    assert again.step == stopped_at >= 3  # the cancel wrote the checkpoint it resumes from
    for k, v in first.model.state_dict().items():
        assert np.allclose(v.numpy(), again.model.state_dict()[k].numpy())
    kinds = [ev.kind for ev in again.run()]
    assert kinds[0] == "pseudo" and kinds[-1] == "done" and again.step == 6
    # pseudo-labels came from the cache the first run wrote
    assert len(list((tmp_path / "pseudo").glob("*.npz"))) == 2


def test_pause_and_cancel_are_honoured():
    trainer = CohortTrainer([s for s, _ in synthetic_study(1)], CohortConfig(max_steps=10_000, **FAST))
    trainer.pause()
    events = trainer.run()
    ev = next(events)  # pseudo-labels are made even while paused
    assert ev.kind == "pseudo"
    import threading

    threading.Timer(0.5, trainer.cancel).start()
    kinds = [e.kind for e in events]
    assert kinds[-1] == "cancelled" and trainer.step == 0


def test_unmarked_study_and_class_mismatch_are_refused():
    vol, gt = synthetic_scan(0)
    with pytest.raises(AnnotationError, match="no scan"):
        CohortTrainer([CohortScan(vol, None, "a"), CohortScan(vol, SparseAnnotation(np.zeros(gt.shape, np.int16), BG, (1, 2)), "b")])
    study = synthetic_study(2)
    other = SparseAnnotation(np.where(study[1][0].annotation.labels == 2, 1, study[1][0].annotation.labels), BG, (1,))
    with pytest.raises(AnnotationError, match="classes"):
        CohortTrainer([study[0][0], CohortScan(study[1][0].image, other, "x")])


def test_add_scans_replaces_by_name_and_keeps_the_rest():
    study = [s for s, _ in synthetic_study(3)]
    trainer = CohortTrainer(study[:2], CohortConfig(max_steps=1, **FAST))
    trainer.add_scans([study[1], study[2]])
    assert [s.name for s in trainer.scans] == ["scan0", "scan1", "scan2"]


def test_eta_counts_the_time_and_steps_left():
    from napari_sparseseg.cohort.trainer import _eta

    assert _eta(100.0, 900.0, None, 50, 0, 0.0) == 800.0  # time budget: the rest of it
    assert _eta(10.0, 1e9, 100, 20, 0, 0.0) == 40.0  # steps: 0.5 s a step, 80 left
    assert _eta(10.0, 30.0, 100, 20, 0, 0.0) == 20.0  # whichever ends first
    assert _eta(5.0, 1e9, 100, 0, 0, 0.0) is None  # no step yet: no rate
