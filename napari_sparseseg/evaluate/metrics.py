"""Per-class overlap and surface metrics in millimetres.

Dice is plain numpy (fast, no torch/MONAI import, so benchmarks can call it in tight loops).  HD95 and
ASSD use MONAI's implementations (:func:`monai.metrics.compute_hausdorff_distance` with
``percentile=95`` and :func:`monai.metrics.compute_average_surface_distance` with ``symmetric=True``),
given the voxel spacing, so the numbers are comparable with the MONAI-based literature.  MONAI is
imported lazily inside :func:`surface_distances` because importing it costs seconds.

Empty-mask convention (the BraTS / Medical Segmentation Decathlon one, stated here because papers
differ):

==========================  ======  ===================  ==========================================
ground truth / prediction   Dice    HD95 / ASSD          why
==========================  ======  ===================  ==========================================
both present                usual   usual (mm)
both empty                  NaN     NaN                  nothing to measure: the class is excluded
GT empty, prediction not    0.0     NaN                  false positive; no reference surface
GT present, prediction not  0.0     NaN                  missed class; no predicted surface
==========================  ======  ===================  ==========================================

A class absent from both maps scores NaN, not 1.0: a perfect score for a class nobody drew or
predicted would inflate the mean Dice of every case that lacks it (a structure not in this scan, a
class id mistyped on the command line).  Means over classes (:func:`mean_metrics`) use ``nanmean``:
absent classes and NaN distances are left out, while every miss or false positive still counts as
Dice 0; :func:`evaluate_labels` reports how many classes were absent and how many distances were
undefined, so nothing is hidden.  MONAI's HD95 is the maximum of the two
directed 95th percentiles (not the percentile of the pooled distances, as in medpy).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..errors import VolumeError


def _check_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise VolumeError(f"prediction grid {pred.shape} does not match the ground-truth grid {gt.shape}")
    return pred, gt


def present_classes(*label_maps: np.ndarray) -> tuple[int, ...]:
    """Sorted positive label values present in any of the maps (0 = background is never a class)."""
    vals: set[int] = set()
    for m in label_maps:
        vals.update(int(v) for v in np.unique(np.asarray(m)) if v > 0)
    return tuple(sorted(vals))


def dice_per_class(pred: np.ndarray, gt: np.ndarray, classes: Iterable[int] | None = None) -> dict[int, float]:
    """Dice ``2|P∩G| / (|P|+|G|)`` per class; both empty -> NaN (see the module docstring).

    ``classes`` defaults to the positive values in either map.  One pass of ``bincount`` over the
    joint labels, so it costs about one read of each array whatever the number of classes.
    """
    pred, gt = _check_pair(pred, gt)
    cls = tuple(int(c) for c in classes) if classes is not None else present_classes(pred, gt)
    if not cls:
        return {}
    n = max(max(cls), int(pred.max(initial=0)), int(gt.max(initial=0))) + 1
    p = pred.astype(np.int64, copy=False).ravel()
    g = gt.astype(np.int64, copy=False).ravel()
    if p.size and (p.min() < 0 or g.min() < 0):
        raise VolumeError("label maps must not hold negative values")
    if n > 512:  # sparse, large label ids: a joint histogram would be n*n; count per class instead
        out_big: dict[int, float] = {}
        for c in cls:
            pc, gc = p == c, g == c
            denom = int(pc.sum()) + int(gc.sum())
            out_big[c] = math.nan if denom == 0 else float(2.0 * np.count_nonzero(pc & gc) / denom)
        return out_big
    joint = np.bincount(p * n + g, minlength=n * n).reshape(n, n)
    npred = joint.sum(axis=1)
    ngt = joint.sum(axis=0)
    out: dict[int, float] = {}
    for c in cls:
        denom = npred[c] + ngt[c]
        out[c] = math.nan if denom == 0 else float(2.0 * joint[c, c] / denom)
    return out


def surface_distances(
    pred: np.ndarray,
    gt: np.ndarray,
    classes: Iterable[int] | None = None,
    spacing: Sequence[float] | None = None,
) -> dict[int, tuple[float, float]]:
    """``{class: (HD95_mm, ASSD_mm)}`` with MONAI, following the empty-mask convention above.

    ``spacing`` is the voxel size per array axis in mm (``Volume.spacing``); ``None`` means 1 mm.
    """
    pred, gt = _check_pair(pred, gt)
    cls = tuple(int(c) for c in classes) if classes is not None else present_classes(pred, gt)
    sp = [1.0] * pred.ndim if spacing is None else [float(s) for s in spacing]
    if len(sp) != pred.ndim:
        raise VolumeError(f"spacing has {len(sp)} values for a {pred.ndim}D label map")
    out: dict[int, tuple[float, float]] = {}
    todo = []
    for c in cls:
        pc, gc = pred == c, gt == c
        has_p, has_g = bool(pc.any()), bool(gc.any())
        if not has_p and not has_g:
            out[c] = (math.nan, math.nan)  # absent from both: excluded, like its Dice
        elif has_p != has_g:
            out[c] = (math.nan, math.nan)
        else:
            todo.append((c, pc, gc))
    if todo:
        import torch
        from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

        for c, pc, gc in todo:
            # crop to the joint bounding box (+1 voxel so edges stay edges): same distances, less work
            idx = np.argwhere(pc | gc)
            lo = np.maximum(idx.min(axis=0) - 1, 0)
            hi = idx.max(axis=0) + 2
            sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
            yp = torch.from_numpy(np.ascontiguousarray(pc[sl]))[None, None]
            yg = torch.from_numpy(np.ascontiguousarray(gc[sl]))[None, None]
            with warnings.catch_warnings():  # MONAI 1.5+ warns about its own deprecated internal argument
                warnings.simplefilter("ignore", FutureWarning)
                hd = compute_hausdorff_distance(yp, yg, include_background=True, percentile=95, spacing=sp)
                asd = compute_average_surface_distance(
                    yp, yg, include_background=True, symmetric=True, spacing=sp
                )
            out[c] = (float(hd.reshape(-1)[0]), float(asd.reshape(-1)[0]))
    return out


def evaluate_labels(
    pred: np.ndarray,
    gt: np.ndarray,
    classes: Iterable[int] | None = None,
    spacing: Sequence[float] | None = None,
    class_names: dict[int, str] | None = None,
    distances: bool = True,
) -> dict[str, Any]:
    """Per-class Dice, HD95 and ASSD (mm) plus their means: the record ``sparseseg evaluate`` prints.

    Returns ``{"classes": {c: {"name", "dice", "hd95_mm", "assd_mm", "voxels_pred", "voxels_gt"}},
    "mean": {...}, "spacing_mm": [...], "undefined_distances": n}``.  ``classes`` defaults to the
    classes present in the ground truth or the prediction.
    """
    pred, gt = _check_pair(pred, gt)
    cls = tuple(int(c) for c in classes) if classes is not None else present_classes(pred, gt)
    dice = dice_per_class(pred, gt, cls)
    dist = surface_distances(pred, gt, cls, spacing) if distances else {c: (math.nan, math.nan) for c in cls}
    names = class_names or {}
    per: dict[int, dict[str, Any]] = {}
    for c in cls:
        per[c] = {
            "name": names.get(c, f"class {c}"),
            "dice": dice[c],
            "hd95_mm": dist[c][0],
            "assd_mm": dist[c][1],
            "voxels_pred": int((pred == c).sum()),
            "voxels_gt": int((gt == c).sum()),
        }
    return {
        "classes": per,
        "mean": mean_metrics(per),
        "spacing_mm": [float(s) for s in (spacing if spacing is not None else [1.0] * pred.ndim)],
        "undefined_distances": int(sum(1 for r in per.values() if math.isnan(r["hd95_mm"]))) if distances else 0,
        "absent_classes": [c for c, r in per.items() if r["voxels_pred"] == 0 and r["voxels_gt"] == 0],
    }


def mean_metrics(per_class: dict[int, dict[str, Any]]) -> dict[str, float]:
    """Class means with ``nanmean``: absent classes and undefined distances are left out (NaN when none is left)."""
    out: dict[str, float] = {}
    for key in ("dice", "hd95_mm", "assd_mm"):
        vals = np.array([r[key] for r in per_class.values()], dtype=float)
        finite = vals[~np.isnan(vals)]
        out[key] = float(finite.mean()) if finite.size else math.nan
    return out
