"""A single background thread with priorities whose results come back on the GUI thread.

Used for SAM (a click outranks prefetching the neighbouring slices; one thread also serialises access
to the embedding cache) and for autosave (writes stay in order, newest last).  Results are delivered
by a queued Qt signal, so callbacks always run on the GUI thread and may touch layers, and the GUI
thread sleeps in Qt's event loop meanwhile.  (An earlier 5 ms polling timer kept waking the GUI
thread; each wake-up took the GIL from the worker, which made SAM decodes ~2x slower.)
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QObject, Signal

from .guard import error_message, log, notify_error

Callback = Callable[[Any], None]


class BackgroundJobs(QObject):
    """``submit(fn, on_done, priority)``: lower priority numbers run first; FIFO within a priority."""

    _ready = Signal()  # emitted from the worker thread; queued to the GUI thread

    def __init__(self, name: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self._todo: queue.PriorityQueue = queue.PriorityQueue()
        self._done: queue.Queue = queue.Queue()
        self._count = itertools.count()
        self._keys: set[str] = set()
        self._keys_lock = threading.Lock()
        self._busy = threading.Event()
        self._pending = 0  # submitted and not yet delivered; touched on the GUI thread only
        self._thread = threading.Thread(target=self._loop, name=f"sparseseg-{name}", daemon=True)
        self._thread.start()
        self._ready.connect(self.deliver)

    def submit(self, fn: Callable[[], Any], on_done: Callback | None = None, *, priority: int = 1,
               key: str | None = None, on_error: Callback | None = None) -> bool:
        """Queue ``fn``; a pending job with the same ``key`` makes this a no-op (returns False)."""
        if key is not None:
            with self._keys_lock:
                if key in self._keys:
                    return False
                self._keys.add(key)
        self._todo.put((priority, next(self._count), fn, on_done, on_error, key))
        self._pending += 1
        return True

    def idle(self) -> bool:
        """No job queued, running or waiting for delivery (counted on the GUI thread: no race)."""
        return self._pending == 0

    def _loop(self) -> None:
        while True:
            prio, _, fn, on_done, on_error, key = self._todo.get()
            if fn is None:
                return
            self._busy.set()
            try:
                result = fn()
                self._done.put((on_done, result, None))
            except BaseException as exc:  # noqa: BLE001 - becomes a notification
                log.exception("background job %s failed", self.name)
                self._done.put((on_error, None, exc))
            finally:
                if key is not None:
                    with self._keys_lock:
                        self._keys.discard(key)
                self._busy.clear()
                self._ready.emit()

    def deliver(self) -> None:
        """Run finished jobs' callbacks (GUI thread)."""
        while True:
            try:
                cb, result, exc = self._done.get_nowait()
            except queue.Empty:
                return
            self._pending -= 1
            try:
                if exc is not None:
                    if cb is not None:
                        cb(exc)
                    else:
                        notify_error(error_message(exc))
                elif cb is not None:
                    cb(result)
            except Exception as e:  # noqa: BLE001
                log.exception("callback of %s failed", self.name)
                notify_error(error_message(e))

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until every queued job ran and was delivered (shutdown, tests)."""
        import time

        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.deliver()
            if self.idle():
                return True
            time.sleep(0.01)
        return False

    def drop_pending(self) -> None:
        """Forget queued jobs that have not started (e.g. prefetching for a closed image)."""
        while True:
            try:
                item = self._todo.get_nowait()
            except queue.Empty:
                return
            if item[2] is None:  # the shutdown sentinel stays
                self._todo.put(item)
                return
            self._pending -= 1
            key = item[5]
            if key is not None:
                with self._keys_lock:
                    self._keys.discard(key)

    def shutdown(self, timeout: float = 30.0) -> None:
        """Run what is queued, then stop the thread."""
        # the sentinel sorts after every queued job, so pending writes are flushed first
        self._todo.put((1 << 30, next(self._count), None, None, None, None))
        self._thread.join(timeout)
        self.deliver()
