"""Re-solves the pseudo-labels around a correction off the GUI thread, one walk at a time, newest marks last.

Why: :func:`~napari_sparseseg.pseudo.refine.refine_around_marks` runs scikit-image's random walker,
1.5-3.5 s on an ACDC volume, and the walker holds the GIL for long stretches, so on the GUI thread (or
in a thread) napari froze while a pushed correction was refined (``bench/scripts/bench_gui_stall.py``,
``refine-*`` modes, measures it).  The walk runs in a spawned process (:func:`run_in_process`) driven
from one background thread (:class:`BackgroundJobs`); the result comes back on the GUI thread.

Ordering rules (the owner keeps ``pseudo`` and the annotation it reflects as one consistent pair):
- one refine in flight; a correction arriving meanwhile waits, and only the newest waiting one is kept
  (its marks include the earlier ones, and it is refined from the first one's result);
- :meth:`cancel` (a reset, or a start that refines itself) drops the waiting request and makes the
  in-flight result stale: it is thrown away, never adopted;
- :meth:`hold` / :meth:`release` bracket a refine the owner runs elsewhere (the training job):
  requests wait until it has been adopted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QObject

from ..loop.items import mix_marks, needs_walk
from ..pseudo.refine import refine_around_marks
from .guard import error_message, notify_error
from .jobs import BackgroundJobs
from .subprocess_job import Cancelled, run_in_process

# (image, spacing, pseudo, annotation the pseudo-labels reflect) at the moment a walk starts
Snapshot = tuple[Any, tuple, Any, Any]


def refine_off_thread(image: Any, spacing: tuple, pseudo: Any, old: Any, new: Any, *, in_process: bool = True,
                      should_stop: Callable[[], bool] | None = None) -> Any:
    """:func:`refine_around_marks` from a worker thread; in a spawned process unless ``in_process`` is False."""
    if not in_process:
        return refine_around_marks(image, pseudo, old, new, spacing=spacing)
    return run_in_process(refine_around_marks, image, pseudo, old, new, spacing=spacing, should_stop=should_stop)


class RefineQueue(QObject):
    """Serialised background refines for one panel.

    Args:
        snapshot: () -> (image, spacing, pseudo, old annotation) read when a walk starts (GUI thread).
        adopt: (refined, annotation, newer) called on the GUI thread with a fresh result; ``newer`` is
            the annotation waiting to be refined next (or None when this result is the newest).
        can_run: () -> bool; a waiting request is dropped when False (no running trainer to feed: the
            next start refines every new mark itself).
        in_process: walk in a spawned process (default); False walks in the worker thread (the bench
            compares both).
    """

    def __init__(self, parent: QObject | None, snapshot: Callable[[], Snapshot], adopt: Callable[[Any, Any, Any], None],
                 can_run: Callable[[], bool], in_process: bool = True) -> None:
        super().__init__(parent)
        self._snapshot, self._adopt, self._can_run = snapshot, adopt, can_run
        self.in_process = in_process
        self._jobs = BackgroundJobs("refine", self)
        self._gen = 0
        self._busy = False
        self._held = False
        self.waiting: Any = None  # the newest annotation not yet refined
        self.n_done = 0  # results adopted (tests, bench)

    @property
    def busy(self) -> bool:
        """A walk is running (possibly a stale one that will be thrown away)."""
        return self._busy

    @property
    def held(self) -> bool:
        return self._held

    def idle(self) -> bool:
        return not self._busy and not self._held and self.waiting is None

    def request(self, ann: Any) -> None:
        """Refine for the marks ``ann`` now, or after the walk in flight (newest request wins)."""
        self.waiting = ann
        self._pump()

    def cancel(self) -> None:
        """Forget the waiting request and make the walk in flight stale (it stops and is not adopted)."""
        self._gen += 1
        self.waiting = None
        self._held = False

    def hold(self) -> None:
        """Cancel, then keep requests waiting until :meth:`release` (the owner refines elsewhere)."""
        self.cancel()
        self._held = True

    def release(self) -> None:
        self._held = False
        self._pump()

    def shutdown(self) -> None:
        self.cancel()
        self._jobs.shutdown(10)

    # ------------------------------------------------------------------ internals
    def _pump(self) -> None:
        if self._busy or self._held or self.waiting is None:
            return
        ann, self.waiting = self.waiting, None
        if not self._can_run():
            return
        image, spacing, pseudo, old = self._snapshot()
        if not needs_walk(pseudo, old, ann):
            self._finish(self._gen, ann, mix_marks(pseudo, ann))
            return
        gen = self._gen
        in_process = self.in_process
        self._busy = True
        self._jobs.submit(
            lambda: refine_off_thread(image, spacing, pseudo, old, ann, in_process=in_process,
                                      should_stop=lambda: gen != self._gen),
            on_done=lambda refined: self._finish(gen, ann, refined, walked=True),
            on_error=lambda exc: self._failed(gen, exc),
        )

    def _finish(self, gen: int, ann: Any, refined: Any, walked: bool = False) -> None:
        if walked:
            self._busy = False
        if gen == self._gen:
            self.n_done += 1
            self._adopt(refined, ann, self.waiting)
        self._pump()

    def _failed(self, gen: int, exc: BaseException) -> None:
        self._busy = False
        if gen == self._gen and not isinstance(exc, Cancelled):
            notify_error(f"re-solving the pseudo-labels around the correction failed: {error_message(exc)}")
        self._pump()
