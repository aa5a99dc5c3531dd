"""The "Project" box: a study's scans, the next scan to open, and the shared model trained in the background.

Opening a scan pre-segments it with the project's current model (no marks needed): the prediction
lands in the "prediction" layer, where the usual correction loop (repaint, "Accept corrections")
turns corrections into marks.  The open scan's marks are saved into the project (debounced, atomic)
so the next cohort training learns them; "Train model" trains on every marked scan in a background
thread (progress, loss, pause/stop) and adds a model version.  All project writes happen on the GUI
thread; the worker threads only read scans and compute.  The CLI (``sparseseg project ...``) works on
the same folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from ..active.scans import SCAN_STRATEGIES
from ..project import Project, ProjectError
from .corrections import CorrectionTracker
from .guard import guarded, notify_error, notify_info
from .project_training import CohortTrainingBox

if TYPE_CHECKING:  # pragma: no cover
    from .main import SparseSegWidget

COLUMNS = ("scan", "status", "uncertainty", "model")
SAVE_DELAY_MS = 1500


class ProjectPanel(QGroupBox):
    """See the module docstring; the training controls are :class:`CohortTrainingBox` (``self.trainer``)."""

    def __init__(self, host: SparseSegWidget) -> None:
        super().__init__("Project (a study of scans)")
        self.host = host
        self.project: Project | None = None
        self.current: str | None = None  # id of the scan open in the viewer
        self.scan_layer: Any = None  # its image layer
        self.volume: Any = None  # its Volume as read from disk (the grid every file is written on)
        self.predictor: Any = None
        self._predict_worker: Any = None
        self._watched: Any = None
        self._last_error = ""
        self._pending: list[str] = []  # scans waiting for a prediction (worker pops from the front)
        self._save_timer = QTimer(self)
        self._save_timer.setSingleShot(True)
        self._save_timer.setInterval(SAVE_DELAY_MS)
        self._save_timer.timeout.connect(lambda: self.save_marks())

        self.path_label = QLabel("No project. Open a folder or create one from the open scans.")
        self.path_label.setWordWrap(True)
        self.open_btn = QPushButton("Open project...")
        self.open_btn.clicked.connect(lambda *_: self.open_project())
        self.new_btn = QPushButton("New project...")
        self.new_btn.setToolTip("Create a project folder and add scans (NIfTI files) to it")
        self.new_btn.clicked.connect(lambda *_: self.new_project())
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.Stretch)
        for c in range(1, len(COLUMNS)):
            header.setSectionResizeMode(c, QHeaderView.ResizeToContents)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.table.setTextElideMode(Qt.ElideMiddle)  # scan ids differ at the end: "hipp...m_007"
        self.table.setMaximumHeight(160)
        self.table.setToolTip("uncertainty: the current model's mean uncertainty near the predicted structures "
                              "(0 = sure, 1 = guessing); model: the model version that made the prediction")
        self.table.cellDoubleClicked.connect(lambda row, _col: self.open_scan(self._row_id(row)))
        self.open_scan_btn = QPushButton("Open scan")
        self.open_scan_btn.clicked.connect(lambda *_: self.open_selected())
        self.strategy = QComboBox()
        self.strategy.addItems(list(SCAN_STRATEGIES))
        self.strategy.setToolTip("uncertainty: the scan the model is least sure of, unlike those already marked; "
                                 "random / sequential: baselines")
        self.next_btn = QPushButton("Next scan")
        self.next_btn.clicked.connect(lambda *_: self.next_scan())
        self.reviewed_btn = QPushButton("Mark reviewed")
        self.reviewed_btn.setToolTip("The open scan's segmentation is checked: save its marks, status 'reviewed'")
        self.reviewed_btn.clicked.connect(lambda *_: self.mark_reviewed())
        self.model_label = QLabel("model version 0")
        self.trainer = CohortTrainingBox(self)

        row0 = QHBoxLayout()
        row0.addWidget(self.open_btn)
        row0.addWidget(self.new_btn)
        row1 = QHBoxLayout()
        row1.addWidget(self.open_scan_btn)
        row1.addWidget(self.strategy)
        row1.addWidget(self.next_btn)
        row2 = QHBoxLayout()
        row2.addWidget(self.reviewed_btn)
        row2.addWidget(self.model_label, 1)
        lay = QVBoxLayout(self)
        lay.addWidget(self.path_label)
        lay.addLayout(row0)
        lay.addWidget(self.table)
        lay.addLayout(row1)
        lay.addLayout(row2)
        lay.addWidget(self.trainer)
        self._sync_buttons()

    # ------------------------------------------------------------------------------ state
    @property
    def training(self) -> bool:
        return self.trainer.running

    @property
    def predicting(self) -> bool:
        return self._predict_worker is not None

    def _sync_buttons(self) -> None:
        has = self.project is not None
        self.open_scan_btn.setEnabled(has and self.table.rowCount() > 0)
        self.next_btn.setEnabled(has and self.table.rowCount() > 0)
        self.reviewed_btn.setEnabled(has and self.current is not None)
        self.trainer._sync_buttons()

    def _row_id(self, row: int) -> str:
        item = self.table.item(row, 0)
        return "" if item is None else item.text()

    def refresh(self) -> None:
        """Re-read the project (another process may have changed it) and redraw the table."""
        if self.project is None:
            return
        self.project.reload_if_changed()
        p = self.project
        self.path_label.setText(f"{p.name}: {len(p.scans)} scans ({p.folder})")
        self.model_label.setText(f"model version {p.model_version}")
        selected = self.current
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if rows:
            selected = self._row_id(rows[0].row())
        self.table.setRowCount(len(p.scans))
        for r, s in enumerate(p.scans):
            unc = s.foreground_uncertainty if s.foreground_uncertainty is not None else s.mean_uncertainty
            cells = (s.id, s.status,
                     "-" if unc is None else f"{unc:.3f}",
                     "-" if s.prediction_model_version is None else f"v{s.prediction_model_version}")
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if c == 0:
                    item.setToolTip(str(p.image_path(s)))
                    f = item.font()
                    f.setBold(s.id == self.current)
                    item.setFont(f)
                self.table.setItem(r, c, item)
            if s.id == selected:
                self.table.selectRow(r)
        self._sync_buttons()

    # ------------------------------------------------------------------------------ project
    @guarded
    def open_project(self, folder: str | Path | None = None) -> Project | None:
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self, "Open a project folder")
            if not folder:
                return None
        self.set_project(Project.open(folder))
        return self.project

    @guarded
    def new_project(self, folder: str | Path | None = None, images: list[str] | None = None) -> Project | None:
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self, "Folder for the new project (it may be empty)")
            if not folder:
                return None
        if images is None:
            images, _ = QFileDialog.getOpenFileNames(self, "Scans to add", str(folder),
                                                     "Images (*.nii *.nii.gz *.zarr);;All files (*)")
        proj = Project.create(folder, exist_ok=True)
        if images:
            proj.add_scans(images)
        self.set_project(proj)
        return proj

    def set_project(self, project: Project) -> None:
        from ..project.learning import ProjectPredictor

        if self.training:
            raise ProjectError("stop the running training before switching projects")
        self.save_marks()
        self.project = project
        self.current = None
        self._pending.clear()
        self.predictor = ProjectPredictor(project)
        for line in project.repairs:
            notify_info(f"project repaired: {line}")
        self.refresh()
        self.host.set_status(f"Project {project.name}: open a scan (or 'Next scan').")

    # ------------------------------------------------------------------------------ scans
    @guarded
    def open_selected(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            raise ProjectError("select a scan in the list first")
        self.open_scan(self._row_id(rows[0].row()))

    @guarded
    def next_scan(self) -> str | None:
        if self.project is None:
            raise ProjectError("open a project first")
        self.save_marks()
        s = self.project.next_scan(self.strategy.currentText(), current=self.current)
        if s is None:
            notify_info("every scan is reviewed or exported")
            return None
        self.open_scan(s.id)
        return s.id

    @guarded
    def open_scan(self, scan_id: str) -> None:
        """Show the scan, its saved marks and (with a model) its pre-segmentation."""
        from .._reader import image_layer_data

        if self.project is None:
            raise ProjectError("open a project first")
        self.save_marks()
        proj = self.project
        vol = proj.load_image(scan_id)
        data, kwargs, _ = image_layer_data(vol)
        kwargs["metadata"] = {**kwargs.get("metadata", {}), "sparseseg_project_scan": scan_id}
        old = self.scan_layer
        layer = self.host.viewer.add_image(data, **kwargs)
        self._use_project_classes()
        self.host.set_image(layer)
        if old is not None and old in self.host.viewer.layers and old is not layer:
            self.host.viewer.layers.remove(old)
        self.scan_layer, self.current, self.volume = layer, scan_id, vol
        marks = proj.load_marks(scan_id, like=vol)
        ann_layer = self.host.ann_layer
        if marks is not None and ann_layer is not None:
            ann_layer.data = marks.labels.astype(ann_layer.data.dtype, copy=False)
        self._watch_marks()
        self.refresh()
        self.host.set_status(f"{scan_id}: " + ("pre-segmenting with model version "
                                               f"{proj.model_version}..." if proj.current_model else
                                               "no model yet: mark it (scribbles or slices), then Train model."))
        if proj.current_model is not None:
            self._predict([scan_id])

    def _use_project_classes(self) -> None:
        """Make the widget's class table the project's (one network: the same ids in every scan)."""
        spec = self.project.labels if self.project is not None else None
        if spec is None or spec.background_label is None or not spec.classes:
            return
        from ..session import ClassTable

        table = ClassTable.default(len(spec.classes), spec.class_names)
        if [c.id for c in table.classes] != [*spec.classes, spec.background_label]:
            from ..session import ClassSpec

            rows = [ClassSpec(c, spec.class_names.get(c, f"class {c}"), table.classes[i % (len(table.classes) - 1)].color)
                    for i, c in enumerate(spec.classes)]
            rows.append(ClassSpec(spec.background_label, "background", table.classes[-1].color))
            table = ClassTable(rows, spec.background_label)
        if table.to_dict() != self.host.classes.to_dict():
            self.host.classes = table
            self.host.class_table.set_table(table)
            self.host._on_classes_changed()

    def _predict(self, scan_ids: list[str]) -> None:
        """Queue ``scan_ids`` for prediction ahead of what is queued; one worker thread works through the queue.

        Why a queue rather than one worker per request: opening a scan must not wait behind a study-wide
        refresh, nor cancel it (the table and the next-scan suggestion need every scan's uncertainty).
        """
        rest = [i for i in self._pending if i not in scan_ids]
        self._pending[:] = list(scan_ids) + rest
        if self._predict_worker is None:
            self._start_predict_worker()

    def _start_predict_worker(self) -> None:
        from napari.qt.threading import create_worker

        predictor, pending = self.predictor, self._pending
        predictor.model()  # load (or refresh) the model here: the worker only reads scans and computes

        def work():
            while pending:
                sid = pending.pop(0)
                out = predictor.predict_versioned(sid, refresh=False)
                if out is None:
                    return
                yield (sid, *out)

        worker = create_worker(work)
        worker.yielded.connect(self._on_predicted)
        worker.errored.connect(lambda exc: self._failed(f"pre-segmentation failed: {exc}"))
        worker.finished.connect(self._on_predict_finished)
        self._predict_worker = worker
        worker.start()

    def _failed(self, message: str) -> None:
        self._last_error = message
        notify_error(message)

    def on_model_trained(self) -> None:
        """A new model version exists: show it, and predict the open scan, then every scan still to do.

        Every scan, because the table's uncertainty and the next-scan suggestion need them.
        """
        self.predictor.model()  # a running prediction queue continues with the new version
        self.refresh()
        todo = [s.id for s in self.project.scans if s.status in ("unmarked", "marked") and s.id != self.current]
        self._predict(([self.current] if self.current is not None else []) + todo)

    def _on_predict_finished(self) -> None:
        self._predict_worker = None
        if self._pending and self.project is not None:  # queued after the worker's last look
            self._start_predict_worker()

    def _on_predicted(self, result: tuple[str, Any, Any, int | None]) -> None:
        scan_id, labels, unc, version = result
        if self.project is None:
            return
        if scan_id != self.current or self.host.image_layer is not self.scan_layer:
            self.project.set_prediction(scan_id, labels, unc, model_version=version)  # another scan: file + table
            self.refresh()
            return
        host = self.host
        layer = host.ensure_prediction_layer()
        tracker = CorrectionTracker(tuple(layer.data.shape))
        tracker.apply_prediction(layer.data, np.asarray(labels).astype(layer.data.dtype))
        host.training.tracker = tracker  # the training box's "Accept corrections" turns repaints into marks
        layer.refresh()
        ul = host.ensure_uncertainty_layer(np.asarray(unc, np.float32))
        ul.data = np.asarray(unc, np.float32)
        self.project.set_prediction(scan_id, labels, unc, like=self.volume, model_version=version)
        self.refresh()
        host._sync_buttons()
        host.set_status(f"{scan_id}: pre-segmented by model version {version}. Repaint wrong voxels on "
                        "'prediction' and press Accept corrections, or add marks; they are saved into the project.")

    def warm_start_for(self, image_layer: Any, ann: Any, with_prior: bool = True) -> str | None:
        """The checkpoint a per-scan training of ``image_layer`` should start from, or None.

        A scan of the project fine-tunes the project's current model (the *Train and correct* box then
        adapts it to this scan within its budget); any other image, or marks whose classes differ from
        the model's, or a run without pseudo-labels (the model's input includes them), starts from scratch.
        """
        if not with_prior or self.project is None or image_layer is None or image_layer is not self.scan_layer:
            return None
        cur = self.project.current_model
        if cur is None or list(ann.classes) != list(self.project.labels.classes):
            return None
        return str(self.project.resolve(cur.path))

    # ------------------------------------------------------------------------------ marks
    def _watch_marks(self) -> None:
        layer = self.host.ann_layer
        if layer is None or layer is self._watched:
            return
        layer.events.paint.connect(self._schedule_save)
        layer.events.data.connect(self._schedule_save)
        self._watched = layer

    def _schedule_save(self, *_: Any) -> None:
        if self.project is not None and self.current is not None:
            self._save_timer.start()

    def save_marks(self) -> bool:
        """Write the open scan's marks into the project now; True if something was written."""
        self._save_timer.stop()
        host = self.host
        if self.project is None or self.current is None or host.ann_layer is None \
                or host.image_layer is not self.scan_layer or self.scan_layer is None:
            return False
        labels = np.array(host.ann_layer.data, copy=True)
        s = self.project.scan(self.current)
        if not labels.any() and s.marks is None:
            return False
        from ..annotations.sparse import SparseAnnotation

        table = host.classes
        ann = SparseAnnotation(labels, table.background, table.foreground_ids,
                               {c: table.names[c] for c in table.foreground_ids})
        try:
            self.project.set_marks(self.current, ann, like=self.volume)
        except ProjectError as exc:
            notify_error(str(exc))
            return False
        self.refresh()
        return True

    @guarded
    def mark_reviewed(self) -> None:
        if self.project is None or self.current is None:
            raise ProjectError("open a scan of the project first")
        self.save_marks()
        self.project.set_status(self.current, "reviewed")
        self.refresh()
        self.host.set_status(f"{self.current} reviewed; 'Next scan' suggests the next one.")

    def shutdown(self, timeout_s: float = 15.0) -> None:
        """The widget closes: save the marks, stop training and predicting, wait briefly for the threads."""
        import time

        from qtpy.QtWidgets import QApplication

        self.save_marks()
        self._pending.clear()
        self.trainer.stop()
        end = time.monotonic() + timeout_s
        while (self.training or self.predicting) and time.monotonic() < end:
            QApplication.processEvents()
            time.sleep(0.02)
