"""Cohort pretraining on ACDC, two folds by patient: does a pretrained start beat per-volume training?

Side by side in one run, on the 20 shared ACDC volumes (10 patients x ED/ES), each volume from its
own human scribbles (background 4), every row on the same "auto" pseudo-labels:

* ``pseudo``        -- the pseudo-labels alone (no network);
* ``scratch``       -- the product default: the Trainer from random init, ``--steps`` steps;
* ``cohort``        -- the network pretrained on the OTHER fold's 5 patients (their expert labels as
  targets, their own scribbles' pseudo-labels as the prior input), no per-volume training;
* ``cohort+tune``   -- that network fine-tuned on this volume's marks + pseudo-labels, ``--steps`` steps.

Patients never cross folds (ED and ES of a patient stay together), so no test volume's labels or
anatomy were seen in pretraining.

    .venv/bin/python bench/scripts/bench_cohort.py --device auto --workers 1 --pretrain-steps 3000 --steps 150
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _pseudo(args: tuple[str, str, str]) -> tuple[str, dict]:
    """Pseudo-labels for one case (in a worker process)."""
    root, name, method = args
    from napari_sparseseg.benchmarking.cases import load_case, make_annotation
    from napari_sparseseg.pseudo import make_pseudo_labels

    case = load_case(Path(root), "acdc", name)
    ann = make_annotation(case, "human-scribbles")
    t0 = time.perf_counter()
    pl = make_pseudo_labels(case.image, ann, method)
    return name, {"labels": pl.labels, "confidence": pl.confidence, "probabilities": pl.probabilities,
                  "classes": pl.classes, "seconds": time.perf_counter() - t0}


def _as_pseudo(d: dict):
    from napari_sparseseg.pseudo import PseudoLabels

    return PseudoLabels(labels=d["labels"], confidence=d["confidence"], probabilities=d["probabilities"],
                        classes=tuple(d["classes"]), info={})


def _eval(args: tuple) -> dict:
    """Scratch, cohort and cohort+tune rows for one test volume (in a worker process)."""
    root, name, pdict, ckpt, steps, device, seed = args
    from napari_sparseseg.benchmarking.cases import load_case, make_annotation
    from napari_sparseseg.evaluate import dice_per_class
    from napari_sparseseg.training import TrainConfig, Trainer, load_checkpoint

    case = load_case(Path(root), "acdc", name)
    ann = make_annotation(case, "human-scribbles")
    pseudo = _as_pseudo(pdict)
    cls = case.present_classes
    out = {"case": name, "pseudo": dice_per_class(pseudo.labels, case.gt, cls), "pseudo_seconds": pdict["seconds"]}
    cfg = dict(seed=seed, device=device, max_steps=steps, budget_seconds=1e9, first_preview_seconds=1e9,
               preview_every_seconds=1e9, threads=None)
    state, meta = load_checkpoint(ckpt)
    for row, init, n in (("scratch", None, steps), ("cohort", {"state_dict": state, "meta": meta}, 0),
                         ("cohort+tune", {"state_dict": state, "meta": meta}, steps)):
        t0 = time.perf_counter()
        tr = Trainer(case.image, ann, TrainConfig(**cfg), pseudo=pseudo, init=init)
        if n == 0:
            pred, _ = tr.predict()
        else:
            last = None
            for last in tr.run():  # noqa: B007 - the last event is the result
                pass
            pred = last.prediction
        out[row] = dice_per_class(pred, case.gt, cls)
        out[row + "_seconds"] = time.perf_counter() - t0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--pretrain-steps", type=int, default=3000)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--pseudo-method", default="auto")
    ap.add_argument("--cases", type=int, default=None, help="first N volumes only (smoke runs)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "cohort_pretraining" / "cohort_results")
    args = ap.parse_args()
    from napari_sparseseg.benchmarking.cases import find_data_root, list_cases, load_case
    from napari_sparseseg.training import TrainConfig
    from napari_sparseseg.training.cohort import dense_item, pretrain_cohort

    t_all = time.perf_counter()
    root = find_data_root(args.data)
    names = list_cases(root, "acdc")[: args.cases]
    patients = sorted({n.split("_")[0] for n in names})
    folds = [set(patients[0::2]), set(patients[1::2])]
    threads = max(1, (os.cpu_count() or 2) // max(args.workers, 1))
    ctx = get_context("spawn")
    with ProcessPoolExecutor(args.workers, mp_context=ctx, initializer=_init_worker, initargs=(threads,)) as ex:
        pseudo = dict(ex.map(_pseudo, [(str(root), n, args.pseudo_method) for n in names]))
        t_pseudo = time.perf_counter() - t_all
        rows, pre_seconds = [], []
        args.out.parent.mkdir(parents=True, exist_ok=True)
        for f, test_patients in enumerate(folds):
            train = [n for n in names if n.split("_")[0] not in test_patients]
            test = [n for n in names if n.split("_")[0] in test_patients]
            items = []
            for n in train:
                case = load_case(root, "acdc", n)
                items.append(dense_item(case.image, case.gt, case.background_label, case.present_classes,
                                        _as_pseudo(pseudo[n])))
            t0 = time.perf_counter()
            cfg = TrainConfig(seed=0, device=args.device, network="unet2d", threads=None, budget_seconds=1e9,
                              max_steps=args.pretrain_steps)
            trainer = pretrain_cohort(items, cfg, args.pretrain_steps)
            ckpt = args.out.parent / f"cohort_fold{f}.safetensors"
            trainer.save(ckpt)
            pre_seconds.append(time.perf_counter() - t0)
            print(f"fold {f}: pretrained on {len(train)} volumes in {pre_seconds[-1]:.1f} s", flush=True)
            jobs = [(str(root), n, pseudo[n], str(ckpt), args.steps, args.device, 0) for n in test]
            for r in ex.map(_eval, jobs):
                r["fold"] = f
                rows.append(r)
                print(json.dumps({k: (round(float(np.mean(list(v.values()))), 4) if isinstance(v, dict) else v)
                                  for k, v in r.items()}), flush=True)
    wall = time.perf_counter() - t_all
    _report(args, rows, pre_seconds, t_pseudo, wall)


def _report(args, rows: list[dict], pre_seconds: list[float], t_pseudo: float, wall: float) -> None:
    import torch

    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() and args.device != "cpu" else "CPU only"
    machine = f"{platform.node() or 'host'}: {os.cpu_count()} CPU cores, {dev}, torch {torch.__version__}"
    methods = ["pseudo", "scratch", "cohort", "cohort+tune"]
    lines = ["# Cohort pretraining on ACDC (bench/scripts/bench_cohort.py)", "",
             f"Machine: {machine}. Wall time {wall / 60:.1f} min (pseudo-labels {t_pseudo:.0f} s with {args.workers} "
             f"workers; pretraining {', '.join(f'{s:.0f} s' for s in pre_seconds)} per fold). Two folds by patient "
             f"({len(rows)} test volumes in all), each volume from its own human scribbles, pseudo-labels "
             f"`{args.pseudo_method}`. Pretraining {args.pretrain_steps} steps on the other fold's expert labels; "
             f"per-volume training {args.steps} steps.", "",
             "Regenerate: `python bench/scripts/bench_cohort.py " + " ".join(sys.argv[1:]) + "`", "",
             "| method | volumes | mean Dice | RV | MYO | LV | s / volume |", "|---|---|---|---|---|---|---|"]
    summary = {}
    for m in methods:
        per = [r[m] for r in rows]
        cls = sorted({int(c) for d in per for c in d})
        mean = float(np.mean([np.mean(list(d.values())) for d in per]))
        by = [float(np.mean([d[c] for d in per if c in d])) for c in cls]
        secs = float(np.mean([r.get(m + "_seconds", 0.0) for r in rows]))
        summary[m] = {"mean": mean, "per_class": dict(zip(cls, by)), "seconds": secs}
        lines.append(f"| {m} | {len(per)} | {mean:.3f} | " + " | ".join(f"{v:.3f}" for v in by) + f" | {secs:.1f} |")
    lines += ["", "Seconds: the per-volume network part (pseudo-labels are shared and excluded; `pseudo` shows "
              "their mean time)."]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(
        {"machine": machine, "wall_seconds": wall, "pretrain_seconds": pre_seconds, "summary": summary,
         "rows": rows, "argv": sys.argv[1:]}, indent=1, default=str))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
