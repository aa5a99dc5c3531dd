"""Benchmark of ``sparseseg segment``: Dice, time per volume, time to first streamed prediction, peak RSS.

Side by side in one run, on the same marks:
* ACDC (20 volumes, their own human scribbles, background label 4): the random-walker pseudo-labels
  alone vs the trained network (marks + pseudo-labels), mean Dice over RV / MYO / LV;
* hippocampus (first N cases, 3 simulated fully labelled slices each): same comparison;
* optionally SAM pseudo-labels alone on ACDC (``--sam``, slow on 2 cores).
The GUI-stall measurement (idle vs the loop's background thread) lives in ``bench/scripts/bench_gui_stall.py`` and is
run by ``--stall-seconds``.

    flock /tmp/sparseseg_heavy.lock nice -n 5 .venv/bin/python bench/scripts/bench_segment.py \\
        --budget 90 --hippo-budget 20 --json bench/results/segment/segment_results.json --md bench/results/segment/segment_results.md

Results are written after every case, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: see napari_sparseseg/commands/segment.py

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


PSEUDO_METHOD = "random-walker"  # set from --pseudo-method: the pseudo-labels the network trains on


def run_case(vol, ann, gt, classes, budget: float, preview_every: float, sam: bool = False,
             max_steps: int | None = None) -> dict:
    from napari_sparseseg.evaluate import dice_per_class
    from napari_sparseseg.pseudo import make_pseudo_labels
    from napari_sparseseg.training import TrainConfig, Trainer

    t0 = time.perf_counter()
    pseudo = make_pseudo_labels(vol, ann, method=PSEUDO_METHOD)
    t_pseudo = time.perf_counter() - t0
    out: dict = {"pseudo_s": round(t_pseudo, 1), "pseudo_method": PSEUDO_METHOD}
    if PSEUDO_METHOD == "random-walker":
        d_rw = dice_per_class(pseudo.labels, gt, classes)
    else:  # the baseline in the same run, and the product's pseudo-labels alone
        d_rw = dice_per_class(make_pseudo_labels(vol, ann, method="random-walker").labels, gt, classes)
        d_ps = dice_per_class(pseudo.labels, gt, classes)
        out["dice_pseudo"] = {str(k): round(v, 4) for k, v in d_ps.items()}
        out["mean_pseudo"] = round(float(np.mean(list(d_ps.values()))), 4)
    out["dice_walker"] = {str(k): round(v, 4) for k, v in d_rw.items()}
    if sam:
        ts = time.perf_counter()
        sp = make_pseudo_labels(vol, ann, method="sam")
        out["sam_s"] = round(time.perf_counter() - ts, 1)
        out["dice_sam"] = {str(k): round(v, 4) for k, v in dice_per_class(sp.labels, gt, classes).items()}
    cfg = TrainConfig(budget_seconds=budget, max_steps=max_steps, first_preview_seconds=3.0,
                      preview_every_seconds=preview_every)
    t1 = time.perf_counter()
    tr = Trainer(vol, ann, cfg, pseudo=pseudo)
    first = None
    final = None
    for ev in tr.run():
        if ev.kind == "prediction" and first is None:
            first = (time.perf_counter() - t1, ev)
        if ev.kind == "done":
            final = ev
    t_train = time.perf_counter() - t1
    assert final is not None
    d_net = dice_per_class(final.prediction, gt, classes)
    out.update(
        network=tr.spec.name,
        steps=final.step,
        train_s=round(t_train, 1),
        total_s=round(time.perf_counter() - t0, 1),
        dice_net={str(k): round(v, 4) for k, v in d_net.items()},
        mean_walker=round(float(np.mean(list(d_rw.values()))), 4),
        mean_net=round(float(np.mean(list(d_net.values()))), 4),
    )
    if "dice_sam" in out:
        out["mean_sam"] = round(float(np.mean(list(out["dice_sam"].values()))), 4)
    if first is not None:
        out["first_prediction_s_training"] = round(first[0], 1)
        out["first_prediction_s_total"] = round(first[0] + t_pseudo, 1)
        out["mean_first_prediction"] = round(float(np.mean(list(dice_per_class(first[1].prediction, gt, classes).values()))), 4)
    return out


def acdc(data: Path, budget: float, preview_every: float, cases: list[str] | None, sam: bool, log,
         max_steps: int | None = None) -> list[dict]:
    from napari_sparseseg.annotations.files import load_annotation
    from napari_sparseseg.io import read_labels, read_volume

    root = data / "acdc"
    names = cases or sorted(p.name[: -len(".nii.gz")] for p in (root / "imagesTr").glob("*.nii.gz"))
    rows = []
    for name in names:
        vol = read_volume(root / "imagesTr" / f"{name}.nii.gz")
        gt = np.asarray(read_labels(root / "labelsTr" / f"{name}.nii.gz", like=vol).array).astype(np.int16)
        ann = load_annotation(root / "scribblesTr" / f"{name}.nii.gz", like=vol, background_label=4, classes=(1, 2, 3))
        r = {"case": name, "shape": list(vol.shape), **run_case(vol, ann, gt, (1, 2, 3), budget, preview_every, sam, max_steps)}
        rows.append(r)
        log(r)
    return rows


def hippocampus(data: Path, budget: float, preview_every: float, n: int, log,
                max_steps: int | None = None) -> list[dict]:
    from napari_sparseseg.annotations.simulate import simulate_slices
    from napari_sparseseg.io import read_labels, read_volume

    root = data / "hippocampus"
    names = sorted(p.name[: -len(".nii.gz")] for p in (root / "imagesTr").glob("*.nii.gz"))[:n]
    rows = []
    for name in names:
        vol = read_volume(root / "imagesTr" / f"{name}.nii.gz")
        gt = np.asarray(read_labels(root / "labelsTr" / f"{name}.nii.gz", like=vol).array).astype(np.int16)
        ann = simulate_slices(gt, 3, axis=0, background_label=3, seed=0)
        r = {"case": name, "shape": list(vol.shape), "marked_fraction": round(ann.marked_fraction(), 4),
             **run_case(vol, ann, gt, (1, 2), budget, preview_every, max_steps=max_steps)}
        rows.append(r)
        log(r)
    return rows


def summary(rows: list[dict]) -> dict:
    if not rows:
        return {}
    keys = ["mean_walker", "mean_pseudo", "mean_net", "mean_sam", "mean_first_prediction", "total_s", "train_s", "pseudo_s",
            "first_prediction_s_training", "first_prediction_s_total", "steps"]
    s = {"cases": len(rows)}
    for k in keys:
        vals = [r[k] for r in rows if k in r]
        if vals:
            s[k] = round(float(np.mean(vals)), 4)
    per_class: dict[str, dict[str, float]] = {}
    for src in ("dice_walker", "dice_pseudo", "dice_net", "dice_sam"):
        cls = sorted({c for r in rows for c in r.get(src, {})})
        if cls:
            per_class[src] = {c: round(float(np.mean([r[src][c] for r in rows if c in r.get(src, {})])), 4) for c in cls}
    s["per_class"] = per_class
    s["net_better_than_walker"] = sum(r["mean_net"] > r["mean_walker"] for r in rows)
    return s


def markdown(res: dict) -> str:
    m = res["machine"]
    lines = [
        "# `sparseseg segment` benchmark",
        "",
        f"Machine: {m['cpus']} CPU cores ({m['processor'] or m['machine']}), no GPU, torch threads {m['torch_threads']}, "
        f"shared with other jobs (noisy). Date {res['date']}. Command: `{res['command']}`.",
        *([f"Note: {res['note']}", ""] if res.get("note") else []),
        f"Training budget: ACDC {res['budget_acdc']} s / {res.get('max_steps_acdc')} steps, hippocampus "
        f"{res['budget_hippo']} s / {res.get('max_steps_hippo')} steps per volume (whichever comes first).",
        "",
    ]
    for key, title, cls in (("acdc", "ACDC, own human scribbles (background 4)", ("1", "2", "3")),
                            ("hippocampus", "Hippocampus, 3 simulated labelled slices", ("1", "2"))):
        rows = res.get(key) or []
        if not rows:
            continue
        s = res["summary"][key]
        lines += [f"## {title}: {s['cases']} volumes", ""]
        lines += ["| method | " + " | ".join(f"Dice {c}" for c in cls) + " | mean Dice |", "|---|" + "---|" * (len(cls) + 1)]
        method = rows[0].get("pseudo_method", "random-walker")
        names = {"dice_walker": "random walker pseudo-labels alone", "dice_sam": "SAM pseudo-labels alone",
                 "dice_pseudo": f"pseudo-labels `{method}` alone (what the network trains on)",
                 "dice_net": f"trained network (ours, on `{method}` pseudo-labels)"}
        for src, label in names.items():
            pc = s["per_class"].get(src)
            if pc:
                mean_key = {"dice_walker": "mean_walker", "dice_sam": "mean_sam", "dice_net": "mean_net",
                            "dice_pseudo": "mean_pseudo"}[src]
                lines.append(f"| {label} | " + " | ".join(f"{pc.get(c, float('nan')):.3f}" for c in cls) + f" | **{s[mean_key]:.3f}** |")
        lines += [
            "",
            f"Network better than the walker on {s['net_better_than_walker']} of {s['cases']} volumes. "
            f"Mean seconds per volume: pseudo-labels {s.get('pseudo_s')}, training+prediction {s.get('train_s')}, "
            f"total {s.get('total_s')}; mean steps {s.get('steps')}.",
            f"Time to first streamed prediction: {s.get('first_prediction_s_training')} s after training starts, "
            f"{s.get('first_prediction_s_total')} s from the start (pseudo-labels included); its mean Dice "
            f"{s.get('mean_first_prediction')}.",
            "",
            "| case | shape | walker | network | steps | total s |",
            "|---|---|---|---|---|---|",
        ]
        lines += [f"| {r['case']} | {'x'.join(map(str, r['shape']))} | {r['mean_walker']:.3f} | {r['mean_net']:.3f} | "
                  f"{r['steps']} | {r['total_s']} |" for r in rows]
        lines.append("")
    lines += [f"Peak RSS of the benchmark process: {res['peak_rss_mb']:.0f} MB.", ""]
    st = res.get("gui_stall")
    if st:
        lines += ["## GUI responsiveness while training (QTimer probe, 10 ms)", "",
                  "| mode | longest gap ms | p99 gap ms | gaps > 100 ms | training steps | first prediction s |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['mode']} | {r['max_gap_ms']} | {r['p99_gap_ms']} | {r['gaps_over_100ms']} | {r['steps']} | "
                  f"{r['first_prediction_s']} |" for r in st["results"]]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("SPARSESEG_DATA", ROOT.parent / "shared" / "data")))
    ap.add_argument("--budget", type=float, default=90.0, help="ACDC training seconds per volume")
    ap.add_argument("--hippo-budget", type=float, default=20.0)
    ap.add_argument("--max-steps", type=int, default=None, help="ACDC: stop after this many steps (load-independent Dice)")
    ap.add_argument("--hippo-max-steps", type=int, default=None)
    ap.add_argument("--hippo-cases", type=int, default=20)
    ap.add_argument("--acdc-cases", default="all", help="'all', 'none' or comma-separated case names")
    ap.add_argument("--preview-every", type=float, default=15.0)
    ap.add_argument("--pseudo-method", default="random-walker",
                    help="pseudo-labels the network trains on (the product default is 'auto')")
    ap.add_argument("--sam", action="store_true", help="also score SAM pseudo-labels alone on ACDC")
    ap.add_argument("--stall-seconds", type=float, default=0.0, help="also run the GUI-stall benchmark")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--md", type=Path, default=None)
    ap.add_argument("--note", default="", help="a line for the report (e.g. what else ran on the machine)")
    ap.add_argument("--render", type=Path, default=None, help="only re-render --md from this results JSON")
    args = ap.parse_args(argv)
    if args.render is not None:
        res = json.loads(args.render.read_text())
        if args.note:
            res["note"] = args.note
            args.render.write_text(json.dumps(res, indent=1))
        if args.md:
            args.md.write_text(markdown(res))
        return
    global PSEUDO_METHOD
    PSEUDO_METHOD = args.pseudo_method
    import torch

    torch.set_num_threads(2)
    res: dict = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *(argv if argv is not None else sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "machine": platform.machine(), "processor": platform.processor(),
                    "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                    "cuda": torch.cuda.is_available(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")},
        "note": args.note,
        "budget_acdc": args.budget, "budget_hippo": args.hippo_budget, "max_steps_acdc": args.max_steps,
        "max_steps_hippo": args.hippo_max_steps, "acdc": [], "hippocampus": [], "summary": {},
    }

    def save() -> None:
        res["summary"] = {k: summary(res[k]) for k in ("acdc", "hippocampus") if res[k]}
        res["peak_rss_mb"] = round(peak_rss_mb(), 1)
        if args.json:
            args.json.write_text(json.dumps(res, indent=1))
        if args.md:
            args.md.write_text(markdown(res))

    def log(row: dict) -> None:
        print(json.dumps(row), flush=True)
        save()

    if args.stall_seconds > 0:
        sys.path.insert(0, str(ROOT / "bench" / "scripts"))
        from bench_gui_stall import acdc_case, measure

        vol, ann, pseudo = acdc_case(args.data)
        res["gui_stall"] = {"case": "acdc/patient001_frame01", "seconds": args.stall_seconds,
                            "results": [measure(m, args.stall_seconds, vol, ann, pseudo) for m in ("idle", "thread")]}
        print(json.dumps(res["gui_stall"]), flush=True)
        save()
    if args.acdc_cases != "none":
        cases = None if args.acdc_cases == "all" else args.acdc_cases.split(",")
        res["acdc"] = []
        for _row in acdc(args.data, args.budget, args.preview_every, cases, args.sam,
                        lambda r: (res["acdc"].append(r), log(r)), args.max_steps):
            pass
    if args.hippo_cases > 0:
        for _row in hippocampus(args.data, args.hippo_budget, args.preview_every, args.hippo_cases,
                               lambda r: (res["hippocampus"].append(r), log(r)), args.hippo_max_steps):
            pass
    save()
    for k, s in res["summary"].items():
        print(k, json.dumps(s), flush=True)


if __name__ == "__main__":
    main()
