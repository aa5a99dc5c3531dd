"""The jobs of bench_study.py: pseudo-labels for every scan, one study model per job, baselines.

Each job runs in its own process (spawned), loads its cases, trains, scores and returns JSON rows.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from napari_sparseseg.benchmarking import cases as C
from napari_sparseseg.benchmarking.study import annotation_for, score, summarise
from napari_sparseseg.cohort import CohortConfig, CohortModel, CohortScan, CohortTrainer
from napari_sparseseg.cohort.finetune import fine_tune
from napari_sparseseg.cohort.pseudo_cache import load_cached, pseudo_key, save_cached

PSEUDO_METHOD = "random-walker"


def _pseudo_one(item: tuple[str, str, str], root: str, out: str) -> str:
    import torch

    torch.set_num_threads(1)
    dataset, name, setting = item
    if setting == "dense":
        return name
    case = C.load_case(Path(root), dataset, name)
    ann = annotation_for(case, setting)
    folder = Path(out) / "pseudo"
    key = pseudo_key(case.image, ann, PSEUDO_METHOD)
    if load_cached(folder, key, tuple(case.classes)) is None:
        from napari_sparseseg.pseudo import make_pseudo_labels

        save_cached(folder, key, make_pseudo_labels(case.image, ann, method=PSEUDO_METHOD))
    return name


def make_pseudo(items: list[tuple[str, str, str]], root: str, out: str, workers: int) -> None:
    """Walker pseudo-labels of every (dataset, case, setting) used, into OUT/pseudo (the jobs share them)."""
    if workers <= 1:
        for it in items:
            _pseudo_one(it, root, out)
        return
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as ex:
        list(ex.map(_pseudo_one, items, [root] * len(items), [out] * len(items), chunksize=4))


def _scan(root: Path, out: Path, dataset: str, name: str, setting: str) -> tuple[CohortScan, C.Case]:
    case = C.load_case(root, dataset, name)
    ann = annotation_for(case, setting)
    pseudo = None
    if setting != "dense":
        pseudo = load_cached(out / "pseudo", pseudo_key(case.image, ann, PSEUDO_METHOD), tuple(case.classes))
    return CohortScan(case.image, ann, name, pseudo), case


def run_job(job: dict[str, Any], root_s: str, out_s: str) -> dict[str, Any]:
    import torch

    torch.set_num_threads(int(job.get("threads", 2)))
    root, out = Path(root_s), Path(out_s)
    t0 = time.perf_counter()
    if job.get("kind") == "baselines":
        return _baselines(job, root, out, t0)
    train = [_scan(root, out, job["dataset"], n, job["setting"])[0] for n in job["train"]]
    budget = job.get("budget")
    cfg = CohortConfig(budget_seconds=float(budget) if budget else 1e9, max_steps=None if budget else int(job["steps"]),
                       device=job["device"], batch=int(job["batch"]), threads=int(job.get("threads", 2)),
                       checkpoint_every_seconds=1e9, patch=tuple(job.get("patch", (128, 128))))
    over = dict(job.get("config") or {})
    if "refresh_at" in over:
        over["refresh_at"] = tuple(over["refresh_at"])
    cfg = CohortConfig.from_dict({**cfg.to_dict(), **over})
    trainer = CohortTrainer(train, cfg)
    for _ in trainer.run():
        pass
    train_s = time.perf_counter() - t0
    model_path = out / "models" / f"{job['id']}.safetensors"
    trainer.save(model_path)
    model = CohortModel(trainer.model, trainer.spec, trainer.metadata(), trainer.device)
    rows = []
    for name in job["eval"]:
        scan, case = _scan(root, out, job["eval_dataset"], name, job["eval_setting"])
        ann = scan.annotation
        assert ann is not None
        lab, _ = model.predict(case.image)
        rows.append({"case": name, "mode": "no-marks", **score(lab, case.gt, case.classes)})
        lab, _ = model.predict(case.image, ann, scan.pseudo)
        rows.append({"case": name, "mode": "marks", **score(lab, case.gt, case.classes, ann.marked)})
        if job.get("finetune_steps"):
            t1 = time.perf_counter()
            ft = fine_tune(model_path, scan, max_steps=int(job["finetune_steps"]), device=job["device"])
            lab, _ = ft.predict(case.image, ann, scan.pseudo)
            rows.append({"case": name, "mode": "marks+fine-tune", "seconds": time.perf_counter() - t1,
                         **score(lab, case.gt, case.classes, ann.marked)})
    res = {k: job[k] for k in ("id", "group", "n_patients") if k in job}
    res.update(variant=job.get("variant", ""), config=over, budget=budget, rows=rows, train_seconds=train_s, steps=trainer.step,
               train_scans=len(train), seconds=time.perf_counter() - t0,
               loss_tail=float(np.mean([h["total"] for h in trainer.history[-50:]])) if trainer.history else None)
    nm, mk = [r for r in rows if r["mode"] == "no-marks"], [r for r in rows if r["mode"] == "marks"]
    res["val_no_marks"], res["val_marks"] = summarise(nm, "dice").mean, summarise(mk, "dice").mean
    res["summary"] = f"no marks {res['val_no_marks']:.3f}, marks {res['val_marks']:.3f}"
    return res


def _baselines(job: dict[str, Any], root: Path, out: Path, t0: float) -> dict[str, Any]:
    """The random walker and today's per-scan trainer (walker pseudo-labels as prior and targets) on the test scans."""
    from napari_sparseseg.training import TrainConfig, Trainer

    rows = []
    for name in job["eval"]:
        scan, case = _scan(root, out, job["eval_dataset"], name, job["eval_setting"])
        ann, pseudo = scan.annotation, scan.pseudo
        assert ann is not None and pseudo is not None
        rows.append({"case": name, "mode": "walker", **score(np.asarray(pseudo.labels), case.gt, case.classes, ann.marked)})
        t1 = time.perf_counter()
        tr = Trainer(case.image, ann, TrainConfig(budget_seconds=1e9, max_steps=int(job["per_scan_steps"]),
                                                  device=job["device"], threads=int(job.get("threads", 2))), pseudo=pseudo)
        for _ in tr.run():
            pass
        lab, _ = tr.predict()
        rows.append({"case": name, "mode": "per-scan", "seconds": time.perf_counter() - t1,
                     **score(lab, case.gt, case.classes, ann.marked)})
    res = {"id": job["id"], "group": "baselines", "dataset": job["eval_dataset"], "rows": rows,
           "seconds": time.perf_counter() - t0}
    res["summary"] = ", ".join(f"{m} {summarise([r for r in rows if r['mode'] == m], 'dice').mean:.3f}"
                               for m in ("walker", "per-scan"))
    return res
