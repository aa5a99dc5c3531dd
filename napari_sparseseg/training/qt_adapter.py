"""The thin Qt face of the workers (the only module of ``training`` that imports Qt; import it lazily).

A QTimer polls a :mod:`~napari_sparseseg.training.worker` on the GUI thread and re-emits every
:class:`TrainEvent` as a Qt signal, so the widget connects slots and never blocks::

    runner = QtTrainingRunner(make_worker(image, ann, config, pseudo=pl))
    runner.received.connect(on_event)     # step / prediction / done / cancelled / error
    runner.start()
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import QObject, QTimer, Signal

from .worker import TERMINAL


class QtTrainingRunner(QObject):
    """Polls a Thread/ProcessWorker every ``interval_ms`` on the GUI thread; emits its events."""

    received = Signal(object)  # TrainEvent (not "event": that would shadow QObject.event)
    finished = Signal(object)  # the terminal TrainEvent (done / cancelled / error)

    def __init__(self, worker: Any, interval_ms: int = 50, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.worker = worker
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._poll)

    def start(self) -> None:
        self.worker.start()
        self._timer.start()

    def _poll(self) -> None:
        for ev in self.worker.poll(0.0):
            self.received.emit(ev)
            if ev.kind in TERMINAL:
                self._timer.stop()
                self.finished.emit(ev)
                return

    # control, forwarded to the worker
    def pause(self) -> None:
        self.worker.pause()

    def resume(self) -> None:
        self.worker.resume()

    def cancel(self) -> None:
        self.worker.cancel()

    def update_annotation(self, ann: Any, pseudo: Any | None = None) -> None:
        self.worker.update_annotation(ann, pseudo)

    @property
    def running(self) -> bool:
        return self.worker.running
