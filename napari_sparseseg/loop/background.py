"""Iterate a :class:`~napari_sparseseg.loop.controller.LoopRun` in a background thread; poll its items.

The one background runner of the training loop (the widget drains it from a QTimer, a script from a
plain loop).  Why a thread + queue that the owner polls, rather than signals from the worker: the
engine stays Qt-free, the owner decides when to look, and a burst of predictions collapses into one
update (the owner merges what one poll returns).  torch releases the GIL inside its kernels, so a
thread is enough for training; the pseudo-label walk, which holds the GIL, runs in a spawned process
inside the run (the widget's ``pseudo_fn`` / ``refine_fn``).

Safety: any failure, in building the trainer or in a step, arrives as one ``("error", message)`` item
followed by ``("finished", "error")``; nothing is raised in the owner's thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import traceback
from collections.abc import Iterable
from typing import Any

from ..errors import SparsesegError

log = logging.getLogger("napari_sparseseg")


class Cancelled(Exception):
    """The caller asked to stop before a result existed (a walk in a process was terminated, say)."""


def error_message(exc: BaseException) -> str:
    """User errors keep their own one line; anything else says what kind of failure it was."""
    if isinstance(exc, (SparsesegError, FileNotFoundError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class BackgroundRun:
    """One run's items, produced in a daemon thread.

    :meth:`poll` returns what arrived: ``("item", x)`` for each item of the run, ``("error", message)``
    and finally ``("finished", outcome)`` with outcome ``"done"``, ``"cancelled"`` or ``"error"``.
    """

    def __init__(self, run: Iterable[Any], name: str = "sparseseg-training") -> None:
        self._run = run
        self._q: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self.outcome: str | None = None

    def start(self) -> BackgroundRun:
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the thread ends; True if it did."""
        if self._thread.ident is not None:
            self._thread.join(timeout)
        return not self.running

    def stop(self) -> None:
        stop = getattr(self._run, "stop", None)
        if stop is not None:
            stop()

    def poll(self, timeout: float = 0.0) -> list[tuple[str, Any]]:
        """Everything queued now (waiting up to ``timeout`` for the first one)."""
        out: list[tuple[str, Any]] = []
        try:
            out.append(self._q.get(timeout=timeout) if timeout > 0 else self._q.get_nowait())
            while True:
                out.append(self._q.get_nowait())
        except queue.Empty:
            pass
        return out

    def _main(self) -> None:
        q = self._q
        outcome = "error"
        try:
            for item in self._run:
                q.put(("item", item))
                kind = getattr(item, "kind", None)
                if kind in ("done", "cancelled", "error"):
                    outcome = kind
                    if kind == "error":
                        q.put(("error", getattr(item, "message", "") or "training failed"))
            if outcome not in ("done", "cancelled", "error"):
                outcome = "done"
        except Cancelled:
            outcome = "cancelled"
        except BaseException as exc:  # noqa: BLE001 - a worker crash becomes a message
            log.error("background run failed:\n%s", traceback.format_exc())
            q.put(("error", error_message(exc)))
            outcome = "error"
        finally:
            self.outcome = outcome
            q.put(("finished", outcome))
