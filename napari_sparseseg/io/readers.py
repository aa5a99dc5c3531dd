"""One entry point per kind of data: :func:`read_volume` for images, :func:`read_labels` for label maps.

Both dispatch on the path (NIfTI file, zarr store, DICOM series folder) and raise
:class:`VolumeError` with one line the user can act on, or ``FileNotFoundError`` for a missing path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import VolumeError
from .checks import to_label_array
from .dicom import is_dicom_file, looks_like_dicom_folder, read_dicom_series
from .nifti import is_nifti_path, read_nifti
from .volume import Volume
from .zarr_io import is_zarr_path, read_zarr


def detect_format(path: str | Path) -> str | None:
    """``"nifti"``, ``"zarr"``, ``"dicom"`` or None (unknown) -- from the name and a cheap probe."""
    p = Path(path)
    if is_nifti_path(p):
        return "nifti"
    if is_zarr_path(p):
        return "zarr"
    if p.is_dir() and looks_like_dicom_folder(p):
        return "dicom"
    if p.is_file() and (p.suffix.lower() in (".dcm", ".ima") or is_dicom_file(p)):
        return "dicom"  # one slice: read its whole folder
    return None


def read_volume(path: str | Path, *, nonfinite: str = "raise") -> Volume:
    """Read a 3D image (NIfTI, zarr or DICOM series folder) as a :class:`Volume`.

    ``nonfinite``: ``"raise"`` rejects NaN/inf intensities, ``"fill"`` replaces them (see
    :mod:`napari_sparseseg.io.checks`).
    """
    return _read(path, nonfinite=nonfinite, is_label=False)


def _read(path: str | Path, *, nonfinite: str, is_label: bool) -> Volume:
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(2, "No such file or directory", str(p))
    fmt = detect_format(p)
    if fmt == "nifti":
        if p.is_dir():
            raise VolumeError(f"{p.name}: is a folder, not a NIfTI file")
        return read_nifti(p, nonfinite=nonfinite, is_label=is_label)
    if fmt == "zarr":
        return read_zarr(p, nonfinite=nonfinite, is_label=is_label)
    if fmt == "dicom":
        folder = p if p.is_dir() else p.parent
        return read_dicom_series(folder, nonfinite=nonfinite)
    if p.is_dir():
        if not any(p.iterdir()):
            raise VolumeError(f"{p.name}: the folder is empty (expected a DICOM series or a zarr store)")
        raise VolumeError(f"{p.name}: neither a DICOM series nor a zarr store (no DICOM or zarr files found)")
    raise VolumeError(f"{p.name}: unsupported file type (use .nii, .nii.gz, .zarr or a DICOM folder)")


def read_labels(path: str | Path, like: Volume | None = None) -> Volume:
    """Read an integer label map; with ``like``, insist that it lies on ``like``'s grid.

    Float files holding whole numbers are cast to the smallest integer type; fractional values,
    NaN or a different grid raise :class:`VolumeError`.
    """
    vol = _read(path, nonfinite="raise", is_label=True)
    name = Path(path).name
    vol.array = to_label_array(np.asarray(vol.array), name)
    vol.meta["labels"] = True
    if like is not None and not vol.same_grid(like):
        raise VolumeError(
            f"{name}: the labels' grid (shape {vol.shape}, spacing {_fmt(vol.spacing)} mm) does not match "
            f"the image {like.name or 'image'} (shape {like.shape}, spacing {_fmt(like.spacing)} mm)"
            + ("" if vol.shape != like.shape else "; same shape but different position/orientation")
        )
    return vol


def _fmt(v: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{x:.4g}" for x in v) + ")"
