"""One sparse annotation volume: the single currency between the user, SAM and the trainer.

Convention (every CLI command and module uses it):

* ``0``                 -- not annotated (unknown; ignored by every loss),
* ``c > 0``             -- a mark of class ``c`` (scribble, positive point, labelled slice),
* ``background_label``  -- a mark saying "this voxel is background" (background scribble, negative
  point, the background part of a fully labelled slice).  ACDC's human scribbles use 4.

Dense outputs (pseudo-labels, predictions) use the usual label-map convention instead: ``0`` =
background, ``c`` = class ``c``.  :meth:`SparseAnnotation.to_targets` converts between the two.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import AnnotationError

IGNORE_INDEX = -1
"""Target value for voxels no loss may look at (unmarked, or below the confidence threshold)."""


def whole_numbers(values: Iterable[float] | np.ndarray, what: str = "mark values") -> np.ndarray:
    """``values`` as int64, refusing fractions, NaN or non-numbers (``0.5`` must not silently become 0).

    Every place that turns user-supplied numbers into mark values goes through this check.
    """
    arr = np.asarray(values)
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64)
    if arr.dtype.kind != "f":
        raise AnnotationError(f"{what} must be whole numbers, got {arr.dtype}")
    if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
        bad = arr[~np.isfinite(arr) | (arr != np.round(arr))].ravel()
        raise AnnotationError(f"{what} must be whole numbers (found {bad[0]!r})")
    if arr.size and (arr.max() > 2**31 - 1 or arr.min() < -(2**31)):
        raise AnnotationError(f"{what} do not fit a 32-bit integer")
    return arr.astype(np.int64)


@dataclass
class SparseAnnotation:
    """Sparse marks on an image grid.

    Attributes:
        labels: integer array, same shape as the image (0 = unmarked).
        background_label: the value that means "marked as background"; must not be a class id.
        classes: foreground class ids (> 0, != background_label).  Defaults to the values present.
        class_names: optional display names, ``{class_id: name}``.
    """

    labels: np.ndarray
    background_label: int
    classes: tuple[int, ...] = ()
    class_names: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        arr = np.asarray(self.labels)
        if arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
                raise AnnotationError("annotation labels must be whole numbers (found fractions or NaN)")
        elif arr.dtype.kind not in "iub":
            raise AnnotationError(f"annotation labels must be integers, got dtype {arr.dtype}")
        if arr.size and arr.min() < 0:
            raise AnnotationError(f"annotation labels must be >= 0 (found {int(arr.min())})")
        self.labels = arr.astype(np.int16 if arr.size == 0 or arr.max() < 32767 else np.int32, copy=False)
        self.background_label = int(self.background_label)
        if self.background_label <= 0:
            raise AnnotationError(
                f"background_label must be a positive integer (0 means 'not annotated'), got {self.background_label}"
            )
        if not self.classes:
            present = np.unique(self.labels)
            self.classes = tuple(int(v) for v in present if v != 0 and v != self.background_label)
        else:
            self.classes = tuple(sorted(int(c) for c in self.classes))
        if self.background_label in self.classes:
            raise AnnotationError(
                f"background_label {self.background_label} is also declared as a class; pick another value"
            )
        if any(c <= 0 for c in self.classes):
            raise AnnotationError(f"class ids must be > 0, got {self.classes}")

    # ------------------------------------------------------------------ queries
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.labels.shape)

    @property
    def marked(self) -> np.ndarray:
        """Boolean mask of every annotated voxel (any class or background)."""
        return self.labels != 0

    @property
    def background(self) -> np.ndarray:
        return self.labels == self.background_label

    def class_mask(self, class_id: int) -> np.ndarray:
        return self.labels == class_id

    def marked_fraction(self) -> float:
        """Fraction of voxels the user marked: the "effort" axis of every benchmark plot."""
        return float(self.marked.mean()) if self.labels.size else 0.0

    def annotated_slices(self, axis: int = 0) -> list[int]:
        """Indices of slices along ``axis`` that hold at least one mark."""
        other = tuple(a for a in range(self.labels.ndim) if a != axis)
        return [int(i) for i in np.flatnonzero(self.marked.any(axis=other))]

    def counts(self) -> dict[int, int]:
        """Marked voxels per value (classes and background)."""
        vals, n = np.unique(self.labels[self.marked], return_counts=True)
        return {int(v): int(c) for v, c in zip(vals, n)}

    # --------------------------------------------------------------- validation
    def validate(self, image_shape: Sequence[int] | None = None, *, require_background: bool = False) -> None:
        """Raise :class:`AnnotationError` with a clear message if the marks cannot train anything."""
        if image_shape is not None and tuple(image_shape) != self.shape:
            raise AnnotationError(
                f"annotation grid {self.shape} does not match the image grid {tuple(image_shape)}"
            )
        allowed = set(self.classes) | {0, self.background_label}
        present = set(int(v) for v in np.unique(self.labels))
        unknown = sorted(present - allowed)
        if unknown:
            raise AnnotationError(
                f"unknown label values {unknown}: declared classes are {list(self.classes)} "
                f"and background is {self.background_label}"
            )
        if not any(v in present for v in self.classes):
            raise AnnotationError("no foreground marks: draw at least one scribble, point or slice of a class")
        missing = [c for c in self.classes if c not in present]
        if missing:
            raise AnnotationError(f"class(es) {missing} have no marks at all; mark each class at least once")
        if require_background and self.background_label not in present:
            raise AnnotationError(
                f"no background marks (label {self.background_label}); mark some background too"
            )

    # -------------------------------------------------------------- conversion
    def to_targets(self) -> np.ndarray:
        """Training targets: background -> 0, class c -> c, unmarked -> :data:`IGNORE_INDEX`."""
        t = np.full(self.shape, IGNORE_INDEX, dtype=np.int64)
        t[self.background] = 0
        for c in self.classes:
            t[self.labels == c] = c
        return t

    @classmethod
    def from_dense(
        cls, dense: np.ndarray, mask: np.ndarray, background_label: int, classes: Iterable[int] | None = None
    ) -> SparseAnnotation:
        """Marks taken from a dense label map where ``mask`` is True (dense 0 becomes background)."""
        dense = np.asarray(dense)
        lab = np.zeros(dense.shape, dtype=np.int16)
        m = np.asarray(mask, dtype=bool)
        lab[m & (dense > 0)] = dense[m & (dense > 0)]
        lab[m & (dense == 0)] = background_label
        return cls(lab, background_label, tuple(classes) if classes is not None else ())

    def copy(self) -> SparseAnnotation:
        return SparseAnnotation(self.labels.copy(), self.background_label, self.classes, dict(self.class_names))


def mix(marks: SparseAnnotation, pseudo: np.ndarray) -> np.ndarray:
    """SA-Net eq. 1, MIX(G, P): wherever the user marked a voxel, the mark wins over the pseudo-label.

    ``pseudo`` is a dense label map (0 = background); the result is dense too.
    """
    if tuple(pseudo.shape) != marks.shape:
        raise AnnotationError(f"pseudo-label grid {tuple(pseudo.shape)} does not match marks {marks.shape}")
    out = np.asarray(pseudo).copy()
    t = marks.to_targets()
    m = t != IGNORE_INDEX
    out[m] = t[m]
    return out
