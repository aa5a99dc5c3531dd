"""Markdown report of bench_study.py from OUT/rows/*.json (patient-level means, 95 % bootstrap CIs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from napari_sparseseg.benchmarking.study import summarise

ANCHORS = "Published anchors on the same ACDC scribbles (2D networks, ~70 patients, GPUs): ScribFormer 0.888, TABNet 0.893."


def _load(out: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((out / "rows").glob("*.json"))]


def _cell(rows: list[dict], mode: str, key: str = "dice") -> str:
    sel = [r for r in rows if r["mode"] == mode]
    return summarise(sel, key).fmt() if sel else "—"


def write_report(out: Path, meta: dict[str, Any], md: Path) -> None:
    res = _load(out)
    by_group: dict[str, list[dict]] = {}
    for r in res:
        by_group.setdefault(r.get("group", ""), []).append(r)
    chosen = json.loads((out / "chosen.json").read_text()) if (out / "chosen.json").exists() else {}
    L = ["# Learning across scans from sparse marks (bench/scripts/bench_study.py)", "",
         f"Machine: {meta['machine']}; device `{meta['device']}`, {meta['workers']} worker processes; "
         f"{meta.get('budget_note') or str(meta['steps']) + ' steps per study model'}; wall time {meta['wall_s'] / 60:.1f} min.", "",
         f"Regenerate: `{meta['command']}`", "",
         "Dice: patient-level mean (a patient's frames averaged first) with a 95 % bootstrap interval. "
         "*unmarked*: Dice on the voxels the scan's own marks do not cover. Dense labels are never an input, "
         "except for the ceiling row.", ""]
    tun = sorted(by_group.get("tuning", []), key=lambda r: r["id"])
    if tun:
        L += ["## Settings chosen on the validation split (acdc_cohort, never scored on)", "",
              "| variant | config | no marks | with scribbles (prior) | steps | train s |", "|---|---|---|---|---|---|"]
        for r in tun:
            star = " (chosen)" if r.get("variant") == chosen.get("variant") else ""
            L.append(f"| {r['variant']}{star} | `{json.dumps(r['config'])}` | {_cell(r['rows'], 'no-marks')} | "
                     f"{_cell(r['rows'], 'marks')} | {r['steps']} | {r['train_seconds']:.0f} |")
        L.append("")
    for group, title in (("acdc-curve", "ACDC: learning curve, scored on the 10 unseen acdc patients"),
                         ("hippo-slices-3", "Hippocampus: 3 labelled slices per training case, unseen test cases"),
                         ("hippo-points-5", "Hippocampus: 5 clicks per class per training case, unseen test cases")):
        rows = sorted(by_group.get(group, []), key=lambda r: r.get("n_patients", 0))
        if not rows:
            continue
        L += [f"## {title}", "", "| training cases | no marks | with own marks | ... unmarked voxels | + fine-tune | ... unmarked | steps | train s |",
              "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            L.append(f"| {r['n_patients']} | {_cell(r['rows'], 'no-marks')} | {_cell(r['rows'], 'marks')} | "
                     f"{_cell(r['rows'], 'marks', 'dice_unmarked')} | {_cell(r['rows'], 'marks+fine-tune')} | "
                     f"{_cell(r['rows'], 'marks+fine-tune', 'dice_unmarked')} | {r['steps']} | {r['train_seconds']:.0f} |")
        L.append("")
    base = by_group.get("baselines", [])
    ceil = by_group.get("ceiling", [])
    if base or ceil:
        L += ["## Baselines and ceiling, same test scans", "", "| data | method | Dice | unmarked voxels |", "|---|---|---|---|"]
        for b in base:
            for mode, label in (("walker", "random walker (own marks)"), ("per-scan", "per-scan trainer (today's `segment` core, walker prior)")):
                L.append(f"| {b.get('dataset', '')} | {label} | {_cell(b['rows'], mode)} | {_cell(b['rows'], mode, 'dice_unmarked')} |")
        for c in ceil:
            L.append(f"| acdc | ceiling: same network on dense labels of {c['n_patients']} patients, no marks | "
                     f"{_cell(c['rows'], 'no-marks')} | — |")
        L.append("")
    L += [ANCHORS, ""]
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text("\n".join(L))
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
