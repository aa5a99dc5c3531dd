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

import contextlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from ..io.atomic import atomic_path, atomic_write_text
from .records import (
    PROJECT_FILE,
    PROJECT_FORMAT,
    PROJECT_VERSION,
    STATUSES,
    LabelSpec,
    ModelRecord,
    ProjectError,
    ScanRecord,
    now_iso,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..annotations.sparse import SparseAnnotation
    from ..io.volume import Volume

ANNOTATIONS_DIR = "annotations"
PREDICTIONS_DIR = "predictions"
MODELS_DIR = "models"
TRAINING_DIR = "training"
_MODEL_RE = re.compile(r"^model_v(\d+)\.safetensors$")


def _scan_id(path: Path) -> str:
    from ..annotations.files import annotation_stem

    stem = annotation_stem(path) if path.name else path.parent.name
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "scan"


class Project:
    """A study's scans and its shared model, backed by ``<folder>/project.json``.

    Use :meth:`create` or :meth:`open`; every mutating method writes the index before returning.
    """

    def __init__(self, folder: Path, data: dict[str, Any]) -> None:
        self.folder = Path(folder).resolve()
        self.name: str = str(data.get("name") or self.folder.name)
        self.created: str = str(data.get("created") or now_iso())
        self.modified: str = str(data.get("modified") or self.created)
        self.labels = LabelSpec.from_json(data.get("labels"))
        scans = data.get("scans") or []
        if not isinstance(scans, list):
            raise ProjectError(f"{self.index_path}: 'scans' must be a list")
        self._scans: list[ScanRecord] = [ScanRecord.from_json(s) for s in scans]
        ids = [s.id for s in self._scans]
        if len(set(ids)) != len(ids):
            raise ProjectError(f"{self.index_path}: duplicate scan ids")
        model = data.get("model") or {}
        self.model_version: int = int(model.get("version", 0))
        self.models: list[ModelRecord] = [ModelRecord.from_json(m) for m in model.get("history") or []]
        self.extra: dict[str, Any] = {k: v for k, v in data.items()
                                      if k not in ("format", "version", "name", "created", "modified", "labels",
                                                   "scans", "model")}
        self._stamp: tuple[int, int] = (0, 0)  # (inode, mtime) of the index we last read or wrote
        self.repairs: list[str] = []  # what open() fixed after a crash (shown by `project status`)

    # ------------------------------------------------------------------ create / open / save
    @property
    def index_path(self) -> Path:
        return self.folder / PROJECT_FILE

    @classmethod
    def create(cls, folder: str | Path, name: str | None = None, exist_ok: bool = False) -> "Project":
        """Make ``folder`` (or reuse an empty one) a project; ``exist_ok`` opens an existing project instead."""
        folder = Path(folder).expanduser()
        if (folder / PROJECT_FILE).exists():
            if exist_ok:
                return cls.open(folder)
            raise ProjectError(f"{folder} is already a project; open it instead")
        if folder.exists() and not folder.is_dir():
            raise ProjectError(f"{folder} is a file, not a folder")
        folder.mkdir(parents=True, exist_ok=True)
        for sub in (ANNOTATIONS_DIR, PREDICTIONS_DIR, MODELS_DIR):
            (folder / sub).mkdir(exist_ok=True)
        proj = cls(folder, {"name": name or folder.resolve().name})
        with proj._locked():
            proj._write()
        return proj

    @classmethod
    def open(cls, folder: str | Path) -> "Project":
        """Open a project folder (or its ``project.json``); repairs what a crash may have left behind."""
        folder = Path(folder).expanduser()
        if folder.name == PROJECT_FILE and folder.is_file():
            folder = folder.parent
        if not folder.exists():
            raise FileNotFoundError(2, "No such project folder", str(folder))
        if not (folder / PROJECT_FILE).is_file():
            raise ProjectError(f"{folder} is not a project (no {PROJECT_FILE}); create one with `sparseseg project init`")
        proj = cls(folder, cls._read_index(folder / PROJECT_FILE))
        proj._stamp = proj._index_stamp()
        with proj._locked():
            if proj._recover():
                proj._write()
        return proj

    @staticmethod
    def _read_index(path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ProjectError(f"{path}: corrupt project file ({exc.__class__.__name__}: {exc})") from exc
        if not isinstance(data, dict) or data.get("format") != PROJECT_FORMAT:
            raise ProjectError(f"{path}: not a napari-sparseseg project file")
        version = data.get("version")
        if not isinstance(version, int) or version < 1:
            raise ProjectError(f"{path}: project file has no valid version")
        if version > PROJECT_VERSION:
            raise ProjectError(f"{path}: project version {version} is newer than this napari-sparseseg "
                               f"understands ({PROJECT_VERSION}); update napari-sparseseg")
        return data

    def to_json(self) -> dict[str, Any]:
        return {
            **self.extra,
            "format": PROJECT_FORMAT, "version": PROJECT_VERSION, "name": self.name,
            "created": self.created, "modified": self.modified,
            "labels": self.labels.to_json(),
            "scans": [s.to_json() for s in self._scans],
            "model": {"version": self.model_version, "history": [m.to_json() for m in self.models]},
        }

    def _write(self) -> None:
        self.modified = now_iso()
        atomic_write_text(self.index_path, json.dumps(self.to_json(), indent=2) + "\n")
        self._stamp = self._index_stamp()

    def _index_stamp(self) -> tuple[int, int]:
        """Every atomic write makes a new inode, so (inode, mtime) changes even within one clock tick."""
        st = self.index_path.stat()
        return st.st_ino, st.st_mtime_ns

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """An advisory lock on ``.project.lock`` (POSIX); elsewhere a no-op (one process per project)."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            yield
            return
        with open(self.folder / ".project.lock", "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _change(self) -> Iterator[None]:
        """Read-modify-write under the lock: pick up another process's changes, apply ours, write."""
        with self._locked():
            self.reload_if_changed()
            yield
            self._write()

    def reload_if_changed(self) -> bool:
        """Re-read ``project.json`` if another process wrote it since we did; True if it was re-read."""
        try:
            stamp = self._index_stamp()
        except FileNotFoundError:
            raise ProjectError(f"{self.index_path} disappeared") from None
        if stamp == self._stamp:
            return False
        fresh = Project(self.folder, self._read_index(self.index_path))
        self.__dict__.update({k: v for k, v in fresh.__dict__.items() if k != "repairs"})
        self._stamp = stamp
        return True

    def _recover(self) -> bool:
        """Adopt files written just before a crash; forget files that vanished.  True if anything changed."""
        changed = False
        for s in self._scans:
            mark = self.folder / ANNOTATIONS_DIR / f"{s.id}.nii.gz"
            if s.marks is None and mark.is_file():
                s.marks = self._rel(mark)
                s.status = "marked" if s.status == "unmarked" else s.status
                self.repairs.append(f"{s.id}: adopted marks {s.marks} written before a crash")
                changed = True
            for attr in ("prediction", "uncertainty", "marks"):
                ref = getattr(s, attr)
                if ref is not None and not self.resolve(ref).exists():
                    setattr(s, attr, None)
                    if attr == "marks" and s.status == "marked":
                        s.status = "unmarked"
                    self.repairs.append(f"{s.id}: {attr} file {ref} is missing; forgotten")
                    changed = True
        models = self.folder / MODELS_DIR
        if models.is_dir():
            known = {m.version for m in self.models}
            for f in sorted(models.iterdir()):
                m = _MODEL_RE.match(f.name)
                if m and int(m.group(1)) not in known and int(m.group(1)) > self.model_version:
                    self.models.append(ModelRecord(int(m.group(1)), self._rel(f), info={"recovered": True}))
                    self.model_version = int(m.group(1))
                    self.repairs.append(f"adopted model version {m.group(1)} written before a crash")
                    changed = True
        return changed

    # ------------------------------------------------------------------------ paths
    def _rel(self, path: Path) -> str:
        """Relative (posix) when inside the project folder, absolute otherwise."""
        p = Path(os.path.abspath(Path(path).expanduser()))
        try:
            return p.relative_to(self.folder).as_posix()
        except ValueError:
            return str(p)

    def resolve(self, ref: str) -> Path:
        """A path stored in the index, as an absolute path."""
        p = Path(ref)
        return p if p.is_absolute() else self.folder / p

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

    def load_image(self, key: str | ScanRecord) -> "Volume":
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

    def set_marks(self, key: str | ScanRecord, ann: "SparseAnnotation", like: "Volume | None" = None) -> Path:
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

    def load_marks(self, key: str | ScanRecord, like: "Volume | None" = None) -> "SparseAnnotation | None":
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
                       like: "Volume | None" = None, model_version: int | None = None) -> Path:
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

    def load_prediction(self, key: str | ScanRecord, like: "Volume | None" = None
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
