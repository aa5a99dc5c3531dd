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
import multiprocessing as mp
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from study_jobs import make_pseudo, run_job  # noqa: E402
from study_report import write_report  # noqa: E402

from napari_sparseseg.benchmarking import cases as C  # noqa: E402
from napari_sparseseg.benchmarking.study import first_patients, split_patients  # noqa: E402

TUNING = {  # candidate settings, compared on the validation split only (base = CohortConfig's defaults)
    "base": {},
    "refresh": {"refresh_at": [0.5]},
    "mutual": {"mutual": True},
    "marks-only": {"pseudo_method": "none"},
    "prior-residual": {"prior_residual": True},
}

def plan(args: argparse.Namespace, root: Path) -> tuple[list[dict], list[dict]]:
    want_acdc = args.only in ("", "acdc")
    want_hippo = args.only in ("", "hippo")
    cohort = C.list_cases(root, "acdc_cohort") if want_acdc else []
    test = C.list_cases(root, "acdc") if want_acdc else []
    train_pool, val = split_patients(cohort, n_val=2 if args.quick else 10, seed=0)
    steps = args.steps
    common = {"device": args.device, "steps": steps, "batch": args.batch, "threads": args.threads, "budget": args.budget}
    tuning: list[dict] = []
    curve: list[dict] = []
    if not want_acdc:
        return tuning, curve + _hippo_jobs(args, root, common)
    tune_train = first_patients(train_pool, 3 if args.quick else 70)
    for name, over in TUNING.items():
        if args.quick and name not in ("base", "refresh"):
            continue
        tuning.append({**common, "id": f"tune-{name}", "dataset": "acdc_cohort", "train": tune_train,
                       "setting": "human-scribbles", "config": over, "eval_dataset": "acdc_cohort", "eval": val,
                       "eval_setting": "human-scribbles", "n_patients": len(tune_train) // 2, "group": "tuning",
                       "variant": name})
    sizes = [2, 3] if args.quick else [5, 10, 20, 40, 80]
    test_cases = test[:2] if args.quick else test
    for n in sizes:
        tr = first_patients(cohort, n)
        curve.append({**common, "id": f"acdc-{n}", "dataset": "acdc_cohort", "train": tr, "setting": "human-scribbles",
                      "config": "chosen", "eval_dataset": "acdc", "eval": test_cases, "eval_setting": "human-scribbles",
                      "n_patients": n, "group": "acdc-curve", "finetune_steps": args.finetune_steps if n == sizes[-1] else 0})
    curve.append({**common, "id": "acdc-dense", "dataset": "acdc_cohort", "train": first_patients(cohort, sizes[-1]),
                  "setting": "dense", "config": {"pseudo_method": "none", "refresh_at": [], "prior_dropout": 1.0},
                  "eval_dataset": "acdc", "eval": test_cases, "eval_setting": "human-scribbles", "n_patients": sizes[-1],
                  "group": "ceiling", "steps": steps * 2, "budget": args.budget * 2 if args.budget else None})
    curve.append({**common, "id": "acdc-baselines", "kind": "baselines", "eval_dataset": "acdc", "eval": test_cases,
                  "eval_setting": "human-scribbles", "group": "baselines", "per_scan_steps": args.per_scan_steps})
    if want_hippo:
        curve += _hippo_jobs(args, root, common)
    return tuning, curve


def _hippo_jobs(args: argparse.Namespace, root: Path, common: dict) -> list[dict]:
    curve: list[dict] = []
    hip = C.list_cases(root, "hippocampus")
    import numpy as np

    order = list(np.random.default_rng(0).permutation(hip))
    h_test, h_pool = order[:6 if args.quick else 40], order[60:]
    h_sizes = [3, 6] if args.quick else [5, 10, 20, 40, 80, 140]
    for setting, sizes_ in (("slices-3", h_sizes), ("points-5", h_sizes[::2] if not args.quick else h_sizes[:1])):
        for n in sizes_:
            curve.append({**common, "id": f"hippo-{setting}-{n}", "dataset": "hippocampus", "train": h_pool[:n],
                          "setting": setting, "config": {}, "eval_dataset": "hippocampus", "eval": h_test,
                          "eval_setting": setting, "n_patients": n, "group": f"hippo-{setting}",
                          "budget": args.hippo_budget or args.budget, "patch": [64, 64]})
    curve.append({**common, "id": "hippo-baselines", "kind": "baselines", "eval_dataset": "hippocampus", "eval": h_test,
                  "eval_setting": "slices-3", "group": "baselines", "per_scan_steps": args.per_scan_steps})
    return curve


def run_pool(jobs: list[dict], args: argparse.Namespace, out: Path, root: Path) -> list[dict]:
    rows_dir = out / "rows"
    rows_dir.mkdir(parents=True, exist_ok=True)
    todo = [j for j in jobs if not (rows_dir / f"{j['id']}.json").exists()]
    results = []
    if args.workers <= 1:
        for j in [j for j in todo if not _late(args)]:
            results.append(_finish(run_job(j, str(root), str(out)), rows_dir))
    else:
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(args.workers, mp_context=ctx) as ex:
            futs = [ex.submit(run_job, j, str(root), str(out)) for j in todo if not _late(args)]
            for f in as_completed(futs):
                try:
                    results.append(_finish(f.result(), rows_dir))
                except Exception as exc:  # one failed job must not lose the others' rows
                    print(f"[study] a job failed: {type(exc).__name__}: {exc}", flush=True)
    return [json.loads((rows_dir / f"{j['id']}.json").read_text()) for j in jobs if (rows_dir / f"{j['id']}.json").exists()]


T0 = time.perf_counter()


def _late(args: argparse.Namespace) -> bool:
    return args.time_limit is not None and time.perf_counter() - T0 > args.time_limit


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
    ap.add_argument("--budget", type=float, default=None, help="seconds per study model (instead of --steps)")
    ap.add_argument("--hippo-budget", type=float, default=None)
    ap.add_argument("--time-limit", type=float, default=None, help="start no job after this many seconds")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--finetune-steps", type=int, default=150)
    ap.add_argument("--per-scan-steps", type=int, default=200)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--only", default="", help="run only jobs whose id starts with this (acdc or hippo)")
    ap.add_argument("--md", type=Path, default=None)
    args = ap.parse_args()
    if args.quick:
        args.steps, args.finetune_steps, args.per_scan_steps = 20, 5, 5
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tuning, curve = plan(args, args.data)
    if args.only:
        tuning = [j for j in tuning if j["id"].startswith(args.only) or args.only == "acdc"]
        curve = [j for j in curve if j["id"].startswith(args.only)]
    if not args.report_only:
        every = sorted({(j["dataset"], n, j["setting"]) for j in tuning + curve if "train" in j for n in j["train"]} |
                       {(j["eval_dataset"], n, j["eval_setting"]) for j in tuning + curve for n in j["eval"]})
        make_pseudo(every, str(args.data), str(out), args.workers)
        print(f"[study] pseudo-labels for {len(every)} scans: {time.perf_counter() - t0:.0f} s", flush=True)
        # jobs that need no tuned setting (ceiling, baselines, hippocampus with the defaults) run beside the tuning
        free = [j for j in curve if j.get("config") != "chosen" and j.get("group") != "ceiling"]
        tuned = [r for r in run_pool(tuning + free, args, out, args.data) if r.get("group") == "tuning"]
        if tuned:
            chosen_name, chosen = choose(tuned)
            (out / "chosen.json").write_text(json.dumps({"variant": chosen_name, "config": chosen}))
            for j in curve:
                if j.get("config") == "chosen":
                    j["config"] = chosen
            run_pool([j for j in curve if j not in free], args, out, args.data)
    note = None
    if args.budget or args.hippo_budget:
        note = (f"a time budget per study model ({args.budget or '-'} s ACDC, {args.hippo_budget or args.budget or '-'} s "
                "hippocampus, twice the ACDC budget for the dense ceiling); the steps each reached are in the tables")
    meta = {"budget_note": note, "machine": f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores",
            "device": args.device, "workers": args.workers, "steps": args.steps, "wall_s": time.perf_counter() - t0,
            "command": " ".join(sys.argv)}
    write_report(out, meta, args.md or out / "README.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
