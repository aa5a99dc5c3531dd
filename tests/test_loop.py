"""The headless correction loop: start, stream, accept (combine -> refine -> warm start), undo, review."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from _training_helpers import blobs, marks, tiny_config

from napari_sparseseg.annotations.sparse import SparseAnnotation
from napari_sparseseg.loop import (
    BackgroundRun,
    CorrectionLoop,
    LoopStatus,
    PseudoReady,
    TrainerReady,
)


def _loop(**kw) -> tuple[CorrectionLoop, np.ndarray]:
    vol, truth = blobs()
    loop = CorrectionLoop(vol, config=tiny_config(max_steps=4, step_event_every_seconds=0.0), **kw)
    loop.set_marks(marks(truth))
    return loop, truth


def _contradiction(loop: CorrectionLoop) -> tuple[SparseAnnotation, np.ndarray]:
    """Background marks on a few voxels the pseudo-labels call class 1, on one slice."""
    lab = loop.pseudo.labels
    z = int(np.argmax((lab == 1).sum(axis=(1, 2))))
    ys, xs = np.nonzero((lab[z] == 1) & (loop.marks.labels[z] == 0))
    pick = np.arange(0, len(ys), max(1, len(ys) // 5))[:5]
    corr = np.zeros(lab.shape, np.int16)
    corr[z, ys[pick], xs[pick]] = loop.marks.background_label
    return SparseAnnotation(corr, loop.marks.background_label, loop.marks.classes), corr != 0


def test_fresh_start_builds_pseudo_labels_then_trains_to_done() -> None:
    loop, truth = _loop()
    kinds = []
    for item in loop.start():
        loop.adopt(item)
        kinds.append(type(item).__name__ if not hasattr(item, "kind") else item.kind)
    assert kinds[0] == "LoopStatus" and "PseudoReady" in kinds and "TrainerReady" in kinds and kinds[-1] == "done"
    assert loop.pseudo is not None and loop.pseudo_marks is loop.marks
    assert loop.trainer is not None and loop.prediction.shape == truth.shape and not loop.running


def test_accept_refines_around_the_correction_and_undo_reverts_it_all() -> None:
    loop, _ = _loop()
    loop.run_to_end()
    marks0, pseudo0 = loop.marks, loop.pseudo
    corr, scribbled = _contradiction(loop)
    fed = []
    real = loop.trainer.update_annotation
    loop.trainer.update_annotation = lambda a, p=None: (fed.append((a, p)), real(a, p))
    step = loop.accept(corr)
    z = int(np.flatnonzero(scribbled.any(axis=(1, 2)))[0])
    assert step.slices == (z,) and loop.reviewed == {z} and step.added_voxels == int(scribbled.sum())
    assert loop.marks.labels[scribbled].tolist() == [loop.marks.background_label] * int(scribbled.sum())
    assert loop.pseudo.info.get("refined_voxels", 0) > 0, "the correction was mixed in, not refined"
    changed = (loop.pseudo.confidence != pseudo0.confidence) & ~scribbled
    assert changed.any(), "only the scribbled voxels changed"
    assert loop.pseudo_marks is loop.marks
    assert len(fed) == 1 and fed[0][0] is loop.marks and fed[0][1] is loop.pseudo  # the trainer has it all
    ev = loop.run_to_end()  # warm start: continues from the current weights, no second update
    assert ev.kind == "done" and len(fed) == 1 and loop.trainer.annotation is loop.marks
    assert loop.undo() is step
    assert loop.marks is marks0 and loop.pseudo is pseudo0 and loop.reviewed == set()
    assert loop.undo() is None


def test_deferred_refine_feeds_the_marks_now_and_adopts_the_walk_later() -> None:
    loop, _ = _loop()
    loop.run_to_end()
    pseudo0 = loop.pseudo
    corr, scribbled = _contradiction(loop)
    loop.accept(corr, refine_now=False)
    assert loop.pseudo is pseudo0  # the walk is the caller's (the widget runs it off the GUI thread)
    mixed = loop.mixed()
    assert np.array_equal(mixed.labels[~scribbled], pseudo0.labels[~scribbled])
    image, spacing, pseudo, old = loop.snapshot()
    refined = loop.refine_fn(image, spacing, pseudo, old, loop.marks)
    loop.adopt_pseudo(refined, loop.marks)
    assert loop.pseudo is refined and loop.pseudo_marks is loop.marks


def test_continue_with_new_marks_walks_inside_the_run() -> None:
    loop, _ = _loop()
    loop.run_to_end()
    corr, _ = _contradiction(loop)
    from napari_sparseseg.annotations import combine

    loop.set_marks(combine(loop.marks, corr))  # painted directly, not accepted: the next start refines them
    run = loop.start()
    assert run.walks
    items = list(run)
    assert any(isinstance(i, PseudoReady) for i in items) and items[-1].kind == "done"


def test_next_slice_skips_reviewed_slices_and_follows_the_strategy() -> None:
    loop, _ = _loop(strategy="sequential")
    assert loop.next_slice(current=2) == 3
    loop.reviewed.add(3)
    assert loop.next_slice(current=2) == 4
    loop.set_strategy("entropy")
    assert loop.next_slice() is None  # nothing trained yet: entropy has nothing to say
    loop.run_to_end()
    z = loop.next_slice()
    assert z is not None and z != 3
    ctx = loop.review_context(current=1)
    assert ctx.reviewed == {3} and ctx.prediction is loop.prediction and ctx.reference is loop.pseudo.labels


def test_carry_over_warm_starts_another_loop() -> None:
    loop, _ = _loop()
    loop.run_to_end()
    init = loop.carry_over()
    other = CorrectionLoop(loop.image, config=tiny_config(max_steps=1), pseudo_method="none", init=init)
    other.set_marks(loop.marks)
    trainer = other.build_trainer(pseudo=loop.pseudo)
    w0 = next(iter(loop.trainer.model.state_dict().values()))
    assert np.allclose(next(iter(trainer.model.state_dict().values())).numpy(), w0.numpy())


# --------------------------------------------------------------------------- background thread
def _drain(bg: BackgroundRun, loop: CorrectionLoop, timeout: float = 120) -> list:
    out, t_end = [], time.monotonic() + timeout
    while time.monotonic() < t_end:
        for kind, value in bg.poll(timeout=0.1):
            if kind == "item":
                loop.adopt(value)
            out.append((kind, value))
            if kind == "finished":
                return out
    raise AssertionError("the run did not finish")


def test_background_run_streams_to_done() -> None:
    loop, truth = _loop(pseudo_method="none")
    bg = BackgroundRun(loop.start()).start()
    out = _drain(bg, loop)
    assert out[-1] == ("finished", "done") and not bg.running and bg.poll() == []
    last = [v for k, v in out if k == "item" and hasattr(v, "kind")][-1]
    assert last.kind == "done" and last.prediction.shape == truth.shape


def test_background_run_error_becomes_one_message(tmp_path: Path) -> None:
    loop, _ = _loop(pseudo_method="none", init=tmp_path / "missing.safetensors")
    out = _drain(BackgroundRun(loop.start()).start(), loop, timeout=60)
    errors = [v for k, v in out if k == "error"]
    assert len(errors) == 1 and "not found" in errors[0] and out[-1] == ("finished", "error")


def test_background_run_stop_and_new_marks_while_training() -> None:
    vol, truth = blobs()
    loop = CorrectionLoop(vol, config=tiny_config(budget_seconds=300, step_event_every_seconds=0.0),
                          pseudo_method="none")
    loop.set_marks(marks(truth))
    bg = BackgroundRun(loop.start()).start()
    t_end = time.monotonic() + 120
    while time.monotonic() < t_end:
        items = bg.poll(timeout=1.0)
        for kind, v in items:
            if kind == "item":
                loop.adopt(v)
        if any(getattr(v, "kind", None) == "step" for _, v in items):
            break
    assert loop.running and isinstance(loop.trainer, object)
    fewer = marks(truth, every=3)
    loop.set_marks(fewer)
    loop.feed_trainer()
    time.sleep(0.2)
    loop.stop()
    out = _drain(bg, loop, timeout=30)
    assert out[-1] == ("finished", "cancelled")
    assert loop.trainer.annotation.marked.sum() == fewer.marked.sum()


def test_stop_during_pseudo_labels_cancels_before_training() -> None:
    loop, _ = _loop()

    def slow_pseudo(volume, ann, method, should_stop=None):
        from napari_sparseseg.loop import Cancelled

        t_end = time.monotonic() + 30
        while time.monotonic() < t_end:
            if should_stop():
                raise Cancelled()
            time.sleep(0.01)
        raise AssertionError("should_stop never turned True")

    loop.pseudo_fn = slow_pseudo
    bg = BackgroundRun(loop.start()).start()
    first = bg.poll(timeout=5)
    assert first and isinstance(first[0][1], LoopStatus)
    loop.stop()
    out = _drain(bg, loop, timeout=30)
    assert out[-1] == ("finished", "cancelled") and loop.trainer is None
    assert not any(isinstance(v, TrainerReady) for _, v in out)
