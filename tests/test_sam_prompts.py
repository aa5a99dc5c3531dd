"""Prompts from marks (scribble / points / full slice), nesting detection, propagation stop rule."""

from __future__ import annotations

import numpy as np

from napari_sparseseg.sam import StopRule, detect_nesting, prompts_from_marks


def _disk(shape, cy, cx, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def test_scribble_gives_grown_box_and_signed_points():
    marks = np.zeros((60, 80), np.int16)
    marks[30, 20:41] = 1            # class-1 scribble, x 20..40 on row 30
    marks[10, 60:75] = 5            # background scribble (label 5)
    marks[50, 60:70] = 2            # another class
    pr = prompts_from_marks(marks, (1, 2), 5, box_margin=0.2)
    p = pr[1]
    assert p.kind == "scribble"
    x0, y0, x1, y1 = p.box
    assert x0 < 20 and x1 > 40 and y0 < 30 < y1        # grown around the scribble
    pos = p.points[p.point_labels == 1]
    neg = p.points[p.point_labels == 0]
    assert len(pos) == 3 and np.all(marks[pos[:, 1].astype(int), pos[:, 0].astype(int)] == 1)
    assert len(neg) == 3 and np.all(np.isin(marks[neg[:, 1].astype(int), neg[:, 0].astype(int)], [2, 5]))


def test_points_and_full_slices_are_recognised():
    marks = np.zeros((40, 40), np.int16)
    marks[10, 10] = 1
    marks[20, 25] = 1
    marks[5, 35] = 3                 # a negative point (background label 3)
    pr = prompts_from_marks(marks, (1,), 3)
    assert pr[1].kind == "points" and pr[1].box is None
    assert sorted(map(tuple, pr[1].points[pr[1].point_labels == 1].astype(int))) == [(10, 10), (25, 20)]
    full = np.full((40, 40), 3, np.int16)
    full[_disk((40, 40), 20, 20, 8)] = 1
    pr = prompts_from_marks(full, (1,), 3)
    assert pr[1].kind == "slice" and pr[1].mask.sum() == (full == 1).sum()


def test_nested_ring_is_detected_and_prompted_as_the_filled_union():
    ring_slice = np.zeros((50, 50), np.int16)
    outer = _disk((50, 50), 25, 25, 15)
    inner = _disk((50, 50), 25, 25, 8)
    ring_slice[outer] = 2
    ring_slice[inner] = 3
    dense = np.stack([ring_slice] * 3)
    assert detect_nesting(dense, (2, 3)) == {2: (3,)}
    marks = np.zeros((50, 50), np.int16)
    marks[18:32, 13] = 2            # scribble on the ring (left side)
    marks[18:32, 37] = 2            # and on its right side
    marks[25, 22:28] = 3            # scribble in the cavity
    pr = prompts_from_marks(marks, (2, 3), 9, nesting={2: (3,)})
    assert pr[2].kind == "scribble" and pr[2].box[0] < 13 and pr[2].box[2] > 37
    # negative points of the union never sit on the inner class
    neg = pr[2].points[pr[2].point_labels == 0].astype(int)
    assert not np.any(marks[neg[:, 1], neg[:, 0]] == 3) if len(neg) else True


def test_stop_rule_reasons():
    rule = StopRule(min_area=10, min_score=0.5, max_area_ratio=2.0)
    assert rule.why_stop(100, 5, 0.9) == "vanished"
    assert rule.why_stop(100, 90, 0.3) == "low quality"
    assert rule.why_stop(100, 250, 0.9) == "area jump"
    assert rule.why_stop(100, 45, 0.9) == "area jump"
    assert rule.why_stop(100, 120, 0.9) is None
    assert rule.why_stop(100, 100, 0.79, prev_score=0.96) == "quality drop"
    assert rule.why_stop(100, 100, 0.93, prev_score=0.96) is None


def test_propagation_stops_where_the_object_ends():
    """Real LiteMedSAM: a bright disk on slices 0-2, nothing on 3-4; propagating from slice 1 covers 2, not 3."""
    from napari_sparseseg.sam import EmbeddingCache, load_backend, propagate_mask

    vol = np.full((5, 96, 96), 0.1, np.float32)
    rng = np.random.default_rng(0)
    vol += rng.normal(0, 0.02, vol.shape).astype(np.float32)
    for z, r in zip(range(3), (16, 18, 17)):
        vol[z][_disk((96, 96), 48, 48, r)] = 0.8
    cache = EmbeddingCache(load_backend("litemedsam"), np.clip(vol, 0, 1))
    got, why = propagate_mask(cache, 1, _disk((96, 96), 48, 48, 18), +1)
    assert 2 in got
    m2 = got[2][0] > 0.5
    truth = _disk((96, 96), 48, 48, 17)
    assert 2 * (m2 & truth).sum() / (m2.sum() + truth.sum()) > 0.8
    assert 3 not in got and why in ("vanished", "low quality", "quality drop", "area jump")
