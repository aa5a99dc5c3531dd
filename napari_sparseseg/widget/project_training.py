"""The project's "Train model" controls: cohort training of every marked scan in a worker thread.

A napari thread worker drives :meth:`ProjectTraining.run` (the study model's generator of events):
progress against the budget, the loss, the ETA, pause/resume and stop (a stopped run still becomes a
model version: the weights learnt so far are not thrown away).  The worker only reads scans and
trains; the new version is written to the project on the GUI thread when the run returns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import (
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..project import ProjectError
from .guard import guarded, notify_info

if TYPE_CHECKING:  # pragma: no cover
    from .project_panel import ProjectPanel


class CohortTrainingBox(QWidget):
    """Budget, Train model / Pause / Stop, progress, status.  ``train_overrides``: CohortConfig fields
    (tests and benchmarks shorten runs)."""

    def __init__(self, panel: ProjectPanel) -> None:
        super().__init__()
        self.panel = panel
        self.train_overrides: dict[str, Any] = {}
        self.n_events = 0
        self.last_event: Any = None
        self.last_loss: float | None = None
        self.run: Any = None  # the ProjectTraining in the worker (None until it is built)
        self._worker: Any = None
        self._paused = False
        self._stop_requested = False
        self._last_error = ""

        self.budget = QDoubleSpinBox()
        self.budget.setRange(2, 36000)
        self.budget.setValue(300)
        self.budget.setSuffix(" s")
        self.budget.setToolTip("Cohort training time (after the pseudo-labels of new scans)")
        self.train_btn = QPushButton("Train model")
        self.train_btn.setToolTip("Train the shared model on every marked scan (continues from the current version)")
        self.train_btn.clicked.connect(lambda *_: self.start())
        self.pause_btn = QPushButton("Pause")
        self.pause_btn.clicked.connect(lambda *_: self.toggle_pause())
        self.stop_btn = QPushButton("Stop")
        self.stop_btn.setToolTip("Stop soon; the weights learnt so far still become a model version")
        self.stop_btn.clicked.connect(lambda *_: self.stop())
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.status = QLabel("idle")

        row = QHBoxLayout()
        row.addWidget(QLabel("budget"))
        row.addWidget(self.budget)
        row.addWidget(self.train_btn)
        row2 = QHBoxLayout()
        row2.addWidget(self.pause_btn)
        row2.addWidget(self.stop_btn)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(row)
        lay.addLayout(row2)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        self._sync_buttons()

    @property
    def running(self) -> bool:
        return self._worker is not None

    def _sync_buttons(self) -> None:
        self.train_btn.setEnabled(self.panel.project is not None and not self.running)
        self.pause_btn.setEnabled(self.running and self.run is not None)
        self.pause_btn.setText("Resume" if self._paused else "Pause")
        self.stop_btn.setEnabled(self.running)

    def _config(self) -> Any:
        from ..cohort import CohortConfig

        return CohortConfig(budget_seconds=float(self.budget.value()), **self.train_overrides)

    @guarded
    def start(self) -> None:
        """Train the shared model on every marked scan, in a worker thread; ends in a new model version."""
        from napari.qt.threading import create_worker

        from ..project.learning import ProjectTraining

        proj = self.panel.project
        if proj is None:
            raise ProjectError("open a project first")
        if self.running:
            raise ProjectError("the model is already training")
        self.panel.save_marks()
        if not proj.marked_scans():
            raise ProjectError("no scan has marks yet: mark at least one scan first")
        config = self._config()
        self._stop_requested = False
        self._paused = False
        self._last_error = ""
        self.n_events = 0

        def work():
            run = ProjectTraining(proj, config)
            self.run = run
            if self._stop_requested:
                run.cancel()
            yield ("ready", run)
            for ev in run.run():
                yield ("event", ev)
            return run

        worker = create_worker(work)
        worker.yielded.connect(self._on_yield)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self.progress.setValue(0)
        self.status.setText("pseudo-labels of the marked scans...")
        worker.start()
        self._sync_buttons()

    def _on_yield(self, item: tuple[str, Any]) -> None:
        kind, value = item
        if kind == "ready":
            if value.skipped:
                notify_info("left out of training: " + "; ".join(value.skipped))
            self._sync_buttons()
            return
        ev = value
        self.n_events += 1
        self.last_event = ev
        if ev.kind == "pseudo":
            self.status.setText(f"pseudo-labels {ev.step}/{ev.total_steps or '?'} {ev.scan}")
            return
        if ev.losses:
            self.last_loss = float(ev.losses.get("total", next(iter(ev.losses.values()))))
        budget = float(self.budget.value())
        self.progress.setValue(int(1000 * min(1.0, ev.elapsed / max(budget, 1e-6))))
        if not self._paused:
            eta = f"  ETA {ev.eta:.0f} s" if ev.eta is not None and ev.eta < 10 * budget else ""
            loss = f"  loss {self.last_loss:.3f}" if self.last_loss is not None else ""
            self.status.setText(f"step {ev.step}{loss}{eta}")

    def _on_returned(self, run: Any) -> None:
        rec = run.finish()  # on the GUI thread: every project write happens here
        self.progress.setValue(1000)
        outcome = run.last.kind if run.last is not None else "?"
        self.status.setText(f"model version {rec.version} ({outcome}, {run.trainer.step} steps)")
        self.panel.on_model_trained()

    def _on_error(self, exc: BaseException) -> None:
        from .guard import error_message

        self._last_error = f"training failed: {error_message(exc)}"
        self.status.setText(self._last_error[:120])
        self.panel._failed(self._last_error)

    def _on_finished(self) -> None:
        self._worker = None
        self.run = None
        self._paused = False
        self._sync_buttons()

    @guarded
    def toggle_pause(self) -> None:
        if self.run is None:
            return
        if self._paused:
            self.run.resume()
            self._paused = False
        else:
            self.run.pause()
            self._paused = True
            self.status.setText("paused")
        self._sync_buttons()

    @guarded
    def stop(self) -> None:
        """Stop soon; the weights learnt so far still become a model version."""
        self._stop_requested = True
        if self.run is not None:
            self.run.resume()
            self.run.cancel()
        if self.running:
            self.status.setText("stopping...")
