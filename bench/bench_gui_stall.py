"""GUI responsiveness while training: thread worker vs subprocess worker (decides the widget's default).

A Qt event loop (QCoreApplication: no display needed) runs a 10 ms QTimer probe and records the gap
between ticks; a second 50 ms timer polls the worker and copies every streamed prediction into a
buffer, as the widget does when it refreshes its Labels layer.  The longest gap is the longest the
GUI would have been frozen.  Modes, side by side in one run: ``idle`` (no training), ``thread``
(:class:`ThreadWorker`) and ``process`` (:class:`ProcessWorker`, torch.multiprocessing spawn).

    python bench/bench_gui_stall.py --seconds 25 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def acdc_case(data: Path, case: str = "patient001_frame01"):
    from napari_sparseseg.annotations.files import load_annotation
    from napari_sparseseg.io import read_volume
    from napari_sparseseg.pseudo import make_pseudo_labels

    vol = read_volume(data / "acdc" / "imagesTr" / f"{case}.nii.gz")
    ann = load_annotation(data / "acdc" / "scribblesTr" / f"{case}.nii.gz", like=vol, background_label=4,
                          classes=(1, 2, 3))
    return vol, ann, make_pseudo_labels(vol, ann, method="random-walker")


def measure(mode: str, seconds: float, vol, ann, pseudo) -> dict:
    from qtpy.QtCore import QCoreApplication, QTimer

    from napari_sparseseg.training import TrainConfig
    from napari_sparseseg.training.worker import ProcessWorker, ThreadWorker

    app = QCoreApplication.instance() or QCoreApplication(sys.argv[:1])
    gaps: list[float] = []
    last = [time.perf_counter()]
    stats = {"events": 0, "predictions": 0, "steps": 0, "first_prediction_s": None, "final": None}
    buffer = np.zeros(vol.shape, np.int16)
    cfg = TrainConfig(budget_seconds=seconds, preview_every_seconds=5.0, first_preview_seconds=3.0)
    worker = None
    if mode == "thread":
        worker = ThreadWorker(vol, ann, cfg, pseudo=pseudo)
    elif mode == "process":
        worker = ProcessWorker(vol, ann, cfg, pseudo=pseudo)
    t0 = time.perf_counter()

    def tick() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    def poll() -> None:
        if worker is None:
            if time.perf_counter() - t0 > seconds:
                app.quit()
            return
        for ev in worker.poll(0.0):
            stats["events"] += 1
            if ev.prediction is not None:
                np.copyto(buffer, ev.prediction)  # what the widget does with layer.data
                stats["predictions"] += 1
                if stats["first_prediction_s"] is None:
                    stats["first_prediction_s"] = round(time.perf_counter() - t0, 2)
            if ev.kind == "step":
                stats["steps"] = ev.step
            if ev.kind in ("done", "cancelled", "error"):
                stats["final"] = ev.kind if ev.kind != "error" else f"error: {ev.message}"
                stats["steps"] = ev.step
        if not worker.running:
            app.quit()

    probe = QTimer()
    probe.setInterval(10)
    probe.timeout.connect(tick)
    poller = QTimer()
    poller.setInterval(50)
    poller.timeout.connect(poll)
    probe.start()
    poller.start()
    if worker is not None:
        worker.start()
    app.exec_() if hasattr(app, "exec_") else app.exec()
    probe.stop()
    poller.stop()
    if isinstance(worker, ProcessWorker):
        worker.join(10)
    g = np.asarray(gaps[1:]) * 1000.0
    return {
        "mode": mode,
        "wall_s": round(time.perf_counter() - t0, 1),
        "ticks": int(g.size),
        "max_gap_ms": round(float(g.max()), 1) if g.size else None,
        "p99_gap_ms": round(float(np.percentile(g, 99)), 1) if g.size else None,
        "gaps_over_100ms": int((g > 100).sum()),
        **stats,
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("SPARSESEG_DATA", ROOT.parent / "shared" / "data")))
    ap.add_argument("--seconds", type=float, default=25.0)
    ap.add_argument("--modes", default="idle,thread,process")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    import torch  # imported up front, as in napari with the plugin loaded

    torch.set_num_threads(2)
    vol, ann, pseudo = acdc_case(args.data)
    results = [measure(m, args.seconds, vol, ann, pseudo) for m in args.modes.split(",")]
    for r in results:
        print(json.dumps(r), flush=True)
    out = {"benchmark": "gui_stall", "case": "acdc/patient001_frame01", "seconds": args.seconds, "results": results}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
