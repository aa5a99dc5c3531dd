"""Intensity scaling to [0, 1] shared by the walker and the SAM backends (the trainer standardises
instead: :func:`napari_sparseseg.training.data.percentile_zscore`)."""

from __future__ import annotations

import numpy as np


def percentile_unit_range(image: np.ndarray, lo: float = 0.5, hi: float = 99.5) -> np.ndarray:
    """Robust [0, 1] scaling by percentiles, computed over the whole volume.

    Why per volume and not per slice: a slice that holds only background would otherwise be stretched
    to full contrast and look like tissue to the walker and to SAM.

    When the percentiles coincide (a mostly empty volume whose structure covers less than
    ``100 - hi`` percent of the voxels), the full min..max range is used instead, so the structure keeps
    its contrast.  A constant volume maps to zeros: there is no contrast to keep, and the walker
    (:func:`~napari_sparseseg.pseudo.walker.walker_probabilities`) handles a zero spread explicitly.
    """
    # one float32 copy, scaled in place: float64 temporaries (NumPy promotes an array minus a float64
    # percentile) cost ~2 GB at the peak on a 512 x 512 x 300 scan
    arr = np.array(image, dtype=np.float32, copy=True)
    finite = np.isfinite(arr)
    if not finite.all():
        arr[~finite] = 0.0
    del finite
    a, b = (float(v) for v in np.percentile(arr, [lo, hi])) if arr.size else (0.0, 1.0)
    if b - a < 1e-6 and arr.size:
        a, b = float(arr.min()), float(arr.max())
    if not b - a >= 1e-6:  # constant (or empty) volume: no contrast at all
        return np.zeros(arr.shape, dtype=np.float32)
    arr -= np.float32(a)
    arr /= np.float32(b - a)
    return np.clip(arr, 0.0, 1.0, out=arr)
