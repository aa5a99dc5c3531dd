"""Metrics against cases computed by hand, and an independent brute-force surface distance."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.distance import cdist

from napari_sparseseg.errors import VolumeError
from napari_sparseseg.evaluate import (
    PeakMemory,
    Timer,
    dice_per_class,
    evaluate_labels,
    mean_metrics,
    surface_distances,
)


def _cube(shape, lo, side, value=1):
    a = np.zeros(shape, dtype=np.uint8)
    a[tuple(slice(l, l + side) for l in lo)] = value
    return a


def test_dice_offset_cubes_by_hand():
    # side-4 cubes shifted by one voxel: overlap 3*4*4 = 48 of 64 each -> Dice 96/128 = 0.75
    a = _cube((10, 10, 10), (2, 2, 2), 4)
    b = _cube((10, 10, 10), (3, 2, 2), 4)
    assert dice_per_class(a, b, [1]) == {1: pytest.approx(0.75)}
    # shifted along two axes: overlap 3*3*4 = 36 -> 72/128
    c = _cube((10, 10, 10), (3, 3, 2), 4)
    assert dice_per_class(a, c)[1] == pytest.approx(72 / 128)


def test_dice_multiclass_and_empty_conventions():
    gt = np.zeros((4, 4, 4), np.int16)
    pred = np.zeros_like(gt)
    gt[0, :2, :2] = 1  # 4 voxels
    pred[0, :2, :1] = 1  # 2 voxels inside -> 2*2/(4+2)
    gt[3, 3, 3] = 2  # class 2 missed entirely
    pred[1, 1, 1] = 3  # class 3: false positive only
    d = dice_per_class(pred, gt, [1, 2, 3, 5])
    assert d[1] == pytest.approx(4 / 6)
    assert d[2] == 0.0 and d[3] == 0.0
    assert math.isnan(d[5])  # absent in both: nothing to measure, excluded (was 1.0, which inflated means)
    assert set(dice_per_class(pred, gt)) == {1, 2, 3}  # default: classes present in either


def test_dice_large_label_ids_match_small_ids():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 3, (6, 7, 8))
    pred = rng.integers(0, 3, (6, 7, 8))
    small = dice_per_class(pred, gt, [1, 2])
    big = dice_per_class(np.where(pred == 2, 30000, pred), np.where(gt == 2, 30000, gt), [1, 30000])
    assert big == pytest.approx({1: small[1], 30000: small[2]})


def test_dice_rejects_other_grid():
    with pytest.raises(VolumeError, match="does not match"):
        dice_per_class(np.zeros((3, 4, 5)), np.zeros((3, 4, 6)))


def test_sheet_shift_along_thick_axis_gives_slice_spacing():
    # one-voxel-thick sheets one slice apart: every surface voxel is exactly one slice (5 mm) away
    sp = (5.0, 1.5, 1.5)
    a = np.zeros((8, 10, 10), np.uint8)
    b = np.zeros_like(a)
    a[2, 2:8, 2:8] = 1
    b[3, 2:8, 2:8] = 1
    hd, asd = surface_distances(a, b, [1], sp)[1]
    assert hd == pytest.approx(5.0)
    assert asd == pytest.approx(5.0)
    # same shift with 1 mm spacing -> 1 mm: spacing is really used
    assert surface_distances(a, b, [1], (1.0, 1.0, 1.0))[1] == pytest.approx((1.0, 1.0))


def test_sheet_shift_in_plane_by_hand():
    # 6x6 sheets shifted by one column (1.5 mm): 30 of 36 voxels coincide, 6 per side are 1.5 mm off.
    # directed 95th percentile of [0]*30 + [1.5]*6 is 1.5; ASSD = (6+6)*1.5 / 72 = 0.25
    sp = (5.0, 1.5, 1.5)
    a = np.zeros((8, 10, 10), np.uint8)
    b = np.zeros_like(a)
    a[2, 2:8, 2:8] = 1
    b[2, 2:8, 3:9] = 1
    hd, asd = surface_distances(a, b, [1], sp)[1]
    assert hd == pytest.approx(1.5)
    assert asd == pytest.approx(0.25)


def _brute_force(a: np.ndarray, b: np.ndarray, sp) -> tuple[float, float]:
    """Independent reference: edge = mask minus its 6-connected erosion, exhaustive distances."""
    ea = np.argwhere(a & ~ndimage.binary_erosion(a)) * np.asarray(sp)
    eb = np.argwhere(b & ~ndimage.binary_erosion(b)) * np.asarray(sp)
    d = cdist(ea, eb)
    dab, dba = d.min(axis=1), d.min(axis=0)
    hd95 = max(np.percentile(dab, 95), np.percentile(dba, 95))
    return float(hd95), float(np.concatenate([dab, dba]).mean())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_surface_distances_match_brute_force_on_random_blobs(seed):
    rng = np.random.default_rng(seed)
    sp = (4.0, 1.25, 0.8)
    shape = (12, 24, 24)
    a = ndimage.gaussian_filter(rng.random(shape), 2) > 0.5
    b = ndimage.gaussian_filter(rng.random(shape), 2) > 0.5
    gt = a.astype(np.int16)
    pred = b.astype(np.int16)
    hd, asd = surface_distances(pred, gt, [1], sp)[1]
    ref_hd, ref_asd = _brute_force(b, a, sp)
    assert hd == pytest.approx(ref_hd, rel=1e-5)
    assert asd == pytest.approx(ref_asd, rel=1e-5)


def test_distance_empty_conventions_and_means():
    gt = np.zeros((6, 6, 6), np.int16)
    pred = np.zeros_like(gt)
    gt[1:3, 1:3, 1:3] = 1
    pred[1:3, 1:3, 1:3] = 1  # perfect
    gt[4, 4, 4] = 2  # missed
    pred[0, 5, 5] = 3  # false positive
    rec = evaluate_labels(pred, gt, classes=[1, 2, 3, 4], spacing=(2.0, 1.0, 1.0), class_names={1: "RV"})
    c = rec["classes"]
    assert c[1]["name"] == "RV" and c[1]["dice"] == 1.0 and c[1]["hd95_mm"] == 0.0
    assert c[2]["dice"] == 0.0 and math.isnan(c[2]["hd95_mm"]) and math.isnan(c[2]["assd_mm"])
    assert c[3]["dice"] == 0.0 and math.isnan(c[3]["hd95_mm"])
    assert math.isnan(c[4]["dice"]) and math.isnan(c[4]["hd95_mm"]) and math.isnan(c[4]["assd_mm"])
    assert rec["undefined_distances"] == 3 and rec["absent_classes"] == [4]
    assert rec["mean"]["dice"] == pytest.approx(1 / 3)  # misses count as 0, the absent class is left out
    assert rec["mean"]["hd95_mm"] == 0.0  # NaN distances are left out of the mean
    assert math.isnan(mean_metrics({1: {"dice": 0.0, "hd95_mm": math.nan, "assd_mm": math.nan}})["hd95_mm"])


def test_timer_and_peak_memory_see_an_allocation():
    with Timer() as t:
        time.sleep(0.05)
    assert 0.04 < t.seconds < 5
    with PeakMemory(interval=0.001) as m:
        x = np.ones(200 * 1024 * 1024 // 8)  # 200 MiB, touched
        time.sleep(0.05)
        del x
    assert m.delta_rss_bytes > 150 * 1024 * 1024
    assert m.lifetime_max_rss_bytes >= m.peak_rss_bytes * 0.9
    d = m.as_dict()
    assert d["delta_rss_mib"] > 150


def test_evaluate_package_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, napari_sparseseg.evaluate as e; e.dice_per_class([[1]], [[1]]); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
