"""A small synthetic study for cohort tests: scans that share an anatomy but differ in position,
size, contrast and noise, so a network must learn across them (no one scan's marks suffice)."""

from __future__ import annotations

import numpy as np

from napari_sparseseg.annotations.simulate import simulate_slices
from napari_sparseseg.annotations.sparse import SparseAnnotation
from napari_sparseseg.cohort import CohortScan
from napari_sparseseg.io.volume import Volume

BG = 3


def synthetic_scan(seed: int, shape: tuple[int, int, int] = (6, 48, 48)) -> tuple[Volume, np.ndarray]:
    """A bright disc (class 1) inside a darker ring (class 2) on a noisy background."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]]
    cy, cx = shape[1] / 2 + rng.uniform(-6, 6), shape[2] / 2 + rng.uniform(-6, 6)
    r = np.hypot(y - cy, x - cx)
    r_in = rng.uniform(6, 9)
    r_out = r_in + rng.uniform(4, 6)
    gt = np.zeros(shape, np.int16)
    gt[r < r_out] = 2
    gt[r < r_in] = 1
    gain = rng.uniform(0.7, 1.3)
    img = gain * np.where(gt == 1, 1.0, np.where(gt == 2, 0.55, 0.2)) + rng.normal(0, 0.08, shape)
    return Volume(img.astype(np.float32), affine=np.diag([4.0, 1.0, 1.0, 1.0]), name=f"scan{seed}"), gt


def synthetic_study(n: int, seed0: int = 0, k_slices: int = 2) -> list[tuple[CohortScan, np.ndarray]]:
    """``n`` scans, each with ``k_slices`` simulated labelled slices, and their dense truth."""
    out = []
    for i in range(n):
        vol, gt = synthetic_scan(seed0 + i)
        ann = simulate_slices(gt, k_slices, axis=0, background_label=BG, seed=i)
        ann = SparseAnnotation(ann.labels, BG, (1, 2))
        out.append((CohortScan(vol, ann, vol.name), gt))
    return out
