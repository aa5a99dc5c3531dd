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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SparsesegError
from .io.atomic import atomic_path, atomic_write_text
from .io.npz import npz_headers

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
    def default(cls, n_classes: int = 1, names: dict[int, str] | None = None) -> ClassTable:
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
    def from_dict(cls, d: dict[str, Any]) -> ClassTable:
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


def _load_npz(path: Path, shape: tuple[int, ...] | None = None, keys: tuple[str, ...] = ("labels",),
              integer: tuple[str, ...] = ("labels",)) -> dict[str, np.ndarray]:
    """Load an ``.npz`` after checking, from its headers, the keys, the grid and the dtypes."""
    try:
        heads = npz_headers(path)
    except ValueError as e:
        raise SessionError(f"{path.name} is damaged and cannot be read ({e})") from None
    missing = [k for k in keys if k not in heads]
    if missing:
        raise SessionError(f"{path.name} lacks the array(s) {missing}")
    for k, (shp, dt) in heads.items():
        if shape is not None and shp != tuple(shape):
            raise SessionError(f"{path.name}: {k} has the grid {shp}, not the image grid {tuple(shape)}")
        if k in integer and dt.kind not in "iub":
            raise SessionError(f"{path.name}: {k} must hold integer labels, not {dt}")
        if dt.kind not in "iubf":
            raise SessionError(f"{path.name}: {k} has the unsupported dtype {dt}")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise
    except Exception as e:  # zipfile/ValueError/EOFError on a damaged file
        raise SessionError(f"{path.name} is damaged and cannot be read ({type(e).__name__}: {e})") from None


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise SessionError(f"{what} is damaged ({type(e).__name__})") from None
    if not isinstance(info, dict):
        raise SessionError(f"{what} is damaged (not a JSON object)")
    return info


def _grid(value: Any, what: str) -> tuple[int, ...]:
    from .io.checks import max_voxels

    if (not isinstance(value, list) or len(value) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        raise SessionError(f"{what}: the grid must be three positive whole numbers, got {value!r}")
    if float(np.prod(value, dtype=np.float64)) > max_voxels():
        raise SessionError(f"{what}: the grid {tuple(value)} is implausibly large")
    return tuple(value)


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
        """Record that the widget closed normally (the marks stay: closing is not a reason to lose them).

        Best effort: a damaged metadata file is left as it is (closing must go on and stop the
        background jobs; the next :meth:`load` reports the damage)."""
        if not self.meta_path.is_file():
            return
        try:
            info = _read_json(self.meta_path, "autosave metadata")
        except SessionError:
            return
        info["clean_exit"] = True
        atomic_write_text(self.meta_path, json.dumps(info, indent=1))

    def load(self) -> AutosaveState:
        """The autosaved marks; anything damaged or missing raises :class:`SessionError` (one line)."""
        if not self.exists():
            raise SessionError(f"no autosave for this image in {self.folder}")
        info = _read_json(self.meta_path, "autosave metadata")
        shape = _grid(info.get("shape"), "autosave metadata")
        labels = _load_npz(self.labels_path, shape)["labels"]
        try:
            saved_at = float(info["saved_at"])
            clean = bool(info.get("clean_exit", False))
            meta = info.get("meta", {})
            classes = ClassTable.from_dict(info["classes"])
        except (KeyError, TypeError, ValueError) as e:
            raise SessionError(f"autosave metadata is incomplete ({type(e).__name__}: {e})") from None
        return AutosaveState(labels, classes, saved_at, clean, meta if isinstance(meta, dict) else {})

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
    def load(cls, folder: str | os.PathLike[str]) -> Session:
        folder = Path(folder)
        meta = folder / "session.json"
        if not meta.is_file():
            raise SessionError(f"{folder} is not a napari-sparseseg session (no session.json)")
        info = _read_json(meta, "session.json")
        version = info.get("version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise SessionError(f"session.json: 'version' must be a whole number, got {version!r}")
        if version > SESSION_VERSION:
            raise SessionError(
                f"session version {version} is newer than this napari-sparseseg understands ({SESSION_VERSION})"
            )
        img = info.get("image")
        if not isinstance(img, dict) or not isinstance(img.get("fingerprint"), str) or "affine" not in img:
            raise SessionError("session.json is incomplete: 'image' needs 'fingerprint', 'shape' and 'affine'")
        shape = _grid(img.get("shape"), "session.json")
        try:
            affine = np.asarray(img["affine"], dtype=float)
        except (TypeError, ValueError):
            affine = np.zeros(0)
        if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
            raise SessionError("session.json: the image affine must be a finite 4x4 matrix")
        if "classes" not in info:
            raise SessionError("session.json is incomplete: no class table")
        classes = ClassTable.from_dict(info["classes"])
        ckpt = info.get("checkpoint")
        if ckpt is not None and (not isinstance(ckpt, str) or Path(ckpt).name != ckpt):
            raise SessionError("session.json: 'checkpoint' must be a file name inside the session folder")
        ann = _load_npz(folder / "annotations.npz", shape)["labels"]
        pseudo = (_load_npz(folder / "pseudo.npz", shape, integer=("labels",))
                  if (folder / "pseudo.npz").is_file() else {})
        pred = _load_npz(folder / "prediction.npz", shape)["labels"] if (folder / "prediction.npz").is_file() else None
        conf = pseudo.get("confidence")
        reviewed, settings = info.get("reviewed", []), info.get("settings", {})
        if not isinstance(reviewed, list) or not all(isinstance(z, int) for z in reviewed) or not isinstance(settings, dict):
            raise SessionError("session.json: 'reviewed' must be a list of slice numbers and 'settings' a mapping")
        return cls(
            image_path=img.get("path") if isinstance(img.get("path"), str) else None,
            image_fingerprint=img["fingerprint"],
            image_shape=shape,
            image_affine=affine,
            classes=classes,
            annotations=ann,
            pseudo_labels=pseudo.get("labels"),
            pseudo_confidence=None if conf is None else conf.astype(np.float32),
            prediction=pred,
            checkpoint=folder / ckpt if ckpt else None,
            embedding_cache=info.get("embedding_cache") if isinstance(info.get("embedding_cache"), str) else None,
            reviewed=list(reviewed),
            settings=dict(settings),
        )

    def check_image(self, array: np.ndarray) -> None:
        """Raise if ``array`` is not the scan this session was made on."""
        if tuple(array.shape) != self.image_shape:
            raise SessionError(f"the image grid {tuple(array.shape)} is not the session's {self.image_shape}")
        fp = image_fingerprint(array)
        if fp != self.image_fingerprint:
            raise SessionError("this image's voxels differ from the session's image (fingerprint mismatch)")
