"""Local engine vs a ``sparseseg serve`` on 127.0.0.1: time to the first streamed prediction and bytes per update.

Both sides run the same job (same image, marks, pseudo-label method, TrainConfig and seed), one after
the other in one run, alternating, so the machine's load hits both alike.  "Local" is what the widget
does in-process: pseudo-labels, a Trainer, its events handed over in memory (no bytes on a wire; the
arrays it hands over are reported for scale).  "Server" is what the widget does with "Compute on:
server": upload (npz), pseudo-labels and training on the server, predictions streamed back as
server-sent events carrying only the changed box (zlib) and a quantised uncertainty (1/63 steps).

    PYTHONPATH=. OMP_NUM_THREADS=1 python bench/scripts/bench_server.py --out bench/results/server
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from napari_sparseseg.annotations.simulate import simulate_slices  # noqa: E402
from napari_sparseseg.io import read_labels, read_volume  # noqa: E402

CASES = {
    "hippocampus": ("hippocampus", "hippocampus_001", 3),
    "brain_tumor": ("brain_tumor", "PGBM-008_1993-06-10", 3),
}
TOKEN = "bench-token-0123456789abcdef"


def load_case(name: str):
    folder, case, n_slices = CASES[name]
    root = REPO / "sample_data" / folder
    vol = read_volume(root / "imagesTr" / f"{case}.nii.gz")
    dense = np.asarray(read_labels(root / "labelsTr" / f"{case}.nii.gz", like=vol).array)
    classes = [int(c) for c in np.unique(dense) if c > 0]
    ann = simulate_slices(dense, n_slices, axis=0, background_label=max(classes) + 1, seed=0)
    return vol, ann


def run_local(vol, ann, method: str, cfg) -> dict:
    from napari_sparseseg.pseudo import make_pseudo_labels
    from napari_sparseseg.training import Trainer

    t0 = time.perf_counter()
    pseudo = make_pseudo_labels(vol, ann, method=method)
    t_pseudo = time.perf_counter() - t0
    trainer = Trainer(vol, ann, cfg, pseudo=pseudo)
    first, updates = None, []
    for ev in trainer.run():
        if ev.prediction is not None:
            now = time.perf_counter() - t0
            first = now if first is None else first
            updates.append({"t": round(now, 3), "step": ev.step, "wire_bytes": 0,
                            "in_memory_bytes": int(ev.prediction.nbytes + (ev.uncertainty.nbytes if ev.uncertainty is not None else 0))})
    return {"mode": "local", "pseudo_s": round(t_pseudo, 3), "first_prediction_s": round(first, 3), "updates": updates,
            "steps": trainer.step, "total_s": round(time.perf_counter() - t0, 3)}


def run_server(url: str, vol, ann, method: str, cfg) -> dict:
    import dataclasses

    from napari_sparseseg.server import wire
    from napari_sparseseg.server.client import ServerClient

    opts = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items() if k != "device"}
    with ServerClient(url, TOKEN) as c:
        t0 = time.perf_counter()
        s = c.open_session()
        up = len(wire.volume_to_npz(vol)) + len(wire.annotation_to_npz(ann))
        s.upload_image(vol)
        s.upload_marks(ann)
        t_upload = time.perf_counter() - t0
        s.pseudo(method)
        t_pseudo = time.perf_counter() - t0 - t_upload
        s.train(**opts)
        first, updates, last = None, [], None
        for ev in s.events():
            if ev.kind == "prediction":
                now = time.perf_counter() - t0
                first = now if first is None else first
                updates.append({"t": round(now, 3), "step": ev.step, "wire_bytes": ev.nbytes, "parts": ev.parts,
                                "box_voxels": None if ev.changed is None else int(np.prod([b.stop - b.start for b in ev.changed]))})
            last = ev
        labels, _ = s.result()
        s.close()
    return {"mode": "server", "upload_bytes": up, "upload_s": round(t_upload, 3), "pseudo_s": round(t_pseudo, 3),
            "first_prediction_s": round(first, 3), "updates": updates, "steps": last.step if last else 0,
            "total_s": round(time.perf_counter() - t0, 3), "stream_bytes": s.bytes_received}


def start_server() -> tuple[subprocess.Popen, str]:
    import httpx

    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    env = {**os.environ, "SPARSESEG_TOKEN": TOKEN, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "napari_sparseseg.cli", "serve", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/v1/health", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.3)
    raise RuntimeError("server did not start")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "server")
    ap.add_argument("--cases", nargs="+", default=list(CASES))
    ap.add_argument("--budget", type=float, default=24.0)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--method", default="random-walker")
    args = ap.parse_args()
    from napari_sparseseg.training import TrainConfig

    # the widget's defaults: first preview after 4 s of training, then every 10 s
    cfg = TrainConfig(budget_seconds=args.budget, threads=1, seed=0)
    proc, url = start_server()
    rows = []
    try:
        for case in args.cases:
            vol, ann = load_case(case)
            for rep in range(args.repeats):
                order = ("local", "server") if rep % 2 == 0 else ("server", "local")
                for mode in order:
                    r = run_local(vol, ann, args.method, cfg) if mode == "local" else run_server(url, vol, ann, args.method, cfg)
                    r.update(case=case, shape=list(vol.shape), repeat=rep)
                    rows.append(r)
                    print(json.dumps({k: v for k, v in r.items() if k != "updates"}), flush=True)
    finally:
        proc.terminate()
        proc.wait(30)
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "python": platform.python_version(),
               "note": "shared 2-core CPU box, no GPU; other jobs were running"}
    import torch

    machine["torch"] = torch.__version__
    args.out.mkdir(parents=True, exist_ok=True)
    cmd = "PYTHONPATH=. OMP_NUM_THREADS=1 python bench/scripts/bench_server.py " + " ".join(sys.argv[1:])
    (args.out / "results.json").write_text(json.dumps({"machine": machine, "command": cmd, "config": cfg.to_dict(),
                                                       "method": args.method, "rows": rows}, indent=1) + "\n")
    (args.out / "RESULTS.md").write_text(report(rows, machine, cmd, args))
    return 0


def report(rows: list[dict], machine: dict, cmd: str, args) -> str:
    lines = ["# Local engine vs a server on 127.0.0.1: first streamed prediction and bytes per update", "",
             f"Machine: {machine['cores']} CPU cores ({machine['cpu']}), no GPU, torch {machine['torch']}; {machine['note']}.",
             f"Regenerate: `{cmd}`", "",
             f"Same job on both sides: {args.method} pseudo-labels from 3 simulated labelled slices, TrainConfig defaults "
             f"(first preview after 4 s of training, then every 10 s), budget {args.budget:.0f} s, 1 torch thread, seed 0. "
             "Local and server runs alternate, in one run.", "",
             "| case | shape | mode | repeat | first prediction (s) | of which pseudo-labels (s) | upload (bytes) | "
             "first update (bytes) | later updates (bytes, median) | of which uncertainty (median) | full arrays per update, in memory (bytes) | steps |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ups = r["updates"]
        later = [u["wire_bytes"] for u in ups[1:]]
        later_unc = [u.get("parts", {}).get("uncertainty", 0) for u in ups[1:]]
        mem = int(np.prod(r["shape"])) * 6  # int16 labels + float32 uncertainty
        lines.append(
            f"| {r['case']} | {'x'.join(map(str, r['shape']))} | {r['mode']} | {r['repeat']} | {r['first_prediction_s']:.2f} | "
            f"{r['pseudo_s']:.2f} | {r.get('upload_bytes', 0)} | {ups[0]['wire_bytes'] if ups else '-'} | "
            f"{int(np.median(later)) if later else '-'} | {int(np.median(later_unc)) if later and r['mode'] == 'server' else '-'} | "
            f"{mem} | {r['steps']} |")
    lines += ["", "## Ratios (server / local, mean over repeats)", "",
              "| case | first prediction, server / local | server first update / full in-memory arrays | "
              "server later updates / full in-memory arrays |", "|---|---|---|---|"]
    for case in dict.fromkeys(r["case"] for r in rows):
        loc = [r for r in rows if r["case"] == case and r["mode"] == "local"]
        srv = [r for r in rows if r["case"] == case and r["mode"] == "server"]
        if not loc or not srv:
            continue
        ratio = np.mean([r["first_prediction_s"] for r in srv]) / np.mean([r["first_prediction_s"] for r in loc])
        mem = int(np.prod(srv[0]["shape"])) * 6
        first = np.mean([r["updates"][0]["wire_bytes"] for r in srv if r["updates"]])
        later = [u["wire_bytes"] for r in srv for u in r["updates"][1:]]
        lines.append(f"| {case} | {ratio:.2f} | {first / mem:.3f} | {(np.median(later) / mem) if later else float('nan'):.3f} |")
    lines += ["", "Local updates cross no wire (0 bytes); the in-memory column is what the local runner hands the "
              "widget per update, for scale. The server's first update is the whole label map (compressed) plus "
              "the quantised uncertainty; later ones carry only the changed boxes (the uncertainty, in 1/63 steps, only where "
              "it moved by more than one step). Blocks are zlib-compressed and base64-encoded inside server-sent events (base64 adds "
              "a third). Time to the first prediction "
              "includes pseudo-labels and, for the server, the upload; both sides use the same CPU here, so this "
              "measures the overhead of the server path, not a GPU's speed-up.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
