"""napari labels writer: NIfTI (.nii, .nii.gz) or zarr on the grid of the image it belongs to.

The grid comes from the layer's ``metadata`` written by our reader (exact affine and, for NIfTI, the
source header, so the file reopens with the bit-identical affine); a labels layer made in napari
without that metadata falls back to the layer's own scale/translate/affine.  Writes are atomic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import VolumeError
from .io import Volume, write_labels_nifti, write_zarr
from .io.nifti import is_nifti_path


def volume_from_attributes(data: Any, attributes: dict[str, Any]) -> Volume:
    """Rebuild the source grid from napari layer attributes (``layer._get_state()``)."""
    arr = np.asarray(data)
    if arr.ndim != 3:
        raise VolumeError(f"labels layer is {arr.ndim}D {arr.shape}; only 3D label maps can be saved on a scan grid")
    meta = dict(attributes.get("metadata") or {})
    affine = meta.get("sparseseg_affine")
    if affine is None:
        affine = Volume.affine_from_napari(attributes.get("scale"), attributes.get("translate"), attributes.get("affine"))
    vmeta: dict[str, Any] = {}
    if isinstance(meta.get("sparseseg_nifti_header"), (bytes, bytearray)):
        vmeta["nifti_header"] = bytes(meta["sparseseg_nifti_header"])
    src = meta.get("sparseseg_source")
    return Volume(
        array=arr,
        affine=np.asarray(affine, dtype=float),
        name=str(attributes.get("name", "labels")),
        source=Path(src) if src else None,
        meta=vmeta,
    )


def write_labels(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer hook; returns the written path."""
    like = volume_from_attributes(data, attributes)
    arr = np.asarray(data)
    if is_nifti_path(path):
        out = write_labels_nifti(path, arr, like)
    elif str(path).lower().endswith(".zarr"):
        out = write_zarr(path, arr, like, labels=True)
    else:
        raise VolumeError(f"{Path(path).name}: save labels as .nii.gz, .nii or .zarr")
    return [str(out)]
