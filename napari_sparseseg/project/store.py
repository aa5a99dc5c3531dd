"""A project: one folder that remembers a study's scans, their marks, predictions and the shared model.

Layout (everything the project writes lives inside its folder; the scans stay where they are)::

    study/
      project.json                 the index: scans (path, status, files, quality), classes, models
      annotations/<id>.nii.gz      each scan's sparse marks, with its sidecar <id>.json (annotations/files.py)
      predictions/<id>_pred.nii.gz the latest prediction on the scan's grid, and <id>_unc.nii.gz its uncertainty
      models/model_v0003.safetensors  the shared (cohort) model, one file per version
      training/                    the trainer's resumable checkpoints and pseudo-label cache

Why an index plus ordinary files: every file is something 3D Slicer or ITK-SNAP opens, the marks
keep the one annotation convention, so ``sparseseg train IMAGES --annotations study/annotations``
works on the same files, and losing ``project.json`` loses no marks.

Crash safety: each file is written atomically (temporary + rename) and the data file is written
*before* the index that points at it, so a crash leaves either the old state or a new file the index
does not know yet; :meth:`Project.open` adopts such orphans (marks and model versions).  Two processes
(the widget and a CLI ``project train``) may share a project: each change re-reads the index under a
lock file before writing it back, so neither overwrites the other's scans.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..io.atomic import atomic_path
from .index import (
    ANNOTATIONS_DIR,
    MODELS_DIR,
    PREDICTIONS_DIR,
    TRAINING_DIR,
    ProjectIndex,
)
from .records import STATUSES, ModelRecord, ProjectError, ScanRecord, now_iso

if TYPE_CHECKING:  # pragma: no cover
    from ..annotations.sparse import SparseAnnotation
    from ..io.volume import Volume


def _scan_id(path: Path) -> str:
    from ..annotations.files import annotation_stem

    stem = annotation_stem(path) if path.name else path.parent.name
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "scan"


class Project(ProjectIndex):
    """A study's scans and its shared model, backed by ``<folder>/project.json``.

    Use :meth:`create` or :meth:`open`; every mutating method writes the index before returning.
    """

    # ------------------------------------------------------------------------ scans
    @property
    def scans(self) -> list[ScanRecord]:
        """The scans in the order they were added (a copy of the list; records are live)."""
        return list(self._scans)

    def scan(self, key: str | ScanRecord) -> ScanRecord:
        """A scan by id (or by image path)."""
        if isinstance(key, ScanRecord):
            key = key.id
        for s in self._scans:
            if s.id == key:
                return s
        try:
            p = Path(os.path.abspath(Path(key).expanduser()))
            for s in self._scans:
                if self.resolve(s.path) == p:
                    return s
        except (OSError, ValueError):
            pass
        raise ProjectError(f"no scan {key!r} in project {self.name!r}")

    def image_path(self, key: str | ScanRecord) -> Path:
        return self.resolve(self.scan(key).path)

    def add_scans(self, paths: Iterable[str | Path]) -> list[ScanRecord]:
        """Add images (NIfTI, zarr, DICOM folders) by reference; a path already in the project is kept once.

        Only the path's existence and format are checked here (reading 50 scans would take minutes);
        :meth:`load_image` reports a corrupt file when the scan is opened.
        """
        from ..io.readers import detect_format

        checked: list[Path] = []
        for raw in paths:
            p = Path(os.path.abspath(Path(raw).expanduser()))
            if not p.exists():
                raise FileNotFoundError(2, "No such file or directory", str(p))
            if detect_format(p) is None:
                raise ProjectError(f"{p.name}: not a NIfTI, zarr or DICOM image")
            checked.append(p)
        out: list[ScanRecord] = []
        with self._change():
            have = {self.resolve(s.path): s for s in self._scans}
            ids = {s.id for s in self._scans}
            for p in checked:
                if p in have:
                    out.append(have[p])
                    continue
                base = sid = _scan_id(p)
                n = 2
                while sid in ids:
                    sid, n = f"{base}_{n}", n + 1
                rec = ScanRecord(id=sid, path=self._rel(p))
                self._scans.append(rec)
                ids.add(sid)
                have[p] = rec
                out.append(rec)
        return out

    def load_image(self, key: str | ScanRecord) -> Volume:
        from ..io import read_volume

        s = self.scan(key)
        vol = read_volume(self.resolve(s.path))
        vol.name = s.id
        return vol

    def set_status(self, key: str | ScanRecord, status: str) -> ScanRecord:
        if status not in STATUSES:
            raise ProjectError(f"unknown status {status!r}; one of {', '.join(STATUSES)}")
        with self._change():
            s = self.scan(key)
            if status == "marked" and s.marks is None:
                raise ProjectError(f"{s.id} has no marks; save marks first")
            s.status, s.updated = status, now_iso()
        return s

    # ------------------------------------------------------------------------ marks
    def marks_path(self, key: str | ScanRecord) -> Path:
        return self.folder / ANNOTATIONS_DIR / f"{self.scan(key).id}.nii.gz"

    def set_marks(self, key: str | ScanRecord, ann: SparseAnnotation, like: Volume | None = None) -> Path:
        """Save a scan's marks (atomically, with their sidecar) and mark the scan "marked".

        The project's classes are fixed by the first marks: the background label may not change, and
        class ids join the project's list.  Marks with no voxel leave (or put) the scan "unmarked".
        """
        from ..annotations.files import save_annotation

        s = self.scan(key)
        like = like if like is not None else self.load_image(s)
        bg = self.labels.background_label
        if bg is not None and int(ann.background_label) != bg:
            raise ProjectError(f"{s.id}: background label {ann.background_label} differs from the project's {bg}")
        (self.folder / ANNOTATIONS_DIR).mkdir(exist_ok=True)
        path, _side = save_annotation(self.marks_path(s), ann, like)
        has_marks = bool(np.any(ann.labels != 0))
        with self._change():
            s = self.scan(s.id)
            s.marks = self._rel(path)
            if has_marks and s.status == "unmarked":
                s.status = "marked"
            elif not has_marks and s.status == "marked":
                s.status = "unmarked"
            s.updated = now_iso()
            if has_marks:
                self.labels.background_label = int(ann.background_label)
                self.labels.classes = sorted(set(self.labels.classes) | {int(c) for c in ann.classes})
                for c, n in ann.class_names.items():
                    self.labels.class_names.setdefault(int(c), str(n))
        return path

    def load_marks(self, key: str | ScanRecord, like: Volume | None = None) -> SparseAnnotation | None:
        """The scan's saved marks, or None if it has none."""
        from ..annotations.files import load_annotation

        s = self.scan(key)
        if s.marks is None:
            return None
        return load_annotation(self.resolve(s.marks), like=like, background_label=self.labels.background_label)

    def marked_scans(self) -> list[ScanRecord]:
        """Scans with marks the cohort model may learn from (any status past "unmarked")."""
        return [s for s in self._scans if s.marks is not None and s.status != "unmarked"]

    # ------------------------------------------------------------------------ predictions
    def set_prediction(self, key: str | ScanRecord, labels: np.ndarray, uncertainty: np.ndarray | None = None,
                       like: Volume | None = None, model_version: int | None = None) -> Path:
        """Write the scan's latest prediction (and uncertainty) and record its Dice-free quality signal."""
        from ..active.scans import uncertainty_summary
        from ..io import write_labels_nifti, write_volume_nifti

        s = self.scan(key)
        like = like if like is not None else self.load_image(s)
        labels = np.asarray(labels)
        if labels.shape != like.shape:
            raise ProjectError(f"{s.id}: prediction grid {labels.shape} does not match the image {like.shape}")
        pred_dir = self.folder / PREDICTIONS_DIR
        pred_dir.mkdir(exist_ok=True)
        pred_path = pred_dir / f"{s.id}_pred.nii.gz"
        write_labels_nifti(pred_path, labels.astype(np.int16, copy=False), like)
        unc_path, quality = None, (None, None)
        if uncertainty is not None:
            unc = np.asarray(uncertainty, dtype=np.float32)
            if unc.shape != like.shape:
                raise ProjectError(f"{s.id}: uncertainty grid {unc.shape} does not match the image {like.shape}")
            unc_path = pred_dir / f"{s.id}_unc.nii.gz"
            write_volume_nifti(unc_path, like.with_array(unc))
            quality = uncertainty_summary(labels, unc)
        with self._change():
            s = self.scan(s.id)
            s.prediction = self._rel(pred_path)
            s.uncertainty = None if unc_path is None else self._rel(unc_path)
            s.mean_uncertainty, s.foreground_uncertainty = quality
            s.prediction_model_version = None if model_version is None else int(model_version)
            s.updated = now_iso()
        return pred_path

    def load_prediction(self, key: str | ScanRecord, like: Volume | None = None
                        ) -> tuple[np.ndarray, np.ndarray | None] | None:
        """``(labels, uncertainty or None)`` of the scan's latest prediction, or None."""
        from ..io import read_labels, read_volume

        s = self.scan(key)
        if s.prediction is None:
            return None
        labels = np.asarray(read_labels(self.resolve(s.prediction), like=like).array)
        unc = None
        if s.uncertainty is not None:
            unc = np.asarray(read_volume(self.resolve(s.uncertainty)).array, dtype=np.float32)
        return labels, unc

    # ------------------------------------------------------------------------ models
    @property
    def training_dir(self) -> Path:
        """Where the cohort trainer keeps its resumable checkpoints and pseudo-label cache."""
        d = self.folder / TRAINING_DIR
        d.mkdir(exist_ok=True)
        return d

    @property
    def current_model(self) -> ModelRecord | None:
        return max(self.models, key=lambda m: m.version) if self.models else None

    def current_model_path(self) -> Path | None:
        m = self.current_model
        return None if m is None else self.resolve(m.path)

    def add_model(self, save: Callable[[Path], Any] | str | Path, scans: Sequence[str] = (),
                  info: dict[str, Any] | None = None) -> ModelRecord:
        """Store a new model version: ``save(path)`` writes it (e.g. ``trainer.save``), or a file is copied in.

        The file lands at ``models/model_vNNNN.safetensors`` before the index names it (see the module
        docstring), and the version counter moves by one.
        """
        with self._locked():
            self.reload_if_changed()
            version = max([self.model_version] + [m.version for m in self.models]) + 1
        models = self.folder / MODELS_DIR
        models.mkdir(exist_ok=True)
        dest = models / f"model_v{version:04d}.safetensors"
        if callable(save):
            save(dest)
        else:
            src = Path(save)
            if not src.is_file():
                raise FileNotFoundError(2, "No such model file", str(src))
            with atomic_path(dest) as tmp:
                shutil.copyfile(src, tmp)
        if not dest.is_file():
            raise ProjectError(f"the model was not written to {dest}")
        rec = ModelRecord(version, self._rel(dest), scans=list(scans), info=dict(info or {}))
        with self._change():
            self.models.append(rec)
            self.model_version = max(self.model_version, version)
        return rec

    # ------------------------------------------------------------------------ suggestions
    def next_scan(self, strategy: str = "uncertainty", **kwargs: Any) -> ScanRecord | None:
        """The scan to open next (see :mod:`napari_sparseseg.active.scans`); None when every scan is reviewed."""
        from ..active.scans import suggest_scan

        return suggest_scan(self, strategy, **kwargs)

    def ensure_features(self, keys: Iterable[str] | None = None) -> None:
        """Compute (once) and cache the image descriptors the diversity term compares."""
        from ..active.scans import image_features

        todo = [s for s in self._scans if s.features is None and (keys is None or s.id in set(keys))]
        if not todo:
            return
        feats = {s.id: image_features(self.load_image(s)).tolist() for s in todo}
        with self._change():
            for s in self._scans:
                if s.id in feats:
                    s.features = feats[s.id]

    def counts(self) -> dict[str, int]:
        """Scans per status."""
        return {st: sum(s.status == st for s in self._scans) for st in STATUSES}
