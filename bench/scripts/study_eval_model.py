"""Score a saved study model on unseen ACDC volumes, with and without each scan's own scribbles.

    python bench/scripts/study_eval_model.py MODEL --data DATA --out bench/results/study/cpu_80.md --note "..."

Same scores as bench_study.py (patient-level means, 95 % bootstrap intervals, Dice on unmarked voxels).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from napari_sparseseg.benchmarking import cases as C  # noqa: E402
from napari_sparseseg.benchmarking.study import annotation_for, score, summarise  # noqa: E402
from napari_sparseseg.cohort import CohortModel  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    model = CohortModel.load(args.model, device="cpu")
    rows = []
    t0 = time.perf_counter()
    for name in C.list_cases(args.data, "acdc"):
        case = C.load_case(args.data, "acdc", name)
        ann = annotation_for(case, "human-scribbles")
        lab, _ = model.predict(case.image)
        rows.append({"case": name, "mode": "no-marks", **score(lab, case.gt, case.classes)})
        lab, _ = model.predict(case.image, ann)
        rows.append({"case": name, "mode": "marks", **score(lab, case.gt, case.classes, ann.marked)})
    secs = time.perf_counter() - t0
    nm = [r for r in rows if r["mode"] == "no-marks"]
    mk = [r for r in rows if r["mode"] == "marks"]
    lines = [f"# A study model trained on the CPU, scored on the unseen ACDC patients ({args.model.name})", "",
             args.note, "", f"Scored with: `python bench/scripts/study_eval_model.py MODEL --data DATA --out {args.out}` "
             f"({len(nm)} volumes, {secs:.0f} s including the walker for the marked runs).", "",
             "| | Dice | unmarked voxels |", "|---|---|---|",
             f"| no marks on the scan | {summarise(nm, 'dice').fmt()} | — |",
             f"| its own scribbles (prior) | {summarise(mk, 'dice').fmt()} | {summarise(mk, 'dice_unmarked').fmt()} |", ""]
    args.out.write_text("\n".join(lines))
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
