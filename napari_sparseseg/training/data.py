"""Turn (image, marks, pseudo-labels) into tensors the trainer samples crops from.

Layout: every tensor is ``(C, Z, Y, X)`` on the image grid (array axis 0 = slice axis).  A 2D
network sees slices ``[:, z]``; a 3D network sees sub-volumes.  Class ids are mapped to network
channels: channel 0 = background, channel ``i + 1`` = ``classes[i]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from ..annotations.sparse import IGNORE_INDEX, SparseAnnotation
from ..errors import AnnotationError

PERCENTILES = (0.5, 99.5)


def normalise_intensity(image: np.ndarray, percentiles: Sequence[float] = PERCENTILES) -> tuple[np.ndarray, dict[str, Any]]:
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
    out = np.clip(np.where(finite, arr, lo), lo, hi)
    mean, std = float(out.mean()), float(out.std()) or 1.0
    out = (out - mean) / std
    return out.astype(np.float32), {"method": "percentile_zscore", "percentiles": list(percentiles), "lo": lo, "hi": hi, "mean": mean, "std": std}


def class_to_channel(classes: Sequence[int]) -> dict[int, int]:
    return {int(c): i + 1 for i, c in enumerate(classes)}


def channel_to_class(classes: Sequence[int]) -> np.ndarray:
    """Lookup table: network channel -> label value (channel 0 -> 0)."""
    return np.asarray([0, *[int(c) for c in classes]], dtype=np.int16)


def mark_targets(ann: SparseAnnotation) -> np.ndarray:
    """Channel-index targets from the marks: background 0, class -> channel, unmarked -> IGNORE_INDEX."""
    t = ann.to_targets()
    out = np.full(t.shape, IGNORE_INDEX, dtype=np.int64)
    out[t == 0] = 0
    for c, ch in class_to_channel(ann.classes).items():
        out[t == c] = ch
    return out


def pseudo_prior(pseudo: Any, classes: Sequence[int], shape: Sequence[int]) -> np.ndarray:
    """Per-channel prior probabilities ``(K, Z, Y, X)`` from a PseudoLabels object.

    Uses ``pseudo.probabilities`` when given (channel-first or channel-last, K = classes + 1);
    otherwise spreads the label's confidence: ``conf`` on the label, the rest shared evenly.
    """
    k = len(classes) + 1
    probs = getattr(pseudo, "probabilities", None)
    if probs is not None:
        p = np.asarray(probs, dtype=np.float32)
        if p.shape == (k, *shape):
            return p
        if p.shape == (*shape, k):
            return np.moveaxis(p, -1, 0).copy()
    labels = np.asarray(pseudo.labels)
    conf = np.clip(np.asarray(pseudo.confidence, dtype=np.float32), 0.0, 1.0)
    out = np.empty((k, *shape), dtype=np.float32)
    out[:] = ((1.0 - conf) / k)[None]
    lut = class_to_channel(classes)
    ch = np.zeros(labels.shape, dtype=np.int64)
    for c, i in lut.items():
        ch[labels == c] = i
    np.put_along_axis(out, ch[None], (conf + (1.0 - conf) / k)[None], axis=0)
    return out


def pseudo_targets(pseudo: Any, ann: SparseAnnotation, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Targets + per-voxel weights from pseudo-labels: ignored below ``threshold``; marks win (MIX)."""
    labels = np.asarray(pseudo.labels)
    conf = np.clip(np.asarray(pseudo.confidence, dtype=np.float32), 0.0, 1.0)
    t = np.zeros(labels.shape, dtype=np.int64)
    for c, i in class_to_channel(ann.classes).items():
        t[labels == c] = i
    keep = conf >= threshold
    t[~keep] = IGNORE_INDEX
    w = np.where(keep, conf, 0.0).astype(np.float32)
    marks = mark_targets(ann)
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
                        threshold: float, rng: np.random.Generator, pseudo_targets_too: bool = True) -> TrainingData:
    """The tensors every trainer samples from (the Trainer, the seed-paper methods, cohort pretraining).

    ``norm_image`` is the normalised image; with ``use_prior`` the pseudo-label probabilities become
    extra input channels.  ``pseudo_targets_too=False`` keeps pseudo-labels as input only (cohort
    pretraining, where the annotation is dense and is the only target).
    """
    chans = [norm_image[None]]
    if use_prior:
        if pseudo is None:
            raise AnnotationError("this model takes pseudo-labels as input; pass pseudo-labels too")
        chans.append(pseudo_prior(pseudo, ann.classes, norm_image.shape))
    x = torch.from_numpy(np.concatenate(chans, axis=0).astype(np.float32))
    marks = mark_targets(ann)
    pt = p_t = p_w = None
    if pseudo is not None and pseudo_targets_too:
        pt, pw = pseudo_targets(pseudo, ann, threshold)
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
        for ax, (ctr, size, dim) in enumerate(zip(c, full, (Z, Y, X))):
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
    x = torch.stack(xs)
    m = torch.stack(ms)
    p = torch.stack(ps) if ps else None
    w = torch.stack(ws) if ws else None
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
