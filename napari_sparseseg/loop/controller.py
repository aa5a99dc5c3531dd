"""The correction loop, once: marks -> pseudo-labels -> training -> prediction -> suggestion -> correction.

Why one headless controller: the napari widget, the simulated annotator of the benchmark and the CLI
all run the same round (suggest a slice, combine the correction with the marks, re-solve the
pseudo-labels around it with :func:`~napari_sparseseg.pseudo.refine.refine_around_marks`, warm-start
the trainer on the result), so the benchmark measures the loop the user runs.  The controller knows
nothing of Qt or threads: :meth:`CorrectionLoop.start` returns a :class:`LoopRun` generator that a
caller iterates in its own thread (the widget: :class:`~napari_sparseseg.loop.background.BackgroundRun`)
or inline (the benchmark).

State it owns (one consistent set, so undo can put it all back):

* ``marks``: the user's sparse marks (:class:`SparseAnnotation`);
* ``pseudo`` and ``pseudo_marks``: the pseudo-labels and the marks they reflect; a refine re-solves
  only the marks new since ``pseudo_marks``;
* ``trainer``: :class:`~napari_sparseseg.training.Trainer` (a generator of TrainEvents, warm-startable);
* ``prediction`` / ``uncertainty``: the newest streamed result; ``reviewed``: slices corrected;
* ``strategy``: which slice to review next; ``history``: accepted corrections, for undo.

Extension point for a multi-scan project: :meth:`CorrectionLoop.carry_over` hands the current weights
to the next scan's loop (``CorrectionLoop(next_image, init=loop.carry_over(), ...)``); a project's
"next scan" operation is that plus saving this scan's marks and result.  Nothing here assumes one
scan per process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..active import ReviewContext, SliceStrategy, get_strategy, next_slice
from ..annotations.build import combine
from ..annotations.sparse import SparseAnnotation
from ..errors import SparsesegError
from ..io.volume import Volume
from ..pseudo.refine import refine_around_marks
from .items import (
    AcceptedStep,
    LoopRun,
    LoopStatus,
    PseudoFn,
    PseudoReady,
    RefineFn,
    RunItem,
    TrainerReady,
    mix_marks,
    needs_walk,
    pseudo_in_thread,
    refine_in_thread,
)


class CorrectionLoop:
    """The user's operations on one scan: start, pause, resume, stop, accept, undo, next slice.

    Args:
        image: the scan (:class:`Volume`); may be set later (``loop.image = ...``) before :meth:`start`.
        config: the :class:`~napari_sparseseg.training.TrainConfig` of the next fresh trainer.
        pseudo_method: how a fresh start turns marks into pseudo-labels (``"none"``: marks only).
        strategy: the review strategy (a name or an instance).
        refine: re-solve the pseudo-labels around a correction (the product's behaviour); False only
            mixes the corrected voxels in (the benchmark's ablation).
        init: weights for a fresh trainer (``Trainer(init=...)``): a checkpoint path or
            :meth:`carry_over`'s dict.
        refine_fn / pseudo_fn: where the walker runs (default: the caller's thread; the widget passes
            functions that run it in a spawned process, since the walker holds the GIL).
        remote: ``remote(image, marks, pseudo_method, config, report, should_stop) -> trainer`` builds
            a fresh model somewhere else (a ``sparseseg serve`` session); None trains here.
    """

    def __init__(self, image: Volume | None = None, *, config: Any = None, pseudo_method: str = "random-walker",
                 strategy: str | SliceStrategy = "entropy", refine: bool = True, init: Any = None,
                 refine_fn: RefineFn = refine_in_thread, pseudo_fn: PseudoFn = pseudo_in_thread,
                 remote: Any = None) -> None:
        self.image = image
        self.config = config
        self.pseudo_method = pseudo_method
        self.strategy: SliceStrategy = get_strategy(strategy) if isinstance(strategy, str) else strategy
        self.refine = refine
        self.init = init
        self.refine_fn, self.pseudo_fn = refine_fn, pseudo_fn
        self.remote = remote
        self._clear()

    def _clear(self) -> None:
        self.marks: SparseAnnotation | None = None
        self.pseudo: Any = None
        self.pseudo_marks: SparseAnnotation | None = None
        self.pseudo_generation = 0  # bumped when fresh pseudo-labels replace the refined ones
        self.trainer: Any = None
        self.prediction: np.ndarray | None = None
        self.uncertainty: np.ndarray | None = None
        self.last_event: Any = None
        self.reviewed: set[int] = set()
        self.history: list[AcceptedStep] = []
        self.run: LoopRun | None = None
        self.running = False  # a run is between its first and last item
        self._fed: SparseAnnotation | None = None  # the marks the trainer was last given

    # ------------------------------------------------------------------------------ state
    def reset(self, image: Volume | None = None) -> None:
        """Forget the model, the pseudo-labels and the review state (a new image, or new classes)."""
        self.stop()
        self.image = image if image is not None else self.image
        self._clear()

    def set_strategy(self, strategy: str | SliceStrategy, **kwargs: Any) -> None:
        self.strategy = get_strategy(strategy, **kwargs) if isinstance(strategy, str) else strategy

    def set_marks(self, marks: SparseAnnotation) -> None:
        """The user's marks now (the widget reads them from its Labels layer before each operation)."""
        if self.image is not None:
            marks.validate(tuple(self.image.shape))
        self.marks = marks

    def set_pseudo(self, pseudo: Any, marks: SparseAnnotation | None) -> None:
        """Pseudo-labels computed elsewhere (a cache, a saved session) and the marks they reflect."""
        self.pseudo, self.pseudo_marks = pseudo, marks
        self.pseudo_generation += 1

    def adopt_pseudo(self, pseudo: Any, marks: SparseAnnotation, newer: SparseAnnotation | None = None,
                     feed: bool | None = None) -> None:
        """A refine's result for ``marks``: keep it as the pair, and feed the trainer without undoing
        ``newer`` marks that arrived meanwhile (they are mixed in; their own walk comes next).
        ``feed``: whether a trainer is training now (default: a run of this loop is in flight)."""
        self.pseudo, self.pseudo_marks = pseudo, marks
        latest = marks if newer is None else newer
        if self.running if feed is None else feed:
            self.feed_trainer(latest)

    def mixed(self, marks: SparseAnnotation | None = None) -> Any:
        """The pseudo-labels with ``marks`` (default: the current marks) mixed in."""
        marks = self.marks if marks is None else marks
        if self.pseudo is not None and marks is self.pseudo_marks:
            return self.pseudo  # already reflects them (a refine mixes its marks in)
        return mix_marks(self.pseudo, marks)

    def feed_trainer(self, marks: SparseAnnotation | None = None) -> None:
        """Give the trainer ``marks`` and the pseudo-labels with them mixed in: they count from its next step."""
        marks = self.marks if marks is None else marks
        if self.trainer is not None and marks is not None:
            self.trainer.update_annotation(marks, self.mixed(marks))
            self._fed = marks

    def snapshot(self) -> tuple[np.ndarray, tuple, Any, SparseAnnotation | None]:
        """(image, spacing, pseudo, pseudo_marks): what a refine started now works from."""
        return np.asarray(self.image.array), tuple(self.image.spacing), self.pseudo, self.pseudo_marks

    def refine_now(self, marks: SparseAnnotation | None = None,
                   should_stop: Callable[[], bool] | None = None) -> Any:
        """Re-solve the pseudo-labels around the marks new since ``pseudo_marks`` (blocking), adopt, return them.

        Why re-solve: mixing fixes only the scribbled voxels, and the rest of a wrong region keeps
        teaching the mistake (the active-learning benchmark measures this refined update).
        """
        marks = self.marks if marks is None else marks
        if self.pseudo is None or not hasattr(self.pseudo, "with_marks"):
            return self.pseudo
        if not self.refine:
            refined = self.pseudo.with_marks(marks)
        elif needs_walk(self.pseudo, self.pseudo_marks, marks):
            image, spacing, pseudo, old = self.snapshot()
            refined = self.refine_fn(image, spacing, pseudo, old, marks, should_stop=should_stop)
        else:
            refined = refine_around_marks(np.asarray(self.image.array), self.pseudo, self.pseudo_marks, marks,
                                          spacing=tuple(self.image.spacing))  # no walk: mixes the marks in
        self.pseudo, self.pseudo_marks = refined, marks
        return refined

    # ------------------------------------------------------------------------ start / stop
    def start(self, recompute_pseudo: bool = False) -> LoopRun:
        """Train from the current marks: a fresh model (pseudo-labels first) or a warm start of the current one.

        The cheap part happens now, in the caller's thread (a continue without a walk feeds the
        trainer at once); the returned :class:`LoopRun` does the rest where it is iterated.  A fresh
        start reuses pseudo-labels that reflect exactly the current marks unless ``recompute_pseudo``.
        """
        if self.image is None:
            raise SparsesegError("no image: pick an image first")
        if self.marks is None:
            raise SparsesegError("no marks yet: paint at least one class (not only background)")
        if self.trainer is not None and tuple(self.trainer.classes) != tuple(self.marks.classes):
            self.trainer = None  # the classes changed: a new model
        marks = self.marks
        if self.trainer is None:
            self.run = LoopRun(lambda run: self._fresh(run, marks, recompute_pseudo), walks=False)
            return self.run
        trainer = self.trainer
        walk = self.refine and needs_walk(self.pseudo, self.pseudo_marks, marks)
        if not walk and not (marks is self._fed and marks is self.pseudo_marks):  # else it has them already
            trainer.update_annotation(marks, self.refine_now(marks))  # only mixes the marks in: cheap
            self._fed = marks
        self.run = LoopRun(lambda run: self._continue(run, trainer, marks, walk), walks=walk)
        return self.run

    def build_trainer(self, marks: SparseAnnotation | None = None, pseudo: Any = None) -> Any:
        """A trainer on ``marks`` (default: the current ones) and ``pseudo`` from :attr:`init` (not started).

        :meth:`start` builds one when there is none; callers build it early to fix its seeded state
        (the benchmark) or to load a checkpoint (a reopened session) -- then adopt it with :meth:`use_trainer`.
        """
        from ..training import Trainer

        marks = self.marks if marks is None else marks
        return Trainer(self.image, marks, self.config, pseudo=pseudo, init=self.init)

    def use_trainer(self, trainer: Any) -> None:
        """Make ``trainer`` the loop's model: the next :meth:`start` continues it."""
        self.trainer = trainer
        self._fed = trainer.annotation if trainer is not None else None

    def _fresh(self, run: LoopRun, marks: SparseAnnotation, recompute: bool) -> Iterator[RunItem]:
        self.running = True
        try:
            if self.remote is not None:  # a model computed elsewhere (a server): it makes its own pseudo-labels
                messages: list[str] = []
                trainer = self.remote(self.image, marks, self.pseudo_method, self.config, messages.append,
                                      lambda: run.stopping)
                for m in messages:
                    yield LoopStatus(m)
                yield from self._train(run, trainer)
                return
            pseudo, pseudo_marks = self.pseudo, self.pseudo_marks
            if self.pseudo_method == "none":
                pseudo = None
            elif (recompute or pseudo is None or pseudo_marks is None
                  or not np.array_equal(pseudo_marks.labels, marks.labels)):
                yield LoopStatus(f"pseudo-labels ({self.pseudo_method})...")
                pseudo = self.pseudo_fn(self.image, marks, self.pseudo_method, should_stop=lambda: run.stopping)
                yield PseudoReady(pseudo, marks)
            yield LoopStatus("building the network...")
            trainer = self.build_trainer(marks, pseudo)
            yield from self._train(run, trainer)
        finally:
            self.running = False

    def _continue(self, run: LoopRun, trainer: Any, marks: SparseAnnotation, walk: bool) -> Iterator[RunItem]:
        self.running = True
        try:
            if walk:
                yield LoopStatus("re-solving the pseudo-labels around the new marks...")
                image, spacing, pseudo, old = self.snapshot()
                refined = self.refine_fn(image, spacing, pseudo, old, marks, should_stop=lambda: run.stopping)
                trainer.update_annotation(marks, refined)
                self._fed = marks
                yield PseudoReady(refined, marks)
            yield LoopStatus("continuing from the current weights")
            yield from self._train(run, trainer)
        finally:
            self.running = False

    def _train(self, run: LoopRun, trainer: Any) -> Iterator[RunItem]:
        yield TrainerReady(trainer)
        if run.stopping:
            from .background import Cancelled

            raise Cancelled()
        yield LoopStatus("training")
        for ev in trainer.run():
            if ev.prediction is not None:
                self.prediction, self.uncertainty = np.asarray(ev.prediction), ev.uncertainty
            self.last_event = ev
            yield ev

    def adopt(self, item: RunItem) -> None:
        """Record what a run produced (call it, in one thread, for each item of a :class:`LoopRun`)."""
        if isinstance(item, PseudoReady):
            if self.trainer is None:  # a fresh start: new pseudo-labels replace the refined ones
                self.set_pseudo(item.pseudo, item.marks)
            else:
                self.pseudo, self.pseudo_marks = item.pseudo, item.marks
        elif isinstance(item, TrainerReady):
            self.use_trainer(item.trainer)

    def run_to_end(self) -> Any:
        """:meth:`start` and iterate in this thread; the terminal TrainEvent (raises unless it is "done")."""
        last = None
        for item in self.start():
            self.adopt(item)
            if not isinstance(item, (LoopStatus, PseudoReady, TrainerReady)):
                last = item
        if last is None or last.kind != "done" or last.prediction is None:
            msg = getattr(last, "message", "") or "no final prediction"
            raise SparsesegError(f"training ended with {getattr(last, 'kind', 'nothing')}: {msg}")
        return last

    def pause(self) -> None:
        if self.trainer is not None:
            self.trainer.pause()

    def resume(self) -> None:
        if self.trainer is not None:
            self.trainer.resume()

    @property
    def paused(self) -> bool:
        return self.trainer is not None and bool(self.trainer.paused)

    def stop(self) -> None:
        """Stop the run in flight: the pseudo-label phase, or the trainer within a step."""
        if self.run is not None:
            self.run.stop()
        if self.trainer is not None:
            self.trainer.resume()
            self.trainer.cancel()

    # ------------------------------------------------------------------------ corrections
    def accept(self, correction: SparseAnnotation, slices: tuple[int, ...] | None = None, *,
               refine_now: bool = True, feed: bool = True) -> AcceptedStep:
        """Accept a correction: combine it with the marks, re-solve the pseudo-labels around it, warm-start.

        ``refine_now=False`` (the widget) feeds the trainer the marks mixed in at once and leaves the
        walk to the caller (off the GUI thread), which adopts it with :meth:`adopt_pseudo`.
        ``slices``: the slices this reviews (default: the slices the correction touches).
        ``feed=False``: leave the trainer alone (the widget feeds it itself when a walk of its own is
        still to land first).
        """
        if self.marks is None:
            raise SparsesegError("no marks yet: paint at least one class before correcting")
        before = self.marks
        after = combine(before, correction)
        step = AcceptedStep(
            marks_before=before, marks_after=after, pseudo_before=self.pseudo, pseudo_marks_before=self.pseudo_marks,
            pseudo_generation=self.pseudo_generation,
            slices=tuple(int(z) for z in (slices if slices is not None else correction.annotated_slices())),
            added_voxels=int(after.marked.sum() - before.marked.sum()),
        )
        self.history.append(step)
        self.reviewed |= set(step.slices)
        self.marks = after
        if refine_now:
            self.refine_now(after)
        if feed:
            self.feed_trainer(after)
        return step

    def undo(self) -> AcceptedStep | None:
        """Revert the last accept: its marks, its slices' review, and the pseudo-labels it refined."""
        if not self.history:
            return None
        step = self.history.pop()
        self.marks = step.marks_before
        self.reviewed -= set(step.slices)
        if step.pseudo_generation == self.pseudo_generation:  # else a fresh start replaced them since
            self.pseudo, self.pseudo_marks = step.pseudo_before, step.pseudo_marks_before
        if self.running:
            self.feed_trainer(step.marks_before)
        return step

    # ------------------------------------------------------------------------ review
    def review_context(self, current: int | None = None, *, prediction: np.ndarray | None = None,
                       uncertainty: np.ndarray | None = None) -> ReviewContext:
        """What a strategy looks at, filled in one place for the widget and the benchmark.

        ``prediction`` / ``uncertainty`` replace the loop's newest streamed ones when the caller shows
        something else (the widget: the prediction with the user's accepted corrections folded in).
        """
        shape = tuple(self.image.shape) if self.image is not None else tuple(self.marks.shape)
        return ReviewContext(
            shape=shape,
            prediction=self.prediction if prediction is None else prediction,
            uncertainty=self.uncertainty if uncertainty is None else uncertainty,
            reference=getattr(self.pseudo, "labels", None),
            annotation=self.marks.labels if self.marks is not None else None,
            reviewed=set(self.reviewed),
            current=current,
        )

    def next_slice(self, current: int | None = None, *, prediction: np.ndarray | None = None,
                   uncertainty: np.ndarray | None = None) -> int | None:
        """The slice the strategy ranks first (None: nothing to suggest)."""
        return next_slice(self.strategy, self.review_context(current, prediction=prediction, uncertainty=uncertainty))

    # ------------------------------------------------------------------------ next scan
    def carry_over(self) -> dict | None:
        """The current weights as ``Trainer(init=...)`` takes them: for the same scan from the same
        start (the benchmark's strategies) or the next scan of a project."""
        if self.trainer is None:
            return None
        state = {k: v.detach().clone() for k, v in self.trainer.model.state_dict().items()}
        return {"state_dict": state, "meta": self.trainer.metadata()}
