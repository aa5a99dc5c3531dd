"""SAM backends behind one small interface, the embedding cache, prompts from marks, propagation.

Quick use::

    from napari_sparseseg.sam import load_backend, EmbeddingCache, predict_slice_mask
    backend = load_backend("litemedsam")            # bundled weights, offline
    cache = EmbeddingCache(backend, volume01, cache_dir=default_cache_dir())
    mask, score = predict_slice_mask(cache, z, points=[[x, y]], point_labels=[1])
"""

from .backend import Embedding, SamBackend
from .cache import EmbeddingCache, default_cache_dir, order_by_distance, predict_slice_mask, volume_key
from .loaders import (
           SAM_BACKENDS,
           backend_choices,
           load_backend,
           load_litemedsam,
           load_segment_anything,
           tiny_random_sam,
)
from .prompts import ClassPrompt, detect_nesting, prompts_from_marks
from .propagate import StopRule, propagate_mask

__all__ = ["SAM_BACKENDS", "ClassPrompt", "Embedding", "EmbeddingCache", "SamBackend", "StopRule", "backend_choices",
           "default_cache_dir", "detect_nesting", "load_backend", "load_litemedsam", "load_segment_anything",
           "order_by_distance", "predict_slice_mask", "prompts_from_marks", "propagate_mask", "tiny_random_sam",
           "volume_key"]
