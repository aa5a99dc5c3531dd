"""Interactive SAM: a click or a box on the current slice shows SAM's mask; "Accept" makes it marks.

The embedding of a slice is computed once (the engine's :class:`EmbeddingCache`), and every SAM call
runs on one background thread, so the GUI never waits for torch and the cache is only touched by one
thread.  A click outranks prefetching the neighbouring slices; with the embedding cached the mask
appears after one decode (``bench/scripts/bench_widget.py`` measures click-to-mask), otherwise after the
slice is encoded.  A newer click supersedes an older one still in flight.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QCheckBox, QGroupBox, QHBoxLayout, QLabel, QPushButton, QRadioButton, QVBoxLayout

from .guard import guarded
from .jobs import BackgroundJobs

if TYPE_CHECKING:  # pragma: no cover
    from .main import SparseSegWidget

PREFETCH_RADIUS = 2


class SamPanel(QGroupBox):
    """The "Interactive SAM" box of the dock widget."""

    mask_shown = Signal()  # after a (possibly empty) mask was put in the preview layer

    def __init__(self, host: SparseSegWidget) -> None:
        super().__init__("Interactive SAM (click / box)")
        self.host = host
        self.cache: Any = None
        self.jobs = BackgroundJobs("sam", self)
        self.preview_z: int | None = None
        self.preview_mask: np.ndarray | None = None
        self.last_latency_ms: float | None = None
        self._loading = False
        self._request = 0
        self.n_shown = 0
        self._last_error = ""
        self.enable_box = QCheckBox("on")
        self.enable_box.setToolTip("Load the SAM model (bundled LiteMedSAM) and predict masks from clicks and boxes")
        self.enable_box.toggled.connect(self._on_toggle)
        self.pos = QRadioButton("+ click")
        self.neg = QRadioButton("- click")
        self.pos.setChecked(True)
        self.pos.toggled.connect(self._on_sign)
        self.accept_btn = QPushButton("Accept mask")
        self.accept_btn.setToolTip("Write SAM's mask into the annotations as the selected class (undo: Ctrl+Z on the annotations layer)")
        self.accept_btn.clicked.connect(lambda *_: self.accept())
        self.clear_btn = QPushButton("Clear prompts")
        self.clear_btn.clicked.connect(lambda *_: self.clear_prompts())
        self.status = QLabel("off")
        self.status.setWordWrap(True)
        row1 = QHBoxLayout()
        row1.addWidget(self.enable_box)
        row1.addWidget(self.pos)
        row1.addWidget(self.neg)
        row2 = QHBoxLayout()
        row2.addWidget(self.accept_btn)
        row2.addWidget(self.clear_btn)
        lay = QVBoxLayout(self)
        lay.addLayout(row1)
        lay.addLayout(row2)
        lay.addWidget(self.status)
        self._sync_buttons()

    # ------------------------------------------------------------------------------ state
    def _sync_buttons(self) -> None:
        on = self.cache is not None
        self.accept_btn.setEnabled(bool(on and self.preview_mask is not None and self.preview_mask.any()))
        self.clear_btn.setEnabled(on)
        self.pos.setEnabled(on)
        self.neg.setEnabled(on)
        self.enable_box.setEnabled(self.host.image_layer is not None and not self._loading)

    def reset(self) -> None:
        """A new image: forget the cache (the engine's disk cache still keeps its embeddings)."""
        self.jobs.drop_pending()
        self.cache = None
        self.preview_mask = None
        self.preview_z = None
        self.enable_box.blockSignals(True)
        self.enable_box.setChecked(False)
        self.enable_box.blockSignals(False)
        self.status.setText("off")
        self._sync_buttons()

    @guarded
    def _on_toggle(self, on: bool) -> None:
        if not on:
            self.cache = None
            self.status.setText("off")
            return
        if self.host.image_layer is None:
            raise RuntimeError("pick an image first")
        self.enable(wait=False)

    def enable(self, wait: bool = False, backend: Any = None) -> None:
        """Load the backend and the embedding cache in the background (``wait`` blocks, for tests/bench)."""
        from ..pseudo.normalize import percentile_unit_range
        from ..sam.cache import EmbeddingCache, default_cache_dir
        from ..sam.loaders import load_backend

        image = np.asarray(self.host.image_layer.data)
        cache_dir = self.host.embedding_cache_dir or default_cache_dir()
        self._loading = True
        self.status.setText("loading SAM model...")

        def load():
            import torch

            # decoding is many tiny ops: one thread is ~2x faster than two on a 2-core laptop, and the
            # setting is per thread (OpenMP), so the training thread keeps its own (measured)
            torch.set_num_threads(1)
            be = load_backend(backend)
            return EmbeddingCache(be, percentile_unit_range(image), axis=0, cache_dir=cache_dir)

        def done(cache):
            self._loading = False
            self.cache = cache
            self.host.embedding_cache_dir = str(cache_dir)
            self.status.setText(f"ready ({cache.backend.name}); click on the image")
            self.host.ensure_prompt_layers()
            self.prefetch_around(self.host.current_z())
            self._sync_buttons()

        def failed(exc):
            self._loading = False
            self.enable_box.setChecked(False)
            from .guard import error_message, notify_error

            notify_error(f"SAM could not start: {error_message(exc)}")
            self._sync_buttons()

        self.jobs.submit(load, done, priority=0, on_error=failed)
        if wait:
            self.jobs.wait_idle(120)

    def _on_sign(self, positive: bool) -> None:
        pts = self.host.prompts_layer
        if pts is not None:
            pts.feature_defaults["positive"] = bool(positive)

    # --------------------------------------------------------------------------- prompts
    def prefetch_around(self, z: int) -> None:
        if self.cache is None:
            return
        n = self.cache.n_slices
        order = [z] + [z + d * s for d in range(1, PREFETCH_RADIUS + 1) for s in (1, -1)]
        cache = self.cache
        for s in order:
            if 0 <= s < n and not cache.in_memory(s):
                self.jobs.submit(lambda s=s: cache.get(s), None, priority=2, key=f"emb{s}")

    def prompts_on_slice(self, z: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(x, y) points, 1/0 labels and the last box (x0, y0, x1, y1) drawn on slice ``z``."""
        pts_layer, box_layer = self.host.prompts_layer, self.host.boxes_layer
        pts = np.zeros((0, 2), np.float32)
        labels = np.zeros(0, np.int64)
        if pts_layer is not None and len(pts_layer.data):
            data = np.asarray(pts_layer.data)
            on = np.round(data[:, 0]).astype(int) == z
            pts = data[on][:, [2, 1]].astype(np.float32)
            labels = np.asarray(pts_layer.features["positive"])[on].astype(np.int64)
        box = None
        if box_layer is not None:
            for shape, kind in zip(reversed(box_layer.data), reversed(box_layer.shape_type)):
                s = np.asarray(shape)
                if kind == "rectangle" and int(round(s[0, 0])) == z:
                    box = np.array([s[:, 2].min(), s[:, 1].min(), s[:, 2].max(), s[:, 1].max()], np.float32)
                    break
        return pts, labels, box

    @guarded
    def update_preview(self, event: Any = None) -> None:
        """Recompute the mask of the current slice from its prompts."""
        if self.cache is None or str(getattr(event, "action", "")) in ("adding", "removing", "changing"):
            return  # napari announces data changes before making them; act on the "-ed" event only
        z = self.host.current_z()
        pts, labels, box = self.prompts_on_slice(z)
        if len(pts) == 0 and box is None:
            self._show(z, None, 0.0)
            return
        t0 = time.perf_counter()
        if not self.cache.in_memory(z):
            self.status.setText(f"encoding slice {z}...")
        cache = self.cache
        self._request += 1
        req = self._request

        def run():
            cache.get(z)
            return self._predict(z, pts, labels, box)

        def done(result):
            if req != self._request or self.host.current_z() != z:
                return  # a newer click (or another slice) superseded this one
            self.last_latency_ms = (time.perf_counter() - t0) * 1000
            self._show(z, *result)

        self.jobs.submit(run, done, priority=0)

    def _predict(self, z: int, pts: np.ndarray, labels: np.ndarray, box: np.ndarray | None):
        from ..sam.cache import predict_slice_mask

        return predict_slice_mask(self.cache, z, pts if len(pts) else None, labels if len(pts) else None, box)

    def _show(self, z: int, mask: np.ndarray | None, score: float) -> None:
        layer = self.host.preview_layer
        if layer is None:
            return
        cls = self.host.current_class()
        if self.preview_z is not None and self.preview_z != z:
            layer.data[self.preview_z] = 0
        self.preview_z = z
        self.preview_mask = mask
        self.n_shown += 1
        layer.data[z] = 0 if mask is None else np.where(mask, cls, 0)
        layer.refresh()
        if mask is not None:
            self.status.setText(f"slice {z}: mask of {int(mask.sum())} px, quality {score:.2f}")
        self._sync_buttons()
        self.mask_shown.emit()

    @guarded
    def accept(self) -> None:
        """SAM's mask -> annotations (one undo step), prompts of that slice cleared."""
        if self.preview_mask is None or not self.preview_mask.any() or self.preview_z is None:
            raise RuntimeError("no SAM mask to accept: click on the image first")
        z, mask = self.preview_z, self.preview_mask
        yy, xx = np.nonzero(mask)
        self.host.write_marks((np.full(yy.shape, z), yy, xx), self.host.current_class())
        self.clear_prompts(z)

    @guarded
    def clear_prompts(self, z: int | None = None) -> None:
        z = self.host.current_z() if z is None or isinstance(z, bool) else z
        pts = self.host.prompts_layer
        if pts is not None and len(pts.data):
            keep = np.round(np.asarray(pts.data)[:, 0]).astype(int) != z
            if not keep.all():
                pts.selected_data = set(np.flatnonzero(~keep).tolist())
                pts.remove_selected()
        boxes = self.host.boxes_layer
        if boxes is not None and len(boxes.data):
            drop = [i for i, s in enumerate(boxes.data) if int(round(np.asarray(s)[0, 0])) == z]
            if drop:
                boxes.selected_data = set(drop)
                boxes.remove_selected()
        self._show(z, None, 0.0)
