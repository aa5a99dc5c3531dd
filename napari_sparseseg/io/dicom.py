"""DICOM series folders through pydicom.

Geometry follows the DICOM standard (PS3.3 C.7.6.2.1.1): ``ImageOrientationPatient`` gives the
direction of increasing column index (first triplet) and of increasing row index (second),
``PixelSpacing`` is (row spacing, column spacing), and ``ImagePositionPatient`` is the centre of the
first pixel, all in LPS millimetres.  Slices are ordered by their position projected on the slice
normal (file names and ``InstanceNumber`` are not reliable), and the slice step is taken from the
first and last positions so that gantry tilt is kept.  The affine is finally converted LPS -> RAS,
the convention of NIfTI and of :class:`Volume`.  The array is (slice, row, column), which is
our reversed-NIfTI order, so a series converted by dcm2niix/nibabel lands on the same world grid.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VolumeError
from .checks import check_array_values, check_shape, reason
from .volume import Volume

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_GEOMETRY = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns")


def _candidates(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def is_dicom_file(path: str | Path) -> bool:
    """A DICOM Part 10 file (``DICM`` after the 128-byte preamble), whatever its name."""
    try:
        with open(path, "rb") as fh:
            return fh.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def looks_like_dicom_folder(folder: str | Path, probe: int = 5) -> bool:
    """Cheap test for the napari reader: does one of the first files carry the DICM magic?"""
    folder = Path(folder)
    if not folder.is_dir():
        return False
    n = 0
    for p in _candidates(folder):
        if p.suffix.lower() == ".dcm":
            return True
        if is_dicom_file(p):
            return True
        n += 1
        if n >= probe:
            break
    return False


def _read_headers(folder: Path) -> tuple[list[tuple[Path, Any]], list[Path]]:
    import pydicom

    headers, skipped = [], []
    for f in _candidates(folder):
        try:
            ds = pydicom.dcmread(str(f), stop_before_pixels=True)
        except Exception:  # not DICOM (README, DICOMDIR quirks, thumbnails): skip, report below
            skipped.append(f)
            continue
        if all(k in ds for k in _GEOMETRY):
            headers.append((f, ds))
        else:
            skipped.append(f)  # DICOMDIR, structured reports, secondary captures without geometry
    return headers, skipped


def _vec(ds: Any, key: str, n: int, name: str) -> np.ndarray:
    try:
        v = np.asarray([float(x) for x in ds[key].value], dtype=float)
    except Exception as exc:
        raise VolumeError(f"{name}: unreadable {key} ({reason(exc)})") from exc
    if v.shape != (n,) or not np.all(np.isfinite(v)):
        raise VolumeError(f"{name}: {key} must hold {n} finite numbers")
    return v


def read_dicom_series(folder: str | Path, *, nonfinite: str = "raise") -> Volume:
    """Read the largest image series in ``folder`` (searched recursively) into a :class:`Volume`."""
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(2, "No such file or directory", str(folder))
    if not folder.is_dir():
        raise VolumeError(f"{folder.name}: a DICOM series must be a folder of slice files")
    files = _candidates(folder)
    if not files:
        raise VolumeError(f"{folder.name}: the DICOM folder is empty")
    headers, skipped = _read_headers(folder)
    if not headers:
        raise VolumeError(
            f"{folder.name}: no DICOM image slices among {len(files)} files (e.g. {files[0].name}); "
            "is this a DICOM series folder?"
        )
    try:
        return _assemble(folder, headers, skipped, nonfinite)
    except (VolumeError, MemoryError):
        raise
    except Exception as exc:  # a malformed element parsed lazily by pydicom (bad VR, text in an int)
        raise VolumeError(f"{folder.name}: corrupt DICOM header ({reason(exc)})") from exc


def _assemble(folder: Path, headers: list[tuple[Path, Any]], skipped: list[Path], nonfinite: str) -> Volume:
    series: dict[str, list[tuple[Path, Any]]] = defaultdict(list)
    for f, ds in headers:
        series[str(getattr(ds, "SeriesInstanceUID", ""))].append((f, ds))
    uid, members = max(series.items(), key=lambda kv: len(kv[1]))
    notes: list[str] = []
    if len(series) > 1:
        notes.append(f"{len(series)} series in the folder; read the largest ({len(members)} slices, UID {uid})")
    if skipped:
        notes.append(f"skipped {len(skipped)} non-image or non-DICOM files")
    ds0 = members[0][1]
    if int(getattr(ds0, "NumberOfFrames", 1) or 1) > 1:
        raise VolumeError(f"{folder.name}: multi-frame (enhanced) DICOM is not supported; convert it with dcm2niix")

    iop = _vec(ds0, "ImageOrientationPatient", 6, folder.name)
    spacing = _vec(ds0, "PixelSpacing", 2, folder.name)
    rows, cols = int(ds0.Rows), int(ds0.Columns)
    for f, ds in members[1:]:
        if (
            not np.allclose(_vec(ds, "ImageOrientationPatient", 6, f.name), iop, atol=1e-4)
            or not np.allclose(_vec(ds, "PixelSpacing", 2, f.name), spacing, atol=1e-4)
            or (int(ds.Rows), int(ds.Columns)) != (rows, cols)
        ):
            raise VolumeError(
                f"{folder.name}: mixed series: {f.name} differs from {members[0][0].name} in orientation, "
                "pixel spacing or size; put one series per folder"
            )
    row_dir, col_dir = iop[:3], iop[3:]  # directions of increasing column / row index (LPS)
    normal = np.cross(row_dir, col_dir)
    if np.linalg.norm(normal) < 1e-6:
        raise VolumeError(f"{folder.name}: ImageOrientationPatient has parallel row and column directions")
    positions = np.stack([_vec(ds, "ImagePositionPatient", 3, f.name) for f, ds in members])
    order = np.argsort(positions @ normal, kind="stable")
    members = [members[i] for i in order]
    positions = positions[order]
    proj = positions @ normal
    n = len(members)
    if n > 1:
        gaps = np.diff(proj)
        if np.any(np.abs(gaps) < 1e-4):
            raise VolumeError(
                f"{folder.name}: several slices share one position (echoes, time points or duplicates in one "
                "series); split the series first"
            )
        if np.max(np.abs(gaps - gaps.mean())) > max(1e-2, 0.01 * abs(gaps.mean())):
            raise VolumeError(
                f"{folder.name}: slice spacing is not uniform ({gaps.min():.3g}..{gaps.max():.3g} mm); "
                "missing slices?"
            )
        step = (positions[-1] - positions[0]) / (n - 1)
    else:
        thick = float(getattr(ds0, "SpacingBetweenSlices", 0) or getattr(ds0, "SliceThickness", 0) or 1.0)
        step = normal * thick
    check_shape((n, rows, cols), folder.name)

    lps = np.eye(4)
    lps[:3, 0] = step
    lps[:3, 1] = col_dir * spacing[0]
    lps[:3, 2] = row_dir * spacing[1]
    lps[:3, 3] = positions[0]
    affine = LPS_TO_RAS @ lps

    arr = _pixels(members, rows, cols, folder.name)
    meta: dict[str, Any] = {
        "format": "dicom",
        "series_uid": uid,
        "n_slices": n,
        "modality": str(getattr(ds0, "Modality", "")),
        "series_description": str(getattr(ds0, "SeriesDescription", "")),
    }
    if notes:
        meta["notes"] = notes
    arr = check_array_values(arr, folder.name, nonfinite, meta)
    return Volume(array=arr, affine=affine, name=folder.name, source=folder, meta=meta)


def _pixels(members: list[tuple[Path, Any]], rows: int, cols: int, name: str) -> np.ndarray:
    import pydicom

    slices, slopes, inters = [], [], []
    for f, _ in members:
        ds = None
        try:
            ds = pydicom.dcmread(str(f))
            px = np.asarray(ds.pixel_array)
        except Exception as exc:  # e.g. a transfer syntax no installed pixel-data plugin decodes
            ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
            how = f" ({ts.name})" if ts is not None and ts.is_compressed else ""
            raise VolumeError(f"{name}: cannot decode pixels of {f.name}{how} ({reason(exc)})") from exc
        if px.shape != (rows, cols):
            raise VolumeError(f"{name}: {f.name} is not a single-channel {rows}x{cols} slice (shape {px.shape})")
        slices.append(px)
        slopes.append(float(getattr(ds, "RescaleSlope", 1) or 1))
        inters.append(float(getattr(ds, "RescaleIntercept", 0) or 0))
    raw = np.stack(slices)
    s, b = np.asarray(slopes), np.asarray(inters)
    if np.all(s == 1) and np.all(b == np.round(b)):
        out = raw.astype(np.int32) + b.astype(np.int32)[:, None, None]
        lo, hi = int(out.min()), int(out.max())
        return out.astype(np.int16) if -32768 <= lo and hi <= 32767 else out
    return (raw.astype(np.float32) * s.astype(np.float32)[:, None, None] + b.astype(np.float32)[:, None, None])
