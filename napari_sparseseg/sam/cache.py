"""Embedding cache: per (volume, axis, slice, backend), bounded in memory, persistent on disk (zarr).

Encoding is the expensive step (about a second per slice on 2 CPU cores); decoding a prompt on a cached
embedding is tens of milliseconds.  So every embedding is computed at most once per volume and backend:
an LRU keeps the most recent ones in RAM (``max_items``), and a zarr store under ``cache_dir`` keeps
all of them (float16, one chunk per slice) so that a reopened session, the CLI and the widget share
them.  A slice counts as stored only after its ``done`` flag is written, so an interrupted write is
recomputed rather than read half-way.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from .backend import Embedding, SamBackend


def default_cache_dir() -> Path:
    """``$SPARSESEG_CACHE`` or the platform's cache folder + ``embeddings`` (:mod:`napari_sparseseg.paths`)."""
    from ..paths import embeddings_dir

    return embeddings_dir()


def volume_key(array: np.ndarray) -> str:
    """Content hash of the (normalised) volume: same pixels -> same key, whatever the file name."""
    a = np.ascontiguousarray(array)
    h = hashlib.blake2b(digest_size=12)
    h.update(str((a.shape, a.dtype.str)).encode())
    h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def order_by_distance(n: int, annotated: Iterable[int]) -> list[int]:
    """Slice indices sorted by distance to the nearest annotated slice (annotated ones first)."""
    ann = np.asarray(sorted(set(int(a) for a in annotated)), dtype=int)
    if ann.size == 0:
        return list(range(n))
    d = np.abs(np.arange(n)[:, None] - ann[None, :]).min(1)
    return [int(i) for i in np.argsort(d, kind="stable")]


class EmbeddingCache:
    """Lazily computed slice embeddings of one volume for one backend.

    Args:
        backend: the SAM backend that encodes.
        volume: the 3D image, already scaled to [0, 1] (``pseudo.normalize.percentile_unit_range``).
        axis: slicing axis (0 = the acquisition axis in this package's array order).
        cache_dir: folder for the zarr store; ``None`` keeps everything in memory only.
        max_items: how many embeddings the in-memory LRU holds (LiteMedSAM: 4 MiB each).
    """

    def __init__(self, backend: SamBackend, volume: np.ndarray, *, axis: int = 0,
                 cache_dir: str | Path | None = None, max_items: int = 32, key: str | None = None) -> None:
        if volume.ndim != 3:
            raise ValueError(f"volume must be 3D, got shape {volume.shape}")
        self.backend = backend
        self.volume = volume
        self.axis = int(axis)
        self.max_items = max(1, int(max_items))
        self.key = key or volume_key(volume)
        self._lru: OrderedDict[int, Embedding] = OrderedDict()
        self.stats = {"memory_hits": 0, "disk_hits": 0, "computed": 0}
        self.path: Path | None = None
        self._group = None
        if cache_dir is not None:
            safe_backend = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in backend.fingerprint)
            self.path = Path(cache_dir) / f"{backend.name}_{safe_backend}" / f"{self.key}_axis{self.axis}.zarr"

    # ----------------------------------------------------------------- access
    @property
    def n_slices(self) -> int:
        return int(self.volume.shape[self.axis])

    def slice_image(self, z: int) -> np.ndarray:
        return np.take(self.volume, int(z), axis=self.axis)

    def __len__(self) -> int:
        return self.n_slices

    def in_memory(self, z: int) -> bool:
        return int(z) in self._lru

    def on_disk(self, z: int) -> bool:
        g = self._open(create=False)
        return bool(g is not None and "done" in g and g["done"][int(z)])

    def get(self, z: int) -> Embedding:
        """The embedding of slice ``z``: memory, else disk, else encode (and store in both)."""
        z = int(z)
        if not 0 <= z < self.n_slices:
            raise IndexError(f"slice {z} outside 0..{self.n_slices - 1}")
        emb = self._lru.get(z)
        if emb is not None:
            self._lru.move_to_end(z)
            self.stats["memory_hits"] += 1
            return emb
        emb = self._read_disk(z)
        if emb is not None:
            self.stats["disk_hits"] += 1
        else:
            emb = self.backend.encode(self.slice_image(z))
            self.stats["computed"] += 1
            self._write_disk(z, emb)
        self._remember(z, emb)
        return emb

    __getitem__ = get

    def prefetch(self, order: Sequence[int], progress: Callable[[int, int], None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> None:
        """Encode slices in ``order`` (e.g. :func:`order_by_distance`) so later decodes are fast."""
        for i, z in enumerate(order):
            if should_stop is not None and should_stop():
                return
            if not self.in_memory(z) and not self.on_disk(z):
                self.get(z)
            if progress is not None:
                progress(i + 1, len(order))

    def _remember(self, z: int, emb: Embedding) -> None:
        self._lru[z] = emb
        self._lru.move_to_end(z)
        while len(self._lru) > self.max_items:
            self._lru.popitem(last=False)

    # ------------------------------------------------------------------- disk
    def _open(self, create: bool):
        if self.path is None:
            return None
        if self._group is not None:
            return self._group
        import zarr

        if not self.path.exists() and not create:
            return None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._group = zarr.open_group(str(self.path), mode="a")
        return self._group

    def _read_disk(self, z: int) -> Embedding | None:
        g = self._open(create=False)
        if g is None or "done" not in g or not g["done"][z]:
            return None
        feats = np.asarray(g["features"][z], dtype=np.float32)
        a = g.attrs
        return Embedding(feats, tuple(a["original_size"]), tuple(a["input_size"]))

    def _write_disk(self, z: int, emb: Embedding) -> None:
        g = self._open(create=True)
        if g is None:
            return
        if "features" not in g:
            g.attrs.update({"backend": self.backend.name, "fingerprint": self.backend.fingerprint,
                            "axis": self.axis, "volume_shape": list(self.volume.shape),
                            "original_size": list(emb.original_size), "input_size": list(emb.input_size)})
            g.create_array("features", shape=(self.n_slices,) + emb.features.shape, dtype="float16",
                           chunks=(1,) + emb.features.shape, fill_value=0)
            g.create_array("done", shape=(self.n_slices,), dtype="bool", chunks=(1,), fill_value=False)
        g["features"][z] = emb.features.astype(np.float16)
        g["done"][z] = True  # written last: a crash before this line leaves the slice "not stored"


def predict_slice_mask(
    cache: EmbeddingCache,
    z: int,
    points: np.ndarray | None = None,
    point_labels: np.ndarray | None = None,
    box: Sequence[float] | None = None,
    *,
    mask_logits: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """One interactive prediction on slice ``z`` (for the widget): ``(bool mask H x W, quality score)``.

    Points are ``(P, 2)`` as (x, y) = (column, row) in slice pixels, labels 1 = positive, 0 = negative;
    ``box`` is (x0, y0, x1, y1).  Fast after the first call on a slice (the embedding is cached).
    Accepts an :class:`EmbeddingCache` or anything with a ``.cache`` attribute holding one.
    """
    c = cache if isinstance(cache, EmbeddingCache) else cache.cache
    emb = c.get(z)
    boxes = None if box is None else np.asarray(box, dtype=np.float32).reshape(1, 4)
    pts = None if points is None or len(points) == 0 else np.asarray(points, dtype=np.float32).reshape(1, -1, 2)
    labs = None if pts is None else np.asarray(point_labels, dtype=np.int64).reshape(1, -1)
    logits, scores = c.backend.decode(emb, boxes=boxes, points=pts, point_labels=labs, mask_logits=mask_logits)
    return logits[0, 0] > 0, float(scores[0, 0])
