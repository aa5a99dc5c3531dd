"""napari reader: NIfTI, zarr and DICOM series as layers placed in world millimetres.

Each layer carries its geometry in ``metadata`` so that the labels writer (and
:meth:`Volume.from_napari_layer`) can write results back on the exact source grid:
``sparseseg_affine`` (4x4 array-index -> RAS list), ``sparseseg_source`` (path),
``sparseseg_nifti_header`` (raw header bytes, NIfTI only) and ``sparseseg_notes``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .io import Volume, detect_format, read_labels, read_volume

LayerData = tuple[Any, dict[str, Any], str]

_LABEL_DIRS = {"labelstr", "labelsts", "labels", "scribblestr", "segmentations", "masks"}
_LABEL_NAME = re.compile(r"[_\-.](labels?|seg|segmentation|mask|scribbles?)$", re.IGNORECASE)


def is_label_path(path: str | Path) -> bool:
    """Label maps by convention: MSD-style ``labelsTr/`` folders or a ``*_labels``/``*_seg`` name."""
    p = Path(path)
    stem = p.name.split(".")[0]
    return p.parent.name.lower() in _LABEL_DIRS or bool(_LABEL_NAME.search(stem))


def get_reader(path: str | list[str]) -> Callable[[Any], list[LayerData]] | None:
    """npe2 reader hook: claim only what :func:`read_volume` understands (cheap checks only)."""
    if isinstance(path, list):
        if len(path) != 1:
            return None  # a stack of 3D volumes is not one scan
        path = path[0]
    try:
        fmt = detect_format(path)
    except OSError:
        return None
    return read_layers if fmt else None


def read_layers(path: str | list[str]) -> list[LayerData]:
    """Read one path into a napari layer (an image, or labels for a label file)."""
    p = Path(path[0] if isinstance(path, list) else path)
    if is_label_path(p):
        vol = read_labels(p)
        named = bool(_LABEL_NAME.search(p.name.split(".")[0]))
        return [labels_layer_data(vol, name=vol.name if named else f"{vol.name} labels")]
    return [image_layer_data(read_volume(p))]


def geometry_metadata(vol: Volume) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "sparseseg_affine": vol.affine.tolist(),
        "sparseseg_source": str(vol.source) if vol.source else None,
        "sparseseg_format": vol.meta.get("format"),
    }
    if "nifti_header" in vol.meta:
        meta["sparseseg_nifti_header"] = vol.meta["nifti_header"]
    if vol.meta.get("notes"):
        meta["sparseseg_notes"] = list(vol.meta["notes"])
    return meta


def robust_contrast_limits(arr: np.ndarray, lo: float = 0.5, hi: float = 99.5) -> tuple[float, float]:
    """Percentile window (on a subsample for speed): one bright vessel must not grey out the brain."""
    flat = np.asarray(arr).ravel()
    if flat.size > 2_000_000:
        flat = flat[:: flat.size // 1_000_000]
    a, b = (float(v) for v in np.percentile(flat, [lo, hi]))
    if not b > a:
        a, b = float(flat.min()), float(flat.max())
    if not b > a:
        b = a + 1.0
    return a, b


#: napari's world axes are RAS reversed (S, A, R), so a slider along each one walks through axial,
#: coronal and sagittal planes, in millimetres (without these napari labels the axes -3, -2, -1)
AXIS_LABELS = ("axial", "coronal", "sagittal")
UNITS = ("mm", "mm", "mm")


def world_kwargs(vol: Volume) -> dict[str, Any]:
    """Placement (scale/translate or affine), units and axis labels of ``vol`` as layer kwargs."""
    kw = {**vol.napari_kwargs()}
    if np.ndim(vol.array) == 3:
        kw.update(units=UNITS, axis_labels=AXIS_LABELS)
    return kw


def image_layer_data(vol: Volume) -> LayerData:
    kwargs: dict[str, Any] = {
        "name": vol.name,
        "colormap": "gray",
        "contrast_limits": robust_contrast_limits(vol.array),
        "metadata": geometry_metadata(vol),
        **world_kwargs(vol),
    }
    return vol.array, kwargs, "image"


def labels_layer_data(vol: Volume, name: str | None = None) -> LayerData:
    kwargs: dict[str, Any] = {
        "name": name or vol.name,
        "metadata": geometry_metadata(vol),
        **world_kwargs(vol),
    }
    return vol.array, kwargs, "labels"
