"""Pseudo-labels of a study's scans, made once and cached on disk (npz, no pickle).

Why cache: cohort training is resumable and re-run as marks arrive; a scan's pseudo-labels depend
only on its image, its marks and the method, so an unchanged scan is never walked twice.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..annotations.sparse import SparseAnnotation
from ..io.atomic import atomic_write_bytes
from ..io.volume import Volume
from ..pseudo.types import PseudoLabels


def pseudo_key(image: Volume, ann: SparseAnnotation, method: str) -> str:
    """A content hash of what the pseudo-labels depend on."""
    h = hashlib.sha256()
    h.update(method.encode())
    h.update(str(image.shape).encode())
    arr = np.ascontiguousarray(np.asarray(image.array, dtype=np.float32))
    h.update(arr[:: max(1, arr.shape[0] // 4)].tobytes())  # a few slices are enough to tell scans apart
    h.update(np.ascontiguousarray(ann.labels).tobytes())
    h.update(f"{ann.background_label}:{list(ann.classes)}".encode())
    return h.hexdigest()[:24]


def load_cached(folder: Path | None, key: str, classes: tuple[int, ...]) -> PseudoLabels | None:
    if folder is None:
        return None
    path = Path(folder) / f"{key}.npz"
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            probs = z["probabilities"].astype(np.float32) if "probabilities" in z.files else None
            return PseudoLabels(z["labels"], z["confidence"].astype(np.float32), probs, classes, {"cached": True})
    except (OSError, ValueError, KeyError):
        return None  # a damaged cache entry is recomputed, never trusted


def save_cached(folder: Path | None, key: str, pseudo: PseudoLabels) -> None:
    if folder is None:
        return
    import io

    buf = io.BytesIO()
    arrays = {"labels": pseudo.labels.astype(np.int16), "confidence": pseudo.confidence.astype(np.float16)}
    if pseudo.probabilities is not None:
        arrays["probabilities"] = pseudo.probabilities.astype(np.float16)
    np.savez_compressed(buf, **arrays)
    Path(folder).mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(folder) / f"{key}.npz", buf.getvalue())
