"""Hands a :class:`~napari_sparseseg.loop.CorrectionLoop` run's items to Qt, from the loop's one background thread.

The thread is :class:`~napari_sparseseg.loop.BackgroundRun` (Qt-free, shared with scripts); this
adapter polls it from a QTimer every ``poll_ms`` and emits signals.  Why polling instead of a
generator worker's per-item signal: a burst of predictions collapses into one layer update (the
changed boxes are merged), so slow painting never queues up; torch releases the GIL inside its
kernels, so the event loop keeps running while a step computes (``bench/scripts/bench_widget.py``
measures the longest stall).
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import QObject, QTimer, Signal

from ..loop import BackgroundRun, CorrectionLoop, LoopRun, LoopStatus, PseudoReady
from .corrections import union_region


class TrainingRunner(QObject):
    """One run of the loop at a time; its items adopted by the loop on the GUI thread, then signalled.

    Signals:
        status(str): human-readable phase ("pseudo-labels...", "training").
        pseudo_ready(object): the run computed pseudo-labels (already adopted by the loop).
        step(object): a "step" TrainEvent (losses, ETA).
        prediction(object, object): the newest "prediction"/"done" TrainEvent and the merged changed box.
        failed(str): one-line error; the run is over.
        finished(str): the run ended ("done", "cancelled", "error").
    """

    status = Signal(str)
    pseudo_ready = Signal(object)
    step = Signal(object)
    prediction = Signal(object, object)
    failed = Signal(str)
    finished = Signal(str)

    def __init__(self, loop: CorrectionLoop, parent: QObject | None = None, poll_ms: int = 40) -> None:
        super().__init__(parent)
        self.loop = loop
        self._bg: BackgroundRun | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(poll_ms)
        self._timer.timeout.connect(self._drain)

    @property
    def trainer(self) -> Any:
        return self.loop.trainer

    @trainer.setter
    def trainer(self, trainer: Any) -> None:  # a reopened session's checkpoint
        self.loop.use_trainer(trainer)

    @property
    def running(self) -> bool:
        return self._bg is not None and self._bg.running

    def start(self, run: LoopRun) -> None:
        """Iterate ``run`` (from :meth:`CorrectionLoop.start`) in the background thread."""
        if self.running:
            raise RuntimeError("a training job is already running")
        self._bg = BackgroundRun(run).start()
        self._timer.start()

    def pause(self) -> None:
        self.loop.pause()

    def resume(self) -> None:
        self.loop.resume()

    def cancel(self) -> None:
        self.loop.stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the background thread ends (for shutdown and tests); True if it ended."""
        return self._bg.wait(timeout) if self._bg is not None else True

    def _drain(self) -> None:
        if self._bg is None:
            return
        items = self._bg.poll()
        last_pred, region, last_step = None, None, None
        for kind, value in items:
            if kind != "item":
                continue
            self.loop.adopt(value)  # pseudo-labels and the trainer change hands here, on the GUI thread
            if isinstance(value, LoopStatus):
                self.status.emit(value.message)
            elif isinstance(value, PseudoReady):
                self.pseudo_ready.emit(value)
            elif getattr(value, "kind", None) is not None:
                if value.prediction is not None:
                    region = union_region(region, value.changed)
                    last_pred = value
                else:
                    last_step = value
        # emit in order: the newest step event, then the newest prediction with the merged region
        if last_step is not None:
            self.step.emit(last_step)
        if last_pred is not None:
            self.step.emit(last_pred)
            self.prediction.emit(last_pred, region)
        for kind, value in items:
            if kind == "error":
                self.failed.emit(str(value))
            elif kind == "finished":
                self._timer.stop()
                self.finished.emit(str(value))
