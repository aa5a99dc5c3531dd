"""Background workers: results arrive as events, failures become error events, marks stay intact."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pytest

from napari_sparseseg.training.worker import ProcessWorker, ThreadWorker

from _training_helpers import blobs, marks, tiny_config


def test_thread_worker_runs_to_done() -> None:
    vol, truth = blobs()
    w = ThreadWorker(vol, marks(truth), tiny_config(max_steps=5, step_event_every_seconds=0.0))
    w.start()
    last = w.wait(timeout=120)
    assert last is not None and last.kind == "done" and last.prediction.shape == vol.shape
    assert not w.running and w.poll() == []


def test_thread_worker_error_becomes_an_event(tmp_path: Path) -> None:
    vol, truth = blobs()
    w = ThreadWorker(vol, marks(truth), tiny_config(), init=tmp_path / "missing.safetensors")
    w.start()
    last = w.wait(timeout=60)
    assert last.kind == "error" and "not found" in last.message


def test_thread_worker_cancel_and_update() -> None:
    vol, truth = blobs()
    w = ThreadWorker(vol, marks(truth), tiny_config(budget_seconds=300, step_event_every_seconds=0.0))
    w.start()
    while not any(e.kind == "step" for e in w.poll(timeout=1.0)):
        pass
    w.update_annotation(marks(truth, every=3))
    time.sleep(0.2)
    w.cancel()
    last = w.wait(timeout=30)
    assert last.kind == "cancelled"
    assert w.trainer.annotation.marked.sum() == marks(truth, every=3).marked.sum()


def test_killed_process_gives_an_error_event_and_leaves_annotations_intact(tmp_path: Path) -> None:
    from napari_sparseseg.annotations.files import save_annotation

    vol, truth = blobs()
    ann = marks(truth)
    ann_path, _ = save_annotation(tmp_path / "marks.nii.gz", ann, vol)
    digest = hashlib.sha256(ann_path.read_bytes()).hexdigest()
    before = ann.labels.copy()
    w = ProcessWorker(vol, ann, tiny_config(budget_seconds=300, step_event_every_seconds=0.0))
    w.start()
    t_end = time.monotonic() + 180
    while time.monotonic() < t_end and not any(e.kind == "step" for e in w.poll(timeout=1.0)):
        pass
    assert w.last_event is not None and w.last_event.kind == "step", "worker never started"
    w.kill()
    last = w.wait(timeout=30)
    assert last.kind == "error" and "stopped unexpectedly" in last.message and "signal 9" in last.message
    assert not w.running
    assert np.array_equal(ann.labels, before)
    assert hashlib.sha256(ann_path.read_bytes()).hexdigest() == digest


@pytest.mark.slow
def test_process_worker_runs_to_done_and_cancels() -> None:
    vol, truth = blobs()
    w = ProcessWorker(vol, marks(truth), tiny_config(max_steps=5))
    w.start()
    assert w.wait(timeout=180).kind == "done"
    w.join(10)
    w2 = ProcessWorker(vol, marks(truth), tiny_config(budget_seconds=300, step_event_every_seconds=0.0))
    w2.start()
    while not any(e.kind == "step" for e in w2.poll(timeout=1.0)):
        pass
    w2.cancel()
    assert w2.wait(timeout=30).kind == "cancelled"
