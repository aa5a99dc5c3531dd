"""Turn (image, marks, pseudo-labels) into tensors the trainer samples crops from.

Layout: every tensor is ``(C, Z, Y, X)`` on the image grid (array axis 0 = slice axis).  A 2D
network sees slices ``[:, z]``; a 3D network sees sub-volumes.  Class ids are mapped to network
channels: channel 0 = background, channel ``i + 1`` = ``classes[i]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..annotations.sparse import IGNORE_INDEX, SparseAnnotation
from ..errors import AnnotationError

PERCENTILES = (0.5, 99.5)


def percentile_zscore(image: np.ndarray, percentiles: Sequence[float] = PERCENTILES) -> tuple[np.ndarray, dict[str, Any]]:
    """Robust per-volume normalisation: clip to percentiles, then zero mean / unit variance.

    Why per volume: scanners and the shared data sets differ wildly (uint8 vs float up to 4000,
    ACDC pre-scaled to [0, 1]); percentiles ignore the few hot voxels that would squash the rest.
    """
    arr = np.asarray(image, dtype=np.float32)
    finite = np.isfinite(arr)
    vals = arr[finite] if not finite.all() else arr
    lo, hi = (float(v) for v in np.percentile(vals, list(percentiles))) if vals.size else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    out = np.where(finite, arr, np.float32(lo)).astype(np.float32, copy=False)  # one copy, then in place
    np.clip(out, lo, hi, out=out)
    mean, std = float(out.mean()), float(out.std()) or 1.0
    out -= mean
    out /= std
    return out, {"method": "percentile_zscore", "percentiles": list(percentiles), "lo": lo, "hi": hi, "mean": mean, "std": std}


def class_to_channel(classes: Sequence[int]) -> dict[int, int]:
    return {int(c): i + 1 for i, c in enumerate(classes)}


def channel_to_class(classes: Sequence[int]) -> np.ndarray:
    """Lookup table: network channel -> label value (channel 0 -> 0)."""
    return np.asarray([0, *[int(c) for c in classes]], dtype=np.int16)


def mark_targets(ann: SparseAnnotation, dtype: Any = np.int64) -> np.ndarray:
    """Channel-index targets from the marks: background 0, class -> channel, unmarked -> IGNORE_INDEX.

    ``dtype=np.int8`` (any class count below 127) keeps a 512 x 512 x 300 map at 79 MB instead of 630.
    """
    labels = np.asarray(ann.labels)
    out = np.full(labels.shape, IGNORE_INDEX, dtype=dtype)
    out[labels == ann.background_label] = 0
    for c, ch in class_to_channel(ann.classes).items():
        out[labels == c] = ch
    return out


def pseudo_prior(pseudo: Any, classes: Sequence[int], shape: Sequence[int], out: np.ndarray | None = None) -> np.ndarray:
    """Per-channel prior probabilities ``(K, Z, Y, X)`` from a PseudoLabels object.

    Uses ``pseudo.probabilities`` when given (channel-first or channel-last, K = classes + 1);
    otherwise spreads the label's confidence: ``conf`` on the label, the rest shared evenly.
    ``out``: a float32 array to fill (no full-size temporary).
    """
    k = len(classes) + 1
    probs = getattr(pseudo, "probabilities", None)
    if probs is not None:
        p = np.asarray(probs)
        if p.shape == (*shape, k) and p.shape != (k, *shape):
            p = np.moveaxis(p, -1, 0)
        if p.shape == (k, *shape):
            if out is None:
                return np.array(p, dtype=np.float32, copy=p.dtype != np.float32 or p.base is not None)
            out[...] = p
            return out
    labels = np.asarray(pseudo.labels)
    conf = np.clip(np.asarray(pseudo.confidence, dtype=np.float32), 0.0, 1.0)
    if out is None:
        out = np.empty((k, *shape), dtype=np.float32)
    out[:] = ((1.0 - conf) / k)[None]
    lut = class_to_channel(classes)
    ch = np.zeros(labels.shape, dtype=np.int64)
    for c, i in lut.items():
        ch[labels == c] = i
    np.put_along_axis(out, ch[None], (conf + (1.0 - conf) / k)[None], axis=0)
    return out


def pseudo_targets(pseudo: Any, ann: SparseAnnotation, threshold: float, dtype: Any = np.int64,
                   weight_dtype: Any = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Targets + per-voxel weights from pseudo-labels: ignored below ``threshold``; marks win (MIX)."""
    labels = np.asarray(pseudo.labels)
    conf = np.asarray(pseudo.confidence)
    t = np.zeros(labels.shape, dtype=dtype)
    for c, i in class_to_channel(ann.classes).items():
        t[labels == c] = i
    keep = conf >= threshold
    t[~keep] = IGNORE_INDEX
    w = np.zeros(labels.shape, dtype=weight_dtype)
    np.clip(conf, 0.0, 1.0, out=w, where=keep, casting="same_kind")
    marks = mark_targets(ann, dtype)
    m = marks != IGNORE_INDEX
    t[m] = marks[m]
    w[m] = 1.0
    return t, w


@dataclass
class TrainingData:
    """Tensors on the image grid, kept on the CPU; crops move to the training device."""

    x: torch.Tensor  # (C, Z, Y, X) float32: normalised image (+ prior channels)
    marks: torch.Tensor  # (Z, Y, X) int64 channel targets, IGNORE_INDEX unmarked
    pseudo: torch.Tensor | None  # (Z, Y, X) int64 targets, IGNORE_INDEX below threshold
    weight: torch.Tensor | None  # (Z, Y, X) float32 confidence weights
    centres: np.ndarray  # (N, 3) voxel indices crops are centred on (marks first)
    centre_weights: np.ndarray  # sampling probabilities for ``centres``


def sampling_centres(marks: np.ndarray, pseudo: np.ndarray | None, rng: np.random.Generator, max_points: int = 20000) -> tuple[np.ndarray, np.ndarray]:
    """Voxels to centre crops on: marked voxels (foreground weighted up) and confident foreground.

    Why: most of a scan is background far from anything the user cares about; crops around the
    marks and the pseudo-labelled structures spend the small compute budget where the answer is.
    """
    groups = [np.argwhere(marks > 0), np.argwhere(marks == 0)]
    if pseudo is not None:
        groups.append(np.argwhere((pseudo > 0) & (marks == IGNORE_INDEX)))
    shares = [0.45, 0.2, 0.35][: len(groups)]
    pts, wts = [], []
    for g, share in zip(groups, shares):
        if len(g) == 0:
            continue
        if len(g) > max_points:
            g = g[rng.choice(len(g), max_points, replace=False)]
        pts.append(g)
        wts.append(np.full(len(g), share / len(g)))
    if not pts:
        grid = np.argwhere(np.ones(marks.shape, dtype=bool)[:: max(1, marks.shape[0] // 4), ::8, ::8])
        return grid, np.full(len(grid), 1.0 / len(grid))
    p = np.concatenate(pts)
    w = np.concatenate(wts)
    return p, w / w.sum()


def build_training_data(norm_image: np.ndarray, ann: SparseAnnotation, pseudo: Any | None, use_prior: bool,
                        threshold: float, rng: np.random.Generator, pseudo_targets_too: bool = True,
                        compact: bool = False) -> TrainingData:
    """The tensors every trainer samples from (the Trainer, the seed-paper methods, cohort pretraining).

    ``norm_image`` is the normalised image; with ``use_prior`` the pseudo-label probabilities become
    extra input channels.  ``pseudo_targets_too=False`` keeps pseudo-labels as input only (cohort
    pretraining, where the annotation is dense and is the only target).  ``compact``: int8 targets
    and float16 weights (:func:`crop_batch` widens each crop), 1/8 and 1/2 of the int64/float32
    size -- for callers that only read the data through :func:`crop_batch`.
    """
    k_extra = len(ann.classes) + 1 if use_prior else 0
    if use_prior and pseudo is None:
        raise AnnotationError("this model takes pseudo-labels as input; pass pseudo-labels too")
    xa = np.empty((1 + k_extra, *norm_image.shape), dtype=np.float32)  # filled in place: no concatenation copy
    xa[0] = norm_image
    if use_prior:
        pseudo_prior(pseudo, ann.classes, norm_image.shape, out=xa[1:])
    x = torch.from_numpy(xa)
    tdt, wdt = (np.int8, np.float16) if compact else (np.int64, np.float32)
    marks = mark_targets(ann, tdt)
    pt = p_t = p_w = None
    if pseudo is not None and pseudo_targets_too:
        pt, pw = pseudo_targets(pseudo, ann, threshold, tdt, wdt)
        p_t, p_w = torch.from_numpy(pt), torch.from_numpy(pw)
    centres, cw = sampling_centres(marks, pt, rng)
    return TrainingData(x=x, marks=torch.from_numpy(marks), pseudo=p_t, weight=p_w, centres=centres, centre_weights=cw)


def crop_batch(data: TrainingData, patch: Sequence[int], batch: int, dims: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Sample ``batch`` crops.  2D: patch (Y, X) on one slice -> (B, C, Y, X); 3D: (B, C, Z, Y, X).

    Crops that stick out of the image are padded (image 0, targets ignored).
    """
    C, Z, Y, X = data.x.shape
    idx = rng.choice(len(data.centres), size=batch, p=data.centre_weights)
    full = (1, *patch) if dims == 2 else tuple(patch)
    xs, ms, ps, ws = [], [], [], []
    for c in data.centres[idx]:
        sl = []
        pads = []
        for _ax, (ctr, size, dim) in enumerate(zip(c, full, (Z, Y, X))):
            start = int(ctr) - size // 2 + int(rng.integers(-size // 4, size // 4 + 1)) if size > 1 else int(ctr)
            lo, hi = max(start, 0), min(start + size, dim)
            sl.append(slice(lo, hi))
            pads.append((lo - start, start + size - hi))
        s = tuple(sl)
        xs.append(_pad(data.x[(slice(None), *s)], pads, 0.0))
        ms.append(_pad(data.marks[s], pads, IGNORE_INDEX))
        if data.pseudo is not None and data.weight is not None:
            ps.append(_pad(data.pseudo[s], pads, IGNORE_INDEX))
            ws.append(_pad(data.weight[s], pads, 0.0))
    x = torch.stack(xs).float()
    m = torch.stack(ms).long()  # compact (int8 / float16) storage is widened per crop
    p = torch.stack(ps).long() if ps else None
    w = torch.stack(ws).float() if ws else None
    if dims == 2:  # drop the singleton slice axis
        x, m = x[:, :, 0], m[:, 0]
        p = p[:, 0] if p is not None else None
        w = w[:, 0] if w is not None else None
    return x, m, p, w


def _pad(t: torch.Tensor, pads: list[tuple[int, int]], value: float) -> torch.Tensor:
    if not any(a or b for a, b in pads):
        return t
    flat: list[int] = []
    for a, b in reversed(pads):  # F.pad wants last axis first
        flat += [a, b]
    return torch.nn.functional.pad(t, flat, value=value)
