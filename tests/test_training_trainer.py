"""The trainer's contract: events, cancel within a second, pause/resume, warm start, seeding."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from _training_helpers import blobs, marks, tiny_config

from napari_sparseseg.training import Trainer
from napari_sparseseg.training.config import changed_box as _changed_box


def test_events_and_predictions_on_the_image_grid() -> None:
    vol, truth = blobs()
    tr = Trainer(vol, marks(truth), tiny_config(max_steps=6, first_preview_seconds=0.0, step_event_every_seconds=0.0))
    evs = list(tr.run())
    kinds = [e.kind for e in evs]
    assert kinds[-1] == "done" and "step" in kinds and "prediction" in kinds
    for e in evs:
        if e.kind in ("prediction", "done"):
            assert e.prediction.shape == vol.shape and e.prediction.dtype.kind == "i"
            assert set(np.unique(e.prediction)) <= {0, 1, 2}
            assert e.uncertainty.dtype == np.float32 and 0 <= e.uncertainty.min() <= e.uncertainty.max() <= 1
    assert evs[-1].step == 6 and tr.spec.dims == 2
    assert all(np.isfinite(v) for e in evs if e.kind == "step" for v in e.losses.values())


def test_cancel_is_honoured_within_one_second() -> None:
    vol, truth = blobs()
    tr = Trainer(vol, marks(truth), tiny_config(budget_seconds=120.0))
    t_cancel: list[float] = []

    def cancel_soon() -> None:
        time.sleep(0.3)
        t_cancel.append(time.perf_counter())
        tr.cancel()

    threading.Thread(target=cancel_soon, daemon=True).start()
    last = None
    for last in tr.run():  # noqa: B007 - the last event is the result
        pass
    assert last is not None and last.kind == "cancelled"
    assert time.perf_counter() - t_cancel[0] < 1.0
    assert tr.step > 0


def test_pause_stops_steps_and_resume_continues() -> None:
    vol, truth = blobs()
    tr = Trainer(vol, marks(truth), tiny_config(max_steps=40, step_event_every_seconds=0.0))
    gen = tr.run()
    next(gen)  # first step event
    tr.pause()
    events: list = []
    th = threading.Thread(target=lambda: events.extend(gen), daemon=True)
    th.start()
    time.sleep(0.3)
    frozen = tr.step
    time.sleep(0.5)
    assert tr.paused and tr.step == frozen
    assert not any(e.kind == "done" for e in events)
    tr.resume()
    th.join(60)
    assert events and events[-1].kind == "done" and tr.step == 40


def _first_loss(tr: Trainer) -> float:
    return tr.train_step(tr.config.lr)["total"]


def test_warm_start_continues_from_current_weights() -> None:
    vol, truth = blobs()
    ann = marks(truth, every=11)
    cfg = tiny_config(max_steps=60)
    scratch_loss = _first_loss(Trainer(vol, ann, cfg))
    tr = Trainer(vol, ann, cfg)
    list(tr.run())
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    tr.update_annotation(marks(truth, every=5))  # more marks, as after a correction
    for k, v in tr.model.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed on update_annotation"
    tr.config.max_steps = 1
    ev = list(tr.run())[-1]
    assert ev.kind == "done"
    warm_loss = ev.losses["total"]
    assert tr.annotation.marked.sum() > ann.marked.sum()  # the new marks were taken
    assert warm_loss < 0.5 * scratch_loss, (warm_loss, scratch_loss)


def test_seeded_runs_are_identical() -> None:
    vol, truth = blobs()
    a = Trainer(vol, marks(truth), tiny_config(max_steps=3, seed=7))
    b = Trainer(vol, marks(truth), tiny_config(max_steps=3, seed=7))
    list(a.run()), list(b.run())
    for k, v in a.model.state_dict().items():
        assert torch.allclose(v.float(), b.model.state_dict()[k].float(), atol=1e-4), k


def test_3d_network_for_isotropic_volume_and_pseudo_labels() -> None:
    from napari_sparseseg.pseudo import PseudoLabels

    vol, truth = blobs(shape=(16, 24, 24), spacing=(1.0, 1.0, 1.0))
    ann = marks(truth)
    rng = np.random.default_rng(0)
    pl = PseudoLabels(truth, rng.uniform(0.3, 1.0, truth.shape).astype(np.float32), None, (1, 2))
    tr = Trainer(vol, ann, tiny_config(max_steps=2, patch=(8, 16, 16), channels=(4, 8)), pseudo=pl)
    assert tr.spec.dims == 3 and tr.spec.in_channels == 4 and tr.spec.prior_residual
    ev = list(tr.run())[-1]
    assert ev.kind == "done" and ev.prediction.shape == vol.shape
    assert {"marks", "pseudo_ce", "pseudo_dice"} <= set(ev.losses)


def test_learns_the_blobs_from_marks() -> None:
    """A real (tiny) training run must beat chance (~0.1) clearly: Dice of both discs > 0.6."""
    vol, truth = blobs()
    tr = Trainer(vol, marks(truth, every=13), tiny_config(max_steps=200, lr=1e-2, batch=4))
    ev = list(tr.run())[-1]
    for c in (1, 2):
        p, t = ev.prediction == c, truth == c
        assert 2 * (p & t).sum() / (p.sum() + t.sum()) > 0.6


def test_changed_box() -> None:
    a = np.zeros((3, 4, 5), np.int16)
    assert _changed_box(None, a) == (slice(0, 3), slice(0, 4), slice(0, 5))
    assert _changed_box(a, a.copy()) is None
    b = a.copy()
    b[1, 2, 3] = 1
    b[2, 0, 3] = 2
    assert _changed_box(a, b) == (slice(1, 3), slice(0, 3), slice(3, 4))


def test_bad_annotation_is_refused() -> None:
    from napari_sparseseg.errors import AnnotationError

    vol, truth = blobs()
    with pytest.raises(AnnotationError):
        Trainer(vol, marks(truth[:, :-1]), tiny_config())


def test_warm_start_restarts_the_schedule_at_a_lower_learning_rate() -> None:
    vol, truth = blobs()
    cfg = tiny_config(max_steps=4, step_event_every_seconds=0.0, lr=1e-2, warm_lr_scale=0.25)
    tr = Trainer(vol, marks(truth), cfg)
    first = [e.lr for e in tr.run() if e.kind == "step"]
    assert first[0] == pytest.approx(1e-2, rel=0.05)
    warm = [e.lr for e in tr.run() if e.kind == "step"]  # a second run = warm start
    assert warm[0] == pytest.approx(0.25e-2, rel=0.05) and warm[-1] < warm[0]
