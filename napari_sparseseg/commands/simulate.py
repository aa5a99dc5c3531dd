"""``sparseseg simulate LABELS --mode scribbles|points:K|slices:K[:axis] -o ANN``.

Turns a dense label map into the sparse marks a simulated annotator would draw, written as an
annotation file (label map + sidecar, see :mod:`napari_sparseseg.annotations.files`).  Used by the
README demo and the benchmarks to get reproducible "user effort".
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from ..errors import AnnotationError

MODES_HELP = "scribbles[:axis] | points:K | slices:K[:axis]"


@dataclass(frozen=True)
class Mode:
    kind: str  # "scribbles", "points" or "slices"
    k: int = 0
    axis: int = 0


def parse_mode(text: str) -> Mode:
    """``"scribbles"``, ``"scribbles:2"``, ``"points:5"``, ``"slices:3"``, ``"slices:3:2"`` -> :class:`Mode`."""
    parts = text.strip().lower().split(":")
    kind, args = parts[0], parts[1:]
    try:
        nums = [int(a) for a in args]
    except ValueError:
        raise AnnotationError(f"--mode {text!r}: numbers expected after ':' ({MODES_HELP})") from None
    if kind == "scribbles" and len(nums) <= 1:
        return Mode("scribbles", 0, nums[0] if nums else 0)
    if kind == "points" and len(nums) == 1 and nums[0] >= 1:
        return Mode("points", nums[0])
    if kind == "slices" and len(nums) in (1, 2) and nums[0] >= 1:
        return Mode("slices", nums[0], nums[1] if len(nums) == 2 else 0)
    raise AnnotationError(f"--mode {text!r} is not understood; use {MODES_HELP} with K >= 1")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="simulate an annotator's sparse marks from a dense label map",
        description="Simulate scribbles, K points per class, or K fully labelled slices from a dense label "
        "map (0 = background) and write them as an annotation file (0 = unmarked, classes, background "
        "label) with a JSON sidecar.",
    )
    p.add_argument("labels", type=Path, help="dense label map (NIfTI, zarr or DICOM series)")
    p.add_argument("--mode", required=True, help=MODES_HELP + " (axis 0 = slice axis)")
    p.add_argument("-o", "--output", required=True, type=Path, help="annotation file to write (.nii.gz or .zarr)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same marks; default 0)")
    p.add_argument(
        "--background-label", type=int, default=None, help="value for background marks (default: largest class + 1)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..annotations import save_annotation, simulate_points, simulate_scribbles, simulate_slices
    from ..io import read_labels

    from ..io.outputs import OutputSet

    mode = parse_mode(args.mode)
    out = Path(args.output)
    with OutputSet(args.overwrite) as outs:  # checked and reserved first; save_annotation writes atomically
        outs.add(out, "volume", "-o")
        outs.reserve(inputs=(args.labels,))
        return _simulate(args, mode, out)


def _simulate(args: argparse.Namespace, mode, out: Path) -> int:
    from ..annotations import save_annotation, simulate_points, simulate_scribbles, simulate_slices
    from ..io import read_labels

    gt = read_labels(args.labels)
    dense = gt.array
    if mode.axis >= dense.ndim or mode.axis < 0:
        raise AnnotationError(f"axis {mode.axis} does not exist in a {dense.ndim}D label map (use 0..{dense.ndim - 1})")
    if mode.kind == "scribbles":
        ann = simulate_scribbles(dense, args.background_label, seed=args.seed, axis=mode.axis)
    elif mode.kind == "points":
        ann = simulate_points(dense, mode.k, args.background_label, seed=args.seed, spacing=gt.spacing)
    else:
        ann = simulate_slices(dense, mode.k, mode.axis, args.background_label, seed=args.seed)
    path, side = save_annotation(out, ann, gt)
    counts = ann.counts()
    per = ", ".join(f"{c}: {counts.get(c, 0)}" for c in ann.classes)
    print(
        f"wrote {path} (+ {side.name}): {args.mode}, seed {args.seed}; marked {100 * ann.marked_fraction():.3f}% "
        f"of voxels ({int(ann.marked.sum())}); per class {{{per}}}, background {ann.background_label}: "
        f"{counts.get(ann.background_label, 0)}"
    )
    return 0
