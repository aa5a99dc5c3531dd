"""Intensity scaling to [0, 1] shared by the walker and the SAM backends (the trainer standardises
instead: :func:`napari_sparseseg.training.data.percentile_zscore`)."""

from __future__ import annotations

import numpy as np


def percentile_unit_range(image: np.ndarray, lo: float = 0.5, hi: float = 99.5) -> np.ndarray:
    """Robust [0, 1] scaling by percentiles, computed over the whole volume.

    Why per volume and not per slice: a slice that holds only background would otherwise be stretched
    to full contrast and look like tissue to the walker and to SAM.
    """
    arr = np.asarray(image, dtype=np.float32)
    finite = np.isfinite(arr)
    if not finite.all():
        arr = np.where(finite, arr, 0.0).astype(np.float32)
    a, b = np.percentile(arr, [lo, hi]) if arr.size else (0.0, 1.0)
    if b - a < 1e-6:
        b = a + 1.0
    return np.clip((arr - a) / (b - a), 0.0, 1.0).astype(np.float32)
