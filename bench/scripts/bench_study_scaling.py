"""Study-model training under torchrun: steps per second with 1 and with N processes, side by side.

Each process trains on its share of the scans with ``--batch`` crops per step, so N processes see N
batches per step (data parallel).  On a 2-core CPU the processes share the cores: the number that
matters is samples per second, which the report gives beside steps per second.

    python bench/scripts/bench_study_scaling.py --procs 2 --steps 60 --out bench/results/study/scaling.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

WORKER = r'''
import json, sys, time
import numpy as np
from napari_sparseseg.annotations.simulate import simulate_slices
from napari_sparseseg.annotations.sparse import SparseAnnotation
from napari_sparseseg.cohort import CohortConfig, CohortScan, CohortTrainer, distributed
from napari_sparseseg.io.volume import Volume

def scan(seed, shape=(8, 96, 96)):
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]]
    r = np.hypot(y - shape[1] / 2 - rng.uniform(-8, 8), x - shape[2] / 2 - rng.uniform(-8, 8))
    gt = np.where(r < 14, 1, np.where(r < 22, 2, 0)).astype(np.int16)
    img = np.where(gt == 1, 1.0, np.where(gt == 2, 0.55, 0.2)) + rng.normal(0, 0.08, shape)
    ann = simulate_slices(gt, 3, axis=0, background_label=3, seed=seed)
    return CohortScan(Volume(img.astype(np.float32), affine=np.diag([4.0, 1, 1, 1])), SparseAnnotation(ann.labels, 3, (1, 2)), f"s{seed}")

out, steps, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
scans = [scan(i) for i in range(8)]
cfg = CohortConfig(max_steps=steps, budget_seconds=1e9, batch=batch, threads=1, device="cpu",
                   checkpoint_every_seconds=1e9, pseudo_method="none")
tr = CohortTrainer(scans, cfg)
t0 = None
for ev in tr.run():
    if ev.kind == "step" and t0 is None:
        t0, s0 = time.perf_counter(), tr.step
dt = time.perf_counter() - t0
if distributed.is_main():
    json.dump({"world": distributed.world(), "steps": tr.step - s0, "seconds": dt}, open(out, "w"))
'''


def run(procs: int, steps: int, batch: int, tmp: Path) -> dict:
    script = tmp / "worker.py"
    script.write_text(WORKER)
    out = tmp / f"res{procs}.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [sys.executable, str(script), str(out), str(steps), str(batch)] if procs == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs),
         str(script), str(out), str(steps), str(batch)]
    subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=1800)
    return json.loads(out.read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        # 1, N, 1: the machine is shared, so the single-process figure is taken before and after
        rows = [run(p, args.steps, args.batch, Path(d)) for p in (1, args.procs, 1)]
    load = os.getloadavg()[0]
    lines = ["# Study model under torchrun: 1 vs N processes (bench/scripts/bench_study_scaling.py)", "",
             f"Machine: {platform.node()}, {os.cpu_count()} CPU cores, CPU only (gloo), load average {load:.1f} "
             "at the end; 1 torch thread per process; synthetic 8-scan study, 96 x 96 slices, marks only.", "",
             f"Regenerate: `python bench/scripts/bench_study_scaling.py --procs {args.procs} --steps {args.steps} "
             f"--batch {args.batch} --out {args.out}`", "",
             "| processes | steps | seconds | steps / s | crops / s |", "|---|---|---|---|---|"]
    for r in rows:
        sps = r["steps"] / r["seconds"]
        lines.append(f"| {r['world']} | {r['steps']} | {r['seconds']:.1f} | {sps:.2f} | {sps * args.batch * r['world']:.1f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
