"""The one small interface every "correct here next" strategy implements.

A strategy scores slices; the widget moves the viewer to the best one.  Scoring slices (not voxels or
patches) matches how a clinician corrects: one slice at a time, in the 2D view.  Strategies are plain
classes with a ``name`` and a ``scores(ctx)`` method, so a new one (MC-dropout, BALD, ...) is one small
class registered with ``@STRATEGIES.register(name)`` (:data:`napari_sparseseg.active.STRATEGIES`) -- the
pattern MONAI Label uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass
class ReviewContext:
    """Everything a strategy may look at.  Any array may be ``None`` when not available yet.

    Attributes:
        shape: the image grid (array order, axis 0 = slice axis by default).
        prediction: dense label map of the network (0 = background).
        uncertainty: float per voxel in [0, 1] (1 = most uncertain), e.g. the trainer's stream.
        probabilities: ``(n_classes + 1, *shape)`` softmax of the network; preferred over
            ``uncertainty`` by the entropy strategy when present.
        reference: a second opinion (a second head's or SAM's dense label map) for disagreement.
        annotation: the sparse marks (0 = unmarked).
        reviewed: slices the user already corrected/accepted; never suggested again.
        current: the slice the viewer shows now (sequential strategy starts after it).
        axis: the slice axis.
    """

    shape: tuple[int, ...]
    prediction: np.ndarray | None = None
    uncertainty: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    reference: np.ndarray | None = None
    annotation: np.ndarray | None = None
    reviewed: set[int] = field(default_factory=set)
    current: int | None = None
    axis: int = 0

    @property
    def n_slices(self) -> int:
        return int(self.shape[self.axis])

    def per_slice(self, arr: np.ndarray) -> np.ndarray:
        """``arr`` reshaped to ``(n_slices, voxels_per_slice)`` along :attr:`axis`."""
        return np.moveaxis(np.asarray(arr), self.axis, 0).reshape(self.n_slices, -1)


@runtime_checkable
class SliceStrategy(Protocol):
    """Scores slices: higher means "look at this one first"; NaN means "nothing to say"."""

    name: str

    def scores(self, ctx: ReviewContext) -> np.ndarray:  # pragma: no cover - protocol
        ...


FULLY_LABELLED = 0.9
"""A slice whose marks cover at least this fraction is a labelled slice: nothing left to correct."""


def rank_slices(strategy: SliceStrategy, ctx: ReviewContext) -> list[int]:
    """Slices in review order, best first.

    Skips slices the user already reviewed and fully labelled slices, and slices the strategy could
    not score (NaN).  Ties keep slice order, so the result is deterministic.
    """
    s = np.asarray(strategy.scores(ctx), dtype=float)
    if s.shape != (ctx.n_slices,):
        raise ValueError(f"strategy {strategy.name!r} returned {s.shape}, expected ({ctx.n_slices},)")
    keep = np.isfinite(s)
    for z in ctx.reviewed:
        if 0 <= z < ctx.n_slices:
            keep[z] = False
    if ctx.annotation is not None:
        covered = (ctx.per_slice(ctx.annotation) != 0).mean(axis=1)
        keep &= covered < FULLY_LABELLED
    idx = np.flatnonzero(keep)
    order = np.argsort(-s[idx], kind="stable")
    return [int(i) for i in idx[order]]


def next_slice(strategy: SliceStrategy, ctx: ReviewContext) -> int | None:
    """The first slice of :func:`rank_slices`, or ``None`` when every slice is done."""
    ranked = rank_slices(strategy, ctx)
    return ranked[0] if ranked else None
