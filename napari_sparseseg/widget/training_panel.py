"""Training and the correction loop, as a thin Qt view of :class:`~napari_sparseseg.loop.CorrectionLoop`:
Start / Pause / Stop, progress, ETA, loss plot, streamed predictions, "Accept corrections" (warm
start), undo, and "Next slice to review".

The loop owns the marks it was given, the pseudo-labels and the marks they reflect, the trainer, the
reviewed slices and the strategy; this panel reads the marks from the annotations layer, shows
what the loop streams, and runs the walker off the GUI thread (:class:`RefineQueue`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
)

from ..active import STRATEGIES
from ..annotations.sparse import SparseAnnotation
from ..errors import AnnotationError
from ..loop import CorrectionLoop
from . import layers as L
from .compute_on import ComputeOnWidget
from .corrections import CorrectionTracker
from .guard import guarded, notify_error, notify_info
from .loss_plot import LossPlot
from .refine_queue import RefineQueue, refine_off_thread
from .remember import remember
from .subprocess_job import run_in_process
from .training_runner import TrainingRunner

if TYPE_CHECKING:  # pragma: no cover
    from .main import SparseSegWidget

# the walker first: it gives the first prediction in seconds; "auto" (walker + SAM fusion, the best
# measured quality) encodes every slice first, ~2 min for the hippocampus sample on a busy 2-core box
PSEUDO_METHODS = ("random-walker", "auto", "sam", "fusion", "none")


def pseudo_in_process(volume: Any, marks: Any, method: str, should_stop: Any = None, progress: Any = None) -> Any:
    """Pseudo-labels in a spawned process: scipy's walker holds the GIL and would freeze napari."""
    from ..pseudo import make_pseudo_labels

    return run_in_process(make_pseudo_labels, volume, marks, method, should_stop=should_stop, progress=progress)


def refine_in_process(image: Any, spacing: tuple, pseudo: Any, old: Any, new: Any, should_stop: Any = None) -> Any:
    return refine_off_thread(image, spacing, pseudo, old, new, should_stop=should_stop)


class TrainingPanel(QGroupBox):
    """The "Train and correct" box.  Every slot is guarded: errors notify and buttons re-enable."""

    def __init__(self, host: SparseSegWidget) -> None:
        super().__init__("Train and correct")
        self.host = host
        self.loop = CorrectionLoop(pseudo_fn=self._pseudo_in_process, refine_fn=refine_in_process)
        self.runner = TrainingRunner(self.loop, self)
        self.runner.status.connect(self._on_status)
        self.runner.pseudo_ready.connect(self._on_pseudo_ready)
        self.runner.step.connect(self._on_step)
        self.runner.prediction.connect(self._on_prediction)
        self.runner.failed.connect(self._on_failed)
        self.runner.finished.connect(self._on_finished)
        self.tracker: CorrectionTracker | None = None  # the shown prediction vs the user's edits on it
        self.n_predictions = 0
        self.last_event: Any = None
        self._paused = False
        self._last_error = ""
        self._applied_trainer: Any = None
        # a pushed correction re-solves the pseudo-labels around it off the GUI thread, one walk at a time
        self.refiner = RefineQueue(self, snapshot=self.loop.snapshot, adopt=self._adopt_refined,
                                   can_run=lambda: self.runner.running and self.trainer is not None)

        self.budget = QDoubleSpinBox()
        self.budget.setRange(2, 3600)
        self.budget.setValue(60)
        self.budget.setSuffix(" s")
        self.budget.setToolTip("Training time; accepting corrections continues for half of it")
        self.pseudo_method = QComboBox()
        self.pseudo_method.addItems(PSEUDO_METHODS)
        self.pseudo_method.setToolTip("How sparse marks become dense pseudo-labels before training: random-walker (fast), "
                                      "auto = walker+SAM fusion (better, slower), 'none': marks only")
        self.start_btn = QPushButton("Start")
        self.start_btn.clicked.connect(lambda *_: self.start())
        self.pause_btn = QPushButton("Pause")
        self.pause_btn.clicked.connect(lambda *_: self.toggle_pause())
        self.stop_btn = QPushButton("Stop")
        self.stop_btn.clicked.connect(lambda *_: self.stop())
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self._stage_progress: tuple[str, float] | None = None  # the pseudo-label stage's share done
        self.eta = QLabel("idle")
        self.plot = LossPlot()
        self.accept_btn = QPushButton("Accept corrections")
        self.accept_btn.setToolTip("Voxels you repainted in 'prediction' become marks; training continues from the current weights")
        self.accept_btn.clicked.connect(lambda *_: self.accept_corrections())
        self.undo_btn = QPushButton("Undo accept")
        self.undo_btn.clicked.connect(lambda *_: self.undo_accept())
        self.strategy = QComboBox()
        self.strategy.addItems(list(STRATEGIES))
        self.strategy.setToolTip("entropy: most uncertain; disagreement: SAM/pseudo-labels vs network; random: baseline")
        self.next_btn = QPushButton("Next slice to review")
        self.next_btn.clicked.connect(lambda *_: self.go_next())
        self.compute_on = ComputeOnWidget()  # this machine / a `sparseseg serve`: where the next model trains

        for control, key in ((self.budget, "budget_seconds"), (self.pseudo_method, "pseudo_method"),
                             (self.strategy, "strategy")):
            remember(control, key)  # the user's last choice, kept between napari sessions

        form = QFormLayout()
        form.addRow("budget", self.budget)
        form.addRow("pseudo-labels", self.pseudo_method)
        row = QHBoxLayout()
        for b in (self.start_btn, self.pause_btn, self.stop_btn):
            row.addWidget(b)
        row2 = QHBoxLayout()
        row2.addWidget(self.accept_btn)
        row2.addWidget(self.undo_btn)
        row3 = QHBoxLayout()
        row3.addWidget(self.strategy)
        row3.addWidget(self.next_btn)
        lay = QVBoxLayout(self)
        lay.addWidget(self.compute_on)
        lay.addLayout(form)
        lay.addLayout(row)
        lay.addWidget(self.progress)
        lay.addWidget(self.eta)
        lay.addWidget(self.plot)
        lay.addLayout(row2)
        lay.addLayout(row3)
        self._sync_buttons()

    # ------------------------------------------------------------------------------- state
    @property
    def trainer(self) -> Any:
        return self.loop.trainer

    @property
    def pseudo(self) -> Any:
        return self.loop.pseudo

    @pseudo.setter
    def pseudo(self, pseudo: Any) -> None:  # a reopened session's pseudo-labels (marks unknown: a refine mixes them in)
        self.loop.set_pseudo(pseudo, None)

    @property
    def _pseudo_ann(self) -> Any:
        """The marks :attr:`pseudo` reflects (a refine re-solves only marks new since)."""
        return self.loop.pseudo_marks

    @property
    def reviewed(self) -> set[int]:
        return self.loop.reviewed

    @reviewed.setter
    def reviewed(self, slices: set[int]) -> None:
        self.loop.reviewed = set(slices)

    def _sync_buttons(self) -> None:
        has_image = self.host.image_layer is not None
        running = self.runner.running
        self.start_btn.setEnabled(has_image and not running)
        self.start_btn.setText("Continue" if (self.trainer is not None and not running) else "Start")
        self.pause_btn.setEnabled(running and self.trainer is not None)
        self.pause_btn.setText("Resume" if self._paused else "Pause")
        self.stop_btn.setEnabled(running)
        has_pred = self.tracker is not None and self.tracker.has_prediction
        self.accept_btn.setEnabled(has_pred)
        self.undo_btn.setEnabled(self.tracker is not None and bool(self.tracker.history))
        self.next_btn.setEnabled(has_image)

    def reset(self) -> None:
        """A new image (or classes that no longer fit): forget the model and the prediction."""
        if self.runner.running:
            self.runner.cancel()
            self.runner.wait(5)
        self.refiner.cancel()
        self.loop.reset()
        self.loop.image = None
        self._applied_trainer = None
        self.tracker = None
        self.n_predictions = 0
        self.plot.clear()
        self.progress.setValue(0)
        self.eta.setText("idle")
        self._sync_buttons()

    def _config(self):
        from ..training import TrainConfig

        overrides = dict(self.host.train_overrides)
        return TrainConfig(budget_seconds=float(self.budget.value()), **overrides)

    def _sync_marks(self) -> SparseAnnotation:
        """The annotations layer -> the loop's marks (the user paints there between operations)."""
        ann = self.host.build_annotation()
        self.loop.image = self.host.image_volume()
        self.loop.set_marks(ann)
        return ann

    # ------------------------------------------------------------------------------ actions
    @guarded
    def start(self) -> None:
        """Start training (or continue the current model with the current marks: warm start)."""
        try:
            from ..training import Trainer  # noqa: F401
        except ImportError as e:  # pragma: no cover - engine missing in a partial install
            raise RuntimeError(f"the training engine is not available: {e}") from None
        ann = self._sync_marks()
        if self.trainer is not None and tuple(self.trainer.classes) != tuple(ann.classes):
            notify_info(f"classes changed to {list(ann.classes)}: starting a new model")
        self.loop.config = self._config()
        self.loop.pseudo_method = self.pseudo_method.currentText()
        # a scan of a project starts from the project's model (the interactive fine-tune of a pre-segmented scan)
        self.loop.init = self.host.project.warm_start_for(self.host.image_layer, ann, self.loop.pseudo_method != "none")
        self.loop.remote = self._remote_factory()  # "Compute on: server": the same events from a server session
        # fresh pseudo-labels replace whatever a walk in flight would give; a continue refines the new
        # marks itself (without a walk: at once; with one: in the run, the queue held until it lands)
        self.refiner.cancel()
        run = self.loop.start(recompute_pseudo=True)
        if run.walks:
            self.refiner.hold()
        self._paused = False
        self.runner.start(run)
        self.eta.setText("starting...")

    def _pseudo_in_process(self, volume: Any, marks: Any, method: str, should_stop: Any = None) -> Any:
        """:func:`pseudo_in_process` with the progress bar following the slices solved."""

        def progress(done: int, total: int) -> None:  # in the run's thread: the signal is queued to the GUI
            self._stage_progress = ("pseudo-labels", done / max(total, 1))
            self.runner.status.emit(f"pseudo-labels ({method}): slice {done} of {total}")

        try:
            return pseudo_in_process(volume, marks, method, should_stop=should_stop, progress=progress)
        finally:
            self._stage_progress = None

    def _remote_factory(self) -> Any:
        url = self.compute_on.server_url
        if not url:
            return None

        def build(image: Any, marks: Any, method: str, config: Any, report: Any, should_stop: Any) -> Any:
            from ..server.remote_trainer import remote_job

            return remote_job(url, image, marks, method, config)(report, should_stop)

        return build

    @guarded
    def toggle_pause(self) -> None:
        if self._paused:
            self.runner.resume()
            self._paused = False
        else:
            self.runner.pause()
            self._paused = True
            self.eta.setText("paused")

    @guarded
    def stop(self) -> None:
        self.runner.cancel()
        self.eta.setText("stopping...")

    @guarded
    def accept_corrections(self) -> None:
        """Edited prediction voxels -> marks (one undo step); training continues warm."""
        pred = self.host.pred_layer
        if self.tracker is None or pred is None:
            raise RuntimeError("no prediction yet: start training first")
        ann = self._sync_marks()
        ann_layer = self.host.ann_layer
        marks = np.array(ann_layer.data, copy=True)
        rec = self.tracker.accept(np.asarray(pred.data), marks, self.host.classes.background)
        if rec is None:
            notify_info("no corrections to accept: paint over the 'prediction' layer first")
            return
        ann_layer.data_setitem(rec.indices, rec.new_marks)
        correction = np.zeros(ann.shape, ann.labels.dtype)
        correction[rec.indices] = rec.new_marks
        feed = self.runner.running and self.trainer is not None and not self.refiner.held
        self.loop.accept(SparseAnnotation(correction, ann.background_label, class_names=dict(ann.class_names)),
                         slices=rec.slices, refine_now=False, feed=feed)
        self.host.schedule_autosave()
        self.host.set_status(f"accepted {len(rec.new_marks)} corrected voxels on slice(s) {list(rec.slices)}")
        self._push_marks(fed=True)

    @guarded
    def undo_accept(self) -> None:
        pred = self.host.pred_layer
        if self.tracker is None or pred is None:
            return
        marks = np.array(self.host.ann_layer.data, copy=True)
        rec = self.tracker.undo_accept(np.asarray(pred.data), marks)
        if rec is None:
            return
        self.host.ann_layer.data_setitem(rec.indices, rec.old_marks)
        if not self.refiner.held:
            self.refiner.cancel()  # a walk for the undone marks must not land after the undo
        self.loop.undo()  # the marks, the reviewed slices and the pseudo-labels it refined go back
        self.host.schedule_autosave()
        self.host.set_status(f"undid the last accept ({len(rec.old_marks)} voxels)")
        if self.runner.running:
            self._push_marks()

    def _push_marks(self, fed: bool = False) -> None:
        """Give the layer's marks to the model: to the running trainer, or by continuing training.

        ``fed``: the loop already gave the trainer these marks (:meth:`CorrectionLoop.accept`)."""
        if self.runner.running and self.trainer is not None:
            ann = self.loop.marks if fed else self._sync_marks()
            if not fed and not self.refiner.held:  # else the run's update is still to come: the marks follow it
                self.loop.feed_trainer(ann)  # the marks count at once
            self.refiner.request(ann)  # the re-solved region follows when the walk is done
            self.host.set_status("training continues with the new marks")
        elif self.trainer is not None:
            self.start()

    def _adopt_refined(self, refined: Any, ann: Any, newer: Any) -> None:
        """A walk's result (GUI thread): keep it with its marks; feed the trainer without undoing newer marks."""
        self.loop.adopt_pseudo(refined, ann, newer, feed=self.runner.running and self.trainer is not None)

    def refine_pseudo(self, ann: Any) -> Any:
        """The pseudo-labels for ``ann``, re-solved around the marks new since :attr:`_pseudo_ann` (blocking).

        For pseudo-labels without probabilities (a reopened session) it only mixes the marks in;
        pushed corrections walk off the GUI thread (:class:`RefineQueue`, the run of a continue).
        """
        self.refiner.cancel()
        self.loop.image = self.host.image_volume()
        self.loop.set_marks(ann)
        return self.loop.refine_now(ann)

    @guarded
    def go_next(self) -> None:
        z = self.suggest()
        if z is None:
            notify_info("nothing to suggest: train first (entropy/disagreement) or every slice is reviewed")
            return
        L.go_to_slice(self.host.viewer, self.host.image_layer, z)
        self.host.set_status(f"review slice {z} ({self.strategy.currentText()})")

    def suggest(self) -> int | None:
        """The slice the chosen strategy ranks first, from what the viewer shows."""
        host = self.host
        self.loop.set_strategy(self.strategy.currentText())
        self.loop.image = host.image_volume()
        if host.ann_layer is not None:
            try:
                self.loop.set_marks(host.build_annotation())
            except AnnotationError:  # no structure marks yet: review without them
                self.loop.marks = None
        shown = self.tracker.model if self.tracker is not None and self.tracker.has_prediction else None
        unc = host.unc_layer.data if host.unc_layer is not None else None
        return self.loop.next_slice(host.current_z(), prediction=shown, uncertainty=unc)

    # ------------------------------------------------------------------------------ stream
    def _on_pseudo_ready(self, _item: Any) -> None:
        """Fresh or re-solved pseudo-labels landed (the loop adopted them): corrections pushed while the
        run walked count now, and their walk goes next."""
        waiting = self.refiner.waiting
        if waiting is not None and self.runner.running and self.trainer is not None:
            self.loop.feed_trainer(waiting)
        self.refiner.release()

    def _on_status(self, msg: str) -> None:
        self.eta.setText(msg)
        stage = self._stage_progress  # (name, fraction) set by the job's worker thread, or None
        if stage is not None:
            self.progress.setFormat(f"{stage[0]} %p%")
            self.progress.setValue(int(1000 * stage[1]))
        self._sync_buttons()

    def _on_step(self, ev: Any) -> None:
        self.last_event = ev
        total = ev.elapsed + (ev.eta or 0.0)
        if total > 0:
            self.progress.setFormat("training %p%")
            self.progress.setValue(int(1000 * ev.elapsed / total))
        if ev.losses:
            self.plot.add(ev.step, {k: v for k, v in ev.losses.items()})
        loss = ev.losses.get("total", next(iter(ev.losses.values()), float("nan"))) if ev.losses else float("nan")
        if not self._paused:
            eta = f"ETA {ev.eta:.0f} s" if ev.eta is not None else ""
            self.eta.setText(f"step {ev.step}  loss {loss:.3f}  {eta}")

    def _on_prediction(self, ev: Any, region: Any) -> None:
        host = self.host
        pred = np.asarray(ev.prediction)
        if self.tracker is None or self.tracker.shape != pred.shape:
            self.tracker = CorrectionTracker(pred.shape)
        if self.trainer is not self._applied_trainer:
            # a new model's first prediction has no "changed" box relative to what we show: apply it all
            self._applied_trainer = self.trainer
            region = tuple(slice(0, s) for s in pred.shape)
        layer = host.ensure_prediction_layer()
        written = self.tracker.apply_prediction(layer.data, pred.astype(layer.data.dtype), region)
        # redraw only what the user can see: the data is updated in place, and napari re-slices from it
        # when the slice changes or a hidden layer is shown
        visible = written is not None and host.region_on_screen(written)
        if visible and layer.visible:
            layer.refresh()
        if ev.uncertainty is not None:
            unc = np.asarray(ev.uncertainty, dtype=np.float32)
            ul = host.ensure_uncertainty_layer(unc)
            if written is not None and ul.data is not unc:
                ul.data[written] = unc[written]
                if visible and ul.visible:
                    ul.refresh()
        self.n_predictions += 1
        self.host._sync_buttons()

    def _on_failed(self, msg: str) -> None:
        self._last_error = msg
        notify_error(f"training failed: {msg}")

    def _on_finished(self, outcome: str) -> None:
        if self.refiner.held:  # the run ended before its walk finished: the next start covers those marks
            self.refiner.release()
        self._paused = False
        if outcome == "done":
            self.progress.setValue(1000)
            self.eta.setText(f"done (step {self.last_event.step if self.last_event else 0})")
            self.host.set_status("Training done. Repaint wrong voxels on 'prediction' and press Accept corrections "
                                 "(training continues), or go to the Next slice to review.")
        elif outcome == "cancelled":
            self.eta.setText("stopped")
        else:
            self.eta.setText("failed (see notification); you can start again")
        self.host._sync_buttons()
