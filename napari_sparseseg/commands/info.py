"""``sparseseg info FILE [--labels] [--json]``: what a scan is and where it lies, before using it.

Prints shape (array order: slice axis first), dtype, voxel spacing, origin, direction cosines,
intensity range, the napari placement and any notes from reading (squeezed axes, NaN voxels,
skipped DICOM files).  With ``--labels`` the file is read as a label map and the voxel count of
each label value is listed.  NaN/inf voxels are counted, not rejected, so a broken file can be
inspected; every other command rejects them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..io import read_labels, read_volume


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "info",
        help="print shape, spacing, orientation and intensity range of a scan",
        description="Describe a NIfTI file, zarr store or DICOM series folder: shape (array order, slice "
        "axis first), dtype, spacing (mm), origin (RAS mm), direction cosines and intensity range.",
    )
    p.add_argument("file", type=Path, help="NIfTI (.nii, .nii.gz), zarr store or DICOM series folder")
    p.add_argument("--labels", action="store_true", help="read as a label map and count each label value")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def describe_file(path: Path, labels: bool = False) -> dict[str, Any]:
    vol = read_labels(path) if labels else read_volume(path, nonfinite="keep")
    info = vol.describe()
    info["format"] = vol.meta.get("format")
    kw = vol.napari_kwargs()
    info["napari"] = {k: (np.round(v, 6).tolist() if isinstance(v, np.ndarray) else list(v)) for k, v in kw.items()}
    if labels:
        values, counts = np.unique(vol.array, return_counts=True)
        info["label_counts"] = {str(int(v)): int(c) for v, c in zip(values, counts)}
    info["notes"] = list(vol.meta.get("notes", []))
    return info


def _text(info: dict[str, Any]) -> str:
    def vec(v: list[float]) -> str:
        return "(" + ", ".join(f"{x:.6g}" for x in v) + ")"

    lines = [
        f"file:      {info['source']}",
        f"format:    {info['format']}",
        f"shape:     {tuple(info['shape'])}  (array order: axis 0 = slice axis)",
        f"dtype:     {info['dtype']}",
        f"spacing:   {vec(info['spacing_mm'])} mm",
        f"origin:    {vec(info['origin_mm'])} mm (RAS)",
        "direction: " + "  ".join(vec(col) for col in np.asarray(info["direction"]).T.tolist()) + "  (per axis, RAS)",
        f"range:     {info['min']:.6g} .. {info['max']:.6g}" if info["min"] is not None else "range:     (empty)",
    ]
    if info.get("non_finite_voxels"):
        lines.append(f"NaN/inf:   {info['non_finite_voxels']} voxels (other commands reject this file)")
    placement = ", ".join(f"{k}={vec(v) if k != 'affine' else 'oblique 4x4'}" for k, v in info["napari"].items())
    lines.append(f"napari:    {placement}")
    if "label_counts" in info:
        lines.append("labels:    " + ", ".join(f"{k}: {v}" for k, v in info["label_counts"].items()))
    lines += [f"note:      {n}" for n in info["notes"]]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    info = describe_file(args.file, labels=args.labels)
    print(json.dumps(info, indent=2) if args.json else _text(info))
    return 0
