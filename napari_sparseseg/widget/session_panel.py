"""Files: export the prediction (plugin writer, source grid), save/open a session, autosave + restore.

Autosave: every change to the marks restarts a short timer (debounce); when it fires, a snapshot of
the marks is written atomically on a background thread (newest last), so painting never waits for the
disk.  On picking an image whose voxels have an autosave with marks while the annotations layer is
empty (a crash, or a closed viewer), a banner offers to restore them.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QFileDialog, QFrame, QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

from ..errors import SparsesegError
from ..session import AnnotationAutosave, AutosaveState, Session, SessionError, image_fingerprint
from .guard import guarded, notify_info
from .jobs import BackgroundJobs
from .remember import last_folder, remember_folder

if TYPE_CHECKING:  # pragma: no cover
    from .main import SparseSegWidget

AUTOSAVE_DELAY_MS = 500


class SessionPanel(QGroupBox):
    """The "Files" box plus the autosave machinery and the restore banner."""

    def __init__(self, host: SparseSegWidget) -> None:
        super().__init__("Files")
        self.host = host
        self.autosave: AnnotationAutosave | None = None
        self.autosave_root: str | None = None  # None = the platform's user data folder (paths.autosave_dir)
        self.fingerprint: str | None = None
        self.pending_restore: AutosaveState | None = None
        self.n_autosaves = 0
        self._last_error = ""
        self._jobs = BackgroundJobs("autosave", self)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(AUTOSAVE_DELAY_MS)
        self._timer.timeout.connect(self._autosave_now)

        self.export_btn = QPushButton("Export prediction...")
        self.export_btn.setToolTip("Save the (corrected) prediction as NIfTI/zarr on the image's original grid")
        self.export_btn.clicked.connect(lambda: self.export_prediction())
        self.save_btn = QPushButton("Save session...")
        self.save_btn.clicked.connect(lambda: self.save_session())
        self.open_btn = QPushButton("Open session...")
        self.open_btn.clicked.connect(lambda: self.open_session())
        self.autosave_label = QLabel("autosave: -")
        row = QHBoxLayout()
        row.addWidget(self.save_btn)
        row.addWidget(self.open_btn)
        lay = QVBoxLayout(self)
        lay.addWidget(self.export_btn)
        lay.addLayout(row)
        lay.addWidget(self.autosave_label)

        # the banner lives at the top of the dock widget (the host places it)
        self.banner = QFrame()
        self.banner.setFrameShape(QFrame.StyledPanel)
        self.banner.setStyleSheet("QFrame { background-color: #5a4a1a; }")
        self.banner_text = QLabel()
        self.banner_text.setWordWrap(True)
        restore = QPushButton("Restore")
        restore.clicked.connect(lambda *_: self.restore_autosave())
        discard = QPushButton("Discard")
        discard.clicked.connect(lambda *_: self.discard_autosave())
        blay = QVBoxLayout(self.banner)
        blay.addWidget(self.banner_text)
        brow = QHBoxLayout()
        brow.addWidget(restore)
        brow.addWidget(discard)
        blay.addLayout(brow)
        self.banner.setVisible(False)
        self._sync_buttons()

    def _sync_buttons(self) -> None:
        self.export_btn.setEnabled(self.host.has_prediction())
        self.save_btn.setEnabled(self.host.ann_layer is not None)

    # ------------------------------------------------------------------------------ autosave
    def attach(self, image: Any) -> None:
        """Key the autosave by the image's voxels; offer to restore what a previous run left."""
        self.fingerprint = image_fingerprint(np.asarray(image.data))
        self.autosave = AnnotationAutosave(self.fingerprint, self.autosave_root)
        self.pending_restore = None
        self.banner.setVisible(False)
        if not self.autosave.exists():
            return
        try:
            state = self.autosave.load()
        except SessionError as e:
            notify_info(f"an autosave exists but cannot be read ({e}); it is left in {self.autosave.folder}")
            return
        if state.n_marked == 0 or tuple(state.labels.shape) != tuple(image.data.shape):
            return
        if np.array_equal(np.asarray(self.host.ann_layer.data), state.labels):
            return
        when = datetime.datetime.fromtimestamp(state.saved_at).strftime("%Y-%m-%d %H:%M:%S")
        how = "the viewer was closed" if state.clean_exit else "napari did not close normally"
        self.pending_restore = state
        self.banner_text.setText(f"Found {state.n_marked} autosaved marks for this image from {when} ({how}). Restore them?")
        self.banner.setVisible(True)

    @guarded
    def restore_autosave(self) -> None:
        state = self.pending_restore
        if state is None:
            return
        self.host.classes = state.classes
        self.host.class_table.set_table(state.classes)
        self.host._on_classes_changed()
        idx = np.nonzero(state.labels)
        self.host.write_marks(idx, state.labels[idx])
        self.pending_restore = None
        self.banner.setVisible(False)
        self.host.set_status(f"restored {len(idx[0])} marks from the autosave")

    def discard_autosave(self) -> None:
        self.pending_restore = None
        self.banner.setVisible(False)

    def schedule_autosave(self) -> None:
        if self.autosave is not None:
            self._timer.start()

    def _autosave_now(self) -> None:
        if self.autosave is None or self.host.ann_layer is None:
            return
        snapshot = np.array(self.host.ann_layer.data, copy=True)
        classes = type(self.host.classes).from_dict(self.host.classes.to_dict())
        auto = self.autosave
        meta = {"image": getattr(self.host.image_layer, "name", ""), "source": str(self.host.image_layer.metadata.get("sparseseg_source", ""))}

        def done(_):
            self.n_autosaves += 1
            self.autosave_label.setText(f"autosave: {datetime.datetime.now():%H:%M:%S}, {int(np.count_nonzero(snapshot))} marks")

        self._jobs.submit(lambda: auto.save(snapshot, classes, meta), done, on_error=self._autosave_failed)

    def _autosave_failed(self, exc: BaseException) -> None:
        from .guard import notify_error

        notify_error(f"autosave failed ({exc}); your marks are still in the annotations layer - save the session")
        self.autosave_label.setText("autosave: FAILED")

    def flush_autosave(self, clean_exit: bool = False) -> None:
        """Write a pending autosave now and wait for it (closing, switching images, tests)."""
        if self._timer.isActive():
            self._timer.stop()
            self._autosave_now()
        self._jobs.wait_idle(60)
        if clean_exit and self.autosave is not None:
            self.autosave.mark_clean_exit()

    def shutdown(self) -> None:
        self._timer.stop()
        self._jobs.shutdown()

    # ------------------------------------------------------------------------------ export
    @guarded
    def export_prediction(self, path: str | os.PathLike[str] | None = None) -> list[str]:
        """Write the prediction layer (with the user's corrections) through the plugin's labels writer."""
        import napari

        layer = self.host.pred_layer
        if not self.host.has_prediction():
            raise SparsesegError("no prediction to export yet: train first")
        if path is None:
            start = os.path.join(last_folder("export"), f"{self.host.image_layer.name}_prediction.nii.gz")
            path, _ = QFileDialog.getSaveFileName(self, "Export prediction", start, "NIfTI (*.nii.gz *.nii);;zarr (*.zarr)")
            if not path:
                return []
            remember_folder("export", path)
        written = napari.save_layers(str(path), [layer], plugin="napari-sparseseg")
        if not written:
            raise SparsesegError(f"nothing was written to {path} (use .nii.gz, .nii or .zarr)")
        self.host.set_status(f"exported the prediction to {written[0]}")
        return written

    # ------------------------------------------------------------------------------ session
    @guarded
    def save_session(self, folder: str | os.PathLike[str] | None = None) -> Path | None:
        host = self.host
        if host.ann_layer is None:
            raise SparsesegError("pick an image first")
        if folder is None:
            start = os.path.join(last_folder("session"), f"{host.image_layer.name}.sparseseg")
            folder = QFileDialog.getSaveFileName(self, "Save session", start)[0]
            if not folder:
                return None
            remember_folder("session", folder)
        tp = host.training
        trainer = tp.trainer
        pseudo = tp.pseudo
        src = host.image_layer.metadata.get("sparseseg_source")
        session = Session(
            image_path=str(src) if src else None,
            image_fingerprint=self.fingerprint or image_fingerprint(np.asarray(host.image_layer.data)),
            image_shape=tuple(host.image_layer.data.shape),
            image_affine=host.image_volume().affine,
            classes=host.classes,
            annotations=np.asarray(host.ann_layer.data),
            pseudo_labels=getattr(pseudo, "labels", None),
            pseudo_confidence=getattr(pseudo, "confidence", None),
            prediction=np.asarray(host.pred_layer.data) if host.has_prediction() else None,
            embedding_cache=host.embedding_cache_dir,
            reviewed=sorted(tp.reviewed),
            settings={"strategy": tp.strategy.currentText(), "budget_seconds": tp.budget.value(),
                      "pseudo_method": tp.pseudo_method.currentText()},
        )
        out = session.save(folder, write_checkpoint=(lambda p: trainer.save(p)) if trainer is not None else None)
        self.flush_autosave()
        host.set_status(f"session saved to {out}")
        return out

    @guarded
    def open_session(self, folder: str | os.PathLike[str] | None = None) -> Session | None:
        """Reopen a session: the image (from its path, or the open layer with the same voxels) and the rest."""
        host = self.host
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self, "Open session (a .sparseseg folder)", last_folder("session"))
            if not folder:
                return None
            remember_folder("session", folder)
        s = Session.load(folder)
        image, added = self._find_image(s)
        try:  # before switching: set_image resets the model and removes the prediction and its corrections
            s.check_image(np.asarray(image.data))
        except SessionError:
            if added and image in host.viewer.layers:
                host.viewer.layers.remove(image)
            raise
        host.set_image(image)
        host.classes = s.classes
        host.class_table.set_table(s.classes)
        host._on_classes_changed()
        host.ann_layer.data = np.asarray(s.annotations).astype(host.ann_layer.data.dtype)
        host.embedding_cache_dir = s.embedding_cache or host.embedding_cache_dir
        tp = host.training
        tp.reviewed = set(int(z) for z in s.reviewed)
        st = s.settings
        if "strategy" in st:
            tp.strategy.setCurrentText(st["strategy"])
        if "budget_seconds" in st:
            tp.budget.setValue(float(st["budget_seconds"]))
        if "pseudo_method" in st:
            tp.pseudo_method.setCurrentText(st["pseudo_method"])
        if s.pseudo_labels is not None:
            from ..pseudo import PseudoLabels

            conf = s.pseudo_confidence if s.pseudo_confidence is not None else np.ones(s.pseudo_labels.shape, np.float32)
            tp.pseudo = PseudoLabels(s.pseudo_labels, conf, classes=tuple(c for c in s.classes.foreground_ids))
        if s.prediction is not None:
            from .corrections import CorrectionTracker

            tp.tracker = CorrectionTracker(s.prediction.shape)
            layer = host.ensure_prediction_layer()
            tp.tracker.apply_prediction(layer.data, s.prediction.astype(layer.data.dtype))
            layer.refresh()
        if s.checkpoint is not None and s.checkpoint.exists():
            self._load_model(s)
        self.discard_autosave()  # the session's marks supersede an autosave offer for this image
        self.schedule_autosave()
        host._sync_buttons()
        host.set_status(f"session {Path(folder).name} reopened ({int(np.count_nonzero(s.annotations))} marks)")
        return s

    def _find_image(self, s: Session) -> tuple[Any, bool]:
        """The session's image layer, and whether it was opened from disk just now."""
        for layer in self.host._images():
            if tuple(layer.data.shape) == s.image_shape and image_fingerprint(np.asarray(layer.data)) == s.image_fingerprint:
                return layer, False
        if not s.image_path or not Path(s.image_path).exists():
            raise SessionError(f"the session's image {s.image_path!r} is not open and cannot be found; open it first")
        added = self.host.viewer.open(s.image_path, plugin="napari-sparseseg")
        images = [ly for ly in added if ly.__class__.__name__ == "Image"]
        if not images:
            raise SessionError(f"{s.image_path} did not open as an image")
        return images[0], True

    def _load_model(self, s: Session) -> None:
        """Rebuild the trainer from the checkpoint so "Continue" fine-tunes the saved model."""
        from ..training import Trainer

        try:
            ann = self.host.build_annotation()
        except SparsesegError:
            return
        tp = self.host.training
        pseudo = tp.refine_pseudo(ann)  # saved pseudo-labels carry no probabilities: this mixes the marks in
        tp.runner.trainer = Trainer(self.host.image_volume(), ann, tp._config(), pseudo=pseudo, init=str(s.checkpoint))
