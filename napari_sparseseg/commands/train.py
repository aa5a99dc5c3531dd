"""``sparseseg train IMAGES... --annotations DIR -o MODEL``: one model from the sparse marks of many scans.

Each image's marks are found in ``--annotations`` by file name (``scans/case1.nii.gz`` ->
``DIR/case1.nii.gz``, also ``.nii`` / ``.zarr``), the one annotation convention of
:mod:`napari_sparseseg.annotations.files`.  Dense labels are never read.  The model is written as a
checkpoint that ``sparseseg segment IMAGE --init MODEL`` uses with or without marks on the new scan.

Training is resumable: the trainer keeps a checkpoint and its pseudo-label cache in ``--workdir``
(default ``MODEL.work/`` beside the output); Ctrl-C stops cleanly, writes the model trained so far and
exits with 130; ``--resume`` continues from the work folder's last checkpoint.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ANNOTATION_SUFFIXES = (".nii.gz", ".nii", ".zarr", ".ome.zarr")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train one model across many scans from their sparse marks (then: segment --init MODEL)",
        description="Cohort training from sparse marks only: one network learnt from the marks (and the "
        "pseudo-labels made from them) of every image; annotations are matched to images by file name.",
    )
    p.add_argument("images", type=Path, nargs="+", help="images (NIfTI, zarr or DICOM folders)")
    p.add_argument("--annotations", "-a", required=True, type=Path,
                   help="folder of sparse marks, one per image with the same file name (0 = unmarked)")
    p.add_argument("--background-label", type=int, default=None,
                   help="value of background marks (default: from each annotation's sidecar; ACDC scribbles: 4)")
    p.add_argument("-o", "--output", required=True, type=Path, help="model to write (.safetensors)")
    p.add_argument("--budget-seconds", type=float, default=1800.0,
                   help="training time after the pseudo-labels (default 1800)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (and the budget)")
    p.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:1, mps")
    p.add_argument("--workdir", type=Path, default=None,
                   help="resumable checkpoint and pseudo-label cache (default: MODEL.work/ beside the output)")
    p.add_argument("--resume", action="store_true", help="continue from the work folder's last checkpoint")
    p.add_argument("--init", type=Path, default=None, help="start from this cohort model (fine-tune it)")
    p.add_argument("--pseudo-method", default=None, help="pseudo-label method (default: the trainer's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output model")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def find_annotation(folder: Path, image: Path) -> Path | None:
    """The marks of ``image`` in ``folder``: same file stem, any annotation suffix; None if absent."""
    from ..annotations.files import annotation_stem

    stem = annotation_stem(image) if image.name else image.parent.name
    for suffix in ANNOTATION_SUFFIXES:
        cand = folder / f"{stem}{suffix}"
        if cand.exists():
            return cand
    return None


def default_workdir(output: Path) -> Path:
    name = output.name
    for suffix in (".safetensors", ".pt"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return output.with_name(name + ".work")


def run(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see commands/segment.py
    from ..annotations.files import load_annotation
    from ..cohort import CohortConfig, CohortScan, CohortTrainer
    from ..errors import SparsesegError
    from ..io import read_volume

    if args.output.exists() and not args.overwrite and not args.resume:
        raise SparsesegError(f"{args.output} exists; pass --overwrite to replace it (or --resume to continue)")
    if not args.annotations.is_dir():
        raise SparsesegError(f"--annotations {args.annotations} is not a folder")
    if args.budget_seconds <= 0:
        raise SparsesegError("--budget-seconds must be positive")
    pairs: list[tuple[Path, Path]] = []
    missing: list[str] = []
    for img in args.images:
        ann = find_annotation(args.annotations, img)
        if ann is None:
            missing.append(img.name)
        else:
            pairs.append((img, ann))
    if not pairs:
        raise SparsesegError(f"no image has marks in {args.annotations} (looked for the same file names)")
    if missing:
        _say(args, f"{len(missing)} image(s) without marks are skipped: {', '.join(missing[:5])}"
                   + (" ..." if len(missing) > 5 else ""))
    t0 = time.perf_counter()
    scans = []
    for img_path, ann_path in pairs:
        image = read_volume(img_path)
        ann = load_annotation(ann_path, like=image, background_label=args.background_label)
        scans.append(CohortScan(image, ann, name=image.name or img_path.name))
    workdir = args.workdir or default_workdir(args.output)
    workdir.mkdir(parents=True, exist_ok=True)
    if args.resume:
        from ..cohort.resume import RESUME_NAME

        if not (workdir / RESUME_NAME).is_file():
            _say(args, f"--resume: no checkpoint in {workdir}; starting from the beginning", force=True)
    cfg = CohortConfig(budget_seconds=args.budget_seconds, max_steps=args.max_steps, device=args.device,
                       seed=args.seed, threads=args.threads)
    if args.pseudo_method:
        cfg.pseudo_method = args.pseudo_method
    trainer = CohortTrainer(scans, cfg, init=args.init, workdir=workdir, resume=args.resume)
    from ..cohort import distributed

    if not distributed.is_main():  # under torchrun: one process reports and writes, the others only train
        args.quiet = True
    _say(args, f"{len(trainer.scans)} marked scans, {len(trainer.classes)} classes; training on {trainer.device} "
               f"for {args.budget_seconds:.0f} s (work folder {workdir})")
    from ._cohort_run import drive

    last = drive(trainer, budget_seconds=args.budget_seconds, quiet=args.quiet, say=lambda m: _say(args, m, force=True))
    cancelled = last is None or last.kind == "cancelled"
    main = distributed.is_main()  # (asked before finish(): after it every process is "rank 0")
    try:
        if main:  # under torchrun one process writes; the others wait in finish()
            if cancelled:  # the work folder's checkpoint lets --resume continue from here
                from ..cohort.resume import save_resume

                save_resume(trainer, workdir)
            args.output.parent.mkdir(parents=True, exist_ok=True)
            trainer.save(args.output)
    finally:
        distributed.finish()
    if not main:
        return 130 if cancelled else 0
    what = "cancelled: wrote the model trained so far to" if cancelled else "wrote"
    _say(args, f"{what} {args.output} ({trainer.step} steps, {time.perf_counter() - t0:.1f} s in total)"
               + ("; continue with --resume" if cancelled else ""), force=cancelled)
    return 130 if cancelled else 0


def _say(args: argparse.Namespace, msg: str, force: bool = False) -> None:
    if force or not args.quiet:
        print(f"sparseseg train: {msg}", file=sys.stderr, flush=True)
