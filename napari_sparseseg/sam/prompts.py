"""Prompts from sparse marks, per class and slice.

The user's marks on a slice are read as one of three kinds, per class:

* a **fully labelled slice** (almost every pixel of the slice is marked) -> the class mask itself,
  used as a mask + box prompt for the neighbouring slices (see :mod:`.propagate`);
* **points** (every connected piece of the class is tiny) -> positive point prompts, with the
  other classes' and the background's marks as negative points;
* **scribbles** -> a box around the scribble (grown by a margin, since a scribble lies inside the
  structure) plus positive points sampled on the scribble and negative points from other marks.

Nested structures (a ring around a cavity, e.g. ACDC's myocardium around the LV cavity) cannot be
prompted with one box per class: the ring's box also holds the cavity.  :func:`detect_nesting` finds
such pairs from a dense label guess, and the caller segments the *union* (outer + inner) and subtracts
the inner class.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

FULL_SLICE_FRACTION = 0.9
POINT_MAX_PIXELS = 9


@dataclass
class ClassPrompt:
    """Prompt for one class on one slice (coordinates are (x, y) = (column, row))."""

    class_id: int
    kind: str                              # "scribble" | "points" | "slice"
    box: np.ndarray | None = None          # (4,) x0, y0, x1, y1
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    point_labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    mask: np.ndarray | None = None         # bool (H, W) for fully labelled slices


def bbox(mask: np.ndarray, margin: float = 0.0, shape: tuple[int, int] | None = None) -> np.ndarray | None:
    """(x0, y0, x1, y1) of a mask, grown by ``margin`` (a fraction of its size, plus 1 px per 0.1)."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    x0, x1, y0, y1 = float(xs.min()), float(xs.max()), float(ys.min()), float(ys.max())
    if margin:
        gx = margin * (x1 - x0 + 1) + 10 * margin
        gy = margin * (y1 - y0 + 1) + 10 * margin
        x0, x1, y0, y1 = x0 - gx, x1 + gx, y0 - gy, y1 + gy
    if shape is not None:
        h, w = shape
        x0, y0 = max(0.0, x0), max(0.0, y0)
        x1, y1 = min(w - 1.0, x1), min(h - 1.0, y1)
    return np.array([x0, y0, x1, y1], dtype=np.float32)


def sample_points(mask: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``k`` (x, y) points spread over a mask (farthest-point order from a random start)."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0 or k <= 0:
        return np.zeros((0, 2), np.float32)
    pts = np.stack([xs, ys], 1).astype(np.float32)
    if len(pts) <= k:
        return pts
    chosen = [int(rng.integers(len(pts)))]
    d = np.full(len(pts), np.inf)
    for _ in range(k - 1):
        d = np.minimum(d, ((pts - pts[chosen[-1]]) ** 2).sum(1))
        chosen.append(int(d.argmax()))
    return pts[chosen]


def classify_marks(marks2d: np.ndarray, class_id: int) -> str:
    """'slice', 'points' or 'scribble' for one class's marks on one slice (see the module docstring)."""
    if (marks2d != 0).mean() >= FULL_SLICE_FRACTION:
        return "slice"
    lab, n = ndi.label(marks2d == class_id)
    if n and np.bincount(lab.ravel())[1:].max() <= POINT_MAX_PIXELS:
        return "points"
    return "scribble"


def prompts_from_marks(
    marks2d: np.ndarray,
    classes: tuple[int, ...],
    background_label: int,
    *,
    nesting: dict[int, tuple[int, ...]] | None = None,
    box_margin: float = 0.15,
    n_pos: int = 3,
    n_neg: int = 3,
    seed: int = 0,
) -> dict[int, ClassPrompt]:
    """One :class:`ClassPrompt` per class marked on this slice.

    ``nesting`` maps an outer class to the classes inside it; the outer class's prompt then covers
    the union (its marks and its inner classes' marks), so SAM segments the filled outline.
    """
    rng = np.random.default_rng(seed)
    nesting = nesting or {}
    shape = marks2d.shape
    out: dict[int, ClassPrompt] = {}
    for c in classes:
        own = marks2d == c
        if not own.any():
            continue
        kind = classify_marks(marks2d, c)
        region = own.copy()
        for inner in nesting.get(c, ()):
            region |= marks2d == inner
        if kind == "slice":
            filled = ndi.binary_fill_holes(region)
            out[c] = ClassPrompt(c, "slice", bbox(filled, 0.0, shape), mask=filled)
            continue
        members = (c,) + tuple(nesting.get(c, ()))
        neg_mask = (marks2d != 0) & ~np.isin(marks2d, members)
        pos = sample_points(own, n_pos, rng)
        neg = sample_points(neg_mask, n_neg, rng)
        if kind == "points":
            pos = np.stack(np.nonzero(own)[::-1], 1).astype(np.float32)
            box = None
        else:
            box = bbox(region, box_margin, shape)
        pts = np.concatenate([pos, neg]) if len(neg) else pos
        labs = np.concatenate([np.ones(len(pos), np.int64), np.zeros(len(neg), np.int64)])
        out[c] = ClassPrompt(c, kind, box, pts, labs)
    return out


def detect_nesting(dense: np.ndarray, classes: tuple[int, ...], min_fraction: float = 0.7) -> dict[int, tuple[int, ...]]:
    """Find classes that lie inside the holes of another class (per 2D slice along axis 0).

    ``dense`` is a dense guess (e.g. the walker's labels).  Class ``b`` is inside ``a`` when at least
    ``min_fraction`` of ``b``'s pixels fall in ``fill_holes(a | b)`` but within ``a``'s outline, i.e.
    ``a`` surrounds ``b`` -- measured over all slices where both appear.
    """
    nest: dict[int, list[int]] = {}
    for a in classes:
        for b in classes:
            if a == b:
                continue
            inside = total = 0
            for z in range(dense.shape[0]):
                ma, mb = dense[z] == a, dense[z] == b
                if not ma.any() or not mb.any():
                    continue
                holes = ndi.binary_fill_holes(ma) & ~ma
                inside += int((holes & mb).sum())
                total += int(mb.sum())
            if total and inside / total >= min_fraction:
                nest.setdefault(a, []).append(b)
    return {a: tuple(bs) for a, bs in nest.items()}
