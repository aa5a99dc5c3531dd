"""The slices of many scans as one pool of 2D training crops.

Layout: each scan keeps compact tensors on its own grid (array axis 0 = slice axis): the normalised
image (float16), the prior = pseudo-label probabilities (uint8, probability x 255), the marks and the
pseudo-label targets as channel indices (uint8, 255 = ignore) and the pseudo-label confidence
(uint8).  160 ACDC volumes take ~0.5 GB this way instead of ~4 GB in float32 / int64.

Why 2D slices across scans: the published scribble-supervised results on ACDC are 2D networks
trained on ~70 patients; cine MRI has 6-17 thick slices, too few for a 3D network to pool over, and
a slice pool lets a study of differently sized scans share one batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..annotations.sparse import IGNORE_INDEX, SparseAnnotation
from ..io.volume import Volume
from ..pseudo.types import PseudoLabels
from ..training.data import class_to_channel, mark_targets, percentile_zscore, pseudo_prior

IGNORE_U8 = 255


@dataclass
class CohortScan:
    """One scan of a study: its image, its sparse marks (None = unmarked) and optional pseudo-labels."""

    image: Volume
    annotation: SparseAnnotation | None
    name: str = ""
    pseudo: PseudoLabels | None = None

    @property
    def marked(self) -> bool:
        return self.annotation is not None and bool(self.annotation.marked.any())


def _u8_targets(t: np.ndarray) -> np.ndarray:
    out = np.where(t == IGNORE_INDEX, IGNORE_U8, t)
    return out.astype(np.uint8)


class ScanTensors:
    """Compact training tensors of one marked scan (see the module docstring)."""

    def __init__(self, scan: CohortScan, classes: Sequence[int], threshold: float) -> None:
        ann = scan.annotation
        assert ann is not None
        self.name = scan.name or (scan.image.name or "")
        self.classes = tuple(int(c) for c in classes)
        norm, _ = percentile_zscore(scan.image.array)
        self.image = torch.from_numpy(norm.astype(np.float16))
        self.marks = torch.from_numpy(_u8_targets(mark_targets(ann)))
        self.threshold = float(threshold)
        self.prior: torch.Tensor | None = None
        self.pseudo: torch.Tensor | None = None
        self.weight: torch.Tensor | None = None
        if scan.pseudo is not None:
            prob = pseudo_prior(scan.pseudo, self.classes, norm.shape)
            self.set_pseudo(prob, ann, prior_too=True)
        marked = (self.marks != IGNORE_U8).reshape(self.marks.shape[0], -1).any(1).numpy()
        self.slices = np.flatnonzero(marked)
        fg = ((self.marks > 0) & (self.marks != IGNORE_U8)).numpy()
        self.fg_points = np.argwhere(fg)  # crops are centred on foreground marks most of the time
        self._ann = ann

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.image.shape)  # type: ignore[return-value]

    def set_pseudo(self, prob: np.ndarray, ann: SparseAnnotation | None = None, prior_too: bool = False) -> None:
        """Targets (argmax where max prob >= threshold; marks win) and weights from ``(K, Z, Y, X)`` probabilities."""
        ann = ann if ann is not None else self._ann
        prob = np.asarray(prob, dtype=np.float32)
        conf = prob.max(0)
        t = prob.argmax(0).astype(np.int64)
        t[conf < self.threshold] = IGNORE_INDEX
        marks = mark_targets(ann)
        m = marks != IGNORE_INDEX
        t[m] = marks[m]
        conf = np.where(m, 1.0, np.where(conf >= self.threshold, conf, 0.0))
        self.pseudo = torch.from_numpy(_u8_targets(t))
        self.weight = torch.from_numpy(np.round(conf * 255).astype(np.uint8))
        if prior_too:
            self.prior = torch.from_numpy(np.round(np.clip(prob, 0, 1) * 255).astype(np.uint8))

    def prior_float(self) -> torch.Tensor | None:
        return None if self.prior is None else self.prior.float() / 255.0

    def nbytes(self) -> int:
        ts = [self.image, self.marks, self.prior, self.pseudo, self.weight]
        return int(sum(t.numel() * t.element_size() for t in ts if t is not None))


def uniform_prior(k: int, shape: Sequence[int]) -> torch.Tensor:
    """The "no prior" input: every class equally likely (what a scan without marks gets)."""
    return torch.full((k, *shape), 1.0 / k)


def _crop2d(t: torch.Tensor, y0: int, x0: int, size: tuple[int, int], fill: float) -> torch.Tensor:
    """``t[..., y0:y0+h, x0:x0+w]`` padded with ``fill`` where the window leaves the slice."""
    h, w = size
    Y, X = t.shape[-2:]
    out = torch.full((*t.shape[:-2], h, w), fill, dtype=t.dtype)
    ys, xs = max(y0, 0), max(x0, 0)
    ye, xe = min(y0 + h, Y), min(x0 + w, X)
    if ye > ys and xe > xs:
        out[..., ys - y0 : ye - y0, xs - x0 : xe - x0] = t[..., ys:ye, xs:xe]
    return out


def sample_batch(scans: Sequence[ScanTensors], k: int, patch: tuple[int, int], batch: int,
                 prior_dropout: float, rng: np.random.Generator) -> dict[str, torch.Tensor | None]:
    """A batch of 2D crops from marked slices of randomly drawn scans.

    Returns ``x`` (B, 1 + K, H, W) float32 (image + prior), ``marks`` and ``pseudo`` (B, H, W) int64
    channel targets with IGNORE_INDEX, ``weight`` (B, H, W) float32 confidence (or None when no scan
    has pseudo-labels), and ``has_prior`` (B,) bools.
    """
    xs, ms, ps, ws, hp = [], [], [], [], []
    with_pseudo = any(s.pseudo is not None for s in scans)
    for _ in range(batch):
        s = scans[int(rng.integers(len(scans)))]
        Z, Y, X = s.shape
        if len(s.fg_points) and rng.random() < 0.8:
            z, cy, cx = s.fg_points[int(rng.integers(len(s.fg_points)))]
        else:
            z = int(rng.choice(s.slices)) if len(s.slices) else int(rng.integers(Z))
            cy, cx = int(rng.integers(Y)), int(rng.integers(X))
        h, w = patch
        y0 = int(cy) - h // 2 + int(rng.integers(-h // 4, h // 4 + 1))
        x0 = int(cx) - w // 2 + int(rng.integers(-w // 4, w // 4 + 1))
        img = _crop2d(s.image[z].float(), y0, x0, patch, 0.0)
        use_prior = s.prior is not None and rng.random() >= prior_dropout
        if use_prior:
            prior = _crop2d(s.prior[:, z].float() / 255.0, y0, x0, patch, 0.0)  # type: ignore[index]
            # outside the slice: uniform, like a scan without marks
            outside = prior.sum(0, keepdim=True) == 0
            prior = torch.where(outside, torch.full_like(prior, 1.0 / k), prior)
        else:
            prior = uniform_prior(k, patch)
        xs.append(torch.cat([img[None], prior]))
        hp.append(use_prior)
        ms.append(_crop2d(s.marks[z], y0, x0, patch, IGNORE_U8))
        if with_pseudo:
            if s.pseudo is not None and s.weight is not None:
                ps.append(_crop2d(s.pseudo[z], y0, x0, patch, IGNORE_U8))
                ws.append(_crop2d(s.weight[z], y0, x0, patch, 0))
            else:
                ps.append(torch.full(patch, IGNORE_U8, dtype=torch.uint8))
                ws.append(torch.zeros(patch, dtype=torch.uint8))

    def targets(lst: list[torch.Tensor]) -> torch.Tensor:
        t = torch.stack(lst).long()
        t[t == IGNORE_U8] = IGNORE_INDEX
        return t

    return {
        "x": torch.stack(xs),
        "marks": targets(ms),
        "pseudo": targets(ps) if with_pseudo else None,
        "weight": (torch.stack(ws).float() / 255.0) if with_pseudo else None,
        "has_prior": torch.tensor(hp),
    }


__all__ = ["CohortScan", "ScanTensors", "sample_batch", "uniform_prior", "class_to_channel"]
