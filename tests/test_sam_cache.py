"""Embedding cache: memory LRU hits/misses, bounded size, zarr reopen, slice order, widget helper."""

from __future__ import annotations

import numpy as np

from napari_sparseseg.sam import EmbeddingCache, order_by_distance, predict_slice_mask, tiny_random_sam, volume_key


def _vol(seed=0):
    return np.random.default_rng(seed).random((6, 30, 40)).astype(np.float32)


def test_memory_cache_hits_and_lru_bound():
    b = tiny_random_sam()
    c = EmbeddingCache(b, _vol(), max_items=2)
    e1 = c.get(1)
    assert c.stats == {"memory_hits": 0, "disk_hits": 0, "computed": 1}
    assert c.get(1) is e1
    assert c.stats["memory_hits"] == 1
    c.get(2)
    c.get(3)                       # evicts 1 (least recently used)
    assert not c.in_memory(1) and c.in_memory(3)
    c.get(1)
    assert c.stats["computed"] == 4   # no disk: recomputed


def test_disk_cache_survives_a_new_session(tmp_path):
    b = tiny_random_sam()
    v = _vol()
    c = EmbeddingCache(b, v, cache_dir=tmp_path, max_items=1)
    e = c.get(2)
    assert c.on_disk(2) and not c.on_disk(3)
    c.get(3)
    c.get(2)                       # evicted from memory, read from disk
    assert c.stats["disk_hits"] == 1
    reopened = EmbeddingCache(tiny_random_sam(), v.copy(), cache_dir=tmp_path)
    e2 = reopened.get(2)
    assert reopened.stats == {"memory_hits": 0, "disk_hits": 1, "computed": 0}
    np.testing.assert_allclose(e2.features, e.features, atol=1e-2 * np.abs(e.features).max())
    assert e2.original_size == e.original_size and e2.input_size == e.input_size
    # another volume or another backend does not reuse it
    other = EmbeddingCache(b, _vol(1), cache_dir=tmp_path)
    assert not other.on_disk(2)
    other_backend = EmbeddingCache(tiny_random_sam(seed=1), v, cache_dir=tmp_path)
    assert not other_backend.on_disk(2)


def test_float16_disk_embeddings_give_the_same_masks(tmp_path):
    b = tiny_random_sam()
    v = _vol()
    eager = b.encode(v[0])
    EmbeddingCache(b, v, cache_dir=tmp_path).get(0)
    disk = EmbeddingCache(b, v, cache_dir=tmp_path).get(0)
    box = np.array([[5, 5, 30, 25]])
    m1 = b.decode(eager, boxes=box)[0][0, 0] > 0
    m2 = b.decode(disk, boxes=box)[0][0, 0] > 0
    assert (m1 == m2).mean() > 0.99


def test_volume_key_and_order():
    v = _vol()
    assert volume_key(v) == volume_key(v.copy())
    w = v.copy()
    w[0, 0, 0] += 1
    assert volume_key(w) != volume_key(v)
    assert order_by_distance(6, [2]) == [2, 1, 3, 0, 4, 5]
    assert order_by_distance(3, []) == [0, 1, 2]


def test_prefetch_and_predict_slice_mask():
    c = EmbeddingCache(tiny_random_sam(), _vol(), max_items=10)
    seen = []
    c.prefetch(order_by_distance(6, [4])[:3], progress=lambda i, n: seen.append((i, n)))
    assert c.stats["computed"] == 3 and seen[-1] == (3, 3)
    mask, score = predict_slice_mask(c, 4, points=[[10, 12]], point_labels=[1], box=[2, 2, 30, 20])
    assert mask.shape == (30, 40) and mask.dtype == bool and isinstance(score, float)
    assert c.stats["computed"] == 3  # slice 4 was prefetched
