"""How close is the simulated scribble annotator to the human ACDC scribbles?

For every ACDC volume in ``shared/data/acdc`` this compares the human scribbles (Valvano et al.) with
``simulate_scribbles(gt, 4, seed)`` on three axes:

* effort: marked fraction of voxels, and marked voxels per class (sim / human),
* placement: every simulated mark lies in its class (checked, must be 100 %),
* difficulty as a training signal: Dice of the random-walker pseudo-labels
  (``make_pseudo_labels(..., "random-walker")``) built from the human vs the simulated marks.

Run (heavy, ~minutes on 2 cores)::

    flock /tmp/sparseseg_heavy.lock nice -n 5 .venv/bin/python bench/scripts/scribble_density.py [--seeds 0 1 2] [--no-walker]

Writes ``bench/results/scribble_density/scribble_density.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from napari_sparseseg.annotations import SparseAnnotation, simulate_scribbles  # noqa: E402
from napari_sparseseg.evaluate import Timer, dice_per_class  # noqa: E402
from napari_sparseseg.io import read_labels, read_volume  # noqa: E402

CLASSES = (1, 2, 3)
NAMES = {1: "RV", 2: "MYO", 3: "LV"}


def _walker_dice(img, ann: SparseAnnotation, gt: np.ndarray) -> dict[int, float]:
    from napari_sparseseg.pseudo import make_pseudo_labels

    pl = make_pseudo_labels(img, ann, "random-walker")
    return dice_per_class(pl.labels, gt, CLASSES)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "acdc")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--no-walker", action="store_true", help="skip the pseudo-label comparison")
    ap.add_argument("--walker-every", type=int, default=4,
                    help="run the (slow) random-walker comparison on every N-th volume (default 4 -> 5 volumes)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "scribble_density")
    args = ap.parse_args()
    try:
        import torch

        torch.set_num_threads(2)
    except ImportError:  # pragma: no cover
        pass

    rows = []
    for i, scr in enumerate(sorted((args.data / "scribblesTr").glob("*.nii.gz"))):
        walk = not args.no_walker and i % args.walker_every == 0
        case = scr.name[: -len(".nii.gz")]
        img = read_volume(args.data / "imagesTr" / scr.name)
        gt = read_labels(args.data / "labelsTr" / scr.name, like=img).array.astype(np.int16)
        human = SparseAnnotation(read_labels(scr, like=img).array, 4, CLASSES)
        row = {
            "case": case,
            "shape": list(gt.shape),
            "human_marked_fraction": human.marked_fraction(),
            "human_counts": {str(k): v for k, v in human.counts().items()},
            "sim": [],
        }
        if walk:
            row["human_walker_dice"] = {str(k): v for k, v in _walker_dice(img, human, gt).items()}
        for seed in args.seeds:
            with Timer() as t:
                sim = simulate_scribbles(gt, 4, seed=seed)
            inside = all(np.all(gt[sim.labels == c] == c) for c in CLASSES) and np.all(gt[sim.background] == 0)
            rec = {
                "seed": seed,
                "marked_fraction": sim.marked_fraction(),
                "counts": {str(k): v for k, v in sim.counts().items()},
                "all_marks_inside_their_class": bool(inside),
                "simulate_seconds": t.seconds,
            }
            if walk and seed == args.seeds[0]:
                rec["walker_dice"] = {str(k): v for k, v in _walker_dice(img, sim, gt).items()}
            row["sim"].append(rec)
        rows.append(row)
        print(case, f"human {row['human_marked_fraction']:.4f}",
              "sim " + " ".join(f"{s['marked_fraction']:.4f}" for s in row["sim"]), flush=True)

    def tot(key_counts, v):
        return sum(int(c.get(str(v), 0)) for c in key_counts)

    human_counts = [r["human_counts"] for r in rows]
    sim_counts = [s["counts"] for r in rows for s in r["sim"]]
    nseed = len(args.seeds)
    summary = {
        "cases": len(rows),
        "seeds": args.seeds,
        "human_marked_fraction_mean": float(np.mean([r["human_marked_fraction"] for r in rows])),
        "sim_marked_fraction_mean": float(np.mean([s["marked_fraction"] for r in rows for s in r["sim"]])),
        "sim_over_human_voxels_per_label": {
            str(v): tot(sim_counts, v) / nseed / max(1, tot(human_counts, v)) for v in (1, 2, 3, 4)
        },
        "all_marks_inside_their_class": all(s["all_marks_inside_their_class"] for r in rows for s in r["sim"]),
        "simulate_seconds_mean": float(np.mean([s["simulate_seconds"] for r in rows for s in r["sim"]])),
    }
    if not args.no_walker:
        walked = [r for r in rows if "human_walker_dice" in r]
        summary["walker_cases"] = [r["case"] for r in walked]
        hw = np.array([[r["human_walker_dice"][str(c)] for c in CLASSES] for r in walked])
        sw = np.array([[r["sim"][0]["walker_dice"][str(c)] for c in CLASSES] for r in walked])
        summary["walker_dice_human"] = {NAMES[c]: float(hw[:, i].mean()) for i, c in enumerate(CLASSES)}
        summary["walker_dice_sim"] = {NAMES[c]: float(sw[:, i].mean()) for i, c in enumerate(CLASSES)}
        summary["walker_dice_human"]["mean"] = float(hw.mean())
        summary["walker_dice_sim"]["mean"] = float(sw.mean())
    machine = f"{platform.node()} {platform.machine()}, 2 shared CPU cores, no GPU (noisy, shared machine)"
    out = {"summary": summary, "rows": rows, "machine": machine, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scribble_density.json").write_text(json.dumps(out, indent=1) + "\n")

    s = summary
    md = [
        "# Simulated vs human scribbles on ACDC",
        "",
        f"{s['cases']} volumes, simulator seeds {s['seeds']}; {out['date']}; {machine}.",
        "Regenerate: `flock /tmp/sparseseg_heavy.lock nice -n 5 .venv/bin/python bench/scripts/scribble_density.py`.",
        "",
        "| | human | simulated |",
        "|---|---|---|",
        f"| marked fraction of voxels (mean over volumes) | {100 * s['human_marked_fraction_mean']:.3f} % "
        f"| {100 * s['sim_marked_fraction_mean']:.3f} % |",
    ]
    if not args.no_walker:
        md.append(f"| random-walker pseudo-labels on {len(s['walker_cases'])} volumes "
                  f"({', '.join(s['walker_cases'])}), seed {s['seeds'][0]} | | |")
        for k in ("RV", "MYO", "LV", "mean"):
            md.append(f"| random-walker pseudo-label Dice, {k} | {s['walker_dice_human'][k]:.3f} "
                      f"| {s['walker_dice_sim'][k]:.3f} |")
    md += [
        "",
        "Marked voxels, simulated / human, per label (1 RV, 2 MYO, 3 LV, 4 background): "
        + ", ".join(f"{k}: {v:.2f}" for k, v in s["sim_over_human_voxels_per_label"].items()) + ".",
        f"Every simulated mark inside its class: {s['all_marks_inside_their_class']}. "
        f"Simulation time per volume: {s['simulate_seconds_mean']:.2f} s.",
        "",
    ]
    (args.out / "scribble_density.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
