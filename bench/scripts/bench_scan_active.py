"""Scan-level active learning: Dice of the shared model against the number of scans marked, by strategy.

A simulated study runs through the real project code (``napari_sparseseg.project``): a pool of
hippocampus scans, none marked.  Each round the strategy picks the next scan
(``Project.next_scan``), a simulated annotator labels 3 slices of it (``simulate_slices``), and the
shared model is trained again from the previous version (``ProjectTraining``, fixed budget), then every
pool scan is predicted (the uncertainty the next pick uses).  After each round we score:

* **held-out Dice**: held-out cases the model never saw, predicted without any marks;
* **pool Dice**: every pool scan as the project shows it (marked scans: with their marks as the
  prior and kept in the output; others: the image alone).

Both are means over the two hippocampus classes and the cases.  One run per strategy, same budget,
same seed; the difference between strategies has no confidence interval here (small pool, 1 seed).

    PYTHONPATH=. OMP_NUM_THREADS=1 python bench/scripts/bench_scan_active.py \\
        --data "$SPARSESEG_DATA/hippocampus" --out bench/results/scan_active
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _dice(pred: np.ndarray, gt: np.ndarray, classes=(1, 2)) -> float:
    from napari_sparseseg.evaluate.metrics import dice_per_class

    d = dice_per_class(pred, gt, classes)
    return float(np.mean([d[c] for c in classes]))


def run_strategy(strategy: str, pool: list[Path], test: list[Path], data: Path, args: argparse.Namespace) -> list[dict]:
    from napari_sparseseg.annotations import simulate_slices
    from napari_sparseseg.cohort import CohortConfig, CohortModel
    from napari_sparseseg.io import read_labels, read_volume
    from napari_sparseseg.project import Project
    from napari_sparseseg.project.learning import ProjectPredictor, ProjectTraining

    gts = {p.name: np.asarray(read_labels(data / "labelsTr" / p.name).array) for p in pool + test}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        proj = Project.create(Path(tmp) / "study")
        proj.add_scans(pool)
        by_id = {s.id: p for s, p in zip(proj.scans, pool)}
        for r in range(1, args.rounds + 1):
            t0 = time.perf_counter()
            # random: one fixed random order of the pool (the seed), as a user shuffling the study would
            nxt = proj.next_scan("random", seed=args.seed) if strategy == "random" else proj.next_scan(strategy)
            picked_u = nxt.foreground_uncertainty  # now: the record is updated by the predictions below
            img = proj.load_image(nxt.id)
            ann = simulate_slices(gts[by_id[nxt.id].name], 3, background_label=3, seed=args.seed)
            proj.set_marks(nxt.id, ann, like=img)
            proj.set_status(nxt.id, "reviewed")
            cfg = CohortConfig(budget_seconds=args.budget, device="cpu", threads=1, seed=args.seed,
                               patch=(args.patch, args.patch), batch=args.batch)
            run = ProjectTraining(proj, cfg)
            for _ev in run.run():
                pass
            rec = run.finish()
            pred = ProjectPredictor(proj, device="cpu")
            pool_d = []
            for s in proj.scans:
                labels, _unc = pred.predict(s.id)  # with marks where the scan has some; writes the quality signal
                pool_d.append(_dice(labels, gts[by_id[s.id].name]))
            model = CohortModel.load(proj.current_model_path(), device="cpu")
            test_d = [_dice(model.predict(read_volume(p))[0], gts[p.name]) for p in test]
            rows.append({"strategy": strategy, "round": r, "scans_marked": r, "picked": nxt.id,
                         "picked_uncertainty": picked_u, "model_version": rec.version,
                         "steps": rec.info.get("steps"), "heldout_dice": float(np.mean(test_d)),
                         "pool_dice": float(np.mean(pool_d)), "seconds": round(time.perf_counter() - t0, 1)})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="hippocampus folder (imagesTr/, labelsTr/)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/scan_active"))
    ap.add_argument("--pool", type=int, default=10)
    ap.add_argument("--test", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--budget", type=float, default=15.0, help="cohort training seconds per round")
    ap.add_argument("--strategies", nargs="+", default=["uncertainty", "random"])
    ap.add_argument("--patch", type=int, default=64, help="training crop size (hippocampus slices are ~35 x 51)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    cases = sorted((args.data / "imagesTr").glob("*.nii.gz"))
    # the last cases of the sorted list: away from the first ones other benchmarks tune on
    test = cases[-args.test:]
    pool = cases[-(args.test + args.pool):-args.test]
    t0 = time.perf_counter()
    rows = []
    for st in args.strategies:
        rows += run_strategy(st, pool, test, args.data, args)
    meta = {"machine": f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores "
                       "(shared), CPU only, 1 torch thread",
            # the data folder is machine-specific: recorded as the variable the tests use
            "command": " ".join(["python", *sys.argv]).replace(str(args.data), "$SPARSESEG_DATA/hippocampus"), "pool": [p.name for p in pool], "test": [p.name for p in test],
            "rounds": args.rounds, "budget_seconds": args.budget, "seed": args.seed, "patch": args.patch,
            "batch": args.batch,
            "total_seconds": round(time.perf_counter() - t0, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = ["# Scan-level active learning (hippocampus, 3 simulated slices per marked scan)", "",
             f"Machine: {meta['machine']}. Command: `{meta['command']}` ({meta['total_seconds']} s).",
             f"Pool {len(pool)} scans, held-out {len(test)} scans, cohort training {args.budget:g} s per round "
             f"(warm start from the previous version; {args.patch}x{args.patch} crops, batch {args.batch}), one seed.",
             "",
             "picked uncertainty: the picked scan's uncertainty under the previous model when it was picked "
             "(- = no model yet).", "",
             "| strategy | scans marked | picked | picked uncertainty | held-out Dice (no marks) | pool Dice | steps |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        pu = "-" if r["picked_uncertainty"] is None else f"{r['picked_uncertainty']:.3f}"
        lines.append(f"| {r['strategy']} | {r['scans_marked']} | {r['picked']} | {pu} | {r['heldout_dice']:.3f} | "
                     f"{r['pool_dice']:.3f} | {r['steps']} |")
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
