"""``sparseseg segment IMAGE --init MODEL`` with a ``sparseseg train`` model (a cohort model).

Without ``--annotations``: prediction only.  With no marks there are no pseudo-labels and nothing to
fine-tune on; the cohort model segments the scan from the image alone
(:class:`~napari_sparseseg.cohort.CohortModel`), in seconds.

With ``--annotations``: the cohort model's own fine-tune on this scan's marks
(:func:`~napari_sparseseg.cohort.finetune.fine_tune`, the path the study benchmark measures) within
``--budget-seconds``, then a prediction with the marks as the prior (the marks stay in the output).
Why not the per-scan Trainer: it would pull the study model back towards this scan's walker
pseudo-labels, which the study model already does better than.
"""

from __future__ import annotations

import argparse
import sys
import time


def predict_without_marks(args: argparse.Namespace, outs) -> int:
    from ..cohort import CohortModel
    from ..errors import SparsesegError
    from ..io import read_volume
    from .segment import _write

    if args.init is None:
        raise SparsesegError("give --annotations (the scan's marks), or --init MODEL (a `sparseseg train` model) "
                             "to segment the scan without marks")
    if args.method != "default":
        raise SparsesegError("without --annotations only the cohort model predicts; drop --method")
    t0 = time.perf_counter()
    image = read_volume(args.image)
    model = CohortModel.load(args.init, device=args.device)
    _say(args, f"no marks: predicting with {args.init.name} (model version {model.version})")
    labels, uncertainty = model.predict(image)
    _write(outs.stage(args.output), labels, image)
    if args.uncertainty is not None:
        _write(outs.stage(args.uncertainty), uncertainty, image)
    outs.commit()
    _say(args, f"wrote {args.output} ({time.perf_counter() - t0:.1f} s)")
    return 0


def fine_tune_with_marks(args: argparse.Namespace, image, ann, t0: float, outs) -> int:
    from ..cohort import CohortModel, CohortScan
    from ..cohort.finetune import fine_tune
    from ..errors import SparsesegError
    from .segment import _write

    if args.method != "default":
        raise SparsesegError("a `sparseseg train` model fine-tunes with --method default only")
    scan = CohortScan(image, ann, name=image.name or args.image.name)
    steps = args.max_steps
    if args.budget_seconds <= 0 or steps == 0:
        _say(args, f"no fine-tuning: predicting with {args.init.name} and the scan's marks")
        model = CohortModel.load(args.init, device=args.device)
    else:
        from tqdm import tqdm

        _say(args, f"fine-tuning {args.init.name} on this scan's marks for {args.budget_seconds:.0f} s")
        bar = None if args.quiet else tqdm(
            total=round(args.budget_seconds), unit="s", file=sys.stderr, desc="fine-tuning",
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s {postfix}")

        def on_event(ev) -> None:
            if bar is not None and ev.kind in ("step", "done"):
                bar.n = min(round(ev.elapsed), bar.total)
                if ev.losses:
                    bar.set_postfix_str(f"step {ev.step} loss {ev.losses.get('total', float('nan')):.3f}", refresh=True)

        try:
            model = fine_tune(args.init, scan, budget_seconds=args.budget_seconds, max_steps=steps,
                              device=args.device, seed=args.seed, threads=args.threads, on_event=on_event)
        finally:
            if bar is not None:
                bar.close()
    labels, uncertainty = model.predict(image, ann)
    _write(outs.stage(args.output), labels, image)
    if args.uncertainty is not None:
        _write(outs.stage(args.uncertainty), uncertainty, image)
    if args.save_model is not None:
        from ..training.checkpoint import save_checkpoint

        save_checkpoint(outs.stage(args.save_model), model.model.state_dict(), model.meta)
    outs.commit()
    _say(args, f"wrote {args.output} ({time.perf_counter() - t0:.1f} s in total)")
    return 0


def _say(args: argparse.Namespace, msg: str) -> None:
    if not args.quiet:
        print(f"sparseseg segment: {msg}", file=sys.stderr, flush=True)
