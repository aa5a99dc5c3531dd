"""``make_pseudo_labels``: one entry point for every pseudo-label method (CLI, widget, trainer).

Methods live in :data:`PSEUDO_METHODS` (a :class:`~napari_sparseseg.registry.Registry`): a new one is a
function ``fn(image, ann, *, spacing, backend, progress, **options) -> PseudoLabels`` registered with
``@PSEUDO_METHODS.register("name")``."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..annotations.sparse import SparseAnnotation
from ..errors import AnnotationError, PseudoLabelError
from ..io.volume import Volume
from ..registry import Registry
from .types import PseudoLabels
from .walker import random_walker_pseudo

PseudoFn = Callable[..., PseudoLabels]
#: pseudo-label methods by name; ``"auto"`` (:data:`DEFAULT_METHOD`) is accepted too
PSEUDO_METHODS: Registry[PseudoFn] = Registry("pseudo-label method", error=AnnotationError)
#: the best measured (bench/results/pseudo/): walker+SAM fusion beat the walker on ACDC (20 volumes,
#: human scribbles), brain tumour and hippocampus (3 labelled slices)
DEFAULT_METHOD = "fusion"
DEFAULT_THRESHOLD = 0.5


def _walker(unmarked: str) -> PseudoFn:
    def fn(arr: np.ndarray, ann: SparseAnnotation, *, spacing: tuple, backend: Any = None,
           progress: Callable[[int, int], None] | None = None, **options: Any) -> PseudoLabels:
        options.pop("cache_dir", None)  # the walker needs no embeddings
        return random_walker_pseudo(arr, ann, unmarked=unmarked, spacing=spacing, progress=progress, **options)

    return fn


def _sam(method: str) -> PseudoFn:
    def fn(arr: np.ndarray, ann: SparseAnnotation, *, spacing: tuple, backend: Any = None,
           progress: Callable[[int, int], None] | None = None, **options: Any) -> PseudoLabels:
        from .sam_fusion import sam_pseudo  # heavy (torch) import only when asked

        return sam_pseudo(arr, ann, method=method, backend=backend, spacing=spacing, progress=progress, **options)

    return fn


# the walker variants differ in what unmarked slices get: a 3D walk, the nearest marked slice, nothing
PSEUDO_METHODS.register("random-walker", _walker("walker3d"))
PSEUDO_METHODS.register("random-walker-nearest", _walker("nearest"))
PSEUDO_METHODS.register("random-walker-ignore", _walker("ignore"))
PSEUDO_METHODS.register("sam", _sam("sam"))
PSEUDO_METHODS.register("fusion", _sam("fusion"))


def method_names() -> tuple[str, ...]:
    """Every name :func:`make_pseudo_labels` accepts (``auto`` first)."""
    return ("auto", *PSEUDO_METHODS.names())


def _as_image(image: Volume | np.ndarray) -> tuple[np.ndarray, tuple[float, float, float]]:
    if isinstance(image, Volume):
        return np.asarray(image.array), image.spacing
    arr = np.asarray(image)
    return arr, (1.0, 1.0, 1.0)


def _bounded(progress: Callable[[int, int], None] | None, time_limit: float | None) -> Callable[[int, int], None] | None:
    """Wrap ``progress`` so that it raises once ``time_limit`` seconds have passed (None: unbounded)."""
    if time_limit is None:
        return progress
    if not time_limit > 0:
        raise PseudoLabelError(f"the pseudo-label time limit must be > 0 seconds, got {time_limit}")
    t0 = time.monotonic()

    def check(done: int, total: int) -> None:
        if progress is not None:
            progress(done, total)
        if done < total and time.monotonic() - t0 > time_limit:
            raise PseudoLabelError(
                f"pseudo-labels took longer than {time_limit:g} s ({done} of {total} slices done); "
                "raise the limit, crop the image or use a faster method (random-walker-nearest)"
            )

    return check


def make_pseudo_labels(
    image: Volume | np.ndarray,
    ann: SparseAnnotation,
    method: str = "auto",
    *,
    backend: Any = None,
    threshold: float = DEFAULT_THRESHOLD,
    progress: Callable[[int, int], None] | None = None,
    time_limit: float | None = None,
    **options: Any,
) -> PseudoLabels:
    """Dense pseudo-labels + per-voxel confidence from sparse marks, with the marks mixed in.

    Args:
        image: the 3D image (a :class:`Volume` gives the voxel spacing to the 3D walker).
        ann: the sparse marks (0 = unmarked, classes > 0, ``ann.background_label``).
        method: ``"auto"`` or a name in :data:`PSEUDO_METHODS`.
        backend: a SAM backend or engine (only for the SAM-based methods; default LiteMedSAM).
        threshold: recorded in ``info``; the caller applies it with ``PseudoLabels.confident(t)``.
        progress: ``progress(done, total)`` callback (for the widget's progress bar).
        time_limit: seconds after which the run stops with :class:`PseudoLabelError` instead of
            spinning on (checked after every slice, through the progress callback every method calls).
    """
    arr, spacing = _as_image(image)
    if arr.ndim != 3:
        raise AnnotationError(f"pseudo-labels need a 3D image, got {arr.ndim}D")
    ann.validate(arr.shape)
    if not 0.0 <= float(threshold) <= 1.0:
        raise AnnotationError(f"the confidence threshold must lie in [0, 1], got {threshold}")
    if method == "auto":
        method = DEFAULT_METHOD
    fn = PSEUDO_METHODS.get(method)
    progress = _bounded(progress, time_limit)
    out = fn(arr, ann, spacing=spacing, backend=backend, progress=progress, **options)
    out.info["threshold"] = float(threshold)
    out.info.setdefault("method", method)
    return out
