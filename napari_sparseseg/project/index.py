"""The project index: ``project.json`` read, validated, written atomically under a lock, repaired after a crash.

Split from :mod:`.store` (what a project holds) so that the file handling -- the part that must never
lose the user's work -- reads on its own.  See :mod:`.store` for the folder layout and the crash story.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..io.atomic import atomic_write_text
from .records import (
    PROJECT_FILE,
    PROJECT_FORMAT,
    PROJECT_VERSION,
    LabelSpec,
    ModelRecord,
    ProjectError,
    ScanRecord,
    now_iso,
)

ANNOTATIONS_DIR = "annotations"
PREDICTIONS_DIR = "predictions"
MODELS_DIR = "models"
TRAINING_DIR = "training"
_MODEL_RE = re.compile(r"^model_v(\d+)\.safetensors$")


class ProjectIndex:
    """``<folder>/project.json`` in memory: the records, and the safe ways to read and write them."""

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
    def create(cls, folder: str | Path, name: str | None = None, exist_ok: bool = False) -> ProjectIndex:
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
    def open(cls, folder: str | Path) -> ProjectIndex:
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
        fresh = type(self)(self.folder, self._read_index(self.index_path))
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
