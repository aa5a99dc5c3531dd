"""Pseudo-labels in stages, each handed over as soon as it exists: nothing waits for what it does not need.

Stage 1 (blocking, seconds): the fastest good prior -- the random walker's map.  Training starts on it.
Stage 2 (a background thread): the SAM fusion, slice by slice in the order the prompts need them
(:class:`~.slice_fusion.SliceFusion`); every few seconds the map so far -- fused slices plus the
walker's elsewhere -- is handed to ``deliver(pseudo, final)``, e.g. ``Trainer.update_annotation(ann,
pseudo, restart=False)``, and the complete map last.  Embeddings go to the on-disk cache, so a second
run on the same scan (the CLI after the widget, or after a correction) encodes nothing.

The final map is the same as :func:`make_pseudo_labels` would give with the same method (tested).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..annotations.sparse import SparseAnnotation
from ..io.volume import Volume
from .api import DEFAULT_METHOD, make_pseudo_labels
from .types import PseudoLabels

log = logging.getLogger(__name__)

Deliver = Callable[[PseudoLabels, bool], None]


class ProgressivePseudo:
    """Walker first, SAM fusion folded in as its slices are ready.

    Args:
        image: the volume (its spacing reaches the walker).  ann: the marks.
        method: a :data:`~.api.METHODS` name; only ``auto``/``fusion``/``sam`` have a second stage.
        backend: SAM backend spec or object (default LiteMedSAM, ONNX Runtime on the CPU).
        cache_dir: embedding cache folder (``None`` = memory only).
        update_every_seconds: how often partial fused maps are handed over (each hand-over costs
            the receiver a rebuild of its training tensors, so not after every slice).
    """

    def __init__(self, image: Volume | np.ndarray, ann: SparseAnnotation, method: str = "auto", *,
                 backend: Any = None, cache_dir: str | Path | None = None, threshold: float = 0.5,
                 update_every_seconds: float = 4.0) -> None:
        self.image = image
        self.ann = ann
        self.method = DEFAULT_METHOD if method == "auto" else method
        self.backend = backend
        self.cache_dir = cache_dir
        self.threshold = float(threshold)
        self.update_every_seconds = float(update_every_seconds)
        self.walker: PseudoLabels | None = None
        self.final: PseudoLabels | None = None
        self.error: BaseException | None = None
        self.timings: dict[str, float] = {}
        self.updates = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def has_second_stage(self) -> bool:
        return self.method in ("fusion", "sam")

    def first(self, time_limit: float | None = None) -> PseudoLabels:
        """Stage 1 (blocking): the walker's map, or the method's own map when it has no second stage."""
        t = time.perf_counter()
        if self.has_second_stage:
            self.walker = make_pseudo_labels(self.image, self.ann, "random-walker", threshold=self.threshold,
                                             time_limit=time_limit)
            out = self.walker
        else:
            out = self.final = make_pseudo_labels(self.image, self.ann, self.method, threshold=self.threshold,
                                                  time_limit=time_limit)
        self.timings["first_s"] = time.perf_counter() - t
        return out

    def refine(self, deliver: Deliver | None = None) -> PseudoLabels:
        """Stage 2 (blocking; :meth:`start` runs it in a thread): the method's full map, delivered in parts."""
        if self.final is not None:
            return self.final
        if self.walker is None:
            self.first()
        assert self.walker is not None
        t0 = time.perf_counter()
        from ..sam.cache import EmbeddingCache
        from ..sam.fast import enable_fast_encoder
        from ..sam.loaders import load_backend
        from .normalize import percentile_unit_range
        from .sam_fusion import sam_pseudo

        arr = np.asarray(self.image.array if isinstance(self.image, Volume) else self.image)
        spacing = self.image.spacing if isinstance(self.image, Volume) else (1.0, 1.0, 1.0)
        be = load_backend(self.backend)
        enable_fast_encoder(be)
        cache = EmbeddingCache(be, percentile_unit_range(arr), cache_dir=self.cache_dir)
        self.timings["sam_setup_s"] = time.perf_counter() - t0
        if self.method == "sam":  # prompts from the marks + propagation: one hand-over at the end
            out = sam_pseudo(arr, self.ann, method="sam", backend=cache, spacing=spacing, walker=self.walker)
        else:
            from .slice_fusion import SliceFusion

            # in place: the trainer copied the walker's map into its own tensors already
            sf = SliceFusion(self.ann, self.walker, cache, inplace=True)
            last = time.perf_counter()
            for z in sf.order:
                if self._stop.is_set():
                    break
                sf.fuse_slice(z)
                if deliver is not None and sf.remaining and time.perf_counter() - last >= self.update_every_seconds:
                    part = sf.snapshot(copy=True)
                    part.info["threshold"] = self.threshold
                    deliver(part, False)
                    self.updates += 1
                    last = time.perf_counter()
            out = sf.snapshot(copy=False)
            if self._stop.is_set() and sf.remaining:
                out.info["stopped_early"] = True
        out.info["threshold"] = self.threshold
        self.timings["second_s"] = time.perf_counter() - t0
        self.final = out
        if deliver is not None:
            deliver(out, True)
            self.updates += 1
        return out

    def start(self, deliver: Deliver) -> threading.Thread:
        """Run :meth:`refine` in a daemon thread; a failure is logged and kept in ``error`` (the walker stays)."""

        def body() -> None:
            try:
                self.refine(deliver)
            except Exception as exc:  # never take the training down: it goes on with the walker's map
                self.error = exc
                log.warning("SAM pseudo-labels failed (%s); training goes on with the walker's", exc)

        self._thread = threading.Thread(target=body, name="sparseseg-pseudo", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, wait: bool = True) -> None:
        """Ask the background stage to stop after the current slice."""
        self._stop.set()
        if wait and self._thread is not None:
            self._thread.join()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


__all__ = ["ProgressivePseudo"]
