"""Run the real CLI (``sparseseg simulate`` + ``sparseseg pseudo`` or ``segment``) on every shared case.

It checks that the CLI produces pseudo-labels and a confidence map for every shared case, and that
``sparseseg segment`` runs on every shared case (``--command segment``, outputs the label map and
the uncertainty map).  This
script calls ``napari_sparseseg.cli.main`` in-process (the same code path as the console script,
minus 229 interpreter start-ups), checks both outputs land on the image grid, and scores the
pseudo-labels against the expert labels.  ACDC uses its human scribbles (background 4); hippocampus
and brain tumour get 3 simulated labelled slices.  ``--method`` per data set: ``auto`` (walker+SAM
fusion) where SAM is affordable, ``random-walker`` for the 201 hippocampus crops by default.

    flock /tmp/sparseseg_heavy.lock nice -n 5 .venv/bin/python bench/scripts/cli_all_cases.py
    nice -n 15 .venv/bin/python bench/scripts/cli_all_cases.py --command segment --out bench/results/cli_all_cases/cli_all_cases_segment
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from napari_sparseseg.cli import main as cli  # noqa: E402
from napari_sparseseg.evaluate import dice_per_class  # noqa: E402

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("SPARSESEG_DATA", HERE.parents[2] / "shared" / "data"))


def run_case(dataset: str, img: Path, method: str, tmp: Path, command: str = "pseudo",
             budget: float = 30.0) -> dict:
    lab = img.parent.parent / "labelsTr" / img.name
    ann = tmp / f"{dataset}_{img.name}"
    row: dict = {"dataset": dataset, "case": img.name.replace(".nii.gz", ""), "method": method, "command": command}
    t0 = time.perf_counter()
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        if dataset == "acdc":
            ann = img.parent.parent / "scribblesTr" / img.name
            bg = ["--background-label", "4"]
        else:
            rc = cli(["simulate", str(lab), "--mode", "slices:3", "--background-label", "9", "--seed", "0",
                      "-o", str(ann), "--overwrite"])
            if rc != 0:
                return {**row, "ok": False, "error": err.getvalue().strip()}
            bg = []
        out, conf = tmp / "pseudo.nii.gz", tmp / "conf.nii.gz"
        if command == "segment":
            row["budget_seconds"] = budget
            rc = cli(["segment", str(img), "--annotations", str(ann), *bg, "-o", str(out), "--uncertainty", str(conf),
                      "--pseudo-method", method, "--budget-seconds", str(budget), "--overwrite", "--quiet"])
        else:
            rc = cli(["pseudo", str(img), "--annotations", str(ann), *bg, "-o", str(out), "--confidence", str(conf),
                      "--method", method, "--overwrite", "--cache", str(tmp / "cache")])
    row["seconds"] = round(time.perf_counter() - t0, 2)
    if rc != 0:
        return {**row, "ok": False, "error": err.getvalue().strip()}
    src, p, c = nib.load(img), nib.load(out), nib.load(conf)
    same_grid = p.shape == src.shape == c.shape and np.array_equal(p.affine, src.affine) and np.array_equal(
        c.affine, src.affine)
    gt = np.asarray(nib.load(lab).dataobj).astype(np.int16)
    pred = np.asarray(p.dataobj).astype(np.int16)
    cd = np.asarray(c.dataobj)
    classes = [int(v) for v in np.unique(gt) if v > 0]
    d = dice_per_class(pred, gt, classes)
    row.update(ok=bool(same_grid), same_grid=bool(same_grid), dice=round(float(np.mean(list(d.values()))), 4),
               conf_min=float(cd.min()), conf_max=float(cd.max()), kept_05=round(float(((cd < 0.5) if command == "segment" else (cd >= 0.5)).mean()), 4))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--hippocampus-method", default="random-walker")
    ap.add_argument("--method", default="auto", help="method for ACDC and brain tumour")
    ap.add_argument("--out", type=Path, default=HERE.parent / "results" / "cli_all_cases" / "cli_all_cases")
    ap.add_argument("--command", choices=("pseudo", "segment"), default="pseudo")
    ap.add_argument("--datasets", nargs="+", default=["acdc", "brain_tumor", "hippocampus"], help="in this order")
    ap.add_argument("--budget", type=float, default=30.0, help="segment: --budget-seconds for ACDC and brain tumour")
    ap.add_argument("--hippocampus-budget", type=float, default=5.0, help="segment: --budget-seconds for hippocampus")
    ap.add_argument("--from-log", type=Path, default=None,
                    help="only write the report from the JSON lines an earlier (possibly interrupted) run printed")
    ap.add_argument("--wall-minutes", type=float, default=None, help="with --from-log: the run's wall time")
    args = ap.parse_args()
    rows = []
    t_all = time.perf_counter()
    if args.from_log:
        rows = [json.loads(line) for line in args.from_log.read_text().splitlines() if line.startswith("{")]
    else:
        with tempfile.TemporaryDirectory() as td:
            for dataset in args.datasets:
                method = args.hippocampus_method if dataset == "hippocampus" else args.method
                for img in sorted((DATA / dataset / "imagesTr").glob("*.nii.gz")):
                    b = args.hippocampus_budget if dataset == "hippocampus" else args.budget
                    r = run_case(dataset, img, method, Path(td), args.command, b)
                    rows.append(r)
                    print(json.dumps(r), flush=True)
    wall = (args.wall_minutes * 60) if args.from_log and args.wall_minutes else time.perf_counter() - t_all
    load = os.getloadavg()
    lines = [
        f"# `sparseseg {args.command}` on every shared case (bench/scripts/cli_all_cases.py --command {args.command})", "",
        f"Machine: vm 2 CPU cores, no GPU, shared; load average at the end {load[0]:.1f}. "
        f"Wall time {wall / 60:.1f} min. ACDC: human scribbles (background 4); brain tumour and hippocampus: "
        "3 simulated labelled slices (`sparseseg simulate --mode slices:3`). Every output is checked to lie on the "
        "image grid (same shape, identical affine)." + (
            f" segment: --budget-seconds {args.budget:g} (ACDC, brain tumour), {args.hippocampus_budget:g} (hippocampus); "
            "the time budget buys fewer steps on a loaded machine, so these Dice are a check that it runs, not the "
            "benchmark (bench/results/segment/segment_results*.md)." if args.command == "segment" else ""), "",
        "| data set | method | cases | CLI ok | same grid | mean Dice | min Dice | s / case | "
        + ("certain (uncertainty < 0.5) |" if args.command == "segment" else "confident >= 0.5 |"),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for ds in ("acdc", "brain_tumor", "hippocampus"):
        rs = [r for r in rows if r["dataset"] == ds]
        ok = [r for r in rs if r.get("ok")]
        total = len(list((DATA / ds / "imagesTr").glob("*.nii.gz")))
        if not rs:
            lines.append(f"| {ds} | - | 0 of {total} (not reached) | | | | | | |")
            continue
        dice = [r["dice"] for r in ok]
        lines.append(
            f"| {ds} | {rs[0]['method']} | {len(rs)} of {total} | {sum(1 for r in rs if 'error' not in r)} | "
            f"{sum(1 for r in rs if r.get('same_grid'))} | {np.mean(dice):.3f} | {np.min(dice):.3f} | "
            f"{np.mean([r['seconds'] for r in ok]):.1f} | {np.mean([r['kept_05'] for r in ok]):.1%} |")
    fails = [r for r in rows if not r.get("ok")]
    lines += ["", f"Failures: {len(fails)}" + "".join(f"\n- {r['case']}: {r.get('error', 'grid mismatch')}" for r in fails)]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps({"wall_seconds": wall, "rows": rows}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
