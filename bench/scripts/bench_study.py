"""Learning across scans: learning curves of the study model on ACDC and hippocampus, one run.

ACDC: settings chosen on a validation split of acdc_cohort (10 patients), learning curve over the
number of cohort patients with scribbles, scored on the 10 unseen acdc patients: (a) no marks on
the new scan, (b) its own scribbles as the prior, (c) (b) + a short fine-tune; beside the random
walker, today's per-scan trainer and the same network trained on dense labels (the ceiling).
Hippocampus: the same curve with 3 labelled slices (and 5 clicks per class) per training case.

    python bench/scripts/bench_study.py --data DATA --out bench/results/study --workers 8 --device auto
    python bench/scripts/bench_study.py --data DATA --out /tmp/study --quick        # a smoke run

Every job writes its rows to OUT/rows/<job>.json as it ends, so a cut-short run keeps what it did;
``--report-only`` rebuilds the report from those files.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from study_jobs import run_job, make_pseudo  # noqa: E402
from study_report import write_report  # noqa: E402

from napari_sparseseg.benchmarking import cases as C  # noqa: E402
from napari_sparseseg.benchmarking.study import first_patients, split_patients  # noqa: E402

TUNING = {  # candidate settings, compared on the validation split only
    "base": {},
    "no-refresh": {"refresh_at": []},
    "mutual": {"mutual": True},
    "marks-only": {"pseudo_method": "none", "refresh_at": []},
}


def plan(args: argparse.Namespace, root: Path) -> tuple[list[dict], list[dict]]:
    cohort = C.list_cases(root, "acdc_cohort")
    test = C.list_cases(root, "acdc")
    train_pool, val = split_patients(cohort, n_val=2 if args.quick else 10, seed=0)
    steps = args.steps
    common = {"device": args.device, "steps": steps, "batch": args.batch, "threads": args.threads}
    tuning = []
    tune_train = first_patients(train_pool, 3 if args.quick else 70)
    for name, over in TUNING.items():
        if args.quick and name not in ("base", "no-refresh"):
            continue
        tuning.append({**common, "id": f"tune-{name}", "dataset": "acdc_cohort", "train": tune_train,
                       "setting": "human-scribbles", "config": over, "eval_dataset": "acdc_cohort", "eval": val,
                       "eval_setting": "human-scribbles", "n_patients": len(tune_train) // 2, "group": "tuning",
                       "variant": name})
    sizes = [2, 3] if args.quick else [5, 10, 20, 40, 80]
    test_cases = test[:2] if args.quick else test
    curve = []
    for n in sizes:
        tr = first_patients(cohort, n)
        curve.append({**common, "id": f"acdc-{n}", "dataset": "acdc_cohort", "train": tr, "setting": "human-scribbles",
                      "config": "chosen", "eval_dataset": "acdc", "eval": test_cases, "eval_setting": "human-scribbles",
                      "n_patients": n, "group": "acdc-curve", "finetune_steps": args.finetune_steps if n == sizes[-1] else 0})
    curve.append({**common, "id": "acdc-dense", "dataset": "acdc_cohort", "train": first_patients(cohort, sizes[-1]),
                  "setting": "dense", "config": {"pseudo_method": "none", "refresh_at": [], "prior_dropout": 1.0},
                  "eval_dataset": "acdc", "eval": test_cases, "eval_setting": "human-scribbles", "n_patients": sizes[-1],
                  "group": "ceiling", "steps": steps * 2})
    curve.append({**common, "id": "acdc-baselines", "kind": "baselines", "eval_dataset": "acdc", "eval": test_cases,
                  "eval_setting": "human-scribbles", "group": "baselines", "per_scan_steps": args.per_scan_steps})
    hip = C.list_cases(root, "hippocampus")
    import numpy as np

    order = list(np.random.default_rng(0).permutation(hip))
    h_test, h_pool = order[:6 if args.quick else 40], order[60:]
    h_sizes = [3, 6] if args.quick else [5, 10, 20, 40, 80, 140]
    for setting, sizes_ in (("slices-3", h_sizes), ("points-5", h_sizes[::2] if not args.quick else h_sizes[:1])):
        for n in sizes_:
            curve.append({**common, "id": f"hippo-{setting}-{n}", "dataset": "hippocampus", "train": h_pool[:n],
                          "setting": setting, "config": "chosen", "eval_dataset": "hippocampus", "eval": h_test,
                          "eval_setting": setting, "n_patients": n, "group": f"hippo-{setting}"})
    curve.append({**common, "id": "hippo-baselines", "kind": "baselines", "eval_dataset": "hippocampus", "eval": h_test,
                  "eval_setting": "slices-3", "group": "baselines", "per_scan_steps": args.per_scan_steps})
    return tuning, curve


def run_pool(jobs: list[dict], args: argparse.Namespace, out: Path, root: Path) -> list[dict]:
    rows_dir = out / "rows"
    rows_dir.mkdir(parents=True, exist_ok=True)
    todo = [j for j in jobs if not (rows_dir / f"{j['id']}.json").exists()]
    results = []
    if args.workers <= 1:
        for j in todo:
            results.append(_finish(run_job(j, str(root), str(out)), rows_dir))
    else:
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(args.workers, mp_context=ctx) as ex:
            futs = [ex.submit(run_job, j, str(root), str(out)) for j in todo]
            for f in as_completed(futs):
                results.append(_finish(f.result(), rows_dir))
    return [json.loads((rows_dir / f"{j['id']}.json").read_text()) for j in jobs if (rows_dir / f"{j['id']}.json").exists()]


def _finish(res: dict, rows_dir: Path) -> dict:
    (rows_dir / f"{res['id']}.json").write_text(json.dumps(res, indent=1))
    print(f"[study] {res['id']}: {res.get('summary', '')} ({res.get('seconds', 0):.0f} s)", flush=True)
    return res


def choose(tuning_results: list[dict]) -> tuple[str, dict]:
    """The validation split's best setting: mean of the no-marks and with-marks Dice."""
    best, best_v = "base", -1.0
    for r in tuning_results:
        v = (r["val_no_marks"] + r["val_marks"]) / 2
        if v > best_v:
            best, best_v = r["variant"], v
    return best, TUNING[best]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--finetune-steps", type=int, default=150)
    ap.add_argument("--per-scan-steps", type=int, default=200)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--md", type=Path, default=None)
    args = ap.parse_args()
    if args.quick:
        args.steps, args.finetune_steps, args.per_scan_steps = 20, 5, 5
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tuning, curve = plan(args, args.data)
    if not args.report_only:
        every = sorted({(j["dataset"], n, j["setting"]) for j in tuning + curve if "train" in j for n in j["train"]} |
                       {(j["eval_dataset"], n, j["eval_setting"]) for j in tuning + curve for n in j["eval"]})
        make_pseudo(every, str(args.data), str(out), args.workers)
        print(f"[study] pseudo-labels for {len(every)} scans: {time.perf_counter() - t0:.0f} s", flush=True)
        tuned = run_pool(tuning, args, out, args.data)
        chosen_name, chosen = choose(tuned)
        (out / "chosen.json").write_text(json.dumps({"variant": chosen_name, "config": chosen}))
        for j in curve:
            if j.get("config") == "chosen":
                j["config"] = chosen
        run_pool(curve, args, out, args.data)
    meta = {"machine": f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores",
            "device": args.device, "workers": args.workers, "steps": args.steps, "wall_s": time.perf_counter() - t0,
            "command": " ".join(sys.argv)}
    write_report(out, meta, args.md or out / "README.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
