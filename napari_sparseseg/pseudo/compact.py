"""Volume-sized reductions without volume-sized int64 temporaries.

``probs.argmax(0)`` on a ``(K, 300, 512, 512)`` array allocates a 630 MB int64 index map before the
label lookup turns it into 157 MB of int16; doing it a few slices at a time keeps the same result
with a temporary of a few MB.  Used wherever pseudo-labels of whole scans are made.
"""

from __future__ import annotations

import numpy as np

CHUNK = 8


def argmax_labels(probs: np.ndarray, lut: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
    """``lut[probs.argmax(0)]`` (``probs`` channel-first, slices along axis 1), computed in slice chunks."""
    lut = np.asarray(lut)
    out = np.empty(probs.shape[1:], dtype=lut.dtype)
    for a in range(0, probs.shape[1], chunk):
        out[a : a + chunk] = lut[probs[:, a : a + chunk].argmax(0)]
    return out
