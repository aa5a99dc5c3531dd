"""``sparseseg pseudo IMAGE --annotations ANN -o PSEUDO --confidence CONF``: dense pseudo-labels from marks.

Writes the pseudo-label map (0 = background, classes > 0, the user's marks mixed in) and a float
confidence map, both on the image grid (same affine and shape), atomically.  SAM embeddings are
cached on disk (``--cache``, default ``~/.cache/napari-sparseseg/embeddings``) so a second run on
the same image does not re-encode.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from ..errors import AnnotationError


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..pseudo.api import method_names

    p = subparsers.add_parser(
        "pseudo",
        help="dense pseudo-labels + confidence from sparse marks (random walker, SAM, fusion)",
        description="Turn sparse marks (0 = unmarked, classes > 0, one background label) into a dense "
        "pseudo-label map and a per-voxel confidence map on the image grid.",
    )
    p.add_argument("image", type=Path, help="3D image (NIfTI, zarr or DICOM series)")
    p.add_argument("--annotations", required=True, type=Path, help="sparse annotation map on the image grid")
    p.add_argument("--background-label", type=int, default=None,
                   help="value that marks background in ANN (default: from its sidecar; ACDC scribbles: 4)")
    p.add_argument("-o", "--output", required=True, type=Path, help="pseudo-label map to write (.nii.gz or .zarr)")
    p.add_argument("--confidence", required=True, type=Path, help="confidence map to write (float32, 0..1)")
    p.add_argument("--method", default="auto", choices=method_names(), help="pseudo-label method (default: auto = best measured)")
    p.add_argument("--backend", default="litemedsam",
                   help="SAM backend: litemedsam | litemedsam:PATH | sam-vit_b:PATH | sam-vit_l:PATH | sam-vit_h:PATH")
    p.add_argument("--threshold", type=float, default=None,
                   help="also set confidence to 0 below this value (voxels the trainer will ignore)")
    p.add_argument("--cache", type=Path, default=None, help="embedding cache folder (default: user cache)")
    p.add_argument("--no-cache", action="store_true", help="keep embeddings in memory only")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.set_defaults(func=run)


def _write(path: Path, array: np.ndarray, like, *, labels: bool) -> None:
    from ..io import write_labels_nifti, write_volume_nifti, write_zarr
    from ..io.nifti import is_nifti_path

    if is_nifti_path(path):
        if labels:
            write_labels_nifti(path, array, like)
        else:
            write_volume_nifti(path, like.with_array(array.astype(np.float32), name=path.name))
    elif str(path).rstrip("/").endswith(".zarr"):
        write_zarr(path, array if labels else array.astype(np.float32), like, labels=labels)
    else:
        raise AnnotationError(f"{path}: output must end in .nii, .nii.gz or .zarr")


def run(args: argparse.Namespace) -> int:
    """Check and reserve both outputs before any compute; commit them together at the end."""
    from ..io.outputs import OutputSet

    with OutputSet(args.overwrite) as outs:
        outs.add(args.output, "volume", "-o")
        outs.add(args.confidence, "volume", "--confidence")
        outs.reserve(inputs=(args.image, args.annotations))
        return _run(args, outs)


def _run(args: argparse.Namespace, outs) -> int:
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: no spinning threads on a busy CPU
    from ..annotations.files import load_annotation
    from ..io import read_volume
    from ..pseudo import make_pseudo_labels
    from ..sam.cache import default_cache_dir

    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise AnnotationError(f"--threshold must lie in [0, 1], got {args.threshold}")
    image = read_volume(args.image)
    ann = load_annotation(args.annotations, like=image, background_label=args.background_label, for_training=True)
    cache_dir = None if args.no_cache else (args.cache or default_cache_dir())
    t0 = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty():
            print(f"\r  {done}/{total}", end="", file=sys.stderr, flush=True)

    pl = make_pseudo_labels(image, ann, args.method, backend=args.backend, progress=progress,
                            threshold=args.threshold if args.threshold is not None else 0.5,
                            cache_dir=cache_dir)
    conf = pl.confidence
    if args.threshold is not None:
        conf = np.where(pl.confident(args.threshold), conf, 0.0).astype(np.float32)
    _write(outs.stage(args.output), pl.labels, image, labels=True)
    _write(outs.stage(args.confidence), conf, image, labels=False)
    outs.commit()
    counts = {int(c): int((pl.labels == c).sum()) for c in pl.classes}
    kept = pl.fraction_kept(args.threshold if args.threshold is not None else 0.5)
    print(f"{args.output}: method {pl.info.get('method')}, classes {counts}, "
          f"confident (>= {args.threshold if args.threshold is not None else 0.5}) {kept:.1%} of voxels, "
          f"{time.perf_counter() - t0:.1f} s")
    print(f"{args.confidence}: confidence map written")
    return 0
