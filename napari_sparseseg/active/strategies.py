"""The strategies: entropy, disagreement (two heads, or SAM vs the network), random, sequential."""

from __future__ import annotations

import numpy as np

from ..registry import Registry
from .base import ReviewContext, SliceStrategy

#: review strategies by name (the widget's box, ``--strategies``); a new one is a class here (or in a module
#: ``active/__init__`` imports) decorated with ``@STRATEGIES.register("name")``
STRATEGIES: Registry[type[SliceStrategy]] = Registry("review strategy")


def _top_fraction_mean(rows: np.ndarray, fraction: float) -> np.ndarray:
    """Mean of the highest ``fraction`` of each row.

    Why not the plain slice mean: a thin structure's uncertain rim is a few hundred voxels in a slice of
    50 000 background voxels; the plain mean ranks slices by how much background they show.
    """
    k = max(1, int(round(rows.shape[1] * fraction)))
    top = np.partition(rows, rows.shape[1] - k, axis=1)[:, -k:]
    return top.mean(axis=1)


def normalized_entropy(probabilities: np.ndarray) -> np.ndarray:
    """Shannon entropy over the class axis (axis 0), divided by log(n_classes): 0 = sure, 1 = uniform."""
    p = np.clip(np.asarray(probabilities, dtype=np.float32), 1e-8, 1.0)
    n = p.shape[0]
    h = -(p * np.log(p)).sum(axis=0)
    return (h / np.log(n)).astype(np.float32) if n > 1 else np.zeros(p.shape[1:], np.float32)


def spread_weights(ctx: ReviewContext, sigma: float) -> np.ndarray:
    """Per-slice factor in [0, 1): 0 at a slice already reviewed, rising to ~1 at ``2 * sigma`` slices away.

    Why: the most uncertain slices of a structure sit side by side.  Correcting slice 14 also fixes
    the pseudo-labels of slices 10-18 (:func:`~napari_sparseseg.pseudo.refine.refine_around_marks`),
    so suggesting 13 next spends the user's click where the model already learnt the lesson.
    """
    n = ctx.n_slices
    done = [z for z in ctx.reviewed if 0 <= z < n]
    if sigma <= 0 or not done:
        return np.ones(n)
    d = np.min(np.abs(np.arange(n)[:, None] - np.asarray(done)[None, :]), axis=1).astype(float)
    return 1.0 - np.exp(-0.5 * (d / sigma) ** 2)


@STRATEGIES.register("entropy")
class EntropyStrategy:
    """Most uncertain slice first: mean of the top ``fraction`` voxel entropies (or uncertainties),
    damped near slices already reviewed (:func:`spread_weights`, ``spread`` slices; 0 = off).

    ``spread=2`` by default.  With the first version of the correction refinement (which erased
    structures when neighbouring slices were corrected one after another) plain entropy fell to Dice
    0.72 against 0.82 with the spread (hippocampus, 4 cases, 30 + 6 x 15 steps).  With the refinement
    re-solving 2 slices either side the spread was neutral (0.787 with it, 0.782 without, after 6
    rounds, ``bench/results/active_spread_slab2/``); re-solving 4, as now, it matters: 0.838 with it,
    0.783 without (``bench/results/active_spread/``, 200 + 6 x 40 steps, the 4 tuning cases): a
    correction already re-solved its neighbours, so the next click is worth more elsewhere."""

    name = "entropy"

    def __init__(self, fraction: float = 0.02, spread: float = 2.0) -> None:
        if not 0 < fraction <= 1:
            raise ValueError("fraction must be in (0, 1]")
        self.fraction = fraction
        self.spread = float(spread)

    def scores(self, ctx: ReviewContext) -> np.ndarray:
        if ctx.probabilities is not None:
            u = normalized_entropy(ctx.probabilities)
        elif ctx.uncertainty is not None:
            u = np.asarray(ctx.uncertainty, dtype=np.float32)
        else:
            return np.full(ctx.n_slices, np.nan)
        return _top_fraction_mean(ctx.per_slice(u), self.fraction) * spread_weights(ctx, self.spread)


@STRATEGIES.register("disagreement")
class DisagreementStrategy:
    """Slice where two opinions (two heads, or SAM pseudo-labels vs the network) disagree most.

    Score = voxels labelled differently / voxels either calls foreground (1 - a Jaccard-like overlap),
    so a small structure that is wholly missed scores as high as a big one.  Slices where both say
    "background" everywhere score 0.
    """

    name = "disagreement"

    def scores(self, ctx: ReviewContext) -> np.ndarray:
        if ctx.prediction is None or ctx.reference is None:
            return np.full(ctx.n_slices, np.nan)
        a = ctx.per_slice(ctx.prediction)
        b = ctx.per_slice(ctx.reference)
        union = ((a > 0) | (b > 0)).sum(axis=1)
        differ = ((a != b) & ((a > 0) | (b > 0))).sum(axis=1)
        return np.where(union > 0, differ / np.maximum(union, 1), 0.0)


@STRATEGIES.register("random")
class RandomStrategy:
    """The baseline every other strategy must beat: a seeded random order."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def scores(self, ctx: ReviewContext) -> np.ndarray:
        return np.random.default_rng(self.seed).random(ctx.n_slices)


@STRATEGIES.register("sequential")
class SequentialStrategy:
    """Walk the slices in order, starting after the current one (wrapping around)."""

    name = "sequential"

    def scores(self, ctx: ReviewContext) -> np.ndarray:
        n = ctx.n_slices
        start = -1 if ctx.current is None else int(ctx.current)
        dist = (np.arange(n) - start - 1) % n
        return -dist.astype(float)
