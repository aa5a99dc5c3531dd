"""Build a :class:`SparseAnnotation` from what the user drew: napari layer data, labelled slices, corrections.

Pure numpy on purpose: the widget passes ``layer.data`` arrays in, so this module (and its tests) never
need Qt or napari.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence

import numpy as np

from ..errors import AnnotationError
from .sparse import SparseAnnotation, whole_numbers


def _unknown_values(values: Iterable[int], classes: Sequence[int], background_label: int) -> list[int]:
    allowed = set(int(c) for c in classes) | {0, int(background_label)}
    return sorted(int(v) for v in set(int(v) for v in values) - allowed)


def from_layers(
    labels_data: np.ndarray | None,
    points: np.ndarray | None = None,
    point_labels: Sequence[int] | np.ndarray | None = None,
    *,
    background_label: int,
    classes: Sequence[int] | None = None,
    class_names: dict[int, str] | None = None,
    shape: Sequence[int] | None = None,
) -> SparseAnnotation:
    """Merge a napari Labels layer's data (painted scribbles) and a Points layer into one annotation.

    Args:
        labels_data: the Labels layer's array (0 = unpainted, class ids, ``background_label``);
            copied, never modified.  ``None`` for points only (then ``shape`` is required).
        points: ``(N, D)`` point coordinates in *data* (voxel) coordinates, napari order (z, y, x);
            with more columns than image axes (a 4D viewer) the last ones are used.
        point_labels: class id per point; values ``<= 0`` (SAM's "negative click" is 0) and
            ``background_label`` mean background.  Defaults to the only class when there is one.
        background_label: the value that marks background (> 0, not a class).
        classes: declared class ids (default: the values present).
        class_names: optional ``{class_id: name}``.
        shape: image grid; required without ``labels_data``, checked against it otherwise.

    Points are rounded to the nearest voxel and override painted values there (a click is the most
    deliberate mark).  Points outside the grid are dropped with one :class:`UserWarning` giving the
    count.  Painted values that are neither a class nor the background raise :class:`AnnotationError`.
    """
    if labels_data is None:
        if shape is None:
            raise AnnotationError("from_layers needs the labels layer data or the image shape")
        lab = np.zeros(tuple(int(s) for s in shape), dtype=np.int16)
    else:
        lab = np.array(labels_data, copy=True)
        if lab.dtype.kind not in "iub":
            raise AnnotationError(f"labels layer data must be integer, got dtype {lab.dtype}")
        if shape is not None and tuple(lab.shape) != tuple(int(s) for s in shape):
            raise AnnotationError(f"labels layer grid {lab.shape} does not match the image grid {tuple(shape)}")
        if lab.size and lab.min() < 0:
            raise AnnotationError(f"labels layer holds negative values ({int(lab.min())}); use 0 for unmarked")
        lab = lab.astype(np.int32 if lab.size and lab.max() > 32000 else np.int16, copy=False)
    bg = int(background_label)
    if points is not None and len(points):
        pts = np.asarray(points, dtype=float)
        if pts.ndim != 2 or pts.shape[1] < lab.ndim:
            raise AnnotationError(f"points must be an (N, {lab.ndim}) array, got shape {pts.shape}")
        pts = pts[:, -lab.ndim :]
        if point_labels is None:
            declared = tuple(classes) if classes else tuple(int(v) for v in np.unique(lab) if v not in (0, bg))
            if len(declared) != 1:
                raise AnnotationError("point_labels are needed: say which class (or background) each point marks")
            pl = np.full(len(pts), int(declared[0]), dtype=np.int64)
        else:
            pl = whole_numbers(point_labels, "point labels").reshape(-1)
            if len(pl) != len(pts):
                raise AnnotationError(f"{len(pts)} points but {len(pl)} point labels")
        pl = np.where((pl <= 0) | (pl == bg), bg, pl)
        if not np.all(np.isfinite(pts)):
            raise AnnotationError("point coordinates must be finite")
        vox = np.rint(pts).astype(np.int64)
        inside = np.all((vox >= 0) & (vox < np.asarray(lab.shape)), axis=1)
        n_out = int((~inside).sum())
        if n_out:
            warnings.warn(f"{n_out} point(s) outside the image were ignored", UserWarning, stacklevel=2)
        vox, pl = vox[inside], pl[inside]
        lab[tuple(vox.T)] = pl
    if classes:
        unknown = _unknown_values(np.unique(lab), classes, bg)
        if unknown:
            raise AnnotationError(
                f"unknown label values {unknown}: declared classes are {sorted(classes)} and background is {bg}"
            )
    return SparseAnnotation(lab, bg, tuple(classes) if classes else (), dict(class_names or {}))


def _slice_index(ndim: int, axis: int, index: int, shape: Sequence[int]) -> tuple[object, ...]:
    if not -ndim <= axis < ndim:
        raise AnnotationError(f"axis {axis} does not exist in a {ndim}D annotation")
    axis %= ndim
    if not 0 <= index < shape[axis]:
        raise AnnotationError(f"slice {index} is outside 0..{shape[axis] - 1} along axis {axis}")
    sl: list[object] = [slice(None)] * ndim
    sl[axis] = int(index)
    return tuple(sl)


def label_slice(
    ann: SparseAnnotation, dense_slice_labels: np.ndarray, axis: int, index: int
) -> SparseAnnotation:
    """"Slice ``index`` of ``axis`` is fully labelled": a new annotation with that slice written.

    ``dense_slice_labels`` uses the dense convention (0 = background, class ids > 0); every voxel of
    the slice becomes marked: classes as given, 0 as ``ann.background_label``.  Marks elsewhere are
    kept; ``ann`` itself is not modified (so the caller can undo).
    """
    dense = np.asarray(dense_slice_labels)
    sl = _slice_index(ann.labels.ndim, axis, index, ann.shape)
    target_shape = ann.labels[sl].shape
    if dense.shape != target_shape:
        raise AnnotationError(f"slice labels of shape {dense.shape} do not fit slice shape {target_shape}")
    if dense.dtype.kind == "f" and not np.all(dense == np.round(dense)):
        raise AnnotationError("slice labels must be whole numbers")
    if dense.size and dense.min() < 0:
        raise AnnotationError("slice labels must be >= 0 (0 = background)")
    present = set(int(v) for v in np.unique(dense) if v > 0)
    if ann.background_label in present:
        raise AnnotationError(
            f"slice labels hold {ann.background_label}, the background label; use 0 for background in a dense slice"
        )
    if ann.classes and not present <= set(ann.classes):
        raise AnnotationError(
            f"slice labels hold classes {sorted(present - set(ann.classes))} not declared ({list(ann.classes)})"
        )
    out = ann.labels.copy()
    out[sl] = np.where(dense == 0, ann.background_label, dense)
    classes = tuple(sorted(set(ann.classes) | present))
    return SparseAnnotation(out, ann.background_label, classes, dict(ann.class_names))


def combine(base: SparseAnnotation, extra: SparseAnnotation) -> SparseAnnotation:
    """``base`` with ``extra``'s marks on top (a correction overrides what was there before)."""
    if base.shape != extra.shape:
        raise AnnotationError(f"annotation grids differ: {base.shape} vs {extra.shape}")
    if base.background_label != extra.background_label:
        raise AnnotationError(
            f"background labels differ ({base.background_label} vs {extra.background_label}); cannot combine"
        )
    out = base.labels.copy()
    m = extra.labels != 0
    out[m] = extra.labels[m]
    names = {**extra.class_names, **base.class_names}
    return SparseAnnotation(out, base.background_label, tuple(sorted(set(base.classes) | set(extra.classes))), names)
