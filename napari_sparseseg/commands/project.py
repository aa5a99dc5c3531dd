"""``sparseseg project init|status|next|train|predict``: a study of scans and one model that learns from all.

A project is a folder (``project.json`` + the marks, predictions and models the project writes;
the scans stay where they are).  The widget's project panel opens the same folder.  See
``docs/project.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "project",
        help="a study of scans: init, status, next scan to mark, train the shared model, predict",
        description="A project is one folder listing a study's scans with their marks, status, latest "
        "prediction and the shared model that learns from every marked scan.",
    )
    sub = p.add_subparsers(dest="project_command", metavar="ACTION")
    sub.required = True

    q = sub.add_parser("init", help="create a project (or add scans to one)")
    q.add_argument("folder", type=Path)
    q.add_argument("images", type=Path, nargs="*", help="scans (NIfTI, zarr or DICOM folders), referenced in place")
    q.set_defaults(func=_init)

    q = sub.add_parser("status", help="scans with their status, marks, prediction and uncertainty")
    q.add_argument("folder", type=Path)
    q.set_defaults(func=_status)

    q = sub.add_parser("next", help="the scan to open next (scan-level active learning)")
    q.add_argument("folder", type=Path)
    from ..active.scans import SCAN_STRATEGIES

    q.add_argument("--strategy", default="uncertainty", choices=sorted(SCAN_STRATEGIES),
                   help="uncertainty (least sure prediction, diverse from learnt scans; default), random, sequential")
    q.add_argument("--current", default=None, help="the scan open now (sequential continues after it)")
    q.set_defaults(func=_next)

    q = sub.add_parser("train", help="train the shared model on every marked scan (a new model version)")
    q.add_argument("folder", type=Path)
    q.add_argument("--budget-seconds", type=float, default=600.0, help="training time (default 600)")
    q.add_argument("--max-steps", type=int, default=None)
    q.add_argument("--device", default="auto")
    q.add_argument("--resume", action="store_true", help="continue an interrupted run from the project's training/")
    q.add_argument("--from-scratch", action="store_true", help="do not start from the current model version")
    q.add_argument("--threads", type=int, default=2)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--no-predict", action="store_true", help="do not refresh the scans' predictions afterwards")
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(func=_train)

    q = sub.add_parser("export", help="copy the latest predictions of reviewed scans to a folder (status: exported)")
    q.add_argument("folder", type=Path)
    q.add_argument("output", type=Path, help="folder for <scan>.nii.gz label maps (created if missing)")
    q.add_argument("--all", action="store_true", help="every scan with a prediction, not only the reviewed ones")
    q.add_argument("--overwrite", action="store_true")
    q.set_defaults(func=_export)

    q = sub.add_parser("predict", help="predict scans with the current model (writes predictions + uncertainty)")
    q.add_argument("folder", type=Path)
    q.add_argument("scans", nargs="*", help="scan ids (default: every scan without a prediction by the current model)")
    q.add_argument("--all", action="store_true", help="every scan, even those already predicted by this version")
    q.add_argument("--device", default="auto")
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(func=_predict)


def _say(args: argparse.Namespace, msg: str, force: bool = False) -> None:
    if force or not getattr(args, "quiet", False):
        print(f"sparseseg project {args.project_command}: {msg}", file=sys.stderr, flush=True)


def _init(args: argparse.Namespace) -> int:
    from ..project import Project

    proj = Project.create(args.folder, exist_ok=True)
    added = proj.add_scans(args.images) if args.images else []
    print(f"{proj.folder}: {len(proj.scans)} scans ({len(added)} given)")
    return 0


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _status(args: argparse.Namespace) -> int:
    from ..project import Project

    proj = Project.open(args.folder)
    for line in proj.repairs:
        print(f"repaired: {line}", file=sys.stderr)
    m = proj.current_model
    print(f"project {proj.name}: {len(proj.scans)} scans; model version {proj.model_version}"
          + (f" ({m.path}, {len(m.scans)} scans, {m.info.get('steps', '?')} steps)" if m else " (not trained yet)"))
    print("  ".join(f"{k} {v}" for k, v in proj.counts().items()))
    rows = [("scan", "status", "marks", "pred (model)", "unc mean", "unc near", "updated")]
    for s in proj.scans:
        pred = "-" if s.prediction is None else f"yes (v{s.prediction_model_version})" \
            if s.prediction_model_version is not None else "yes (per-scan)"
        rows.append((s.id, s.status, "yes" if s.marks else "-", pred, _fmt(s.mean_uncertainty),
                     _fmt(s.foreground_uncertainty), s.updated))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def _next(args: argparse.Namespace) -> int:
    from ..project import Project

    proj = Project.open(args.folder)
    s = proj.next_scan(args.strategy, current=args.current)
    if s is None:
        print("every scan is reviewed or exported", file=sys.stderr)
        return 1
    print(f"{s.id}\t{proj.image_path(s)}")
    return 0


def _train(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see commands/segment.py
    from ..cohort import CohortConfig
    from ..project import Project
    from ..project.learning import ProjectPredictor, ProjectTraining
    from ._cohort_run import drive

    t0 = time.perf_counter()
    proj = Project.open(args.folder)
    cfg = CohortConfig(budget_seconds=args.budget_seconds, max_steps=args.max_steps, device=args.device,
                       threads=args.threads, seed=args.seed)
    run = ProjectTraining(proj, cfg, resume=args.resume, from_current=not args.from_scratch)
    for line in run.skipped:
        _say(args, f"left out: {line}", force=True)
    _say(args, f"training on {len(run.scan_ids)} marked scans for {args.budget_seconds:.0f} s"
               + (f", from model version {proj.model_version}" if run.trainer.pretrained else ""))
    last = drive(run, budget_seconds=args.budget_seconds, quiet=args.quiet,
                 say=lambda m: _say(args, m, force=True))
    cancelled = last is None or last.kind == "cancelled"
    if cancelled:
        from ..cohort.resume import save_resume

        save_resume(run.trainer, proj.training_dir)
    rec = run.finish()
    _say(args, f"model version {rec.version}: {rec.path} ({run.trainer.step} steps, {time.perf_counter() - t0:.1f} s)"
               + ("; cancelled, continue with --resume" if cancelled else ""), force=cancelled)
    if cancelled:
        return 130
    if not args.no_predict:
        pred = ProjectPredictor(proj, device=args.device)
        for s in proj.scans:
            pred.predict(s.id)
        _say(args, f"predicted {len(proj.scans)} scans with model version {rec.version}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from ..project import Project, ProjectError
    from ..project.learning import ProjectPredictor

    proj = Project.open(args.folder)
    if proj.current_model is None:
        raise ProjectError("the project has no model yet: mark scans, then `sparseseg project train`")
    version = proj.model_version
    ids = list(args.scans) or [s.id for s in proj.scans
                              if args.all or s.prediction is None or s.prediction_model_version != version]
    pred = ProjectPredictor(proj, device=args.device)
    for i, sid in enumerate(ids, 1):
        proj.scan(sid)  # unknown id: one-line error before any work
        t = time.perf_counter()
        pred.predict(sid)
        s = proj.scan(sid)
        _say(args, f"[{i}/{len(ids)}] {sid}: uncertainty {_fmt(s.foreground_uncertainty)} "
                   f"({time.perf_counter() - t:.1f} s)")
    if not ids:
        _say(args, f"every scan already has a prediction by model version {version} (--all to redo)")
    return 0


def _export(args: argparse.Namespace) -> int:
    """Reviewed scans' predictions as plain label maps on each scan's grid; why a copy: the project's
    files may be replaced by the next prediction, an export is what leaves the study."""
    import shutil

    from ..errors import SparsesegError
    from ..io.atomic import atomic_path
    from ..project import Project

    proj = Project.open(args.folder)
    todo = [s for s in proj.scans if s.prediction is not None and (args.all or s.status in ("reviewed", "exported"))]
    if not todo:
        raise SparsesegError("nothing to export: no reviewed scan has a prediction (--all exports every prediction)")
    args.output.mkdir(parents=True, exist_ok=True)
    for s in todo:
        dest = args.output / f"{s.id}.nii.gz"
        if dest.exists() and not args.overwrite:
            raise SparsesegError(f"{dest} exists; pass --overwrite to replace it")
        with atomic_path(dest) as tmp:
            shutil.copyfile(proj.resolve(s.prediction), tmp)
        if s.status == "reviewed":
            proj.set_status(s.id, "exported")
    print(f"exported {len(todo)} scans to {args.output}")
    return 0
