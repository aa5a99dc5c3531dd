"""Input checks shared by every reader: dimensionality, empty axes, NaN/inf, label values.

Policy (documented in the README's I/O section):
- A volume must be 3D.  A 4D file whose extra axes are all of length 1 is squeezed to 3D and the
  fact is recorded in ``Volume.meta['notes']`` (and warned); a real time series or a 2D image is
  rejected because every model in the package works on one 3D scan.
- NaN or infinite intensities are rejected by default (``nonfinite="raise"``): they would silently
  turn every loss and normalisation into NaN.  ``nonfinite="fill"`` replaces them with the lowest
  finite value of the scan (background in MRI/CT) and records how many voxels were changed.
  ``nonfinite="keep"`` exists for inspection only (``sparseseg info`` reports the count): nothing
  that trains or predicts may use it.
- Label maps must hold whole numbers; float files holding whole numbers (two hippocampus labels
  are stored as float32) are cast to the smallest integer type that holds them.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ..errors import VolumeError

#: refuse headers that claim more voxels than this before allocating anything (fuzzed/corrupt files):
#: 2**29 = 512 Mi voxels (a 1024 x 1024 x 512 scan, 2 GiB as float32); ``SPARSESEG_MAX_VOXELS`` raises it
MAX_VOXELS = 2**29


def max_voxels() -> int:
    import os

    try:
        return int(os.environ.get("SPARSESEG_MAX_VOXELS", MAX_VOXELS))
    except ValueError:
        return MAX_VOXELS


def reason(exc: BaseException) -> str:
    """One line describing ``exc`` (library messages can be multi-line or empty)."""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    name = type(exc).__name__
    return f"{name}: {msg}" if msg else name


def check_shape(shape: tuple[int, ...], name: str) -> tuple[tuple[int, int, int], list[str]]:
    """Validate a file's shape; returns the 3D shape and notes (e.g. a squeezed 4th axis)."""
    notes: list[str] = []
    if any(s < 0 for s in shape):
        raise VolumeError(f"{name}: invalid shape {shape}")
    if len(shape) < 3:
        raise VolumeError(f"{name}: the image is {len(shape)}D {tuple(shape)}; a 3D volume is needed")
    if len(shape) > 3:
        extra = shape[3:]
        if any(s != 1 for s in extra):
            raise VolumeError(
                f"{name}: the image is {len(shape)}D {tuple(shape)}; a single 3D volume is needed "
                "(extract one time point or channel first)"
            )
        notes.append(f"squeezed singleton trailing axes: file shape {tuple(shape)} read as {tuple(shape[:3])}")
        warnings.warn(f"{name}: {notes[-1]}", UserWarning, stacklevel=3)
    shape3 = (int(shape[0]), int(shape[1]), int(shape[2]))
    if min(shape3) == 0:
        raise VolumeError(f"{name}: the image has an empty axis (shape {shape3})")
    if float(np.prod(shape3, dtype=np.float64)) > max_voxels():
        raise VolumeError(
            f"{name}: shape {shape3} is implausibly large (corrupt header?); the limit is {max_voxels()} voxels "
            "(set SPARSESEG_MAX_VOXELS to raise it)"
        )
    return shape3, notes


def check_array_values(arr: np.ndarray, name: str, nonfinite: str, meta: dict[str, Any]) -> np.ndarray:
    """Apply the NaN/inf policy to an image array (see module docstring)."""
    if nonfinite not in ("raise", "fill", "keep"):
        raise ValueError(f"nonfinite must be 'raise', 'fill' or 'keep', not {nonfinite!r}")
    if arr.dtype.kind != "f":
        return arr
    bad = ~np.isfinite(arr)
    n_bad = int(bad.sum())
    if n_bad == 0:
        return arr
    if nonfinite == "keep":
        meta.setdefault("notes", []).append(f"{n_bad} voxels are NaN or infinite")
        return arr
    if nonfinite == "raise" or n_bad == arr.size:
        raise VolumeError(
            f"{name}: {n_bad} of {arr.size} voxels are NaN or infinite; fix the file "
            "(or read it with nonfinite='fill' to replace them with the lowest finite value)"
        )
    fill = float(np.min(arr[~bad]))
    arr = arr.copy()
    arr[bad] = fill
    meta["nonfinite_filled"] = n_bad
    meta.setdefault("notes", []).append(f"replaced {n_bad} NaN/inf voxels with {fill:g}")
    return arr


def to_label_array(arr: np.ndarray, name: str) -> np.ndarray:
    """Integer view of a label map; float input must hold whole, finite numbers."""
    if arr.dtype.kind in "iu":
        return arr
    if arr.dtype.kind == "b":
        return arr.astype(np.uint8)
    if arr.dtype.kind != "f":
        raise VolumeError(f"{name}: labels must be integers, got {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise VolumeError(f"{name}: the label map contains NaN or infinite values")
    frac = arr != np.round(arr)
    if frac.any():
        example = float(arr[frac].flat[0])
        raise VolumeError(
            f"{name}: labels must be whole numbers, found {int(frac.sum())} fractional voxels (e.g. {example:g}); "
            "is this an image or a probability map rather than a label map?"
        )
    return arr.astype(label_dtype(arr))


def label_dtype(arr: np.ndarray) -> np.dtype:
    """Smallest of uint8 / int16 / int32 that holds every value of ``arr``."""
    if arr.size == 0:
        return np.dtype(np.uint8)
    lo, hi = float(arr.min()), float(arr.max())
    if lo >= 0 and hi <= 255:
        return np.dtype(np.uint8)
    if lo >= -32768 and hi <= 32767:
        return np.dtype(np.int16)
    if lo >= -(2**31) and hi <= 2**31 - 1:
        return np.dtype(np.int32)
    raise VolumeError(f"label values {lo:g}..{hi:g} do not fit a 32-bit integer")
