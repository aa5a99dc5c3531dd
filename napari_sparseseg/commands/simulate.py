"""``sparseseg simulate LABELS --mode scribbles|points:K|slices:K[:axis] -o ANN``.

Turns a dense label map into the sparse marks a simulated annotator would draw, written as an
annotation file (label map + sidecar, see :mod:`napari_sparseseg.annotations.files`).  Used by the
README demo and the benchmarks to get reproducible "user effort".
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..annotations.annotators import GRAMMAR, AnnotatorSpec, parse_annotator

MODES_HELP = GRAMMAR
#: the CLI's names for the shared grammar (:mod:`napari_sparseseg.annotations.annotators`)
Mode = AnnotatorSpec


def parse_mode(text: str) -> AnnotatorSpec:
    """``--mode`` text -> :class:`AnnotatorSpec` (the grammar the benchmark's settings use too)."""
    return parse_annotator(text)


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
    from ..io.outputs import OutputSet

    mode = parse_mode(args.mode)
    out = Path(args.output)
    with OutputSet(args.overwrite) as outs:  # checked and reserved first; save_annotation writes atomically
        outs.add(out, "volume", "-o")
        outs.reserve(inputs=(args.labels,))
        return _simulate(args, mode, out)


def _simulate(args: argparse.Namespace, mode, out: Path) -> int:
    from ..annotations import save_annotation
    from ..annotations.annotators import simulate
    from ..io import read_labels

    gt = read_labels(args.labels)
    ann = simulate(gt.array, mode, args.background_label, seed=args.seed, spacing=gt.spacing)
    path, side = save_annotation(out, ann, gt)
    counts = ann.counts()
    per = ", ".join(f"{c}: {counts.get(c, 0)}" for c in ann.classes)
    print(
        f"wrote {path} (+ {side.name}): {args.mode}, seed {args.seed}; marked {100 * ann.marked_fraction():.3f}% "
        f"of voxels ({int(ann.marked.sum())}); per class {{{per}}}, background {ann.background_label}: "
        f"{counts.get(ann.background_label, 0)}"
    )
    return 0
