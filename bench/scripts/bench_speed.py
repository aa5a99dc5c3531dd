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
            r = peak_rss_run(tree, ["segment", str(img), "-a", str(ann), "-o", f"{out}/pred.nii.gz",
                                    "--budget-seconds", str(budget)], {"SPARSESEG_CACHE": cache})
        res["runs"][name] = r
        print(f"memory {name}: peak RSS {r['peak_rss_gib']:.2f} GiB, {r['wall_s']:.0f} s", flush=True)
    return res


# ------------------------------------------------------------------------------------------------ io
def load_results() -> dict:
    p = OUT / "speed.json"
    return json.loads(p.read_text()) if p.exists() else {}


def save_results(res: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "speed.json").write_text(json.dumps(res, indent=1, default=float))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sections", default="first,pseudo,sam,memory,demo")
    ap.add_argument("--baseline", type=Path, default=None, help="a checkout of today's code (memory, demo)")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "sparseseg_bench_speed")
    ap.add_argument("--memory-budget", type=float, default=5.0)
    ap.add_argument("--memory-trees", default=None, help="comma list of tree names for the memory section")
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    res = load_results()
    trees = {"today": args.baseline, "this branch": REPO} if args.baseline else {"this branch": REPO}
    for sec in args.sections.split(","):
        meta = machine()
        t = time.perf_counter()
        if sec == "memory":
            sel = {k: v for k, v in trees.items() if args.memory_trees is None or k in args.memory_trees.split(",")}
            part = section_memory(sel, args.memory_budget, args.work)
        else:
            raise SystemExit(f"unknown section {sec}")
        part["meta"] = dict(meta, load_at_end=round(os.getloadavg()[0], 1), seconds=round(time.perf_counter() - t))
        res[sec] = part
        save_results(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
