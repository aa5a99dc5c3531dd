"""``sparseseg segment IMAGE --annotations ANN -o OUT``: the whole pipeline without a GUI.

Sparse marks -> pseudo-labels (random walker / SAM, :mod:`napari_sparseseg.pseudo`) -> a small
U-Net trained on marks + confident pseudo-labels for ``--budget-seconds`` -> a label map written on
the image grid (same affine, integer dtype).  The same :class:`~napari_sparseseg.training.Trainer`
runs behind the napari widget.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "segment",
        help="segment a volume from sparse marks (pseudo-labels + a network trained on them)",
        description="Dense segmentation from sparse marks: pseudo-labels from the marks, then a small U-Net "
        "trained on the marks and the confident pseudo-labels, prediction written on the image grid.",
    )
    p.add_argument("image", type=Path, help="image (NIfTI, zarr or DICOM series folder)")
    p.add_argument("--annotations", "-a", default=None, type=Path,
                   help="annotation map (0 = unmarked); without it, --init MODEL (a `sparseseg train` model) "
                   "predicts the scan from the image alone")
    p.add_argument("--background-label", type=int, default=None,
                   help="value of background marks (default: from the annotation's sidecar; ACDC scribbles: 4)")
    p.add_argument("-o", "--output", required=True, type=Path, help="label map to write (.nii.gz or .zarr)")
    p.add_argument("--budget-seconds", type=float, default=60.0,
                   help="training time (default 60); 0 = only predict, e.g. with a cohort model from `sparseseg "
                   "pretrain` (measured best on ACDC: bench/results/cohort_pretraining/cohort_results.md)")
    p.add_argument("--init", type=Path, default=None, help="start from this checkpoint (.safetensors)")
    p.add_argument("--save-model", type=Path, default=None, help="write the trained model here (.safetensors)")
    p.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:1, mps")
    p.add_argument("--network", default="auto", choices=("auto", "unet2d", "unet3d"),
                   help="auto: 2D slice-wise for anisotropic scans, 3D for near-isotropic ones")
    p.add_argument("--pseudo-method", default="auto",
                   help="pseudo-label method (see `sparseseg pseudo --help`), or 'none' to train on the marks only")
    p.add_argument("--threshold", type=float, default=0.5, help="ignore pseudo-labels below this confidence")
    p.add_argument("--pseudo-seconds", type=float, default=900.0,
                   help="stop with an error if pseudo-labelling takes longer than this (default 900)")
    p.add_argument("--method", default="default",
                   help="training method: default (one U-Net, the Trainer) or a seed paper's variant: sa-net, "
                   "clg-vq, rada, dk-uxnet (see docs/methods/); --init/--save-model need the default")
    p.add_argument("--max-steps", type=int, default=None, help="stop training after this many steps (and the budget)")
    p.add_argument("--uncertainty", type=Path, default=None, help="also write the per-voxel uncertainty map")
    p.add_argument("--preview", type=Path, default=None,
                   help="write the first streamed prediction here (atomically) as soon as it exists")
    p.add_argument("--no-progressive", dest="progressive", action="store_false",
                   help="wait for the complete pseudo-labels before training (default: start on the walker's "
                   "map and fold the SAM-fused slices in as they are ready)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--server", default=None, metavar="URL",
                   help="compute on a `sparseseg serve` at URL (token from $SPARSESEG_TOKEN); outputs are written here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _write(path: Path, array, like) -> None:
    from ..io import write_labels_nifti, write_volume_nifti, write_zarr

    if str(path).lower().endswith((".zarr", ".ome.zarr")):
        write_zarr(path, array, like)
    elif array.dtype.kind == "f":
        write_volume_nifti(path, like.with_array(array))
    else:
        write_labels_nifti(path, array, like)


def run(args: argparse.Namespace) -> int:
    """Check and reserve every output before any compute; commit them together at the end."""
    from ..io.outputs import OutputSet

    with OutputSet(args.overwrite) as outs:
        outs.add(args.output, "volume", "-o")
        outs.add(args.uncertainty, "volume", "--uncertainty")
        outs.add(args.save_model, "checkpoint", "--save-model")
        outs.add(args.preview, "volume", "--preview")  # checked and reserved now, written atomically when due
        outs.reserve(inputs=(args.image, args.annotations, args.init))
        return _run(args, outs)


def _run(args: argparse.Namespace, outs) -> int:
    import os

    # OpenMP threads that spin while waiting make a step ~10x slower on a busy 2-core laptop
    # (measured: 4.3 s vs 0.35 s per step); must be set before torch starts its thread pool.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from ..annotations.files import load_annotation
    from ..io import read_volume
    from ..training import TrainConfig, Trainer

    if args.annotations is None:  # no marks on this scan: the cohort model alone
        from ._cohort_segment import predict_without_marks

        return predict_without_marks(args, outs)
    if args.method != "default":
        from ..errors import SparsesegError
        from ..methods import load_all

        if args.method not in load_all():
            raise SparsesegError(f"unknown method {args.method!r}; choose from {', '.join(sorted(load_all()))}")
        if args.init is not None or args.save_model is not None:
            raise SparsesegError("--init and --save-model work with --method default only")
    # settings and device are checked before anything is read or computed (one line, exit 2)
    from ..training.trainer import pick_device

    cfg = TrainConfig(seed=args.seed, device=args.device, network=args.network, budget_seconds=args.budget_seconds,
                      max_steps=args.max_steps, threshold=args.threshold, threads=args.threads,
                      preview_every_seconds=1e9, first_preview_seconds=0.0 if args.preview else 1e9)
    pick_device(cfg.device)
    t0 = time.perf_counter()
    image = read_volume(args.image)
    ann = load_annotation(args.annotations, like=image, background_label=args.background_label, for_training=True)
    ann.validate(image.shape)
    if args.server:  # the same job on a remote engine; the outputs are written here
        from ..server.client import run_segment

        rc = run_segment(args, image, ann, lambda path, array, like: _write(outs.stage(path), array, like),
                         lambda msg: _say(args, msg), stage=outs.stage)
        outs.commit()
        return rc
    init = None
    if args.init is not None:  # fail before the slow steps if the checkpoint is unusable
        from ..training import load_checkpoint

        state, meta = load_checkpoint(args.init)
        init = {"state_dict": state, "meta": {**meta, "_source": args.init.name}}
        if "cohort" in meta:  # a `sparseseg train` model: its own fine-tune on this scan's marks
            from ._cohort_segment import fine_tune_with_marks

            return fine_tune_with_marks(args, image, ann, t0, outs)
    from .segment_stream import first_pseudo, needs_final_round, start_second_stage

    progressive = None
    pseudo = None
    if args.pseudo_method != "none":
        _say(args, f"pseudo-labels ({args.pseudo_method}) ...")
        progressive, pseudo = first_pseudo(image, ann, args.pseudo_method, args.threshold,
                                           progressive=args.progressive and args.method == "default"
                                           and args.budget_seconds > 0 and args.max_steps != 0,
                                           time_limit=args.pseudo_seconds)
        stage = "first stage (walker) " if progressive is not None and progressive.has_second_stage else ""
        _say(args, f"pseudo-labels {stage}ready in {time.perf_counter() - t0:.1f} s")
    if args.method != "default":
        return _run_method(args, image, ann, pseudo, cfg, t0, outs)
    trainer = Trainer(image, ann, cfg, pseudo=pseudo, init=init)
    if progressive is None:
        # the trainer copied what it needs into its own tensors and nothing here updates it: let the
        # pseudo-label arrays go (labels, confidence, probabilities: 1.1 GB on a 512 x 512 x 300 scan)
        trainer.pseudo = pseudo = None
    preview_due = args.preview is not None

    def second_stage() -> None:
        start_second_stage(progressive, trainer, ann, lambda msg: _say(args, msg), t0)

    if not preview_due:
        second_stage()  # with --preview: after the first prediction, which SAM's set-up would slow down
    if args.budget_seconds <= 0 or args.max_steps == 0:
        _say(args, f"no training: prediction of {'the loaded model' if init else 'the untrained network (= pseudo-labels)'}")
    else:
        _say(args, f"training {trainer.spec.name} on {trainer.device} for {args.budget_seconds:.0f} s")
    final = None
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=round(args.budget_seconds), unit="s", file=sys.stderr, desc="training", leave=True,
                   bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s {postfix}")
    runs = [trainer.run()]
    try:
        while runs:
            for ev in runs.pop():
                if bar is not None and ev.kind in ("step", "done"):
                    bar.n = min(round(ev.elapsed), bar.total)
                    if ev.losses:
                        bar.set_postfix_str(f"step {ev.step} loss {ev.losses['total']:.3f}", refresh=True)
                if preview_due and ev.prediction is not None and ev.kind in ("prediction", "done"):
                    _write(args.preview, ev.prediction, image)
                    preview_due = False
                    _say(args, f"first prediction written to {args.preview} after {time.perf_counter() - t0:.1f} s")
                    second_stage()
                if ev.kind == "done":
                    final = ev
            if final is not None and needs_final_round(progressive, trainer):
                _say(args, "training on the complete SAM-fused pseudo-labels (warm start, half the budget)")
                runs.append(trainer.run())
    finally:
        if bar is not None:
            bar.close()
        if progressive is not None:
            progressive.stop(wait=True)
    assert final is not None and final.prediction is not None
    _write(outs.stage(args.output), final.prediction, image)
    if args.uncertainty is not None and final.uncertainty is not None:
        _write(outs.stage(args.uncertainty), final.uncertainty, image)
    if args.save_model is not None:
        trainer.save(outs.stage(args.save_model))
    outs.commit()
    _say(args, f"wrote {args.output} ({final.step} steps, {time.perf_counter() - t0:.1f} s in total)")
    return 0


def _run_method(args: argparse.Namespace, image, ann, pseudo, cfg, t0: float, outs) -> int:
    """A seed-paper method (``napari_sparseseg.methods``): same inputs, same outputs, its own loop."""
    from ..methods import make_context, run_method

    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=round(args.budget_seconds), unit="s", file=sys.stderr, desc=f"training ({args.method})",
                   bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s {postfix}")
    t_train = time.perf_counter()

    def progress(step: int, losses: dict[str, float]) -> None:
        if bar is not None:
            bar.n = min(round(time.perf_counter() - t_train), bar.total)
            loss = losses.get("total", losses.get("loss", float("nan")))
            bar.set_postfix_str(f"step {step + 1} loss {loss:.3f}", refresh=True)

    _say(args, f"training with method {args.method} for {args.budget_seconds:.0f} s")
    try:
        out = run_method(args.method, make_context(image, ann, pseudo, cfg, progress=progress))
    finally:
        if bar is not None:
            bar.close()
    _write(outs.stage(args.output), out.labels, image)
    if args.uncertainty is not None and out.uncertainty is not None:
        _write(outs.stage(args.uncertainty), out.uncertainty, image)
    outs.commit()
    _say(args, f"wrote {args.output} ({out.info.get('steps', '?')} steps, {time.perf_counter() - t0:.1f} s in total)")
    return 0


def _say(args: argparse.Namespace, msg: str) -> None:
    if not args.quiet:
        print(f"sparseseg segment: {msg}", file=sys.stderr, flush=True)
