"""Seeded simulated annotators: scribbles, points, labelled slices and correction scribbles.

Tests and benchmarks need an "annotator" that behaves the same every run, so every function takes a
``seed`` (or a :class:`numpy.random.Generator`) and a dense label map (``0`` = background, classes
``> 0``) and returns a :class:`SparseAnnotation` in the package convention (``0`` = unmarked,
``background_label`` = marked background).

Scribbles imitate the human ACDC scribbles of Valvano et al. (``shared/data/acdc/scribblesTr``): on
every slice and for every structure, one thin 1-pixel curve well inside the structure (the medial
curve of thin structures such as the myocardium, a loop at a random depth inside thicker ones such
as the ventricle cavities), plus a background curve drawn around the objects at a random distance.
``bench/`` reports the marked fraction of both.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from skimage.morphology import skeletonize

from ..errors import AnnotationError
from .sparse import SparseAnnotation

Seed = int | np.random.Generator | None

_FULL2D = np.ones((3, 3), dtype=bool)


def _rng(seed: Seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _dense_classes(dense: np.ndarray) -> tuple[int, ...]:
    dense = np.asarray(dense)
    if dense.dtype.kind == "f":
        if not np.all(np.isfinite(dense)) or not np.all(dense == np.round(dense)):
            raise AnnotationError("the dense label map must hold whole numbers")
    elif dense.dtype.kind not in "iub":
        raise AnnotationError(f"the dense label map must be integer, got dtype {dense.dtype}")
    if dense.size and dense.min() < 0:
        raise AnnotationError("the dense label map must not hold negative values")
    classes = tuple(int(v) for v in np.unique(dense) if v > 0)
    if not classes:
        raise AnnotationError("the dense label map has no foreground: nothing to annotate")
    return classes


def _background_label(classes: Sequence[int], background_label: int | None) -> int:
    """Default: one above the largest class (ACDC's 4 for classes 1-3)."""
    bg = max(classes) + 1 if background_label is None else int(background_label)
    if bg in classes:
        raise AnnotationError(
            f"background label {bg} is also a class of the label map; pass --background-label with another value"
        )
    return bg


# ------------------------------------------------------------------------------- curves
def _four_connect(curve: np.ndarray) -> np.ndarray:
    """Fill diagonal steps so the 1-px curve is 4-connected, like a rasterised mouse stroke.

    The human ACDC scribbles are 1.4-1.7 pixels per skeleton pixel, i.e. 4-connected lines; a bare
    skeleton (8-connected) would mark about a third fewer voxels for the same stroke.
    """
    c = curve
    out = c.copy()
    h, w = c.shape
    if h < 2 or w < 2:
        return out
    a = c[:-1, :-1]
    # down-right diagonal step without either orthogonal neighbour: add the pixel below
    dr = a & c[1:, 1:] & ~c[1:, :-1] & ~c[:-1, 1:]
    out[1:, :-1] |= dr
    # down-left diagonal step (pixel at (y, x+1) and (y+1, x))
    dl = c[:-1, 1:] & c[1:, :-1] & ~a & ~c[1:, 1:]
    out[1:, 1:] |= dl
    return out


def _remove_sector(curve: np.ndarray, rng: np.random.Generator, max_gap_degrees: float) -> np.ndarray:
    """Leave a random angular gap (seen from the curve's centroid): people rarely close their loops."""
    if max_gap_degrees <= 0 or curve.sum() < 8:
        return curve
    ys, xs = np.nonzero(curve)
    ang = np.degrees(np.arctan2(ys - ys.mean(), xs - xs.mean())) % 360.0
    start = rng.uniform(0, 360.0)
    width = rng.uniform(0, min(max_gap_degrees, 300.0))
    drop = ((ang - start) % 360.0) < width
    if drop.all():
        return curve
    out = curve.copy()
    out[ys[drop], xs[drop]] = False
    return out


def _component_curve(
    comp: np.ndarray,
    rng: np.random.Generator,
    depth_range: tuple[float, float],
    thin_radius: float,
    max_gap_degrees: float,
) -> np.ndarray:
    """A 1-pixel curve inside one 2D connected region.

    Thin regions (inscribed radius < ``thin_radius`` px) get their medial curve (skeleton) minus the
    parts closer than 2 px to the border; thicker ones a loop at a random depth ``f * R`` inside,
    ``f`` drawn from ``depth_range``.  Always returns at least the deepest pixel.
    """
    dt = ndimage.distance_transform_edt(np.pad(comp, 1))[1:-1, 1:-1]
    r = float(dt.max())
    if r < thin_radius:
        curve = _remove_sector(skeletonize(comp) & (dt >= min(2.0, r)), rng, max_gap_degrees)
    else:
        d = rng.uniform(*depth_range) * r
        inner = dt >= max(d, 1.0)
        ring = inner & ~ndimage.binary_erosion(inner, structure=_FULL2D)
        curve = skeletonize(ring) if ring.any() else ring
        curve = _remove_sector(curve, rng, max_gap_degrees)
    if not curve.any():
        curve = np.zeros_like(comp)
        curve[np.unravel_index(int(np.argmax(dt)), dt.shape)] = True
    return _four_connect(curve) & comp


def _background_curve(
    ref_fg: np.ndarray,
    slice_bg: np.ndarray,
    rng: np.random.Generator,
    distance_range: tuple[float, float],
    max_gap_degrees: float,
) -> np.ndarray:
    """A curve around ``ref_fg`` at a random distance, kept only where the slice is background."""
    dist = ndimage.distance_transform_edt(~ref_fg)
    d = rng.uniform(*distance_range)
    region = dist <= d
    ring = region & ~ndimage.binary_erosion(region, structure=_FULL2D, border_value=1)
    curve = _remove_sector(skeletonize(ring), rng, max_gap_degrees)
    return _four_connect(curve) & slice_bg


def simulate_scribbles(
    dense: np.ndarray,
    background_label: int | None = None,
    seed: Seed = 0,
    axis: int = 0,
    *,
    min_area: int = 10,
    depth_range: tuple[float, float] = (0.2, 0.45),
    thin_radius: float = 5.0,
    background_distance: tuple[float, float] = (6.0, 18.0),
    max_gap_degrees: float = 90.0,
    slice_fraction: float = 1.0,
) -> SparseAnnotation:
    """Scribbles on every slice along ``axis``: one curve per structure and one background curve.

    Args:
        dense: dense label map (0 = background, classes > 0).
        background_label: value for background marks (default: largest class + 1).
        seed: int or Generator; the same seed gives the same scribbles.
        axis: slice axis (0 = the package's slice axis).
        min_area: connected regions smaller than this (pixels) get no curve of their own; a class
            that would end up unmarked everywhere still gets its deepest voxel.
        depth_range: loop depth inside thick regions, as a fraction of the inscribed radius.
        thin_radius: inscribed radius (px) below which a region gets its medial curve instead.
        background_distance: range (px) of the background curve's distance from the objects.
        max_gap_degrees: largest random gap left open in loops.
        slice_fraction: fraction of slices to scribble (1.0 = all, as in ACDC); chosen at random.
    """
    if np.ndim(dense) != 3:
        raise AnnotationError(f"scribbles are simulated slice by slice on a 3D label map, got {np.ndim(dense)}D")
    classes = _dense_classes(dense)
    bg = _background_label(classes, background_label)
    rng = _rng(seed)
    vol = np.moveaxis(np.asarray(dense), axis, 0)
    out = np.zeros(vol.shape, dtype=np.int16)
    fg_slices = np.flatnonzero((vol > 0).reshape(vol.shape[0], -1).any(axis=1))
    n = vol.shape[0]
    chosen = np.arange(n)
    if slice_fraction < 1.0:
        k = max(1, int(round(slice_fraction * n)))
        chosen = np.sort(rng.choice(n, size=k, replace=False))
    for z in chosen:
        sl = vol[z]
        for c in classes:
            lab, nlab = ndimage.label(sl == c, structure=_FULL2D)
            if nlab == 0:
                continue
            sizes = ndimage.sum_labels(np.ones_like(lab), lab, index=np.arange(1, nlab + 1))
            for i in np.flatnonzero(sizes >= min_area):
                comp = lab == (i + 1)
                out[z][_component_curve(comp, rng, depth_range, thin_radius, max_gap_degrees)] = c
        if fg_slices.size:
            ref = int(fg_slices[np.argmin(np.abs(fg_slices - z))])
            curve = _background_curve(vol[ref] > 0, sl == 0, rng, background_distance, max_gap_degrees)
            out[z][curve] = bg
    # a class present in the map must be marked somewhere (else the annotation does not validate)
    for c in classes:
        if not (out == c).any():
            m = vol == c
            dt = ndimage.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1, 1:-1]
            out[np.unravel_index(int(np.argmax(dt)), dt.shape)] = c
    return SparseAnnotation(np.moveaxis(out, 0, axis), bg, classes)


# ------------------------------------------------------------------------------- points
def _sample(cands: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    if len(cands) == 0 or k <= 0:
        return cands[:0]
    return cands[rng.choice(len(cands), size=min(k, len(cands)), replace=False)]


def simulate_points(
    dense: np.ndarray,
    k: int,
    background_label: int | None = None,
    seed: Seed = 0,
    negatives: int | None = None,
    *,
    spacing: Sequence[float] | None = None,
    depth: float = 0.5,
    negative_band: tuple[float, float] = (2.0, 15.0),
) -> SparseAnnotation:
    """``k`` positive clicks per class inside it, away from the border, and ``negatives`` clicks outside.

    Positive clicks are drawn uniformly among the voxels whose 3D distance to the class border
    (in mm when ``spacing`` is given) is at least ``depth`` times the largest such distance: the
    "click in the middle" habit.  Negative clicks (default ``k``) fall in the background within
    ``negative_band`` voxels of the objects (where a user would click to stop a leak), or anywhere
    in the background if that band is empty.
    """
    if k < 1:
        raise AnnotationError(f"the number of points per class must be >= 1, got {k}")
    classes = _dense_classes(dense)
    bg = _background_label(classes, background_label)
    rng = _rng(seed)
    dense = np.asarray(dense)
    out = np.zeros(dense.shape, dtype=np.int16)
    sampling = None if spacing is None else tuple(float(s) for s in spacing)
    for c in classes:
        m = dense == c
        dt = ndimage.distance_transform_edt(np.pad(m, 1), sampling=sampling)[(slice(1, -1),) * dense.ndim]
        cands = np.argwhere(dt >= depth * dt.max())
        for p in _sample(cands, k, rng):
            out[tuple(p)] = c
    n_neg = k if negatives is None else int(negatives)
    if n_neg > 0:
        fg = dense > 0
        dist = ndimage.distance_transform_edt(~fg)
        band = (~fg) & (dist >= negative_band[0]) & (dist <= negative_band[1])
        cands = np.argwhere(band) if band.any() else np.argwhere(~fg)
        for p in _sample(cands, n_neg, rng):
            out[tuple(p)] = bg
    return SparseAnnotation(out, bg, classes)


# ------------------------------------------------------------------------------- slices
def choose_slices(dense: np.ndarray, k: int, axis: int = 0, seed: Seed = 0) -> list[int]:
    """``k`` slice indices spread evenly over the objects' extent along ``axis``, with seeded jitter.

    Slice ``i`` sits at the centre of the ``i``-th of ``k`` equal bins of the extent, moved by up to
    a quarter bin; if ``k`` is at least the number of slices holding objects, all of them.
    """
    if k < 1:
        raise AnnotationError(f"the number of labelled slices must be >= 1, got {k}")
    dense = np.asarray(dense)
    if not -dense.ndim <= axis < dense.ndim:
        raise AnnotationError(f"axis {axis} does not exist in a {dense.ndim}D label map")
    other = tuple(a for a in range(dense.ndim) if a != axis % dense.ndim)
    occupied = np.flatnonzero((dense > 0).any(axis=other))
    if occupied.size == 0:
        raise AnnotationError("the dense label map has no foreground: nothing to annotate")
    if k >= occupied.size:
        return [int(i) for i in occupied]
    rng = _rng(seed)
    lo, hi = int(occupied[0]), int(occupied[-1])
    width = (hi - lo + 1) / k
    picked: list[int] = []
    for i in range(k):
        centre = lo + (i + 0.5) * width - 0.5 + rng.uniform(-0.25, 0.25) * width
        z = int(np.clip(round(centre), lo, hi))
        while z in picked and z < hi:  # keep k distinct slices
            z += 1
        while z in picked and z > lo:
            z -= 1
        picked.append(z)
    return sorted(set(picked))


def simulate_slices(
    dense: np.ndarray,
    k: int,
    axis: int = 0,
    background_label: int | None = None,
    seed: Seed = 0,
) -> SparseAnnotation:
    """``k`` fully labelled slices along ``axis`` (see :func:`choose_slices`), background included."""
    classes = _dense_classes(dense)
    bg = _background_label(classes, background_label)
    dense = np.asarray(dense)
    idx = choose_slices(dense, k, axis, seed)
    mask = np.zeros(dense.shape, dtype=bool)
    sl: list[object] = [slice(None)] * dense.ndim
    sl[axis] = idx
    mask[tuple(sl)] = True
    ann = SparseAnnotation.from_dense(dense, mask, bg, classes)
    present = set(ann.counts())
    missing = [c for c in classes if c not in present]
    if missing:  # a class living only between the chosen slices: label one of its slices as well
        extra = []
        other = tuple(a for a in range(dense.ndim) if a != axis % dense.ndim)
        for c in missing:
            occ = np.flatnonzero((dense == c).any(axis=other))
            extra.append(int(occ[len(occ) // 2]))
        sl[axis] = extra
        mask[tuple(sl)] = True
        ann = SparseAnnotation.from_dense(dense, mask, bg, classes)
    return ann


# --------------------------------------------------------------------------- correction
def simulate_correction(
    pred: np.ndarray,
    gt: np.ndarray,
    slice_index: int,
    axis: int = 0,
    background_label: int | None = None,
    seed: Seed = 0,
    *,
    classes: Sequence[int] | None = None,
) -> SparseAnnotation | None:
    """A correction scribble on the largest connected error region of one slice.

    Errors are grouped by their true label (a region where class 3 was predicted as 2 is one
    region, a leak into the background another), so the scribble carries one label: the true class
    there, or ``background_label`` where the truth is background.  The scribble is a curve inside the
    region (as in :func:`simulate_scribbles`).  Returns ``None`` when the slice has no error.
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if gt.ndim != 3:
        raise AnnotationError(f"corrections are drawn on a slice of a 3D label map, got {gt.ndim}D")
    if pred.shape != gt.shape:
        raise AnnotationError(f"prediction grid {pred.shape} does not match the ground-truth grid {gt.shape}")
    cls = tuple(int(c) for c in classes) if classes is not None else _dense_classes(gt)
    bg = _background_label(cls, background_label)
    rng = _rng(seed)
    n = pred.shape[axis]
    if not 0 <= slice_index < n:
        raise AnnotationError(f"slice {slice_index} is outside 0..{n - 1} along axis {axis}")
    p = np.take(pred, slice_index, axis=axis)
    g = np.take(gt, slice_index, axis=axis)
    wrong = p != g
    if not wrong.any():
        return None
    best: tuple[int, int, np.ndarray] | None = None
    for v in np.unique(g[wrong]):
        lab, nlab = ndimage.label(wrong & (g == v), structure=_FULL2D)
        sizes = ndimage.sum_labels(np.ones_like(lab), lab, index=np.arange(1, nlab + 1))
        i = int(np.argmax(sizes))
        if best is None or sizes[i] > best[0]:
            best = (int(sizes[i]), int(v), lab == i + 1)
    assert best is not None
    _, true_value, region = best
    curve = _component_curve(region, rng, (0.3, 0.6), 5.0, 0.0)
    sl2d = np.zeros(g.shape, dtype=np.int16)
    sl2d[curve] = bg if true_value == 0 else true_value
    out = np.zeros(gt.shape, dtype=np.int16)
    index: list[object] = [slice(None)] * gt.ndim
    index[axis] = slice_index
    out[tuple(index)] = sl2d
    return SparseAnnotation(out, bg, cls)
