"""Run a :class:`Trainer` off the caller's thread: in a thread or in a spawned subprocess (Qt-free).

Both workers have the same small API, driven by polling so any event loop can use them (a QTimer in
the napari widget, a plain loop in tests)::

    w = ProcessWorker(image, annotation, config, pseudo=pseudo)   # or ThreadWorker(...)
    w.start()
    while w.running:
        for ev in w.poll(timeout=0.1):
            ...                                    # TrainEvent: step / prediction / done / ...
    w.pause(); w.resume(); w.cancel(); w.update_annotation(ann, pseudo)

Safety rules (why this module exists):
* The worker only ever sees a *copy* of the annotation (the process gets a pickled copy, the
  thread an explicit ``.copy()``), so a crashing or killed worker cannot damage the user's marks.
* Any failure -- an exception in the trainer, a construction error, a killed process -- arrives
  as one ``TrainEvent(kind="error", message=...)``; nothing is raised in the caller.

Which one the widget should use was decided by measurement (``bench/bench_segment.py``, GUI-stall
section; see ``bench/segment_results.md``).
"""

from __future__ import annotations

import queue
import threading
import time
import traceback
from typing import Any

from ..annotations.sparse import SparseAnnotation
from ..io.volume import Volume
from .config import TrainConfig, TrainEvent

TERMINAL = ("done", "cancelled", "error")


def _error_event(exc: BaseException) -> TrainEvent:
    from ..errors import SparsesegError

    msg = str(exc) if isinstance(exc, SparsesegError) else f"{type(exc).__name__}: {exc}"
    return TrainEvent("error", message=msg or type(exc).__name__)


class _WorkerBase:
    """Shared bookkeeping: the event queue, terminal state, the last known step."""

    def __init__(self) -> None:
        self._finished = False
        self.last_event: TrainEvent | None = None

    @property
    def running(self) -> bool:
        """True until a terminal event (done/cancelled/error) has been handed out by :meth:`poll`."""
        return not self._finished

    def _collect(self, get: Any, timeout: float) -> list[TrainEvent]:
        """Everything queued now (waiting up to ``timeout`` for the first event), up to a terminal one."""
        events: list[TrainEvent] = []
        try:
            ev = get(timeout=timeout) if timeout > 0 else get(block=False)
        except queue.Empty:
            return events
        events.append(ev)
        while ev.kind not in TERMINAL:
            try:
                ev = get(block=False)
            except queue.Empty:
                break
            events.append(ev)
        if ev.kind in TERMINAL:
            self._finished = True
        self.last_event = events[-1]
        return events

    def wait(self, timeout: float | None = None) -> TrainEvent | None:
        """Poll until a terminal event (or ``timeout``); return the last event seen."""
        t_end = None if timeout is None else time.monotonic() + timeout
        while self.running and (t_end is None or time.monotonic() < t_end):
            self.poll(timeout=0.1)
        return self.last_event


class ThreadWorker(_WorkerBase):
    """The trainer in a daemon thread of this process (shares memory; cheapest to start)."""

    def __init__(self, image: Volume, annotation: SparseAnnotation, config: TrainConfig | None = None,
                 pseudo: Any | None = None, init: Any = None) -> None:
        super().__init__()
        self._args = (image, annotation.copy(), config or TrainConfig(), pseudo, init)
        self._q: queue.Queue[TrainEvent] = queue.Queue()
        self.trainer = None
        self._pending_ctrl: list[tuple[str, tuple]] = []
        self._ctrl_lock = threading.Lock()
        self._thread = threading.Thread(target=self._main, name="sparseseg-trainer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _main(self) -> None:
        try:
            from .trainer import Trainer

            trainer = Trainer(*self._args)
            with self._ctrl_lock:
                self.trainer = trainer
                for name, args in self._pending_ctrl:
                    getattr(trainer, name)(*args)
            for ev in trainer.run():
                self._q.put(ev)
        except BaseException as exc:  # noqa: BLE001 -- every failure must become an event
            traceback.print_exc()
            self._q.put(_error_event(exc))

    def _control(self, name: str, *args: Any) -> None:
        with self._ctrl_lock:
            if self.trainer is None:
                self._pending_ctrl.append((name, args))
            else:
                getattr(self.trainer, name)(*args)

    def pause(self) -> None:
        self._control("pause")

    def resume(self) -> None:
        self._control("resume")

    def cancel(self) -> None:
        self._control("cancel")

    def update_annotation(self, ann: SparseAnnotation, pseudo: Any | None = None) -> None:
        self._control("update_annotation", ann.copy(), pseudo)

    def poll(self, timeout: float = 0.0) -> list[TrainEvent]:
        return self._collect(self._q.get, timeout)

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)


def _child_main(args: tuple, ctrl: Any, events: Any) -> None:
    """Subprocess entry point: build the trainer, forward control messages, stream events."""
    try:
        from .trainer import Trainer

        trainer = Trainer(*args)

        def listen() -> None:
            while True:
                msg = ctrl.get()
                if msg is None:
                    return
                name, margs = msg
                try:
                    getattr(trainer, name)(*margs)
                except Exception as exc:  # noqa: BLE001 -- bad update: report, keep training
                    events.put(TrainEvent("step", trainer.step, message=f"ignored {name}: {exc}"))

        threading.Thread(target=listen, daemon=True).start()
        for ev in trainer.run():
            events.put(ev)
    except BaseException as exc:  # noqa: BLE001
        traceback.print_exc()
        events.put(_error_event(exc))
    finally:
        events.close()
        events.join_thread()  # flush everything before the process exits


class ProcessWorker(_WorkerBase):
    """The trainer in a spawned subprocess: the GUI process keeps its GIL and its memory safe.

    A killed or crashed subprocess is detected by :meth:`poll` and reported as an error event.
    """

    def __init__(self, image: Volume, annotation: SparseAnnotation, config: TrainConfig | None = None,
                 pseudo: Any | None = None, init: Any = None) -> None:
        super().__init__()
        import torch.multiprocessing as tmp

        self._ctx = tmp.get_context("spawn")
        self._ctrl = self._ctx.Queue()
        self._events = self._ctx.Queue()
        args = (image, annotation.copy(), config or TrainConfig(), pseudo, init)
        self.process = self._ctx.Process(target=_child_main, args=(args, self._ctrl, self._events),
                                         name="sparseseg-trainer", daemon=True)

    def start(self) -> None:
        import os

        # inherited by the child before it imports torch: idle OpenMP threads sleep instead of
        # spinning, which on a busy 2-core machine made steps ~10x slower (see bench results)
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        self.process.start()

    def _send(self, name: str, *args: Any) -> None:
        if self.process.is_alive():
            self._ctrl.put((name, args))

    def pause(self) -> None:
        self._send("pause")

    def resume(self) -> None:
        self._send("resume")

    def cancel(self) -> None:
        self._send("cancel")

    def update_annotation(self, ann: SparseAnnotation, pseudo: Any | None = None) -> None:
        self._send("update_annotation", ann.copy(), pseudo)

    def poll(self, timeout: float = 0.0) -> list[TrainEvent]:
        if self._finished:
            return []
        evs = self._collect(self._events.get, timeout)
        if not self._finished and not evs and self.process.exitcode is not None:
            # the process is gone without a terminal event: drain late messages, then report
            evs = self._collect(self._events.get, 0.2)
            if not self._finished:
                code = self.process.exitcode
                how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                ev = TrainEvent("error", step=self.last_event.step if self.last_event else 0,
                                message=f"training process stopped unexpectedly ({how}); your annotations are unchanged")
                evs.append(ev)
                self.last_event = ev
                self._finished = True
        return evs

    def kill(self) -> None:
        """Hard stop (used when cancel is not honoured, and by tests)."""
        if self.process.is_alive():
            self.process.kill()

    def join(self, timeout: float | None = None) -> None:
        self.process.join(timeout)
        if not self.process.is_alive():
            self._ctrl.put(None)


#: the widget's default, chosen by measurement (bench/segment_results.md, GUI-stall section)
DEFAULT_WORKER = "thread"


def make_worker(image: Volume, annotation: SparseAnnotation, config: TrainConfig | None = None,
                pseudo: Any | None = None, init: Any = None, kind: str | None = None) -> ThreadWorker | ProcessWorker:
    """A worker of ``kind`` (``"thread"`` or ``"process"``; None = :data:`DEFAULT_WORKER`), not started."""
    kind = kind or DEFAULT_WORKER
    if kind == "thread":
        return ThreadWorker(image, annotation, config, pseudo, init)
    if kind == "process":
        return ProcessWorker(image, annotation, config, pseudo, init)
    raise ValueError(f"unknown worker kind {kind!r}: use 'thread' or 'process'")
