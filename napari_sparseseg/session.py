"""Save and reopen a whole correction session, and autosave the user's marks so a crash loses nothing.

A *session* is a folder (``<name>.sparseseg/``) holding::

    session.json        image reference (path + fingerprint + grid), class table, review state
    annotations.npz     the sparse marks (0 = unmarked, classes > 0, one background label)
    pseudo.npz          SAM pseudo-labels + confidence (optional)
    prediction.npz      the last (possibly corrected) prediction (optional)
    model.pt            the trainer's checkpoint (optional, written by the trainer itself)

The image itself is referenced, not copied (scans are large and often may not be duplicated); its
fingerprint tells us on reopening whether the file still holds the same scan.  The folder is written
atomically as a whole: a crash half-way leaves the previous session intact.

*Autosave* is separate and cheaper: only the marks (and the class table), keyed by the image's
fingerprint under ``<user data folder>/autosave/<fingerprint>/`` (:func:`paths.autosave_dir`; it is user
data, not a cache, so no cache cleaner deletes it; ``$SPARSESEG_AUTOSAVE_DIR`` overrides),
written atomically after every change.  The marks are the only thing that costs the user effort; the
rest can be recomputed.  Qt-free: the widget debounces and calls :meth:`AnnotationAutosave.save`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import SparsesegError
from .io.atomic import atomic_path, atomic_write_text

SESSION_VERSION = 1
SESSION_SUFFIX = ".sparseseg"

_PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c"]
BACKGROUND_COLOR = "#8c8c8c"


class SessionError(SparsesegError):
    """A session folder or autosave that cannot be used (missing, wrong version, wrong grid)."""


# ------------------------------------------------------------------------------------ classes
@dataclass
class ClassSpec:
    """One row of the class table: a label value the user paints with."""

    id: int
    name: str
    color: str  # "#rrggbb"


@dataclass
class ClassTable:
    """The user's classes plus the one row that means "marked as background".

    Why the background is a row and not the value 0: 0 means "not annotated" (see
    :mod:`napari_sparseseg.annotations.sparse`), and the user must be able to *paint* background.
    """

    classes: list[ClassSpec]
    background: int

    def __post_init__(self) -> None:
        ids = [c.id for c in self.classes]
        if len(set(ids)) != len(ids):
            raise SessionError(f"class ids must be unique, got {ids}")
        if any(i <= 0 for i in ids):
            raise SessionError(f"class ids must be > 0 (0 means 'not annotated'), got {ids}")
        if self.background not in ids:
            raise SessionError(f"background label {self.background} is not one of the classes {ids}")
        if len(ids) < 2:
            raise SessionError("the class table needs at least one structure besides the background")

    @classmethod
    def default(cls, n_classes: int = 1, names: dict[int, str] | None = None) -> "ClassTable":
        """Classes ``1..n`` and background ``n + 1``."""
        names = names or {}
        rows = [ClassSpec(i, names.get(i, f"class {i}"), _PALETTE[(i - 1) % len(_PALETTE)]) for i in range(1, n_classes + 1)]
        rows.append(ClassSpec(n_classes + 1, "background", BACKGROUND_COLOR))
        return cls(rows, n_classes + 1)

    @property
    def foreground_ids(self) -> tuple[int, ...]:
        return tuple(sorted(c.id for c in self.classes if c.id != self.background))

    @property
    def names(self) -> dict[int, str]:
        return {c.id: c.name for c in self.classes}

    def color_of(self, class_id: int) -> str:
        for c in self.classes:
            if c.id == class_id:
                return c.color
        raise KeyError(class_id)

    def next_id(self) -> int:
        return max(c.id for c in self.classes) + 1

    def add(self, name: str | None = None, color: str | None = None) -> ClassSpec:
        i = self.next_id()
        spec = ClassSpec(i, name or f"class {i}", color or _PALETTE[(i - 1) % len(_PALETTE)])
        self.classes.append(spec)
        return spec

    def remove(self, class_id: int) -> None:
        if class_id == self.background:
            raise SessionError("the background row cannot be removed; make another row the background first")
        rest = [c for c in self.classes if c.id != class_id]
        if len(rest) < 2:
            raise SessionError("the class table needs at least one structure besides the background")
        self.classes = rest

    def to_dict(self) -> dict[str, Any]:
        return {"background": self.background, "classes": [c.__dict__.copy() for c in self.classes]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ClassTable":
        try:
            rows = [ClassSpec(int(c["id"]), str(c["name"]), str(c["color"])) for c in d["classes"]]
            return cls(rows, int(d["background"]))
        except (KeyError, TypeError, ValueError) as e:
            raise SessionError(f"class table is malformed: {e}") from None


# -------------------------------------------------------------------------------- fingerprint
def image_fingerprint(array: np.ndarray, max_bytes: int = 64 << 20) -> str:
    """A short hash of an image's shape, dtype and voxels (strided above ``max_bytes``).

    Keys the autosave folder and checks that a reopened session's image is still the same scan.
    """
    a = np.ascontiguousarray(np.asarray(array))
    h = hashlib.blake2b(digest_size=10)
    h.update(repr((a.shape, a.dtype.str)).encode())
    if a.nbytes <= max_bytes:
        h.update(a.tobytes())
    else:
        step = int(np.ceil(a.nbytes / max_bytes))
        h.update(np.ascontiguousarray(a.reshape(-1)[::step]).tobytes())
    return h.hexdigest()


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise
    except Exception as e:  # zipfile/ValueError/EOFError on a damaged file
        raise SessionError(f"{path.name} is damaged and cannot be read ({type(e).__name__}: {e})") from None


# ----------------------------------------------------------------------------------- autosave
def default_autosave_root() -> Path:
    from .paths import autosave_dir

    return autosave_dir()


def _adopt_legacy_autosave(folder: Path, fingerprint: str) -> None:
    """Copy an autosave written by 0.1.0 (under ``~/.cache``) to the user data folder, once."""
    import shutil

    from .paths import legacy_autosave_dir

    old = legacy_autosave_dir() / fingerprint
    if not folder.exists() and (old / "autosave.json").is_file() and old.resolve() != folder.resolve():
        shutil.copytree(old, folder)


@dataclass
class AutosaveState:
    """What an autosave holds: the marks, the class table and when they were written."""

    labels: np.ndarray
    classes: ClassTable
    saved_at: float
    clean_exit: bool
    meta: dict[str, Any]

    @property
    def n_marked(self) -> int:
        return int(np.count_nonzero(self.labels))


class AnnotationAutosave:
    """Atomic autosave of the marks of one image (keyed by its fingerprint).

    ``save`` is safe to call from a worker thread; calls must be serialised by the caller (the widget
    uses one single-thread executor), so the newest snapshot always wins.
    """

    def __init__(self, fingerprint: str, root: str | os.PathLike[str] | None = None) -> None:
        self.fingerprint = fingerprint
        self.folder = Path(root) if root is not None else default_autosave_root()
        self.folder = self.folder / fingerprint
        if root is None and not {"SPARSESEG_AUTOSAVE_DIR", "SPARSESEG_DATA_HOME"} & set(os.environ):
            _adopt_legacy_autosave(self.folder, fingerprint)

    @property
    def labels_path(self) -> Path:
        return self.folder / "annotations.npz"

    @property
    def meta_path(self) -> Path:
        return self.folder / "autosave.json"

    def exists(self) -> bool:
        return self.labels_path.is_file() and self.meta_path.is_file()

    def save(self, labels: np.ndarray, classes: ClassTable, meta: dict[str, Any] | None = None) -> None:
        """Write the marks then the metadata, each atomically (the JSON last: it marks completeness)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        _save_npz(self.labels_path, labels=np.asarray(labels))
        info = {
            "version": SESSION_VERSION,
            "fingerprint": self.fingerprint,
            "shape": list(np.shape(labels)),
            "classes": classes.to_dict(),
            "saved_at": time.time(),
            "clean_exit": False,
            "meta": meta or {},
        }
        atomic_write_text(self.meta_path, json.dumps(info, indent=1))

    def mark_clean_exit(self) -> None:
        """Record that the widget closed normally (the marks stay: closing is not a reason to lose them)."""
        if not self.meta_path.is_file():
            return
        info = json.loads(self.meta_path.read_text())
        info["clean_exit"] = True
        atomic_write_text(self.meta_path, json.dumps(info, indent=1))

    def load(self) -> AutosaveState:
        if not self.exists():
            raise SessionError(f"no autosave for this image in {self.folder}")
        try:
            info = json.loads(self.meta_path.read_text())
        except json.JSONDecodeError as e:
            raise SessionError(f"autosave metadata is damaged ({e})") from None
        labels = _load_npz(self.labels_path)["labels"]
        if list(labels.shape) != list(info.get("shape", [])):
            raise SessionError("autosave is inconsistent (marks and metadata disagree on the grid)")
        return AutosaveState(
            labels, ClassTable.from_dict(info["classes"]), float(info["saved_at"]), bool(info["clean_exit"]), info.get("meta", {})
        )

    def clear(self) -> None:
        for p in (self.meta_path, self.labels_path):
            p.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------ session
@dataclass
class Session:
    """Everything needed to pick a correction session up again."""

    image_path: str | None
    image_fingerprint: str
    image_shape: tuple[int, ...]
    image_affine: np.ndarray
    classes: ClassTable
    annotations: np.ndarray
    pseudo_labels: np.ndarray | None = None
    pseudo_confidence: np.ndarray | None = None
    prediction: np.ndarray | None = None
    checkpoint: Path | None = None
    embedding_cache: str | None = None
    reviewed: list[int] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.image_shape = tuple(int(s) for s in self.image_shape)
        self.image_affine = np.asarray(self.image_affine, dtype=float)
        for name in ("annotations", "pseudo_labels", "pseudo_confidence", "prediction"):
            arr = getattr(self, name)
            if arr is not None and tuple(arr.shape) != self.image_shape:
                raise SessionError(f"{name} grid {tuple(arr.shape)} does not match the image grid {self.image_shape}")

    def save(self, folder: str | os.PathLike[str], write_checkpoint: Callable[[Path], None] | None = None) -> Path:
        """Write the session folder atomically; ``write_checkpoint(path)`` saves the model if given."""
        folder = Path(folder)
        if folder.suffix != SESSION_SUFFIX:
            folder = folder.with_name(folder.name + SESSION_SUFFIX)
        folder.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder, directory=True) as tmp:
            tmp.mkdir()
            np.savez_compressed(tmp / "annotations.npz", labels=self.annotations)
            if self.pseudo_labels is not None:
                arrays = {"labels": self.pseudo_labels}
                if self.pseudo_confidence is not None:
                    arrays["confidence"] = self.pseudo_confidence.astype(np.float16)
                np.savez_compressed(tmp / "pseudo.npz", **arrays)
            if self.prediction is not None:
                np.savez_compressed(tmp / "prediction.npz", labels=self.prediction)
            ckpt = None
            if write_checkpoint is not None:
                write_checkpoint(tmp / "model.pt")
                ckpt = "model.pt" if (tmp / "model.pt").exists() else None
            info = {
                "version": SESSION_VERSION,
                "image": {
                    "path": self.image_path,
                    "fingerprint": self.image_fingerprint,
                    "shape": list(self.image_shape),
                    "affine": self.image_affine.tolist(),
                },
                "classes": self.classes.to_dict(),
                "checkpoint": ckpt,
                "embedding_cache": self.embedding_cache,
                "reviewed": sorted(int(z) for z in self.reviewed),
                "settings": self.settings,
                "saved_at": time.time(),
            }
            (tmp / "session.json").write_text(json.dumps(info, indent=1))
        self.checkpoint = folder / ckpt if ckpt else None
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> "Session":
        folder = Path(folder)
        meta = folder / "session.json"
        if not meta.is_file():
            raise SessionError(f"{folder} is not a napari-sparseseg session (no session.json)")
        try:
            info = json.loads(meta.read_text())
        except json.JSONDecodeError as e:
            raise SessionError(f"session.json is damaged ({e})") from None
        if int(info.get("version", -1)) > SESSION_VERSION:
            raise SessionError(
                f"session version {info.get('version')} is newer than this napari-sparseseg understands ({SESSION_VERSION})"
            )
        img = info["image"]
        ann = _load_npz(folder / "annotations.npz")["labels"]
        pseudo = _load_npz(folder / "pseudo.npz") if (folder / "pseudo.npz").is_file() else {}
        pred = _load_npz(folder / "prediction.npz")["labels"] if (folder / "prediction.npz").is_file() else None
        conf = pseudo.get("confidence")
        return cls(
            image_path=img.get("path"),
            image_fingerprint=img["fingerprint"],
            image_shape=tuple(img["shape"]),
            image_affine=np.asarray(img["affine"], dtype=float),
            classes=ClassTable.from_dict(info["classes"]),
            annotations=ann,
            pseudo_labels=pseudo.get("labels"),
            pseudo_confidence=None if conf is None else conf.astype(np.float32),
            prediction=pred,
            checkpoint=folder / info["checkpoint"] if info.get("checkpoint") else None,
            embedding_cache=info.get("embedding_cache"),
            reviewed=list(info.get("reviewed", [])),
            settings=dict(info.get("settings", {})),
        )

    def check_image(self, array: np.ndarray) -> None:
        """Raise if ``array`` is not the scan this session was made on."""
        if tuple(array.shape) != self.image_shape:
            raise SessionError(f"the image grid {tuple(array.shape)} is not the session's {self.image_shape}")
        fp = image_fingerprint(array)
        if fp != self.image_fingerprint:
            raise SessionError("this image's voxels differ from the session's image (fingerprint mismatch)")
