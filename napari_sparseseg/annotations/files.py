"""Annotation files: a label map on the image grid plus a small JSON sidecar.

Convention (every CLI command and the widget use it)::

    case_ann.nii.gz        # integer label map on the image grid: 0 = unmarked, classes, background label
    case_ann.json          # sidecar: which value means background, the classes and their names

The label map alone is an ordinary NIfTI (or zarr) file any viewer opens; the sidecar removes the one
ambiguity a bare map has -- which value is "marked background" (ACDC's scribbles use 4).  A map
without a sidecar (e.g. the ACDC scribbles) loads when the caller says the background label.

Both files are written atomically (temporary file + rename).  They are written one after the other,
sidecar last, so a crash between the two leaves a new map beside the previous sidecar; the sidecar
only holds declarations, which are re-checked against the map on load.

``a.nii.gz`` and ``a.zarr`` would share ``a.json``; the sidecar therefore records the name of the map
it describes (``"file"``).  Saving refuses to take over a sidecar that describes another map that still
exists, and loading ignores a sidecar written for another map (so the other map's background label is
never applied to this one).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AnnotationError
from ..io import Volume, atomic_write_text, read_labels, write_labels_nifti, write_zarr
from ..io.nifti import is_nifti_path
from ..io.zarr_io import is_zarr_path
from .sparse import SparseAnnotation

SIDECAR_FORMAT = "napari-sparseseg annotation"
SIDECAR_VERSION = 1


def annotation_stem(path: str | Path) -> str:
    """File name without its image suffix: ``a/b.nii.gz`` -> ``b``."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii", ".ome.zarr", ".zarr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def sidecar_path(path: str | Path) -> Path:
    """The sidecar of an annotation file: ``<folder>/<stem>.json``."""
    p = Path(path)
    return p.with_name(annotation_stem(p) + ".json")


def sidecar_dict(ann: SparseAnnotation, file: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"file": file} if file else {}
    return {
        "format": SIDECAR_FORMAT,
        "version": SIDECAR_VERSION,
        **out,
        "unmarked": 0,
        "background_label": int(ann.background_label),
        "classes": [int(c) for c in ann.classes],
        "class_names": {str(int(k)): str(v) for k, v in sorted(ann.class_names.items())},
    }


def save_annotation(path: str | Path, ann: SparseAnnotation, like: Volume) -> tuple[Path, Path]:
    """Write ``ann`` on ``like``'s grid (``.nii``/``.nii.gz`` or ``.zarr``) and its sidecar; both atomic.

    Returns ``(label_map_path, sidecar_path)``.
    """
    path = Path(path)
    if ann.shape != like.shape:
        raise AnnotationError(f"annotation grid {ann.shape} does not match the image grid {like.shape}")
    side = sidecar_path(path)
    owner = _sidecar_owner(side)
    if owner and owner != path.name and (path.parent / owner).exists():
        raise AnnotationError(
            f"{side.name} already describes {owner}; save {path.name} under another name (one sidecar per stem)"
        )
    if is_nifti_path(path):
        write_labels_nifti(path, ann.labels, like)
    elif is_zarr_path(path):
        write_zarr(path, ann.labels, like, labels=True)
    else:
        raise AnnotationError(f"{path.name}: save annotations as .nii.gz, .nii or .zarr")
    atomic_write_text(side, json.dumps(sidecar_dict(ann, path.name), indent=2) + "\n")
    return path, side


def _sidecar_owner(side: Path) -> str | None:
    """The map a sidecar says it describes (None: no sidecar, unreadable, or written before ``file``)."""
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    owner = data.get("file") if isinstance(data, dict) else None
    return owner if isinstance(owner, str) else None


def read_sidecar(path: str | Path) -> dict[str, Any] | None:
    """The sidecar's content, ``None`` if there is none; a corrupt one raises :class:`AnnotationError`."""
    side = sidecar_path(path)
    if not side.is_file():
        return None
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise AnnotationError(f"{side.name}: unreadable annotation sidecar ({exc.__class__.__name__})") from exc
    if not isinstance(data, dict) or "background_label" not in data:
        raise AnnotationError(f"{side.name}: not an annotation sidecar (no 'background_label')")
    owner = data.get("file")
    if isinstance(owner, str) and owner != Path(path).name:
        return None  # written for a.zarr, and this is a.nii.gz: not ours
    if not _is_int(data.get("background_label")) or not _is_int(data.get("version", 1)):
        raise AnnotationError(f"{side.name}: 'background_label' and 'version' must be whole numbers")
    if not isinstance(data.get("classes", []), list) or not all(_is_int(c) for c in data.get("classes", [])):
        raise AnnotationError(f"{side.name}: 'classes' must be a list of whole numbers")
    if not isinstance(data.get("class_names", {}) or {}, dict):
        raise AnnotationError(f"{side.name}: 'class_names' must be a mapping")
    if int(data.get("version", 1)) > SIDECAR_VERSION:
        raise AnnotationError(
            f"{side.name}: sidecar version {data['version']} is newer than this napari-sparseseg understands"
        )
    return data


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def load_annotation(
    path: str | Path,
    like: Volume | None = None,
    background_label: int | None = None,
    classes: Sequence[int] | None = None,
    *,
    for_training: bool = False,
) -> SparseAnnotation:
    """Read an annotation map (and its sidecar) as a :class:`SparseAnnotation`.

    The background label comes from ``background_label``, else the sidecar, else an
    :class:`AnnotationError` asking for ``--background-label``.  Classes come from ``classes``, else
    the sidecar, else the values present.  With ``like``, the map must lie on ``like``'s grid.  Values
    that are neither a class nor the background raise; an annotation with no marks loads (an
    empty autosave is not an error -- :meth:`SparseAnnotation.validate` says whether it can train).

    ``for_training=True`` (every command that computes from the marks) also runs that validation,
    background marks included: a full label map passed as an annotation has no background marks and
    would otherwise train a network that paints everything as foreground.
    """
    vol = read_labels(path, like)
    side = read_sidecar(path)
    name = Path(path).name
    if background_label is None:
        if side is None:
            raise AnnotationError(
                f"{name}: which value marks background? There is no sidecar {sidecar_path(path).name}; "
                "pass --background-label N (ACDC scribbles use 4)"
            )
        background_label = int(side["background_label"])
    bg = int(background_label)
    if classes is None and side is not None and side.get("classes"):
        classes = [int(c) for c in side["classes"]]
    names: dict[int, str] = {}
    if side is not None:
        try:
            names = {int(k): str(v) for k, v in (side.get("class_names") or {}).items()}
        except ValueError:
            raise AnnotationError(f"{sidecar_path(path).name}: 'class_names' keys must be class ids") from None
    labels = np.asarray(vol.array)
    if classes:
        allowed = set(int(c) for c in classes) | {0, bg}
        unknown = sorted(set(int(v) for v in np.unique(labels)) - allowed)
        if unknown:
            raise AnnotationError(
                f"{name}: unknown label values {unknown}: classes are {sorted(int(c) for c in classes)} "
                f"and background is {bg}"
            )
    ann = SparseAnnotation(labels, bg, tuple(classes) if classes else (), names)
    if for_training:
        try:
            ann.validate(like.shape if like is not None else None, require_background=True)
        except AnnotationError as exc:
            hint = " (is this a full label map rather than sparse marks?)" if "no background" in str(exc) else ""
            raise AnnotationError(f"{name}: {exc}{hint}") from None
    return ann
