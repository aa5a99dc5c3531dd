"""GUI responsiveness while training in the loop's background thread, and while a correction is refined.

A Qt event loop (QCoreApplication: no display needed) runs a 10 ms QTimer probe and records the gap
between ticks; a second 50 ms timer polls the worker and copies every streamed prediction into a
buffer, as the widget does when it refreshes its Labels layer.  The longest gap is the longest the
GUI would have been frozen.  Modes, side by side in one run: ``idle`` (no training) and ``thread``
(the correction loop's :class:`BackgroundRun`, what the widget runs).  A ``process`` mode (the trainer
in a spawned subprocess) was measured earlier against ``thread`` and lost (``bench/results/segment/segment_results.md``,
GUI-stall section); torch releases the GIL, so the loop keeps one background thread.

Refine modes (a pushed correction re-solves the pseudo-labels around it, ``refine_around_marks``): three
simulated corrections (the active-learning benchmark's ``correct_slice`` against the expert labels, on
the three slices where the pseudo-labels are most wrong), pushed one after the other, each once the
previous result is adopted: ``refine-gui`` walks on the GUI thread (the widget before the fix),
``refine-thread`` through the widget's :class:`RefineQueue` in its worker thread, ``refine-process``
through the same queue in a spawned process (the widget's choice).  ``latency_s``: push -> result
adopted on the GUI thread.

    python bench/scripts/bench_gui_stall.py --seconds 25 --json out.json
    python bench/scripts/bench_gui_stall.py --modes idle,refine-gui,refine-thread,refine-process \
        --json bench/results/gui_stall/gui_stall_results.json --md bench/results/gui_stall/gui_stall_results.md
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
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

    from napari_sparseseg.loop import BackgroundRun, CorrectionLoop
    from napari_sparseseg.training import TrainConfig

    app = QCoreApplication.instance() or QCoreApplication(sys.argv[:1])
    gaps: list[float] = []
    last = [time.perf_counter()]
    stats = {"events": 0, "predictions": 0, "steps": 0, "first_prediction_s": None, "final": None}
    buffer = np.zeros(vol.shape, np.int16)
    cfg = TrainConfig(budget_seconds=seconds, preview_every_seconds=5.0, first_preview_seconds=3.0)
    worker = None
    if mode == "thread":
        loop = CorrectionLoop(vol, config=cfg)
        loop.set_marks(ann)
        loop.set_pseudo(pseudo, ann)  # computed above: the run goes straight to training
        worker = BackgroundRun(loop.start())
    elif mode != "idle":
        raise SystemExit(f"unknown mode {mode!r}")
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
        for kind, ev in worker.poll(0.0):
            if kind != "item" or not hasattr(ev, "kind"):
                continue
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
    if worker is not None:
        worker.wait(10)
    return {**gap_stats(mode, gaps, t0), **stats}


def gap_stats(mode: str, gaps: list[float], t0: float) -> dict:
    """The probe's tick gaps (s) as the columns every mode reports: the longest gap is the longest freeze."""
    g = np.asarray(gaps[1:]) * 1000.0
    return {
        "mode": mode,
        "wall_s": round(time.perf_counter() - t0, 1),
        "ticks": int(g.size),
        "max_gap_ms": round(float(g.max()), 1) if g.size else None,
        "p99_gap_ms": round(float(np.percentile(g, 99)), 1) if g.size else None,
        "gaps_over_100ms": int((g > 100).sum()),
    }


def corrections(data: Path, vol, ann, pseudo, case: str = "patient001_frame01", n: int = 3) -> list:
    """Annotations after 1..n simulated corrections, each on one of the ``n`` slices the pseudo-labels get most wrong."""
    from napari_sparseseg.annotations import combine
    from napari_sparseseg.benchmarking.active_sim import correct_slice
    from napari_sparseseg.io import read_labels

    gt = np.asarray(read_labels(data / "acdc" / "labelsTr" / f"{case}.nii.gz", like=vol).array).astype(np.int16)
    wrong = (np.asarray(pseudo.labels) != gt).sum(axis=(1, 2))
    out, cur = [], ann
    for z in np.argsort(-wrong)[:n]:
        corr = correct_slice(pseudo.labels, gt, int(z), cur, seed=int(z))
        if corr is not None:
            cur = combine(cur, corr)
            out.append((int(z), cur))
    return out


def measure_refine(mode: str, vol, ann, pseudo, anns: list) -> dict:
    """Event-loop gaps while the corrections in ``anns`` are refined one after the other (see the module doc)."""
    from qtpy.QtCore import QCoreApplication, QTimer

    from napari_sparseseg.pseudo.refine import refine_around_marks
    from napari_sparseseg.widget.refine_queue import RefineQueue

    app = QCoreApplication.instance() or QCoreApplication(sys.argv[:1])
    image, spacing = np.asarray(vol.array), tuple(vol.spacing)
    state = {"pseudo": pseudo, "ann": ann, "i": 0, "t": 0.0}
    latencies: list[float] = []
    gaps: list[float] = []
    last = [time.perf_counter()]

    def adopt(refined, a, newer) -> None:
        state["pseudo"], state["ann"] = refined, a
        latencies.append(time.perf_counter() - state["t"])
        QTimer.singleShot(300, push)  # the user looks at the result, then corrects the next slice

    queue = RefineQueue(None, snapshot=lambda: (image, spacing, state["pseudo"], state["ann"]), adopt=adopt,
                        can_run=lambda: True, in_process=(mode == "refine-process"))

    def push() -> None:
        if state["i"] >= len(anns):
            app.quit()
            return
        new = anns[state["i"]][1]
        state["i"] += 1
        state["t"] = time.perf_counter()
        if mode == "refine-gui":
            adopt(refine_around_marks(image, state["pseudo"], state["ann"], new, spacing=spacing), new, None)
        else:
            queue.request(new)

    def tick() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    probe = QTimer()
    probe.setInterval(10)
    probe.timeout.connect(tick)
    probe.start()
    QTimer.singleShot(300, push)
    t0 = time.perf_counter()
    app.exec_() if hasattr(app, "exec_") else app.exec()
    probe.stop()
    queue.shutdown()
    changed = int((np.asarray(state["pseudo"].labels) != np.asarray(pseudo.labels)).sum())
    return {
        **gap_stats(mode, gaps, t0),
        "corrections": [z for z, _ in anns],
        "latency_s": [round(x, 2) for x in latencies],
        "pseudo_voxels_changed": changed,
    }


def markdown(out: dict) -> str:
    import platform

    rows = ["# GUI event-loop stall (bench/scripts/bench_gui_stall.py)", "",
            f"Machine: {os.cpu_count()} CPU cores (shared with other jobs), no GPU, {platform.platform()}, "
            f"Python {platform.python_version()}; load average at start {out.get('load_average')}. "
            f"Date: {out.get('date')}. Case {out['case']} (10x256x216). QTimer probe every 10 ms "
            "(QCoreApplication): the longest gap is the longest the GUI would have been frozen.", "",
            "| mode | wall s | ticks | longest gap ms | p99 ms | gaps > 100 ms | corrected slices | push -> adopted s | pseudo voxels changed |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in out["results"]:
        rows.append(f"| {r['mode']} | {r['wall_s']} | {r['ticks']} | {r['max_gap_ms']} | {r['p99_gap_ms']} | "
                    f"{r['gaps_over_100ms']} | {r.get('corrections', '-')} | {r.get('latency_s', '-')} | "
                    f"{r.get('pseudo_voxels_changed', '-')} |")
    rows += ["", f"Regenerate: `flock /tmp/sparseseg_heavy.lock nice -n 5 .venv/bin/python bench/scripts/bench_gui_stall.py "
             f"--modes {','.join(r['mode'] for r in out['results'])} --json bench/results/gui_stall/gui_stall_results.json "
             "--md bench/results/gui_stall/gui_stall_results.md`", ""]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("SPARSESEG_DATA", ROOT.parent / "shared" / "data")))
    ap.add_argument("--seconds", type=float, default=25.0)
    ap.add_argument("--modes", default="idle,thread")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--md", type=Path, default=None)
    args = ap.parse_args(argv)
    import torch  # imported up front, as in napari with the plugin loaded

    torch.set_num_threads(2)
    vol, ann, pseudo = acdc_case(args.data)
    modes = args.modes.split(",")
    anns = corrections(args.data, vol, ann, pseudo) if any(m.startswith("refine") for m in modes) else []
    load = [round(x, 2) for x in os.getloadavg()]
    results = []
    for m in modes:
        r = measure_refine(m, vol, ann, pseudo, anns) if m.startswith("refine") else measure(m, args.seconds, vol, ann, pseudo)
        print(json.dumps(r), flush=True)
        results.append(r)
    out = {"benchmark": "gui_stall", "case": "acdc/patient001_frame01", "seconds": args.seconds,
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_average": load, "results": results}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    if args.md:
        args.md.write_text(markdown(out))
    return out


if __name__ == "__main__":
    main()
