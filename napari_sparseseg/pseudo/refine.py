"""Let a correction change the pseudo-labels around it, not only the voxels it touches.

Why: the network is trained on the pseudo-labels (as targets, and as input channels for the default
model).  When the user paints a correction scribble into a region the pseudo-labels got wrong, MIX
(:meth:`PseudoLabels.with_marks`) fixes only the scribbled voxels; the rest of the wrong region keeps
its wrong, confident pseudo-label and keeps teaching the network the mistake the user just corrected.
Measured in the simulated active-learning loop, a correction then moved Dice by about 0.01 per round.

What this does: a new mark that contradicts the pseudo-labels (marks class A where they said B) puts
the B region it lies in under question, within ``radius`` voxels in-plane and ``slab`` slices either
side.  That region is re-solved by the random walker, seeded by every mark in the slab plus the
confident pseudo-labels outside the questioned region (they fence the walk in), so the scribble's
class spreads along image edges through the region the old pseudo-labels had wrong, and nothing
else changes.  Cost: one small 3D walk per corrected slab, 1.5-3.5 s on an ACDC volume on 2 shared
cores (the widget runs it in a background process: ``widget/refine_queue.py``).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..annotations.sparse import SparseAnnotation
from .normalize import percentile_unit_range
from .types import PseudoLabels
from .walker import seed_channels, walker_probabilities


def new_marks(old: SparseAnnotation | None, new: SparseAnnotation) -> np.ndarray:
    """Voxels whose mark is new or changed between ``old`` and ``new``."""
    if old is None:
        return new.marked.copy()
    return new.marked & (new.labels != old.labels)


def refine_around_marks(
    image: np.ndarray,
    pseudo: PseudoLabels,
    old: SparseAnnotation | None,
    new: SparseAnnotation,
    *,
    radius: float = 12.0,
    fg_radius: float = 4.0,
    slab: int = 4,
    seed_confidence: float = 0.8,
    beta: float = 130.0,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> PseudoLabels:
    """Pseudo-labels with the marks of ``new`` mixed in and the neighbourhood of its new marks re-solved.

    Args:
        image: the scan (Z, Y, X), raw intensities.
        pseudo: the current pseudo-labels (with or without the old marks mixed in).
        old, new: the marks before and after the correction; only marks new in ``new`` trigger a walk.
        radius: in-plane voxels around a new mark that are re-solved (the fence lies beyond) where the
            mark contradicts background ("you missed this").
        fg_radius: the same where it contradicts a structure ("this is not X"): the rest of X keeps its
            pseudo-labels as seeds, else a small structure lying wholly within ``radius`` lost every
            seed and vanished from the slab.
        slab: slices either side of a corrected slice that are re-solved too.  4, not 2: on the 4
            tuning hippocampus cases (200 + 6 x 40 steps) entropy reached Dice 0.838 instead of 0.787
            after 6 rounds; a wider radius (20) instead erased structures (0.738).
        seed_confidence: pseudo-labels at least this confident outside the radius become walker seeds.
        spacing: voxel spacing (Z, Y, X); only the ratio of slice to in-plane spacing is used for the walk.
    """
    if pseudo.probabilities is None:
        return pseudo.with_marks(new)
    added = new_marks(old, new)
    if not added.any():
        return pseudo.with_marks(new)
    img = percentile_unit_range(image)
    classes = tuple(pseudo.classes)
    n_ch = len(classes) + 1
    labels = pseudo.labels.copy()
    conf = pseudo.confidence.copy()
    probs = pseudo.probabilities.copy()
    lut = np.array((0,) + classes, dtype=np.int16)
    chan_of = {0: 0, **{c: i + 1 for i, c in enumerate(classes)}}
    n_redone = 0
    zs = np.flatnonzero(added.any(axis=(1, 2)))
    # merge overlapping slabs so a walk never sees half of a neighbour's correction
    ranges: list[list[int]] = []
    for z in zs:
        lo, hi = max(0, int(z) - slab), min(img.shape[0] - 1, int(z) + slab)
        if ranges and lo <= ranges[-1][1] + 1:
            ranges[-1][1] = hi
        else:
            ranges.append([lo, hi])
    mark_seeds = seed_channels(new.labels, new.background_label, classes)
    mark_cls = new.to_targets()  # class per voxel (0 = background), IGNORE elsewhere
    sz = float(spacing[0]) / max(float(spacing[1]), 1e-6)
    for lo, hi in ranges:
        sl = slice(lo, hi + 1)
        add = added[sl]
        dist = ndi.distance_transform_edt(~add, sampling=(sz, 1.0, 1.0))
        in_slab = np.abs(np.arange(lo, hi + 1) - _nearest(zs, lo, hi))[:, None, None] <= slab
        redo = _contradicted(pseudo.labels[sl], mark_cls[sl], add, in_slab & (dist <= radius),
                             in_slab & (dist <= fg_radius))
        if not redo.any():
            continue  # the pseudo-labels already agreed with every new mark here
        seeds = mark_seeds[sl].copy()
        fence = ~redo & (seeds == 0) & (pseudo.confidence[sl] >= seed_confidence)
        for c, ch in chan_of.items():  # a fence voxel seeds its pseudo-label's channel (+1, as the marks)
            seeds[fence & (pseudo.labels[sl] == c)] = ch + 1
        if len(np.unique(seeds[seeds > 0])) < 2:
            continue  # one label everywhere: nothing to decide
        p = walker_probabilities(img[sl], seeds, n_ch, beta=beta, spacing=(sz, 1.0, 1.0))
        redo &= mark_seeds[sl] == 0
        probs[:, sl][:, redo] = p[:, redo]
        conf[sl][redo] = p[:, redo].max(0)
        labels[sl][redo] = lut[p[:, redo].argmax(0)]
        n_redone += int(redo.sum())
    info = dict(pseudo.info, refined_voxels=n_redone)
    return PseudoLabels(labels, conf, probs, classes, info).with_marks(new)


def _nearest(zs: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """For each slice lo..hi, the nearest corrected slice (so the slab test is per correction)."""
    z = np.arange(lo, hi + 1)
    return zs[np.abs(zs[None, :] - z[:, None]).argmin(1)]


def _contradicted(pseudo_labels: np.ndarray, mark_cls: np.ndarray, added: np.ndarray, near: np.ndarray,
                  near_fg: np.ndarray) -> np.ndarray:
    """The pseudo-labelled regions a new mark contradicts: for each pseudo class found under a new mark
    of a *different* class, its connected component(s) within ``near`` (background) or ``near_fg``
    (a structure) that touch such a mark.

    Only these are re-solved: a correction says "not this class here", so voxels of other classes
    keep their pseudo-labels (and fence the walk in).  Re-solving everything near the mark instead
    erased whole classes of a small structure whose confident voxels all lay within the radius.
    """
    wrong = added & (pseudo_labels != mark_cls)
    out = np.zeros(pseudo_labels.shape, dtype=bool)
    for c in np.unique(pseudo_labels[wrong]):
        comp, _ = ndi.label((pseudo_labels == c) & (near if c == 0 else near_fg))
        ids = np.unique(comp[wrong & (pseudo_labels == c)])
        out |= np.isin(comp, ids[ids > 0])
    return out
