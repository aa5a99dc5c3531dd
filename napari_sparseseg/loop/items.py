"""What a run of the correction loop yields, what an accepted correction records, and the default
places the walker runs (the caller's thread).  Qt-free; :mod:`.controller` uses these."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..annotations.sparse import SparseAnnotation
from ..io.volume import Volume
from ..pseudo.refine import new_marks, refine_around_marks

#: ``refine(image, spacing, pseudo, old_marks, new_marks, should_stop) -> PseudoLabels``
RefineFn = Callable[..., Any]
#: ``pseudo(volume, marks, method, should_stop) -> PseudoLabels``
PseudoFn = Callable[..., Any]


def mix_marks(pseudo: Any, marks: SparseAnnotation) -> Any:
    """``pseudo`` with ``marks`` mixed in voxel by voxel (no walk: cheap enough for a GUI thread)."""
    return pseudo.with_marks(marks) if pseudo is not None and hasattr(pseudo, "with_marks") else pseudo


def needs_walk(pseudo: Any, old: SparseAnnotation | None, new: SparseAnnotation) -> bool:
    """Whether refining ``pseudo`` from marks ``old`` to ``new`` runs the walker (else it only mixes)."""
    return (pseudo is not None and getattr(pseudo, "probabilities", None) is not None
            and bool(new_marks(old, new).any()))


def refine_in_thread(image: np.ndarray, spacing: tuple, pseudo: Any, old: Any, new: SparseAnnotation,
                     should_stop: Callable[[], bool] | None = None) -> Any:
    """The default refine: :func:`refine_around_marks` in the caller's thread."""
    return refine_around_marks(image, pseudo, old, new, spacing=spacing)


def pseudo_in_thread(volume: Volume, marks: SparseAnnotation, method: str,
                     should_stop: Callable[[], bool] | None = None) -> Any:
    """The default pseudo-label maker: :func:`make_pseudo_labels` in the caller's thread."""
    from ..pseudo import make_pseudo_labels

    return make_pseudo_labels(volume, marks, method)


@dataclass
class LoopStatus:
    """A phase message from a run ("pseudo-labels (random-walker)...", "training")."""

    message: str


@dataclass
class PseudoReady:
    """A run computed pseudo-labels for ``marks``; the caller adopts them with :meth:`CorrectionLoop.adopt_pseudo`
    (in its own thread, so the owner of the pseudo-labels changes them at one place)."""

    pseudo: Any
    marks: SparseAnnotation


@dataclass
class TrainerReady:
    """The run's trainer exists (pause and stop now reach it)."""

    trainer: Any


RunItem = LoopStatus | PseudoReady | TrainerReady | Any  # Any: a TrainEvent


@dataclass
class AcceptedStep:
    """One accepted correction: what it changed, enough to undo it (the refined region included)."""

    marks_before: SparseAnnotation
    marks_after: SparseAnnotation
    pseudo_before: Any
    pseudo_marks_before: SparseAnnotation | None
    pseudo_generation: int
    slices: tuple[int, ...]
    added_voxels: int


class LoopRun:
    """One start of the loop: build (or continue) the trainer, then stream its events.

    Iterate it (in any thread) for :data:`RunItem`s; ``walks`` says whether it re-solves pseudo-labels
    before training (the widget holds its refine queue meanwhile).  :meth:`stop` before the trainer
    exists stops the pseudo-label computation (its ``should_stop`` turns True).
    """

    def __init__(self, body: Callable[[LoopRun], Iterator[RunItem]], walks: bool) -> None:
        self.walks = walks
        self._body = body
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def __iter__(self) -> Iterator[RunItem]:
        return self._body(self)
