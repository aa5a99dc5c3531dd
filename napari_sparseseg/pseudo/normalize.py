"""Intensity normalisation shared by the walker and the SAM backends."""

from __future__ import annotations

import numpy as np


def normalize_intensity(image: np.ndarray, lo: float = 0.5, hi: float = 99.5) -> np.ndarray:
    """Robust [0, 1] scaling by percentiles, computed over the whole volume.

    Why per volume and not per slice: a slice that holds only background would otherwise be stretched
    to full contrast and look like tissue to the walker and to SAM.
    """
    # one float32 copy, scaled in place: float64 temporaries (NumPy promotes an array minus a float64
    # percentile) cost ~2 GB at the peak on a 512 x 512 x 300 scan
    arr = np.array(image, dtype=np.float32, copy=True)
    finite = np.isfinite(arr)
    if not finite.all():
        arr[~finite] = 0.0
    del finite
    a, b = (float(v) for v in np.percentile(arr, [lo, hi])) if arr.size else (0.0, 1.0)
    if b - a < 1e-6:
        b = a + 1.0
    arr -= np.float32(a)
    arr /= np.float32(b - a)
    return np.clip(arr, 0.0, 1.0, out=arr)
