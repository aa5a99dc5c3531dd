"""Runs the trainer off the GUI thread and hands its events to Qt.

Why a plain thread + queue + QTimer drain instead of Qt signals from the worker: the engine stays
Qt-free, the GUI thread decides when to look (every ``poll_ms``), and a burst of predictions
collapses into one layer update (the changed boxes are merged) so slow painting never queues up.
torch releases the GIL inside its kernels, so the event loop keeps running while a step computes
(``bench/bench_widget.py`` measures the longest stall).
"""

from __future__ import annotations

import queue
import threading
import traceback
from typing import Any, Callable

from qtpy.QtCore import QObject, QTimer, Signal

from .corrections import union_region
from .guard import error_message, log
from .subprocess_job import Cancelled


class TrainingRunner(QObject):
    """One background job at a time: ``job()`` builds a trainer (pseudo-labels etc.), then its events stream.

    Signals:
        status(str): human-readable phase ("pseudo-labels...", "training").
        step(object): a "step" TrainEvent (losses, ETA).
        prediction(object, object): the newest "prediction"/"done" TrainEvent and the merged changed box.
        failed(str): one-line error; the job is over.
        finished(str): the job ended ("done", "cancelled", "error").
    """

    status = Signal(str)
    step = Signal(object)
    prediction = Signal(object, object)
    failed = Signal(str)
    finished = Signal(str)

    def __init__(self, parent: QObject | None = None, poll_ms: int = 40) -> None:
        super().__init__(parent)
        self._q: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self.trainer: Any = None
        self._stop = threading.Event()
        self._timer = QTimer(self)
        self._timer.setInterval(poll_ms)
        self._timer.timeout.connect(self._drain)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, job: Callable[[Callable[[str], None], Callable[[], bool]], Any]) -> None:
        """Run ``job(report_status, should_stop) -> trainer`` then ``trainer.run()`` in a worker thread.

        ``should_stop()`` turns True when the user presses Stop before the trainer exists (e.g. while
        pseudo-labels are computed); the job then raises :class:`Cancelled`.
        """
        if self.running:
            raise RuntimeError("a training job is already running")
        self._q = queue.Queue()
        q = self._q
        stop = self._stop = threading.Event()

        def work() -> None:
            outcome = "error"
            try:
                trainer = job(lambda msg: q.put(("status", msg)), stop.is_set)
                q.put(("trainer", trainer))
                if stop.is_set():
                    raise Cancelled()
                q.put(("status", "training"))
                for ev in trainer.run():
                    q.put(("event", ev))
                    if ev.kind in ("done", "cancelled", "error"):
                        outcome = ev.kind
                        if ev.kind == "error":
                            q.put(("error", ev.message or "training failed"))
            except Cancelled:
                outcome = "cancelled"
            except BaseException as exc:  # noqa: BLE001 - a worker crash becomes a message
                log.error("training worker failed:\n%s", traceback.format_exc())
                q.put(("error", error_message(exc)))
                outcome = "error"
            finally:
                q.put(("finished", outcome))

        self._thread = threading.Thread(target=work, name="sparseseg-training", daemon=True)
        self._thread.start()
        self._timer.start()

    def pause(self) -> None:
        if self.trainer is not None:
            self.trainer.pause()

    def resume(self) -> None:
        if self.trainer is not None:
            self.trainer.resume()

    def cancel(self) -> None:
        self._stop.set()
        if self.trainer is not None:
            self.trainer.resume()
            self.trainer.cancel()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the worker thread ends (for shutdown and tests); True if it ended."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running

    def _drain(self) -> None:
        items: list[tuple[str, Any]] = []
        try:
            while True:
                items.append(self._q.get_nowait())
        except queue.Empty:
            pass
        last_pred, region, last_step = None, None, None
        for kind, value in items:
            if kind == "trainer":
                self.trainer = value
            elif kind == "status":
                self.status.emit(value)
            elif kind == "event":
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

