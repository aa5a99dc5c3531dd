"""Pseudo-label quality on the larger data set ($SPARSESEG_DATA): random walker (baseline) vs SAM vs walker+SAM fusion.

ACDC uses its human scribbles (scribblesTr, background 4); hippocampus and brain tumour use 3
simulated fully labelled slices along axis 0 (``annotations.simulate.simulate_slices``, seed 0).
For every method: mean Dice over classes (pseudo-labels after MIX with the marks), Dice on the
voxels whose confidence >= t, and the fraction of voxels kept.  Embeddings are cached on disk
(``--cache``), so the SAM variants share one encoding per slice.

Run (heavy: takes the shared lock):
    flock /tmp/sparseseg_heavy.lock nice -n 5 .venv/bin/python bench/scripts/bench_pseudo.py
"""

from __future__ import annotations

import os

# before torch: idle OpenMP threads must sleep, not spin, on a shared 2-core machine
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from napari_sparseseg.annotations import SparseAnnotation, mix
from napari_sparseseg.annotations.simulate import simulate_slices
from napari_sparseseg.evaluate.metrics import dice_per_class
from napari_sparseseg.io import read_labels, read_volume
from napari_sparseseg.pseudo.normalize import percentile_unit_range
from napari_sparseseg.pseudo.sam_fusion import fuse, labels_and_confidence, sam_probabilities
from napari_sparseseg.pseudo.walker import random_walker_pseudo
from napari_sparseseg.sam import EmbeddingCache, detect_nesting, load_backend
from napari_sparseseg.sam.fast import enable_fast_encoder

REPO = Path(__file__).resolve().parents[2]
THRESHOLDS = (0.5, 0.9)
MARGINS = (0.1, 0.2)
LAMBDAS = (0.3, 0.5, 0.7)


def cases(data: Path, name: str, n: int | None) -> list[Path]:
    files = sorted((data / name / "imagesTr").glob("*.nii.gz"))
    return files[:n] if n else files


def load_case(path: Path, name: str) -> tuple[np.ndarray, tuple, np.ndarray, SparseAnnotation]:
    vol = read_volume(path)
    gt = read_labels(path.parent.parent / "labelsTr" / path.name, like=vol).array.astype(np.int16)
    if name == "acdc":
        sc = read_labels(path.parent.parent / "scribblesTr" / path.name, like=vol).array
        ann = SparseAnnotation(sc, background_label=4)
    else:
        bg = int(gt.max()) + 1
        ann = simulate_slices(gt, 3, axis=0, background_label=bg, seed=0)
    return np.asarray(vol.array), vol.spacing, gt, ann


def score(labels: np.ndarray, conf: np.ndarray | None, gt: np.ndarray, classes: tuple[int, ...]) -> dict:
    d = dice_per_class(labels, gt, classes)
    out = {"dice": float(np.mean(list(d.values()))), "per_class": {int(k): float(v) for k, v in d.items()}}
    if conf is not None:
        for t in THRESHOLDS:
            keep = conf >= t
            dk = dice_per_class(np.where(keep, labels, 0), np.where(keep, gt, 0), classes)
            out[f"dice_conf{t}"] = float(np.mean(list(dk.values())))
            out[f"kept{t}"] = float(keep.mean())
    return out


def run_case(path: Path, name: str, backend, cache_dir: Path) -> dict:
    img, spacing, gt, ann = load_case(path, name)
    classes = tuple(ann.classes)
    res: dict[str, dict] = {}
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    walkers = {}
    # ACDC has marks on every slice: the unmarked-slice modes would all give the same result
    for mode in (("walker3d",) if len(ann.annotated_slices(0)) == img.shape[0] else ("walker3d", "nearest", "ignore")):
        t = time.perf_counter()
        walkers[mode] = random_walker_pseudo(img, ann, unmarked=mode, spacing=spacing)
        times[f"random-walker[{mode}]"] = time.perf_counter() - t
        res[f"random-walker[{mode}]"] = score(walkers[mode].labels, walkers[mode].confidence, gt, classes)
    w = walkers["walker3d"]
    img01 = percentile_unit_range(img)
    cache = EmbeddingCache(backend, img01, cache_dir=cache_dir)
    nesting = detect_nesting(w.labels, classes)
    t = time.perf_counter()
    ps, cov, log = sam_probabilities(img01, ann, cache, mode="marks", nesting=nesting)
    times["sam[marks]"] = time.perf_counter() - t
    lab, conf = labels_and_confidence(ps, classes)
    conf[~cov] = 0
    res["sam[marks]"] = score(mix(ann, lab), np.where(ann.marked, 1.0, conf), gt, classes)
    for m in MARGINS:
        t = time.perf_counter()
        ps, cov, _ = sam_probabilities(img01, ann, cache, mode="regions", walker=w, nesting=nesting, box_margin=m)
        times[f"sam[walker-boxes m={m}]"] = time.perf_counter() - t
        lab, conf = labels_and_confidence(ps, classes)
        res[f"sam[walker-boxes m={m}]"] = score(mix(ann, lab), np.where(ann.marked, 1.0, conf), gt, classes)
        for lam in LAMBDAS:
            p = fuse(w.probabilities, ps, lam, cov)
            lab, conf = labels_and_confidence(p, classes, agree_with=(w.probabilities, ps))
            res[f"fusion[m={m} lam={lam}]"] = score(mix(ann, lab), np.where(ann.marked, 1.0, conf), gt, classes)
    return {"case": path.name, "shape": list(img.shape), "classes": list(classes), "nesting": {int(k): list(v) for k, v in nesting.items()},
            "marked_fraction": ann.marked_fraction(), "annotated_slices": len(ann.annotated_slices(0)),
            "results": res, "seconds": times, "cache": dict(cache.stats), "total_s": time.perf_counter() - t0,
            "sam_stops": [list(map(str, s)) for s in log.get("stops", [])][:50]}


def summarise(per_set: dict[str, list[dict]]) -> dict:
    summary = {}
    for name, rows in per_set.items():
        methods = rows[0]["results"].keys()
        summary[name] = {}
        for m in methods:
            keys = rows[0]["results"][m].keys()
            agg = {k: float(np.mean([r["results"][m][k] for r in rows])) for k in keys if k != "per_class"}
            pcs = rows[0]["results"][m]["per_class"].keys()
            agg["per_class"] = {c: float(np.mean([r["results"][m]["per_class"][c] for r in rows])) for c in pcs}
            tk = m if m in rows[0]["seconds"] else None
            agg["seconds_per_case"] = float(np.mean([r["seconds"][tk] for r in rows])) if tk else None
            summary[name][m] = agg
    return summary


def markdown(summary: dict, meta: dict) -> str:
    lines = ["# Pseudo-label quality (bench/scripts/bench_pseudo.py)", "",
             f"Machine: {meta['machine']}. Run {meta['date']}; load average at start {meta['load']}.",
             "Dice = mean over classes of the pseudo-labels after MIX with the marks (whole volume).",
             "Dice@t / kept@t: Dice on voxels with confidence >= t, and the fraction of voxels kept.",
             "Seconds are SAM/walker time per case on the shared, loaded machine (embeddings cached on disk",
             "after the first method, so `sam[marks]` carries the encoding time).", ""]
    for name, rows in summary.items():
        lines += [f"## {name} ({meta['n_cases'][name]} cases, {meta['annotation'][name]})", "",
                  "| method | Dice | per class | Dice@0.5 | kept@0.5 | Dice@0.9 | kept@0.9 | s/case |",
                  "|---|---|---|---|---|---|---|---|"]
        for m, a in sorted(rows.items(), key=lambda kv: -kv[1]["dice"]):
            pc = " ".join(f"{c}:{v:.3f}" for c, v in a["per_class"].items())
            sec = "" if a["seconds_per_case"] is None else f"{a['seconds_per_case']:.1f}"
            lines.append(f"| {m} | **{a['dice']:.3f}** | {pc} | {a.get('dice_conf0.5', float('nan')):.3f} | "
                         f"{a.get('kept0.5', float('nan')):.3f} | {a.get('dice_conf0.9', float('nan')):.3f} | "
                         f"{a.get('kept0.9', float('nan')):.3f} | {sec} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--sets", default="acdc,hippocampus,brain_tumor")
    ap.add_argument("--n-hippocampus", type=int, default=20)
    ap.add_argument("--n", type=int, default=None, help="limit cases per set (smoke runs)")
    ap.add_argument("--cache", default=os.environ.get("SPARSESEG_BENCH_CACHE", "/tmp/sparseseg_bench_cache"))
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "pseudo" / "pseudo_results"))
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    backend = load_backend("litemedsam")
    fast = enable_fast_encoder(backend, Path(args.cache) / "onnx")
    per_set: dict[str, list[dict]] = {}
    meta = {"machine": f"{platform.node()} {os.cpu_count()} CPU cores, no GPU, shared with other jobs",
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load": os.getloadavg()[0],
            "encoder": "onnxruntime" if fast else "eager", "n_cases": {}, "annotation": {}}
    for name in args.sets.split(","):
        n = args.n or (args.n_hippocampus if name == "hippocampus" else None)
        per_set[name] = []
        for p in cases(Path(args.data), name, n):
            r = run_case(p, name, backend, Path(args.cache))
            per_set[name].append(r)
            best = max(r["results"].items(), key=lambda kv: kv[1]["dice"])
            print(f"{name} {p.name}: walker {r['results']['random-walker[walker3d]']['dice']:.3f} "
                  f"best {best[0]} {best[1]['dice']:.3f} ({r['total_s']:.0f}s)", flush=True)
            meta["n_cases"][name] = len(per_set[name])
            meta["annotation"][name] = ("human scribbles, background 4" if name == "acdc"
                                        else "3 simulated labelled slices, axis 0")
            write(per_set, meta, Path(args.out))  # after every case: a long run leaves usable results
    print(write(per_set, meta, Path(args.out)))
    return 0


def write(per_set: dict, meta: dict, out: Path) -> str:
    summary = summarise({k: v for k, v in per_set.items() if v})
    meta = dict(meta, finished=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "summary": summary, "cases": per_set}, indent=1))
    md = markdown(summary, meta)
    out.with_suffix(".md").write_text(md)
    return md


if __name__ == "__main__":
    sys.exit(main())
