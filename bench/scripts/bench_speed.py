"""Interactive speed and memory, each goal beside today's figure, side by side in one run.

Sections (``--sections``, default all; each writes its part of ``bench/results/speed/speed.json`` so a
section can be re-run alone):

* ``first``  -- time to the first streamed prediction (``segment --preview``) on an ACDC volume and on
  the demo sample: pseudo-labels first (today's order, ``--no-progressive``) vs the streaming start,
  cold and warm embedding cache, and the final Dice of each at the same training budget.
* ``pseudo`` -- pseudo-label time vs the random walker on held-out ACDC (human scribbles, background
  4), and Dice: today's fusion (full SAM probability volume) vs the slice-by-slice fusion, cold and
  warm embedding cache.
* ``sam``    -- LiteMedSAM encoder / decoder per slice: eager torch vs ONNX Runtime variants (graph
  optimisation level, intra-op threads, 2-slice batches), masks compared with eager (Dice); click to
  mask through the widget's SAM panel call (``sam.cache.predict_slice_mask``, point + box).
* ``memory`` -- peak RSS of a whole ``sparseseg segment`` process on a synthetic 512 x 512 x 300 volume
  (short budget), for the tree given as ``--baseline`` (today's code) and this tree.
* ``demo``   -- the steps of ``scripts/demo.sh`` after set-up (simulate, segment 45 s, evaluate) for the
  baseline tree and this one: wall time and Dice.

Run (the machine is shared: ratios within one run matter more than absolute numbers)::

    git archive <base-commit> | tar -x -C /tmp/base
    OMP_NUM_THREADS=1 .venv/bin/python bench/scripts/bench_speed.py --baseline /tmp/base
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "bench" / "results" / "speed"
ACDC_FIRST = "patient001_frame01"


def machine() -> dict:
    return {"machine": f"{platform.node()}, {os.cpu_count()} CPU cores, no GPU, shared with other jobs",
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_at_start": round(os.getloadavg()[0], 1)}


def cli(tree: Path, args: list[str], env: dict | None = None, poll: Path | None = None) -> dict:
    """Run ``python -m napari_sparseseg.cli ARGS`` from ``tree``; wall time, peak RSS, stderr, first-file time."""
    e = dict(os.environ, PYTHONPATH=str(tree), OMP_WAIT_POLICY="PASSIVE", **(env or {}))
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-m", "napari_sparseseg.cli", *args], cwd=tree, env=e,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = None
    if poll is not None:
        while p.poll() is None:
            if seen is None and poll.exists():
                seen = time.perf_counter() - t0
            time.sleep(0.05)
    out, err = p.communicate()
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{args[:2]} failed ({p.returncode}): {err[-1500:]}")
    if seen is None and poll is not None and poll.exists():
        seen = wall
    return {"wall_s": wall, "stdout": out, "stderr": err, "file_seen_s": seen}


def peak_rss_run(tree: Path, args: list[str], env: dict) -> dict:
    """Like :func:`cli`, with the child's own peak RSS from ``wait4`` (not the sum over children)."""
    e = dict(os.environ, PYTHONPATH=str(tree), OMP_WAIT_POLICY="PASSIVE", **env)
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-m", "napari_sparseseg.cli", *args], cwd=tree, env=e,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = p.stderr.read().decode() if p.stderr else ""
    _, status, ru = os.wait4(p.pid, 0)
    if status != 0:
        raise RuntimeError(f"segment failed ({status}): {err[-1500:]}")
    return {"wall_s": time.perf_counter() - t0, "peak_rss_gib": ru.ru_maxrss / 2**20, "stderr_tail": err[-600:]}


def said(stderr: str, pattern: str) -> float | None:
    m = re.search(pattern + r" ([0-9.]+) s", stderr)
    return float(m.group(1)) if m else None


# --------------------------------------------------------------------------------------------- memory
def synthetic_case(folder: Path, shape=(300, 512, 512), object_slices: int = 24) -> tuple[Path, Path]:
    """The 512 x 512 x 300 float32 scan of bench/bench_sam_speed.py, with 3 labelled slices (background 2)."""
    from napari_sparseseg.annotations.files import save_annotation
    from napari_sparseseg.annotations.simulate import simulate_slices
    from napari_sparseseg.io import Volume, write_volume_nifti

    img_p, ann_p = folder / "synthetic_512x512x300.nii", folder / "synthetic_ann.nii.gz"
    if img_p.exists() and ann_p.exists():
        return img_p, ann_p
    rng = np.random.default_rng(0)
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    c = [s // 2 for s in shape]
    obj = ((zz - c[0]) / (object_slices / 2)) ** 2 + ((yy - c[1]) / (shape[1] / 8.5)) ** 2 + ((xx - c[2]) / (shape[2] / 11.4)) ** 2 <= 1
    img = rng.normal(0.2, 0.05, shape).astype(np.float32)
    img += 0.5 * obj
    vol = Volume(img, np.diag([2.0, 0.8, 0.8, 1.0]))
    write_volume_nifti(img_p, vol)
    save_annotation(ann_p, simulate_slices(obj.astype(np.int16), 3, axis=0, background_label=2, seed=0), vol)
    return img_p, ann_p


def section_memory(trees: dict[str, Path], budget: float, work: Path) -> dict:
    img, ann = synthetic_case(work)
    res = {"shape": [300, 512, 512], "budget_s": budget, "runs": {}}
    for name, tree in trees.items():
        with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
            # --no-progressive: the whole fusion runs before training, as today (a 5 s budget would
            # otherwise stop the streamed SAM stage early and the two runs would not do the same work)
            extra = ["--no-progressive"] if tree == REPO else []
            r = peak_rss_run(tree, ["segment", str(img), "-a", str(ann), "-o", f"{out}/pred.nii.gz",
                                    "--budget-seconds", str(budget), *extra], {"SPARSESEG_CACHE": cache})
        res["runs"][name] = r
        print(f"memory {name}: peak RSS {r['peak_rss_gib']:.2f} GiB, {r['wall_s']:.0f} s", flush=True)
    return res


# ---------------------------------------------------------------------------------------------- cases
def acdc_case(data: Path, name: str) -> tuple[Path, Path, Path, int]:
    d = data / "acdc"
    return d / "imagesTr" / f"{name}.nii.gz", d / "scribblesTr" / f"{name}.nii.gz", d / "labelsTr" / f"{name}.nii.gz", 4


def demo_case(work: Path) -> tuple[Path, Path, Path, int]:
    """The demo's case and marks: hippocampus_001, 3 simulated labelled slices, background 3 (scripts/demo.sh)."""
    from napari_sparseseg.annotations.files import save_annotation
    from napari_sparseseg.annotations.simulate import simulate_slices
    from napari_sparseseg.io import read_labels, read_volume

    img = REPO / "sample_data" / "hippocampus" / "imagesTr" / "hippocampus_001.nii.gz"
    gt = REPO / "sample_data" / "hippocampus" / "labelsTr" / "hippocampus_001.nii.gz"
    ann = work / "demo_annotations.nii.gz"
    if not ann.exists():
        vol = read_volume(img)
        dense = np.asarray(read_labels(gt, like=vol).array)
        save_annotation(ann, simulate_slices(dense, 3, axis=0, background_label=3, seed=0), vol)
    return img, ann, gt, 3


def mean_dice(pred: Path, gt: Path) -> float:
    import nibabel as nib

    from napari_sparseseg.evaluate.metrics import dice_per_class

    p = np.asarray(nib.load(str(pred)).dataobj)
    t = np.asarray(nib.load(str(gt)).dataobj)
    classes = tuple(int(c) for c in np.unique(t) if c > 0)
    d = dice_per_class(p, t, classes)
    return float(np.mean(list(d.values())))


# ---------------------------------------------------------------------------------------------- first
def section_first(data: Path, work: Path, budget: float) -> dict:
    """Start -> first streamed prediction on disk, today's order vs the streaming start."""
    cases = {f"ACDC {ACDC_FIRST}": acdc_case(data, ACDC_FIRST), "demo sample (hippocampus_001)": demo_case(work)}
    modes = [("today: pseudo-labels first (--no-progressive), cold cache", ["--no-progressive"], "cold"),
             ("streaming start, cold cache", [], "cold"),
             ("streaming start, warm cache", [], "warm")]
    res: dict = {"budget_s": budget, "cases": {}}
    for cname, (img, ann, gt, bg) in cases.items():
        rows = {}
        cache = Path(tempfile.mkdtemp(dir=work))
        for mname, extra, kind in modes:
            if kind == "cold":
                cache = Path(tempfile.mkdtemp(dir=work))
            with tempfile.TemporaryDirectory(dir=work) as out:
                prev, pred = Path(out) / "first.nii.gz", Path(out) / "pred.nii.gz"
                r = cli(REPO, ["segment", str(img), "-a", str(ann), "--background-label", str(bg), "-o", str(pred),
                               "--preview", str(prev), "--budget-seconds", str(budget), *extra],
                        env={"SPARSESEG_CACHE": str(cache)}, poll=prev)
                row = {"first_prediction_s": said(r["stderr"], "first prediction written to \\S+ after"),
                       "first_file_seen_from_spawn_s": r["file_seen_s"], "process_wall_s": r["wall_s"],
                       "pseudo_first_stage_s": said(r["stderr"], "pseudo-labels (?:first stage \\(walker\\) )?ready in"),
                       "sam_folded_in_s": said(r["stderr"], "folded in after"),
                       "dice_first": mean_dice(prev, gt), "dice_final": mean_dice(pred, gt)}
            rows[mname] = row
            print(f"first {cname} | {mname}: {row}", flush=True)
        res["cases"][cname] = rows
    return res


# --------------------------------------------------------------------------------------------- pseudo
def section_pseudo(data: Path, work: Path, n: int) -> dict:
    """Walker vs today's fusion vs the slice-by-slice fusion (cold / warm cache), same process, same cases."""
    import torch

    from napari_sparseseg.annotations import SparseAnnotation
    from napari_sparseseg.evaluate.metrics import dice_per_class
    from napari_sparseseg.io import read_labels, read_volume
    from napari_sparseseg.pseudo import make_pseudo_labels
    from napari_sparseseg.pseudo.normalize import normalize_intensity
    from napari_sparseseg.pseudo.sam_fusion import channel_lambdas, fuse, labels_and_confidence, sam_probabilities
    from napari_sparseseg.pseudo.types import PseudoLabels
    from napari_sparseseg.pseudo.walker import random_walker_pseudo
    from napari_sparseseg.sam import EmbeddingCache, detect_nesting, load_backend
    from napari_sparseseg.sam.fast import enable_fast_encoder

    torch.set_num_threads(2)
    be = load_backend("litemedsam")
    enable_fast_encoder(be)
    names = sorted(p.name[: -len(".nii.gz")] for p in (data / "acdc" / "imagesTr").glob("*.nii.gz"))[:n]
    rows = []
    for name in names:
        img_p, sc_p, gt_p, _ = acdc_case(data, name)
        vol = read_volume(img_p)
        img = np.asarray(vol.array)
        gt = np.asarray(read_labels(gt_p, like=vol).array)
        ann = SparseAnnotation(read_labels(sc_p, like=vol).array, background_label=4)
        classes = tuple(ann.classes)

        def dice(pl, gt=gt, classes=classes) -> float:
            return float(np.mean(list(dice_per_class(pl.labels, gt, classes).values())))

        row = {"case": name, "shape": list(img.shape)}
        t = time.perf_counter()
        w = random_walker_pseudo(img, ann, spacing=vol.spacing)
        row["walker_s"], row["walker_dice"] = time.perf_counter() - t, dice(w)
        # today's fusion: the walker, then a full-size SAM probability volume, then the pool (in-memory cache)
        t = time.perf_counter()
        w2 = random_walker_pseudo(img, ann, spacing=vol.spacing)
        img01 = normalize_intensity(img)
        cache = EmbeddingCache(be, img01)
        nest = detect_nesting(w2.labels, classes)
        ps, cov, _ = sam_probabilities(img01, ann, cache, mode="regions", walker=w2, nesting=nest, box_margin=0.1)
        p = fuse(w2.probabilities, ps, channel_lambdas(classes, nest, 0.3, None), cov)
        lab, conf = labels_and_confidence(p, classes, agree_with=(w2.probabilities, ps))
        old = PseudoLabels(lab, conf, p, classes).with_marks(ann)
        row["today_fusion_s"], row["today_fusion_dice"] = time.perf_counter() - t, dice(old)
        row["embedded_slices"] = cache.stats["computed"]
        cdir = Path(tempfile.mkdtemp(dir=work))
        for kind in ("cold", "warm"):
            t = time.perf_counter()
            new = make_pseudo_labels(vol, ann, "fusion", backend=be, cache_dir=cdir)
            row[f"fusion_{kind}_s"], row[f"fusion_{kind}_dice"] = time.perf_counter() - t, dice(new)
            row[f"fusion_{kind}_encoded"] = new.info["cache"]["computed"]
        row["same_labels_as_today"] = bool(np.array_equal(new.labels, old.labels))
        rows.append(row)
        print(f"pseudo {name}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()),
              flush=True)
    agg = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if isinstance(rows[0][k], (float, int)) and not isinstance(rows[0][k], bool)}
    return {"cases": rows, "mean": agg, "n": len(rows)}


# ------------------------------------------------------------------------------------------------ sam
def section_sam(data: Path, work: Path, n_slices: int, reps: int) -> dict:
    """Encoder variants side by side on the same slices; masks vs eager; decoder; click to mask."""
    import onnxruntime as ort
    import torch

    from napari_sparseseg.io import read_labels, read_volume
    from napari_sparseseg.pseudo.normalize import normalize_intensity
    from napari_sparseseg.sam import EmbeddingCache, load_backend
    from napari_sparseseg.sam.backend import Embedding
    from napari_sparseseg.sam.cache import predict_slice_mask
    from napari_sparseseg.sam.fast import OnnxEncoder, OnnxMaskDecoder, enable_fast_encoder

    torch.set_num_threads(2)
    be = load_backend("litemedsam")
    enable_fast_encoder(be)
    enc_path = be.fast_encoder.path
    names = sorted(p.name[: -len(".nii.gz")] for p in (data / "acdc" / "imagesTr").glob("*.nii.gz"))[:n_slices]
    slices, gts = [], []
    for name in names:
        img_p, _, gt_p, _ = acdc_case(data, name)
        v = read_volume(img_p)
        img = normalize_intensity(np.asarray(v.array))
        gt = np.asarray(read_labels(gt_p, like=v).array)
        z = img.shape[0] // 2
        slices.append(img[z])
        gts.append(gt[z])

    # a 2-slice batch model (same weights, batch axis 2)
    b2 = work / "encoder_batch2.onnx"
    if not b2.exists():
        import warnings

        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(be.image_encoder.cpu(), (torch.zeros(2, 3, be.image_size, be.image_size),), str(b2),
                              input_names=["x"], output_names=["y"], opset_version=17, dynamo=False)

    class _Variant(OnnxEncoder):
        def __init__(self, path: Path, level: str, threads: int) -> None:  # noqa: D107 (one session only)
            so = ort.SessionOptions()
            so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
            so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
            self.path = path
            self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            self.input_name = self.session.get_inputs()[0].name

    variants = {"eager torch, 2 threads": None,
                "ONNX Runtime, ENABLE_ALL, 2 threads (today's fast path)": be.fast_encoder,
                "ONNX Runtime, ENABLE_ALL, 1 thread": _Variant(enc_path, "ORT_ENABLE_ALL", 1),
                "ONNX Runtime, ENABLE_BASIC, 1 thread": _Variant(enc_path, "ORT_ENABLE_BASIC", 1)}
    batch2 = {"ONNX Runtime, ENABLE_ALL, 2-slice batch, 2 threads": _Variant(b2, "ORT_ENABLE_ALL", 2)}
    x = [be.preprocess(s) for s in slices]
    times: dict[str, list[float]] = {k: [] for k in [*variants, *batch2]}
    feats: dict[str, list[np.ndarray]] = {k: [] for k in times}
    for enc in [*variants.values(), *batch2.values()]:  # warm-up
        (enc or be.image_encoder)(torch.cat([x[0], x[0]]) if enc in batch2.values() else x[0])
    for r in range(reps):  # interleaved: every variant sees the same load
        for i in range(len(x)):
            for k, enc in variants.items():
                with torch.inference_mode():
                    t = time.perf_counter()
                    f = (enc or be.image_encoder)(x[i])
                    times[k].append(time.perf_counter() - t)
                if r == 0:
                    feats[k].append(np.asarray(f[0].float()))
        for i in range(0, len(x) - 1, 2):
            for k, enc in batch2.items():
                t = time.perf_counter()
                f = enc(torch.cat([x[i], x[i + 1]]))
                times[k].append((time.perf_counter() - t) / 2)
                if r == 0:
                    feats[k] += [np.asarray(f[0]), np.asarray(f[1])]
    # masks from each variant's embedding vs eager's (box prompts from the expert labels)
    enc_rows = {}
    for k in times:
        ds = []
        for i, (s, g) in enumerate(zip(slices, gts)):
            if i >= len(feats[k]):
                continue
            h, w_ = s.shape
            emb_k = Embedding(feats[k][i], (h, w_), _input_size(be, h, w_))
            emb_e = Embedding(feats["eager torch, 2 threads"][i], (h, w_), _input_size(be, h, w_))
            for c in (1, 2, 3):
                ys, xs = np.nonzero(g == c)
                if ys.size == 0:
                    continue
                box = np.array([[xs.min(), ys.min(), xs.max(), ys.max()]], np.float32)
                m1 = be.decode(emb_e, boxes=box)[0][0, 0] > 0
                m2 = be.decode(emb_k, boxes=box)[0][0, 0] > 0
                ds.append(1.0 if m1.sum() + m2.sum() == 0 else 2 * (m1 & m2).sum() / (m1.sum() + m2.sum()))
        enc_rows[k] = {"median_s": float(np.median(times[k])), "mask_dice_vs_eager_min": float(np.min(ds)) if ds else None,
                       "n": len(times[k])}
    # decoder (one box, mask at slice resolution) and the widget's click-to-mask call
    cache = EmbeddingCache(be, np.stack([slices[0]] * 2))
    emb = cache.get(0)
    g = gts[0]
    ys, xs = np.nonzero(g == 1)
    box = np.array([[xs.min(), ys.min(), xs.max(), ys.max()]], np.float32)
    pt = np.array([[int(np.median(xs)), int(np.median(ys))]], np.float32)
    dec_rows = {}
    onnx_dec = be.fast_decoder
    for name, (fd, th) in {"torch, 1 thread": (None, 1), "ONNX Runtime, 1 thread (today)": (onnx_dec, 1),
                           "ONNX Runtime, 2 threads": (OnnxMaskDecoder(onnx_dec.path, threads=2), 2)}.items():
        torch.set_num_threads(th)
        be.fast_decoder = fd
        for _ in range(3):
            be.decode(emb, boxes=box)
        tt = []
        for _ in range(reps * 10):
            t = time.perf_counter()
            be.decode(emb, boxes=box)
            tt.append(time.perf_counter() - t)
        dec_rows[name] = {"median_ms": 1000 * float(np.median(tt))}
    be.fast_decoder = onnx_dec
    torch.set_num_threads(1)
    click = []
    for _ in range(reps * 10):
        t = time.perf_counter()
        predict_slice_mask(cache, 0, pt, np.array([1]), box[0])
        click.append(time.perf_counter() - t)
    torch.set_num_threads(2)
    return {"encoder": enc_rows, "decoder": dec_rows,
            "click_to_mask_ms": 1000 * float(np.median(click)),
            "click_note": "sam.cache.predict_slice_mask (the SAM panel's _predict) with one point + one box on a "
                          "cached embedding; the napari layer refresh is not included",
            "slices": len(slices), "reps": reps}


def _input_size(be, h: int, w: int) -> tuple[int, int]:
    from napari_sparseseg.sam.backend import resized_shape

    return resized_shape(h, w, be.image_size)


# ----------------------------------------------------------------------------------------------- demo
def section_demo(trees: dict[str, Path], work: Path, budget: float) -> dict:
    """scripts/demo.sh's steps after set-up (simulate, segment, evaluate), timed per tree."""
    img = "sample_data/hippocampus/imagesTr/hippocampus_001.nii.gz"
    gt = "sample_data/hippocampus/labelsTr/hippocampus_001.nii.gz"
    res = {"budget_s": budget, "runs": {}}
    for name, tree in trees.items():
        with tempfile.TemporaryDirectory(dir=work) as out, tempfile.TemporaryDirectory(dir=work) as cache:
            env = {"SPARSESEG_CACHE": cache}
            t = time.perf_counter()
            cli(tree, ["info", img], env)
            cli(tree, ["simulate", gt, "--mode", "slices:3", "--background-label", "3", "--seed", "0",
                       "-o", f"{out}/annotations.nii.gz", "--overwrite"], env)
            cli(tree, ["segment", img, "--annotations", f"{out}/annotations.nii.gz", "-o", f"{out}/prediction.nii.gz",
                       "--budget-seconds", str(budget), "--save-model", f"{out}/model.safetensors", "--overwrite",
                       "--quiet"], env)
            ev = cli(tree, ["evaluate", f"{out}/prediction.nii.gz", gt], env)
            wall = time.perf_counter() - t
            res["runs"][name] = {"wall_s": wall, "dice": mean_dice(Path(out) / "prediction.nii.gz", tree / gt),
                                 "evaluate_stdout": ev["stdout"][-400:]}
        print(f"demo {name}: {res['runs'][name]['wall_s']:.0f} s, Dice {res['runs'][name]['dice']:.3f}", flush=True)
    return res


# ------------------------------------------------------------------------------------------------ io
def load_results() -> dict:
    p = OUT / "speed.json"
    return json.loads(p.read_text()) if p.exists() else {}


def save_results(res: dict) -> None:
    """Merge ``res``'s sections into the file (another section may have been written meanwhile)."""
    OUT.mkdir(parents=True, exist_ok=True)
    res = {**load_results(), **res}
    (OUT / "speed.json").write_text(json.dumps(res, indent=1, default=float))
    (OUT / "speed.md").write_text(markdown(res))


def _f(v, fmt: str = ".1f", unit: str = "") -> str:
    return "-" if v is None else f"{v:{fmt}}{unit}"


def _meta_line(part: dict) -> str:
    m = part.get("meta", {})
    return (f"_Run {m.get('date', '?')} on {m.get('machine', '?')}; load average {m.get('load_at_start', '?')} at start, "
            f"{m.get('load_at_end', '?')} at end; {m.get('seconds', '?')} s._")


def _goals(res: dict) -> list[str]:
    """One row per goal: today's figure, this branch's, the goal, met or the distance."""
    rows = []

    def row(what: str, today, now, goal: float, unit: str, fmt: str = ".1f", lower_better: bool = True) -> None:
        if now is None:
            return
        met = now <= goal if lower_better else now >= goal
        verdict = "met" if met else f"not met ({now - goal:+{fmt}} {unit})"
        rows.append(f"| {what} | {_f(today, fmt, ' ' + unit)} | **{now:{fmt}} {unit}** | {goal:{fmt}} {unit} | {verdict} |")

    f = res.get("first", {}).get("cases", {})
    for c, goal in ((f"ACDC {ACDC_FIRST}", 10.0), ("demo sample (hippocampus_001)", 5.0)):
        if c in f:
            r = list(f[c].values())
            row(f"first streamed prediction, {c} (cold cache)", r[0]["first_prediction_s"], r[1]["first_prediction_s"], goal, "s")
            rows.append(f"| final Dice at the same budget, {c} | {r[0]['dice_final']:.3f} | **{r[1]['dice_final']:.3f}** "
                        f"(warm cache {r[2]['dice_final']:.3f}) | no loss | "
                        f"{'met' if r[1]['dice_final'] >= r[0]['dice_final'] - 0.005 else 'not met'} |")
    if "pseudo" in res:
        m = res["pseudo"]["mean"]
        row("fusion time / walker time, ACDC, cold cache", m["today_fusion_s"] / m["walker_s"], m["fusion_cold_s"] / m["walker_s"], 2.0, "x")
        row("fusion time / walker time, ACDC, warm cache (second run)", m["today_fusion_s"] / m["walker_s"], m["fusion_warm_s"] / m["walker_s"], 2.0, "x")
        rows.append(f"| fusion Dice, ACDC | {m['today_fusion_dice']:.3f} | **{m['fusion_cold_dice']:.3f}** | >= today's | "
                    f"{'met' if m['fusion_cold_dice'] >= m['today_fusion_dice'] else 'not met'} |")
    if "sam" in res:
        e, d = res["sam"]["encoder"], res["sam"]["decoder"]
        today = next(v["median_s"] for k, v in e.items() if "today" in k)
        best = min(v["median_s"] for k, v in e.items() if (v["mask_dice_vs_eager_min"] or 0) >= 0.99)
        row("encoder per slice (best variant with mask Dice >= 0.99)", today, best, 0.3, "s", ".2f")
        dt = next(v["median_ms"] for k, v in d.items() if "today" in k)
        row("decoder per box (best variant)", dt, min(v["median_ms"] for v in d.values()), 25.0, "ms")
        row("click to mask (SAM panel call, headless)", None, res["sam"]["click_to_mask_ms"], 50.0, "ms")
    if "memory" in res and len(res["memory"]["runs"]) == 2:
        t, n = res["memory"]["runs"].values()
        row("peak RSS, segment on 512 x 512 x 300", t["peak_rss_gib"], n["peak_rss_gib"], 4.0 * 1e9 / 2**30, "GiB", ".2f")
    if "demo" in res and len(res["demo"]["runs"]) == 2:
        t, n = res["demo"]["runs"].values()
        row("scripts/demo.sh steps after set-up", t["wall_s"], n["wall_s"], 60.0, "s", ".0f")
        rows.append(f"| demo Dice | {t['dice']:.3f} | **{n['dice']:.3f}** | no loss | {'met' if n['dice'] >= t['dice'] - 0.005 else 'not met'} |")
    if not rows:
        return []
    return ["## Goals", "", "Each figure beside today's, from the tables below (same runs).", "",
            "| goal | today | this branch | goal | verdict |", "|---|---|---|---|---|", *rows, ""]


def markdown(res: dict) -> str:
    """Every goal beside today's figure (from the sections present in ``res``)."""
    L = ["# Interactive speed and memory (bench/scripts/bench_speed.py)", "",
         "Regenerate: `git archive <base-commit> | tar -x -C /tmp/base && OMP_NUM_THREADS=1 python "
         "bench/scripts/bench_speed.py --baseline /tmp/base` (sections: `--sections first,pseudo,sam,memory,demo`).",
         "The machine is a shared 2-core VM (several other jobs; each section notes its load average, 2.5-15 here):",
         "absolute times are inflated by the load, several-fold at the worst; the rows of one table ran in the same",
         "process or back to back, so compare within a table.", ""]
    L += _goals(res)
    if "first" in res:
        p = res["first"]
        L += ["## Time to the first streamed prediction (`segment --preview`)", "", _meta_line(p), "",
              f"Seconds from the start of `segment` (after Python imports) until the first prediction is on disk; "
              f"training budget {p['budget_s']:.0f} s; Dice = mean over classes vs the expert labels. Goal: <= 10 s "
              "on ACDC, <= 5 s on the demo sample. 'today' is this branch with `--no-progressive` (all pseudo-labels "
              "before training, today's order; today's `segment` has no `--preview`). The first prediction is the "
              "walker's map after one training step (Dice first); the fused map arrives later (SAM folded in).", "",
              "| case | start | first prediction | (from process spawn) | SAM folded in | Dice first | Dice final |",
              "|---|---|---|---|---|---|---|"]
        for c, rows in p["cases"].items():
            for m, r in rows.items():
                L.append(f"| {c} | {m} | **{_f(r['first_prediction_s'], '.1f', ' s')}** | {_f(r['first_file_seen_from_spawn_s'], '.1f', ' s')} "
                         f"| {_f(r['sam_folded_in_s'], '.1f', ' s')} | {_f(r['dice_first'], '.3f')} | {_f(r['dice_final'], '.3f')} |")
        L.append("")
    if "pseudo" in res:
        p = res["pseudo"]
        L += ["## Pseudo-label time vs the random walker, held-out ACDC (human scribbles, background 4)", "", _meta_line(p), "",
              "Goal: fusion time <= 2x the walker's on the same volume, Dice no lower than today's fusion.", "",
              "| case | walker | today's fusion | fusion, cold cache | fusion, warm cache | x walker (today / cold / warm) "
              "| Dice walker / today / new | same labels |", "|---|---|---|---|---|---|---|---|"]
        for r in p["cases"]:
            w = r["walker_s"]
            L.append(f"| {r['case']} {tuple(r['shape'])} | {w:.1f} s | {r['today_fusion_s']:.1f} s | {r['fusion_cold_s']:.1f} s "
                     f"| {r['fusion_warm_s']:.1f} s | {r['today_fusion_s'] / w:.1f} / {r['fusion_cold_s'] / w:.1f} / "
                     f"{r['fusion_warm_s'] / w:.1f} | {r['walker_dice']:.3f} / {r['today_fusion_dice']:.3f} / "
                     f"{r['fusion_cold_dice']:.3f} | {r['same_labels_as_today']} |")
        m = p["mean"]
        L += [f"| **mean of {p['n']}** | {m['walker_s']:.1f} s | {m['today_fusion_s']:.1f} s | {m['fusion_cold_s']:.1f} s "
              f"| {m['fusion_warm_s']:.1f} s | {m['today_fusion_s'] / m['walker_s']:.1f} / {m['fusion_cold_s'] / m['walker_s']:.1f} / "
              f"{m['fusion_warm_s'] / m['walker_s']:.1f} | {m['walker_dice']:.3f} / {m['today_fusion_dice']:.3f} / "
              f"{m['fusion_cold_dice']:.3f} | |", ""]
    if "sam" in res:
        p = res["sam"]
        L += ["## LiteMedSAM encoder and decoder per slice", "", _meta_line(p), "",
              f"{p['slices']} ACDC mid-ventricular slices x {p['reps']} interleaved repetitions (every variant sees the same load). "
              "Mask Dice: box masks (expert-label boxes) decoded from each variant's embedding vs eager torch's. "
              "Goals: encoder <= 0.3 s, masks Dice >= 0.99.", "",
              "| encoder | median per slice | mask Dice vs eager (min) |", "|---|---|---|"]
        for k, r in p["encoder"].items():
            L.append(f"| {k} | {r['median_s']:.3f} s | {_f(r['mask_dice_vs_eager_min'], '.4f')} |")
        L += ["", "Decoder, one box on a cached embedding, mask at slice resolution (goal <= 25 ms):", "",
              "| decoder | median |", "|---|---|"]
        L += [f"| {k} | {r['median_ms']:.1f} ms |" for k, r in p["decoder"].items()]
        L += ["", f"Click to mask (goal <= 50 ms): **{p['click_to_mask_ms']:.1f} ms** median -- {p['click_note']}.", ""]
    if "memory" in res:
        p = res["memory"]
        L += ["## Peak RSS of a whole `sparseseg segment` on a synthetic 512 x 512 x 300 scan", "", _meta_line(p), "",
              f"float32 volume, an ellipsoid spanning 24 slices, 3 labelled slices (background 2), default pseudo-labels "
              f"(walker + SAM fusion), {p['budget_s']:.0f} s training, final prediction written; peak RSS of the "
              "`segment` process from `wait4`; this branch runs with `--no-progressive`, so both do the same work (the",
              "whole fusion, then training). Goal: <= 4 GB. About 1 GiB of either figure is the imported libraries",
              "(torch, MONAI, ONNX Runtime) before any data is read.", "", "| code | peak RSS | wall |", "|---|---|---|"]
        L += [f"| {k} | **{r['peak_rss_gib']:.2f} GiB** | {r['wall_s']:.0f} s |" for k, r in p["runs"].items()]
        L.append("")
    if "demo" in res:
        p = res["demo"]
        L += ["## `scripts/demo.sh` steps after set-up (info, simulate, segment, evaluate)", "", _meta_line(p), "",
              f"Training budget {p['budget_s']:.0f} s (the demo's default). Goal: under a minute, no loss of Dice.", "",
              "| code | wall | Dice |", "|---|---|---|"]
        L += [f"| {k} | **{r['wall_s']:.0f} s** | {r['dice']:.3f} |" for k, r in p["runs"].items()]
        L.append("")
    return "\n".join(L)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sections", default="first,pseudo,sam,memory,demo")
    ap.add_argument("--baseline", type=Path, default=None, help="a checkout of today's code (memory, demo)")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "sparseseg_bench_speed")
    ap.add_argument("--memory-budget", type=float, default=5.0)
    ap.add_argument("--first-budget", type=float, default=20.0)
    ap.add_argument("--demo-budget", type=float, default=45.0)
    ap.add_argument("--n-pseudo", type=int, default=2)
    ap.add_argument("--sam-slices", type=int, default=4)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--memory-trees", default=None, help="comma list of tree names for the memory section")
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    trees = {"today": args.baseline, "this branch": REPO} if args.baseline else {"this branch": REPO}
    for sec in args.sections.split(","):
        meta = machine()
        t = time.perf_counter()
        if sec == "markdown":
            save_results({})
            continue
        try:
            if sec == "first":
                part = section_first(args.data, args.work, args.first_budget)
            elif sec == "pseudo":
                part = section_pseudo(args.data, args.work, args.n_pseudo)
            elif sec == "sam":
                part = section_sam(args.data, args.work, args.sam_slices, args.reps)
            elif sec == "demo":
                part = section_demo(trees, args.work, args.demo_budget)
            elif sec == "memory":
                sel = {k: v for k, v in trees.items() if args.memory_trees is None or k in args.memory_trees.split(",")}
                part = section_memory(sel, args.memory_budget, args.work)
            else:
                raise SystemExit(f"unknown section {sec}")
        except Exception as exc:  # one failed section must not lose the others' results
            import traceback

            traceback.print_exc()
            print(f"section {sec} failed: {exc}", flush=True)
            continue
        part["meta"] = dict(meta, load_at_end=round(os.getloadavg()[0], 1), seconds=round(time.perf_counter() - t))
        save_results({sec: part})
    return 0


if __name__ == "__main__":
    sys.exit(main())
