"""``sparseseg pretrain IMAGES... --labels DIR -o model.safetensors``: cohort pretraining.

Trains the default network once on other patients' expert labels, so each new volume is a
fine-tune (``sparseseg segment --init model.safetensors``) instead of a start from scratch.  With
``--annotations DIR`` (each volume's own sparse marks, same file names), the network is given the
pseudo-labels made from those marks as input, exactly as at run time, and learns to correct them;
a model pretrained that way is the one ``segment`` (which always makes pseudo-labels) can load.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "pretrain",
        help="pretrain the network on a cohort of labelled volumes (then: segment --init MODEL)",
        description="Cohort pretraining: one network trained on several volumes' expert labels (with the "
        "pseudo-labels of their sparse marks as input), written as a checkpoint for `segment --init`.",
    )
    p.add_argument("images", type=Path, nargs="+", help="training images (NIfTI, zarr or DICOM folders)")
    p.add_argument("--labels", required=True, type=Path, help="folder of expert label maps, same file names")
    p.add_argument("--annotations", type=Path, default=None,
                   help="folder of each image's sparse marks (same file names): their pseudo-labels become the "
                   "network's prior input, as in `segment`; without it the model is image-only")
    p.add_argument("--background-label", type=int, default=None, help="background value of the sparse marks")
    p.add_argument("--pseudo-method", default="auto", help="pseudo-label method for --annotations (default auto)")
    p.add_argument("-o", "--output", required=True, type=Path, help="checkpoint to write (.safetensors)")
    p.add_argument("--steps", type=int, default=2000, help="optimisation steps (default 2000)")
    p.add_argument("--device", default="auto")
    p.add_argument("--network", default="auto", choices=("auto", "unet2d", "unet3d"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check and reserve the checkpoint before any compute; commit it at the end."""
    from ..io.outputs import OutputSet

    outs = OutputSet(args.overwrite)
    outs.add(args.output, "checkpoint", "-o")
    with outs:
        outs.reserve(inputs=args.images)
        return _run(args, outs)


def _run(args: argparse.Namespace, outs) -> int:
    import numpy as np

    from ..annotations.files import load_annotation
    from ..errors import SparsesegError
    from ..io import read_labels, read_volume
    from ..training import TrainConfig
    from ..training.cohort import dense_item, pretrain_cohort

    if args.steps < 1:
        raise SparsesegError("--steps must be at least 1")
    t0 = time.perf_counter()
    items = []
    classes: tuple[int, ...] | None = None
    for img_path in args.images:
        name = img_path.name
        lab_path = args.labels / name
        if not lab_path.exists():
            raise SparsesegError(f"no label map {lab_path} for {img_path}")
        image = read_volume(img_path)
        dense = np.asarray(read_labels(lab_path, like=image).array)
        pseudo = None
        bg = args.background_label
        if args.annotations is not None:
            from ..pseudo import make_pseudo_labels

            ann = load_annotation(args.annotations / name, like=image, background_label=args.background_label,
                                  for_training=True)
            bg = ann.background_label
            _say(args, f"{name}: pseudo-labels ({args.pseudo_method})")
            pseudo = make_pseudo_labels(image, ann, method=args.pseudo_method)
            cls = tuple(ann.classes)
        else:
            cls = tuple(int(v) for v in np.unique(dense) if v > 0)
        if classes is None:
            classes = cls
        elif cls != classes:
            raise SparsesegError(f"{name} has classes {list(cls)}, the first image {list(classes)}")
        if bg is None:
            bg = max(classes) + 1
        items.append(dense_item(image, dense, bg, classes, pseudo))
    cfg = TrainConfig(seed=args.seed, device=args.device, network=args.network, threads=args.threads,
                      budget_seconds=1e9, max_steps=args.steps)
    _say(args, f"pretraining on {len(items)} volumes for {args.steps} steps")
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=args.steps, file=sys.stderr, desc="pretraining", unit="step")

    def progress(step: int, losses: dict[str, float]) -> None:
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"loss {losses.get('total', float('nan')):.3f}", refresh=False)

    try:
        trainer = pretrain_cohort(items, cfg, args.steps, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    trainer.save(outs.stage(args.output))
    outs.commit()
    _say(args, f"wrote {args.output} ({trainer.step} steps, {time.perf_counter() - t0:.1f} s)")
    return 0


def _say(args: argparse.Namespace, msg: str) -> None:
    if not args.quiet:
        print(f"sparseseg pretrain: {msg}", file=sys.stderr, flush=True)
