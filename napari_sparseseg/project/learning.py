"""The project's side of the shared model: train it on every marked scan, apply it to a scan.

Used by ``sparseseg project train|predict`` and by the widget's project panel, so both produce the
same model versions and the same prediction files.  The method itself lives in
:mod:`napari_sparseseg.cohort`; this module only maps project scans to cohort scans and back.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import AnnotationError
from .records import ModelRecord, ProjectError
from .store import Project

if TYPE_CHECKING:  # pragma: no cover
    from ..cohort import CohortConfig, CohortEvent, CohortModel, CohortScan


def cohort_scans(project: Project, keys: list[str] | None = None) -> tuple[list[CohortScan], list[str]]:
    """The project's marked scans as :class:`CohortScan` s, and one line per marked scan left out (why).

    Every scan must mark every class of the project (one network, one set of outputs); a scan whose
    marks miss a class is left out rather than failing the whole run.
    """
    from ..cohort import CohortScan

    out: list[CohortScan] = []
    skipped: list[str] = []
    classes = project.labels.classes
    for s in project.marked_scans():
        if keys is not None and s.id not in keys:
            continue
        try:
            image = project.load_image(s)
            ann = project.load_marks(s, like=image)
            if ann is None:
                continue
            if classes and tuple(ann.classes) != tuple(classes):
                from ..annotations.sparse import SparseAnnotation

                ann = SparseAnnotation(ann.labels, ann.background_label, tuple(classes),
                                       {**project.labels.class_names, **ann.class_names})
            ann.validate(image.shape)
        except (AnnotationError, ProjectError) as exc:
            skipped.append(f"{s.id}: {exc}")
            continue
        out.append(CohortScan(image, ann, name=s.id))
    return out, skipped


class ProjectTraining:
    """One cohort training run over a project's marked scans, ending in a new model version.

    Starts from the project's current model (so each run continues learning, with every marked scan
    replayed) unless ``resume`` continues an interrupted run from ``training/``.
    """

    def __init__(self, project: Project, config: CohortConfig, resume: bool = False,
                 from_current: bool = True) -> None:
        from ..cohort import CohortTrainer

        self.project = project
        scans, self.skipped = cohort_scans(project)
        if not scans:
            why = f" ({'; '.join(self.skipped)})" if self.skipped else ""
            raise ProjectError(f"no marked scan to train on{why}: mark at least one scan")
        init = project.current_model_path() if from_current and not resume else None
        self.trainer = CohortTrainer(scans, config, init=init, workdir=project.training_dir, resume=resume)
        self.scan_ids = [s.name for s in scans]
        self.last: CohortEvent | None = None

    def run(self) -> Iterator[CohortEvent]:
        for ev in self.trainer.run():
            self.last = ev
            yield ev

    def cancel(self) -> None:
        self.trainer.cancel()

    def pause(self) -> None:
        self.trainer.pause()

    def resume(self) -> None:
        self.trainer.resume()

    def finish(self) -> ModelRecord:
        """Save the trained weights as the project's next model version (also after a cancel)."""
        ev = self.last
        info: dict[str, Any] = {"steps": int(self.trainer.step),
                                "outcome": ev.kind if ev is not None else "not started",
                                "elapsed_seconds": round(float(ev.elapsed), 1) if ev is not None else 0.0}
        if ev is not None and ev.losses:
            info["loss"] = {k: round(float(v), 5) for k, v in ev.losses.items()}
        return self.project.add_model(self.trainer.save, scans=self.scan_ids, info=info)


class ProjectPredictor:
    """Applies the project's current model to scans, writing predictions and their quality signal.

    Keeps the loaded model until the project's model version moves (loading takes ~0.1-1 s).
    """

    def __init__(self, project: Project, device: str = "auto") -> None:
        self.project = project
        self.device = device
        # (model, version) swapped as one object, so a worker never pairs a model with another's version
        self._loaded: tuple[CohortModel, int] | None = None

    def model(self) -> CohortModel | None:
        from ..cohort import CohortModel

        self.project.reload_if_changed()
        cur = self.project.current_model
        if cur is None:
            return None
        if self._loaded is None or self._loaded[1] != cur.version:
            self._loaded = (CohortModel.load(self.project.resolve(cur.path), device=self.device), cur.version)
        return self._loaded[0]

    @property
    def version(self) -> int | None:
        return None if self._loaded is None else self._loaded[1]

    def predict(self, key: str, use_marks: bool = True, save: bool = True
                ) -> tuple[np.ndarray, np.ndarray] | None:
        """``(labels, uncertainty)`` of scan ``key`` by the current model (None if the project has none).

        With ``use_marks`` the scan's own marks (if any) give the model its prior, as in training, and
        stay in the output.  ``save`` records the prediction in the project.
        """
        out = self.predict_versioned(key, use_marks=use_marks)
        if out is None:
            return None
        labels, unc, version = out
        if save:
            self.project.set_prediction(key, labels, unc, model_version=version)
        return labels, unc

    def predict_versioned(self, key: str, use_marks: bool = True, refresh: bool = True
                          ) -> tuple[np.ndarray, np.ndarray, int] | None:
        """``(labels, uncertainty, model version)``; writes nothing.

        ``refresh=False`` uses the model loaded last: a worker thread must not re-read the project while
        the GUI thread writes it (the GUI thread calls :meth:`model` when the version moves).
        """
        if refresh:
            self.model()
        loaded = self._loaded
        if loaded is None:
            return None
        model, version = loaded
        image = self.project.load_image(key)
        ann = self.project.load_marks(key, like=image) if use_marks else None
        if ann is not None and (not bool(ann.marked.any()) or tuple(ann.classes) != tuple(model.classes)):
            ann = None  # partial marks cannot feed the prior; the image alone still predicts
        labels, unc = model.predict(image, ann)
        return labels, unc, version
