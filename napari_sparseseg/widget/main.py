"""The dock widget: pick an image, draw, ask SAM, train in the background, correct, export, save.

This module assembles the panels and owns the layers and the user's marks; the panels hold the
behaviour (``sam_panel``, ``training_panel``, ``session_panel``).  The marks live in the "annotations"
Labels layer (0 = unmarked, class ids, one background label) and are autosaved after every change.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.layers import Image, Labels, Points, Shapes
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QScrollArea, QVBoxLayout, QWidget

from ..annotations.build import from_layers, label_slice
from ..annotations.sparse import SparseAnnotation
from ..errors import AnnotationError
from ..io.volume import Volume
from ..session import ClassTable
from . import layers as L
from ._llvm import isolate_triton
from .class_table import ClassTableWidget
from .guard import guarded
from .project_panel import ProjectPanel
from .sam_panel import SamPanel
from .session_panel import SessionPanel
from .training_panel import TrainingPanel


class SparseSegWidget(QWidget):
    """napari-sparseseg's dock widget (Plugins > napari-sparseseg > Sparse segmentation)."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        isolate_triton()  # must precede any torch/MONAI import in a process with an OpenGL canvas
        # napari hands plugins a PublicOnlyProxy; layers we create must compare identical (``is``) to the
        # ones in events and in viewer.layers, so keep the real viewer
        self.viewer = getattr(napari_viewer, "__wrapped__", napari_viewer)
        self.image_layer: Image | None = None
        self.ann_layer: Labels | None = None
        self.prompts_layer: Points | None = None
        self.boxes_layer: Shapes | None = None
        self.preview_layer: Labels | None = None
        self.pred_layer: Labels | None = None
        self.unc_layer: Image | None = None
        self.classes = ClassTable.default(2)
        self.embedding_cache_dir: str | None = None
        self.train_overrides: dict[str, Any] = {}  # TrainConfig fields (tests and bench shorten runs)
        self._last_error = ""

        self.image_combo = QComboBox()
        self.image_combo.setToolTip("The 3D image to segment")
        self.use_btn = QPushButton("Use image")
        self.use_btn.clicked.connect(lambda *_: self._use_selected())
        self.class_table = ClassTableWidget(self.classes)
        self.class_table.changed.connect(self._on_classes_changed)
        self.class_table.label_picked.connect(self._on_label_picked)
        self.slice_btn = QPushButton("Rest of this slice is background")
        self.slice_btn.setToolTip("'Label this slice': after painting the structures on this slice, every unmarked voxel of it becomes background")
        self.slice_btn.clicked.connect(lambda *_: self.finish_slice())
        self.status = QLabel("Pick an image and press 'Use image'.")
        self.status.setWordWrap(True)
        self.sam = SamPanel(self)
        self.training = TrainingPanel(self)
        self.files = SessionPanel(self)
        self.project = ProjectPanel(self)

        top = QHBoxLayout()
        top.addWidget(self.image_combo, 1)
        top.addWidget(self.use_btn)
        inner = QWidget()
        lay = QVBoxLayout(inner)
        lay.addLayout(top)
        lay.addWidget(self.project)
        lay.addWidget(self.files.banner)
        hint = QLabel("Classes: select a row to paint it; 'bg' marks the background row.")
        hint.setWordWrap(True)
        lay.addWidget(hint)
        lay.addWidget(self.class_table)
        lay.addWidget(self.slice_btn)
        lay.addWidget(self.sam)
        lay.addWidget(self.training)
        lay.addWidget(self.files)
        lay.addWidget(self.status)
        lay.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setWidget(inner)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        inner.setMinimumWidth(360)
        self.setMinimumWidth(380)

        self.viewer.layers.events.inserted.connect(self._refresh_images)
        self.viewer.layers.events.removed.connect(self._refresh_images)
        self.viewer.layers.events.removed.connect(self._on_layer_removed)
        self.viewer.dims.events.current_step.connect(self._on_slice_changed)
        self._refresh_images()
        self._sync_buttons()

    # ------------------------------------------------------------------------------ basics
    def set_status(self, text: str) -> None:
        self.status.setText(text)

    def _sync_buttons(self) -> None:
        self.use_btn.setEnabled(self.image_combo.count() > 0)
        self.slice_btn.setEnabled(self.ann_layer is not None)
        for panel in (self.sam, self.training, self.files):
            panel._sync_buttons()

    def _images(self) -> list[Image]:
        return [ly for ly in self.viewer.layers if isinstance(ly, Image) and "sparseseg_role" not in ly.metadata
                and ly.data.ndim == 3 and not ly.rgb]

    def _refresh_images(self, *_: Any) -> None:
        current = self.image_combo.currentText()
        names = [ly.name for ly in self._images()]
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        self.image_combo.addItems(names)
        if current in names:
            self.image_combo.setCurrentText(current)
        self.image_combo.blockSignals(False)
        self.use_btn.setEnabled(bool(names))

    def _on_layer_removed(self, event: Any) -> None:
        layer = event.value
        if layer is self.image_layer:
            self.training.reset()
            self.sam.reset()
            self.image_layer = None
            self.set_status("the image layer was removed; pick another image")
        for attr in ("ann_layer", "prompts_layer", "boxes_layer", "preview_layer", "pred_layer", "unc_layer"):
            if getattr(self, attr) is layer:
                setattr(self, attr, None)
        if layer is self.ann_layer or layer is self.image_layer:
            self._sync_buttons()

    def has_prediction(self) -> bool:
        t = self.training.tracker
        return self.pred_layer is not None and t is not None and t.has_prediction

    def current_z(self) -> int:
        return 0 if self.image_layer is None else L.current_slice(self.viewer, self.image_layer)

    def region_on_screen(self, region: tuple[slice, ...]) -> bool:
        """Whether a changed box touches what the viewer shows (always true in 3D view)."""
        if self.viewer.dims.ndisplay == 3 or self.image_layer is None:
            return True
        z = self.current_z()
        return region[0].start <= z < region[0].stop

    def current_class(self) -> int:
        return self.class_table.current_label()

    # ------------------------------------------------------------------------------ image
    @guarded
    def _use_selected(self) -> None:
        name = self.image_combo.currentText()
        self.set_image(self.viewer.layers[name])

    def set_image(self, image: Image) -> None:
        """Make ``image`` the one we segment: layers on its grid, autosave keyed by its voxels."""
        if image.data.ndim != 3:
            raise AnnotationError(f"{image.name!r} is {image.data.ndim}D; napari-sparseseg segments 3D images")
        if self.image_layer is not None and self.image_layer is not image:
            self.files.flush_autosave()
            self.training.reset()
            self.sam.reset()
            for attr in ("pred_layer", "unc_layer", "preview_layer", "prompts_layer", "boxes_layer"):
                layer = getattr(self, attr)
                if layer is not None and layer in self.viewer.layers:
                    self.viewer.layers.remove(layer)
                setattr(self, attr, None)
        self.image_layer = image
        # every layer is made now, at the user's click: adding a layer costs napari ~0.2-0.5 s, which must
        # not happen later on the GUI thread while predictions stream in (bench/scripts/bench_widget.py)
        self.ensure_prediction_layer(image)
        self.ensure_uncertainty_layer(np.zeros(image.data.shape, np.float32), image)
        self.ann_layer = L.ensure_labels(self.viewer, image, L.ANNOTATIONS, self.classes, dense=False)
        self.ann_layer.events.paint.connect(self.schedule_autosave)
        self.ann_layer.events.data.connect(self.schedule_autosave)
        self.ann_layer.mode = "paint"
        self.ann_layer.brush_size = max(1, int(min(image.data.shape[1:]) / 40))
        self._on_label_picked(self.current_class())
        self.viewer.layers.selection.active = self.ann_layer
        self.files.attach(image)
        self.set_status(f"Paint structures and background on {image.name!r}, then Start training.")
        self._sync_buttons()

    def image_volume(self) -> Volume:
        return Volume.from_napari_layer(self.image_layer)

    def ensure_prompt_layers(self) -> None:
        img = self.image_layer
        self.preview_layer = L.ensure_labels(self.viewer, img, L.PREVIEW, self.classes, dense=True, opacity=0.5)
        self.boxes_layer = L.ensure_boxes(self.viewer, img)
        self.prompts_layer = L.ensure_prompts(self.viewer, img)
        self.prompts_layer.feature_defaults["class_id"] = self.current_class()
        for ly in (self.prompts_layer, self.boxes_layer):
            ly.events.data.connect(self.sam.update_preview)
        self.prompts_layer.mode = "add"
        self.viewer.layers.selection.active = self.prompts_layer

    def _keep_selection(self):
        """napari selects every new layer; the user's brush layer should stay selected."""
        return self.viewer.layers.selection.active

    def ensure_prediction_layer(self, image: Image | None = None) -> Labels:
        if self.pred_layer is None:
            active = self._keep_selection()
            self.pred_layer = L.ensure_labels(self.viewer, image or self.image_layer, L.PREDICTION, self.classes, dense=True,
                                              opacity=0.5)
            self.pred_layer.events.paint.connect(self._on_pred_painted)
            if self.ann_layer is not None:  # keep the marks drawn on top of the prediction
                self.viewer.layers.move(self.viewer.layers.index(self.ann_layer), len(self.viewer.layers))
            if active is not None and active in self.viewer.layers:
                self.viewer.layers.selection.active = active
        return self.pred_layer

    def ensure_uncertainty_layer(self, data: np.ndarray, image: Image | None = None) -> Image:
        if self.unc_layer is None:
            active = self._keep_selection()
            self.unc_layer = L.ensure_uncertainty(self.viewer, image or self.image_layer, data)
            if active is not None and active in self.viewer.layers:
                self.viewer.layers.selection.active = active
        return self.unc_layer

    def _on_pred_painted(self, *_: Any) -> None:
        self.training._sync_buttons()

    # ------------------------------------------------------------------------------ marks
    def _on_label_picked(self, class_id: int) -> None:
        for layer in (self.ann_layer, self.pred_layer):
            if layer is not None:
                layer.selected_label = class_id if (layer is self.ann_layer or class_id != self.classes.background) else 0
        if self.prompts_layer is not None:
            self.prompts_layer.feature_defaults["class_id"] = class_id

    def _on_classes_changed(self) -> None:
        for layer, dense in ((self.ann_layer, False), (self.pred_layer, True), (self.preview_layer, True)):
            if layer is not None:
                layer.colormap = L.class_colormap(self.classes, dense=dense)
        self.schedule_autosave()

    def write_marks(self, indices: tuple[np.ndarray, ...], value: int | np.ndarray) -> None:
        """Write marks as one undoable step of the annotations layer (Ctrl+Z there undoes it)."""
        self.ann_layer.data_setitem(indices, value)
        self.schedule_autosave()

    @guarded
    def finish_slice(self) -> None:
        """'Label this slice' (:func:`label_slice`): unmarked voxels of the current slice become background marks."""
        z = self.current_z()
        sl = np.asarray(self.ann_layer.data[z])
        if not np.isin(sl, self.classes.foreground_ids).any():
            raise AnnotationError(f"slice {z} has no structure marks yet: paint the structures first")
        dense = np.where(sl == self.classes.background, 0, sl)  # the slice as a dense label map
        done = label_slice(self.build_annotation(), dense, axis=0, index=z).labels[z]
        yy, xx = np.nonzero(done != sl)  # only the added background: one undo step, marks untouched
        self.write_marks((np.full(yy.shape, z), yy, xx), done[yy, xx])
        self.set_status(f"slice {z} is fully labelled ({len(yy)} background voxels added)")

    def build_annotation(self) -> SparseAnnotation:
        """The marks as a :class:`SparseAnnotation` (:func:`from_layers`; classes = the table's
        structures that have marks, so a structure not drawn yet does not get an output channel)."""
        if self.ann_layer is None:
            raise AnnotationError("pick an image first")
        bg, names = self.classes.background, self.classes.names
        ann = from_layers(self.ann_layer.data, background_label=bg, classes=self.classes.foreground_ids,
                          shape=tuple(self.image_layer.data.shape))
        present = set(np.unique(ann.labels).tolist())
        classes = tuple(c for c in self.classes.foreground_ids if c in present)
        if not classes:
            raise AnnotationError("no structure marks yet: paint at least one class (not only background)")
        return SparseAnnotation(ann.labels, bg, classes, {c: names[c] for c in classes})

    def schedule_autosave(self, *_: Any) -> None:
        self.files.schedule_autosave()

    # ------------------------------------------------------------------------------ events
    def _on_slice_changed(self, *_: Any) -> None:
        if self.image_layer is None or self.sam.cache is None:
            return
        z = self.current_z()
        self.sam.prefetch_around(z)
        if self.sam.preview_z is not None and self.sam.preview_z != z:
            self.sam.update_preview()

    def close_session(self) -> None:
        """Stop the worker, flush the autosave and record a clean exit (called when the widget closes)."""
        try:
            self.project.shutdown()
            self.training.reset()
            self.files.flush_autosave(clean_exit=True)
        finally:  # a failing autosave must not leave the background jobs running
            self.files.shutdown()
            self.sam.jobs.drop_pending()
            self.sam.jobs.shutdown(30)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        self.close_session()
        super().closeEvent(event)
