"""``sparseseg evaluate PRED GT [--json] [--classes ...]``: per-class Dice, HD95 and ASSD in mm.

Distances use the ground truth's voxel spacing (``--spacing`` overrides it, e.g. for the ACDC copies
whose spacing was lost).  The empty-mask convention is documented in
:mod:`napari_sparseseg.evaluate.metrics`.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from ..errors import VolumeError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="per-class Dice, HD95 and ASSD (mm) of a prediction against ground truth",
        description="Compare a predicted label map with the ground truth (same grid) per class: Dice, "
        "95th-percentile Hausdorff distance and average symmetric surface distance in millimetres.",
    )
    p.add_argument("pred", type=Path, help="predicted label map (0 = background)")
    p.add_argument("gt", type=Path, help="ground-truth label map on the same grid")
    p.add_argument("--classes", type=int, nargs="+", default=None, help="class ids (default: all present)")
    p.add_argument("--names", nargs="+", default=None, help="display names, one per class in --classes order")
    p.add_argument("--spacing", type=float, nargs=3, default=None, metavar=("S0", "S1", "S2"),
                   help="voxel size in mm per array axis (default: from the ground truth's header)")
    p.add_argument("--dice-only", action="store_true", help="skip the surface distances (fast)")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    p.set_defaults(func=run)


def _num(v: float, fmt: str) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def _jsonable(rec: dict[str, Any]) -> dict[str, Any]:
    def clean(x: Any) -> Any:
        if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
            return None
        if isinstance(x, dict):
            return {str(k): clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        return x

    return clean(rec)


def format_table(rec: dict[str, Any]) -> str:
    """The human-readable table ``sparseseg evaluate`` prints."""
    lines = [f"{'class':<16}{'Dice':>8}{'HD95 mm':>10}{'ASSD mm':>10}{'pred vox':>11}{'GT vox':>11}"]
    for c, r in rec["classes"].items():
        label = f"{c} {r['name']}" if r["name"] != f"class {c}" else str(c)
        lines.append(
            f"{label:<16}{_num(r['dice'], '.4f'):>8}{_num(r['hd95_mm'], '.2f'):>10}{_num(r['assd_mm'], '.2f'):>10}"
            f"{r['voxels_pred']:>11}{r['voxels_gt']:>11}"
        )
    m = rec["mean"]
    lines.append(f"{'mean':<16}{_num(m['dice'], '.4f'):>8}{_num(m['hd95_mm'], '.2f'):>10}{_num(m['assd_mm'], '.2f'):>10}")
    sp = ", ".join(f"{s:g}" for s in rec["spacing_mm"])
    note = f"spacing ({sp}) mm"
    if rec.get("undefined_distances"):
        note += f"; {rec['undefined_distances']} distance(s) undefined (class absent from prediction or GT)"
    if rec.get("absent_classes"):
        note += f"; class(es) {rec['absent_classes']} absent from both maps: n/a, left out of the means"
    lines.append(note)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ..evaluate import evaluate_labels
    from ..io import read_labels

    gt = read_labels(args.gt)
    pred = read_labels(args.pred)
    if not pred.same_grid(gt):
        sp = lambda v: "(" + ", ".join(f"{x:.4g}" for x in v.spacing) + ")"  # noqa: E731
        where = "" if pred.shape != gt.shape else "; same shape but a different position/orientation"
        raise VolumeError(
            f"the prediction {Path(args.pred).name} (shape {pred.shape}, spacing {sp(pred)} mm) is not on the "
            f"ground truth's grid {Path(args.gt).name} (shape {gt.shape}, spacing {sp(gt)} mm){where}; "
            "resample it onto the ground truth first"
        )
    names = None
    if args.names is not None:
        if args.classes is None or len(args.names) != len(args.classes):
            raise VolumeError("--names needs --classes with the same number of entries")
        names = dict(zip(args.classes, args.names))
    spacing = tuple(args.spacing) if args.spacing is not None else gt.spacing
    if any(s <= 0 for s in spacing):
        raise VolumeError(f"spacing must be positive, got {spacing}")
    if args.classes is None and not (gt.array > 0).any() and not (pred.array > 0).any():
        raise VolumeError("neither the prediction nor the ground truth holds a class > 0; pass --classes")
    rec = evaluate_labels(
        pred.array, gt.array, classes=args.classes, spacing=spacing, class_names=names, distances=not args.dice_only
    )
    rec["prediction"], rec["ground_truth"] = str(args.pred), str(args.gt)
    if args.json:
        print(json.dumps(_jsonable(rec), indent=2))
    else:
        print(format_table(rec))
    return 0
