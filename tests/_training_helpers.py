"""Tiny synthetic volumes and configs for fast trainer/worker tests (a few seconds of CPU)."""

from __future__ import annotations

import numpy as np

from napari_sparseseg.annotations.sparse import SparseAnnotation
from napari_sparseseg.io.volume import Volume
from napari_sparseseg.training import TrainConfig


def blobs(shape=(6, 32, 32), spacing=(5.0, 1.0, 1.0), seed=0) -> tuple[Volume, np.ndarray]:
    """Two bright discs of different intensity on a noisy background; dense truth 0/1/2."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    truth = np.zeros(shape, np.int16)
    truth[(y - 10) ** 2 + (x - 10) ** 2 < 30] = 1
    truth[(y - 22) ** 2 + (x - 21) ** 2 < 40] = 2
    img = truth * 1.0 + rng.normal(0, 0.2, shape)
    return Volume(img.astype(np.float32), affine=np.diag([*spacing, 1.0])), truth


def marks(truth: np.ndarray, every: int = 7, bg: int = 3) -> SparseAnnotation:
    """Every ``every``-th voxel of the truth marked (background as ``bg``)."""
    m = np.zeros(truth.shape, bool)
    m.reshape(-1)[::every] = True
    return SparseAnnotation.from_dense(truth, m, bg, (1, 2))


def tiny_config(**kw) -> TrainConfig:
    base = dict(batch=2, patch=(16, 16), channels=(4, 8, 16), budget_seconds=60.0, threads=1,
                first_preview_seconds=1e9, preview_every_seconds=1e9, w_consistency=0.0)
    base.update(kw)
    return TrainConfig(**base)
