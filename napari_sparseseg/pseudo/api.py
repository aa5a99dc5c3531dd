"""``make_pseudo_labels``: one entry point for every pseudo-label method (CLI, widget, trainer)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..annotations.sparse import SparseAnnotation
from ..errors import AnnotationError
from ..io.volume import Volume
from .types import PseudoLabels
from .walker import random_walker_pseudo

#: methods accepted by :func:`make_pseudo_labels`; ``"auto"`` picks the best measured one
#: (see bench/pseudo_results.md)
METHODS: tuple[str, ...] = ("auto", "random-walker", "random-walker-nearest", "random-walker-ignore",
                            "sam", "fusion")
#: the best measured (bench/pseudo_results.md): walker+SAM fusion beat the walker on ACDC (20 volumes,
#: human scribbles), brain tumour and hippocampus (3 labelled slices)
DEFAULT_METHOD = "fusion"
DEFAULT_THRESHOLD = 0.5


def _as_image(image: Volume | np.ndarray) -> tuple[np.ndarray, tuple[float, float, float]]:
    if isinstance(image, Volume):
        return np.asarray(image.array), image.spacing
    arr = np.asarray(image)
    return arr, (1.0, 1.0, 1.0)


def make_pseudo_labels(
    image: Volume | np.ndarray,
    ann: SparseAnnotation,
    method: str = "auto",
    *,
    backend: Any = None,
    threshold: float = DEFAULT_THRESHOLD,
    progress: Callable[[int, int], None] | None = None,
    **options: Any,
) -> PseudoLabels:
    """Dense pseudo-labels + per-voxel confidence from sparse marks, with the marks mixed in.

    Args:
        image: the 3D image (a :class:`Volume` gives the voxel spacing to the 3D walker).
        ann: the sparse marks (0 = unmarked, classes > 0, ``ann.background_label``).
        method: one of :data:`METHODS`.
        backend: a SAM backend or engine (only for the SAM-based methods; default LiteMedSAM).
        threshold: recorded in ``info``; the caller applies it with ``PseudoLabels.confident(t)``.
        progress: ``progress(done, total)`` callback (for the widget's progress bar).
    """
    arr, spacing = _as_image(image)
    if arr.ndim != 3:
        raise AnnotationError(f"pseudo-labels need a 3D image, got {arr.ndim}D")
    ann.validate(arr.shape)
    if method not in METHODS:
        raise AnnotationError(f"unknown pseudo-label method {method!r}; choose one of {', '.join(METHODS)}")
    if method == "auto":
        method = DEFAULT_METHOD
    if method.startswith("random-walker"):
        options.pop("cache_dir", None)  # the walker needs no embeddings
        unmarked = {"random-walker": "walker3d", "random-walker-nearest": "nearest",
                    "random-walker-ignore": "ignore"}[method]
        out = random_walker_pseudo(arr, ann, unmarked=unmarked, spacing=spacing, progress=progress,
                                   **options)
    else:
        from .sam_fusion import sam_pseudo  # heavy (torch) import only when asked

        out = sam_pseudo(arr, ann, method=method, backend=backend, spacing=spacing, progress=progress,
                         **options)
    out.info["threshold"] = float(threshold)
    out.info.setdefault("method", method)
    return out
