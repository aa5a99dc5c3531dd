"""Presets (quick / full) and :func:`run_bench`, the one entry point behind ``sparseseg bench``.

Outputs in ``out_dir``:

* ``rows.jsonl``   -- one JSON row per (data set, case, setting, method) as it finishes (resumable);
* ``active.jsonl`` -- one record per active-learning case (every strategy's Dice curve);
* ``results.json`` -- both, plus the spec, the machine and the wall time;
* ``RESULTS.md``, ``dice_vs_effort.png``, ``dice_vs_rounds.png`` -- generated from the above.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..io import atomic_write_text
from .cases import has_case, list_cases
from .contenders import Budget
from .runner import ACTIVE_FILE, SuiteSpec, machine_info, read_rows, run_suite

SIM_SETTINGS = ["scribbles", "points:5", "slices:1", "slices:3", "slices:5"]


@dataclass
class ActiveSpec:
    """Active-learning simulation: ``cases`` per (data set, starting setting)."""

    starts: dict[str, str] = field(default_factory=dict)  # dataset -> starting setting
    cases: int = 1
    rounds: int = 6
    strategies: list[str] = field(default_factory=lambda: ["entropy", "random", "sequential"])
    regions: int = 1  # error regions corrected on each suggested slice (1 = one scribble per round)
    refine: bool = True  # re-solve pseudo-labels around each correction (the product's behaviour)
    #: runs of the random strategy per case, averaged (1 = one seeded order, the same for every case)
    random_draws: int = 1
    #: per data set, cases passed over before the active-learning ones (cases used to tune the strategy)
    skip: dict[str, int] = field(default_factory=dict)


def quick_specs(root: Path | None = None) -> tuple[SuiteSpec, ActiveSpec]:
    """The CI smoke run: ours and every baseline once, on the smallest ACDC volume (6 slices, human
    scribbles) and one hippocampus case (1 labelled slice), plus 2 active-learning rounds of every
    strategy on that hippocampus case.  Where ``root`` has no ACDC (the bundled sample data), the
    brain-tumour sample with 3 labelled slices takes the ACDC volume's place.

    What was cut (goal: < 3 min on 2 cores): the walker stands in for the fusion pseudo-labels
    (fusion costs about a minute per hippocampus case on 2 cores); SAM runs on the ACDC volume only
    (its mark-prompted propagation costs about a minute on hippocampus); 12 training steps; the
    seed-paper methods are left out (measured at 12 steps on the ACDC volume, load ~4.6: clg-vq 41 s,
    dk-uxnet 37 s, rada 53 s, sa-net 94 s, vs 36 s for ours; they have their own tests, and
    ``--methods`` adds them back).  The pseudo-labels of the hippocampus case are shared by its suite
    rows and its active-learning start.
    """
    from .._sample_data import BRAIN_TUMOR

    budget = Budget(steps=12, warm_steps=4, seconds=120)
    if root is None or has_case(root, "acdc", "patient041_frame01"):
        second, setting, case = "acdc", "human-scribbles", "patient041_frame01"
    else:
        (second, case), setting = BRAIN_TUMOR, "slices:3"
    suite = SuiteSpec(
        settings={second: [setting], "hippocampus": ["slices:1"]},
        methods=["sparseseg", "random-walker", "sam", "supervised"], budget=budget, distances=True,
        shared_pseudo="random-walker", skip_methods={"hippocampus": ["sam"]},
    )
    suite.cases = {second: [case], "hippocampus": ["hippocampus_001"]}
    active = ActiveSpec(starts={"hippocampus": "slices:1"}, cases=1, rounds=2,
                        strategies=["entropy", "random", "sequential"])
    return suite, active


def full_specs(max_cases: int | None = None, root: Path | None = None) -> tuple[SuiteSpec, ActiveSpec]:
    """Every setting and method of the full benchmark, sized for one run of about 8 minutes on a 16-core GPU
    machine (``--workers 14``), the only place the seed-paper methods' 200 steps on 50 (case,
    setting) pairs fit a session; on the 2-core laptop the report extrapolates its time.

    ACDC: 8 volumes with their human scribbles.  Hippocampus: 4 cases; brain tumour: 4 patients (one
    visit each); both with simulated scribbles, 5 points and 1, 3, 5 labelled slices.  Methods: ours,
    every seed-paper method, the walker, SAM alone and the supervised upper bound, 200 steps each.
    Active learning: 3 hippocampus cases from 1 labelled slice (the 5th to 7th: the first 4 were used
    to tune the correction refinement and the entropy spread) and 3 ACDC volumes from their human
    scribbles, 8 rounds of 40 warm steps, entropy (the default) / random / sequential.
    ``max_cases`` trims every data set (smoke runs).
    """
    budget = Budget(steps=200, warm_steps=40, seconds=600, device="auto")
    suite = SuiteSpec(
        settings={"acdc": ["human-scribbles"], "hippocampus": SIM_SETTINGS, "brain_tumor": SIM_SETTINGS},
        methods=[*ablation_methods(), "supervised"], max_cases=max_cases, budget=budget,
        case_limits={} if max_cases is not None else {"acdc": 8, "hippocampus": 4, "brain_tumor": 4},
    )
    if max_cases is None:
        suite.cases = {"brain_tumor": one_case_per_patient(root)}
    # hippocampus_001/003/004/006 chose the refine radii and the entropy spread: evaluate on the next three
    active = ActiveSpec(starts={"hippocampus": "slices:1", "acdc": "human-scribbles"},
                        cases=3 if max_cases is None else min(3, max_cases), rounds=8,
                        skip={"hippocampus": 4} if max_cases is None else {})
    return suite, active


def one_case_per_patient(root: Path | None, dataset: str = "brain_tumor", n: int = 4) -> list[str] | None:
    """The first visit present of each of the first ``n`` patients (case names are PATIENT_DATE), so
    a cut-down copy of the data (e.g. one visit per patient) gives the same kind of table.  ``None``
    without a data root (then the first ``n`` cases are used)."""
    if root is None:
        return None
    first: dict[str, str] = {}
    for name in list_cases(root, dataset):
        first.setdefault(name.split("_", 1)[0], name)
    return [first[p] for p in sorted(first)[:n]]


def ablation_methods() -> list[str]:
    """Ours, every registered seed-paper method, and the two no-training baselines."""
    from .contenders import CONTENDERS, sync_segment_methods

    sync_segment_methods()
    seeds = sorted(n for n, m in CONTENDERS.items() if m.kind == "seed-paper")
    return ["sparseseg", *seeds, "random-walker", "sam"]


def ablation_specs(root: Path | None = None) -> tuple[SuiteSpec, ActiveSpec]:
    """The seed-paper ablation table (``--preset ablation``), sized for one ~8-minute run on a 16-core
    GPU machine with ``--workers``: ACDC 20 volumes with human scribbles, hippocampus 10 cases and
    brain tumour 4 patients (one visit each) with 3 labelled slices; 300 steps; no active learning."""
    suite = SuiteSpec(
        settings={"acdc": ["human-scribbles"], "hippocampus": ["slices:3"], "brain_tumor": ["slices:3"]},
        methods=ablation_methods(), budget=Budget(steps=300, warm_steps=40, seconds=600, device="auto"),
        case_limits={"hippocampus": 10, "brain_tumor": 4},
    )
    suite.cases = {"brain_tumor": one_case_per_patient(root)}
    return suite, ActiveSpec(starts={})


PRESETS = {"quick": quick_specs, "full": full_specs, "ablation": ablation_specs}


def estimate_full_run(rows: list[dict[str, Any]], active: list[dict[str, Any]], steps: int,
                      warm_steps: int) -> str:
    """A rough time for the full run, extrapolated from this run's own per-row seconds.

    Trained methods' seconds are scaled by the step ratio (an over-estimate: their fixed costs, such
    as pseudo-labels and prediction, do not grow with steps).  Data sets this run did not touch are
    named as unmeasured.
    """
    import numpy as np

    from .cases import find_data_root
    from .contenders import CONTENDERS

    try:
        root = find_data_root()
    except FileNotFoundError:
        return "Full-run estimate: shared data not found."
    suite, act = full_specs(None, root)
    total, unmeasured, n_rows = 0.0, [], 0
    trained = {"sparseseg", "supervised"}  # rows without train_seconds: scale all their time
    for ds, settings in suite.settings.items():
        n_cases = len(list_cases(root, ds)[: suite.case_limits.get(ds, suite.max_cases) or None])
        for m in suite.methods:
            n = n_cases * (1 if not CONTENDERS[m].uses_marks else len(settings))
            n_rows += n
            rs = [r for r in rows if r["dataset"] == ds and r["method"] == m and not r.get("error")]
            if not rs:
                unmeasured.append(f"{ds}/{m}")
                continue
            ratio = suite.budget.steps / max(steps, 1)
            # only the training part grows with the step budget
            secs = [r["seconds"] + (ratio - 1) * float((r.get("info") or {}).get("train_seconds", r["seconds"] if m in trained else 0.0))
                    for r in rs]
            total += n * float(np.mean(secs))
    if active:
        per_round = np.mean([v["seconds"] / max(len(v["dice"]) - 1, 1) for r in active for v in r["strategies"].values()])
        n_rounds = act.cases * len(act.starts) * len(act.strategies) * act.rounds
        total += n_rounds * float(per_round) * act_scale(warm_steps, suite.budget.warm_steps)
    txt = (f"The full run (`sparseseg bench --workers 14 --out bench/results/full --md bench/results/full/RESULTS.md`: {n_rows} rows over "
           f"{', '.join(f'{d} ({len(s)} setting(s))' for d, s in suite.settings.items())}, "
           f"{suite.budget.steps} steps; active learning on {act.cases} case(s) of {', '.join(act.starts)}, "
           f"{act.rounds} rounds x {suite.budget.warm_steps} warm steps) would take roughly "
           f"{total / 3600:.1f} h on this machine at this run's load, extrapolated from this run's per-row times")
    if unmeasured:
        txt += f", plus the unmeasured {', '.join(sorted(set(unmeasured)))}"
    return txt + "."


def is_full_run(meta: dict[str, Any]) -> bool:
    """Did this run use the full preset's settings, methods, case counts and budget (not a trimmed run)?"""
    spec = meta.get("spec") or {}
    try:
        full, _ = full_specs()
    except Exception:  # pragma: no cover - registry import failure: say nothing rather than guess
        return False
    keys = ("settings", "methods", "case_limits", "max_cases")
    return (all(spec.get(k) == full.to_dict()[k] for k in keys)
            and (spec.get("budget") or {}).get("steps") == full.budget.steps
            and (spec.get("budget") or {}).get("warm_steps") == full.budget.warm_steps)


def act_scale(run_warm: int, full_warm: int) -> float:
    return full_warm / max(run_warm, 1)


def write_report(out_dir: Path, command: str | None = None, md_path: Path | None = None,
                 label: str | None = None) -> Path:
    """(Re)generate the markdown report (default ``out_dir/RESULTS.md``) and the plots from the JSON
    in ``out_dir``; image links are relative to the markdown file."""
    import os

    from .report import active_table, plot_active, plot_effort, summary_table, upper_bound_notes, where_we_lose

    out_dir = Path(out_dir)
    md = Path(md_path) if md_path is not None else out_dir / "RESULTS.md"
    rel = Path(os.path.relpath(out_dir.resolve(), md.parent.resolve()))
    meta_path = out_dir / "results.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    rows = read_rows(out_dir / "rows.jsonl")
    active = read_rows(out_dir / ACTIVE_FILE)
    lines = ["# Benchmark results (generated by `sparseseg bench`; do not edit by hand)\n"]
    cmd = command or meta.get("command")
    if cmd:
        lines.append(f"Regenerate: `{cmd}`\n")
    lines.append("Presets: `--quick` (CI smoke run: 1 ACDC + 1 hippocampus volume, or the two bundled samples, "
                 "ours + every baseline, walker pseudo-labels, 12 steps, 2 active-learning rounds); "
                 "`--preset ablation` (the seed-paper ablation: "
                 "ACDC 20 volumes with human scribbles, hippocampus 10 cases and brain tumour 4 patients at "
                 "slices:3, ours + every seed-paper method + walker + SAM, shared `auto` pseudo-labels, 300 steps, "
                 "device auto; on a GPU machine add `--workers 8 --time-limit SECONDS`); default (`full`): every "
                 "setting and method on ACDC 8 volumes, hippocampus 4 cases and brain tumour 4 "
                 "patients, 200 steps, active learning on 3 hippocampus + 3 ACDC cases x 8 rounds, sized for "
                 "a 16-core GPU machine with `--workers 14` (`--cases N` trims).\n")
    if label or meta.get("label"):
        lines.append(f"**{label or meta['label']}**\n")
    if meta and not meta.get("finished", True):
        lines.append(f"**This run was stopped before it finished** (started {meta.get('started_utc')}); "
                     "the tables hold the rows that completed.\n")
    run = meta.get("run") or {}
    if run.get("stopped_by_time_limit"):
        lines.append(f"**Capped run: `--time-limit {run['time_limit_s']:.0f}` stopped it after {run['cases_run']} of "
                     f"{run['cases_planned']} case(s)**; not started: {', '.join(run['cases_skipped'])}. Every row "
                     "below is complete; the `cases` column says how many cases each mean holds.\n")
    if run.get("workers", 1) > 1:
        lines.append(f"Ran {run['workers']} cases in parallel (spawned processes, {run['threads_per_worker']} torch "
                     "thread(s) each): per-case seconds include contention between workers.\n")
    mi = meta.get("machine", {})
    if mi:
        lines.append(
            f"Machine: {mi.get('cpu_count')} CPU cores, {mi.get('memory_gib')} GiB, GPU: {mi.get('cuda') or 'none'}, "
            f"torch {mi.get('torch')} ({mi.get('torch_threads')} threads); shared and noisy "
            f"(load average at the end: {mi.get('load_average_at_end')}). Wall time of the run: "
            f"{meta.get('wall_seconds', 0) / 60:.1f} min. Compare methods within this run only.\n"
        )
    if meta.get("budget"):
        b = meta["budget"]
        lines.append(f"Training budget (every trained method, incl. the upper bound): {b['steps']} steps "
                     f"(cap {b['seconds']:.0f} s), active-learning rounds: {b['warm_steps']} warm steps each, "
                     f"seed {b['seed']}, device {b.get('device', 'auto')}. Shared pseudo-labels of ours, the "
                     f"seed-paper methods and active learning: "
                     f"`{(meta.get('spec') or {}).get('shared_pseudo', 'auto')}`.\n")
    if rows:
        from .contenders import CONTENDERS, sync_segment_methods

        sync_segment_methods()
        lines.append("Methods (registry: `napari_sparseseg.benchmarking.contenders`; every method of "
                     "`napari_sparseseg.methods` other than `default` is added there as `seed-paper`):\n")
        for name in dict.fromkeys(r["method"] for r in rows):
            m = CONTENDERS[name] if name in CONTENDERS else None
            lines.append(f"- `{name}` [{m.kind if m else '?'}]: {m.description if m else ''}")
        lines.append("")
        lines.append("## Dice against effort, side by side\n")
        lines.append("Means over cases (the `cases` column: how many cases each row holds); HD95/ASSD over "
                     "classes where defined. Seconds per case = `pseudo s` (the pseudo-labels the method starts "
                     "from, computed once per case and setting and shared by every method that uses the same "
                     "kind; each row is charged the full computation) + `method s` (training + prediction). "
                     + ("SAM image embeddings are computed once per (case, setting) job (parallel runs split a case "
                        "by setting)" if run.get("workers", 1) > 1 else
                        "SAM image embeddings are computed once per case and shared across its settings, so the "
                        "first SAM-based pseudo-labels of a case carry their cost") + ". Peak RSS of the whole "
                     "bench process (of the worker process in parallel runs).\n")
        if any(r["dataset"] == "acdc" for r in rows):
            lines.append("ACDC's shared copy lost its voxel spacing (identity affine), so its HD95/ASSD are in "
                         "pixels/slices, not mm (in-plane pixels are about 1.5 mm).\n")
        lines.append(summary_table(rows))
        lines.append(f"![Dice vs marked voxels]({(rel / 'dice_vs_effort.png').as_posix()})\n")
        lose = where_we_lose(rows)
        lines.append("### Where we lose\n")
        lines.append(("Ours (`sparseseg`) is beaten on: " + "; ".join(lose) + ".\n") if lose else
                     "No baseline beats ours on mean Dice in this run (the supervised upper bound excepted).\n")
        for note in upper_bound_notes(rows):
            lines.append(f"Note: {note}\n")
        plot_effort(rows, out_dir / "dice_vs_effort.png")
    if active:
        lines.append("## Active learning (simulated corrections)\n")
        refined = [bool(r.get("refine_pseudo", False)) for r in active]
        how = ("the pseudo-labels of the region the scribble contradicts are re-solved around it "
               "(`pseudo.refine.refine_around_marks`, what the widget does)" if all(refined) else
               "the scribble is mixed into the pseudo-labels voxel by voxel only (`--no-refine`)" if not any(refined)
               else "some cases re-solved the pseudo-labels around the scribble and some did not (mixed run)")
        draws = sorted({int(r.get("random_draws", 1)) for r in active})
        rnd = (f" `random` is the mean of {draws[0]} random orders per case (seeds differ per case and draw)."
               if len(draws) == 1 and draws[0] > 1 else
               " `random` is one seeded order, the same for every case: one draw, not the expected curve."
               if draws == [1] else " Cases differ in the number of random orders averaged.")
        lines.append("Each round the strategy picks a slice, the simulated annotator draws one correction "
                     f"scribble on that slice's largest error region, {how}, and the model warm-starts "
                     "(`Trainer.update_annotation`). All strategies start from the same trained weights." + rnd + "\n")
        lines.append(active_table(active))
        lines.append(f"![Dice vs rounds]({(rel / 'dice_vs_rounds.png').as_posix()})\n")
        plot_active(active, out_dir / "dice_vs_rounds.png")
    b = meta.get("budget") or {}
    if rows and b:
        lines.append("## Full run\n")
        if is_full_run(meta):
            lines.append(f"This is the full run: {len(rows)} rows and {len(active)} active-learning case(s) in "
                         f"{meta.get('wall_seconds', 0) / 60:.1f} min on the machine above.\n")
        else:
            lines.append(estimate_full_run(rows, active, int(b.get("steps", 1)), int(b.get("warm_steps", 1))) + "\n")
    from ..io import atomic_write_text

    return atomic_write_text(md, "\n".join(lines) + "\n")


def run_bench(suite: SuiteSpec, active: ActiveSpec | None, root: Path, out_dir: Path, *, resume: bool = True,
              command: str | None = None, label: str | None = None, md_path: Path | None = None,
              log: Callable[[str], None] = print, workers: int = 1, time_limit: float | None = None) -> Path:
    """Run the suite and the active-learning simulation, then write ``results.json`` and the report.

    ``workers`` > 1 runs cases in parallel processes; ``time_limit`` (seconds) stops starting new
    cases, and the report says the run was capped and how many cases each table row holds."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    prev = json.loads((out_dir / "results.json").read_text()) if resume and (out_dir / "results.json").is_file() else {}
    prev_wall = float(prev.get("wall_seconds", 0.0)) if resume else 0.0
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())

    def save(rows: list, records: list, finished: bool, run: dict[str, Any] | None) -> None:
        # written before and after the run, so an interrupted run can still be reported (--report-only)
        meta = {
            "command": command, "label": label, "finished": finished, "started_utc": started,
            "wall_seconds": time.perf_counter() - t0 + prev_wall, "machine": machine_info(),
            "spec": suite.to_dict(), "active_spec": asdict(active) if active else None,
            "budget": asdict(suite.budget), "run": run, "rows": rows, "active": records,
        }
        atomic_write_text(out_dir / "results.json", json.dumps(meta, indent=1, allow_nan=False))

    if workers > 1:  # many short jobs keep many workers busy to the end
        suite = replace(suite, split_settings=True)
    save([], [], False, None)
    run = run_suite(suite if suite.settings else replace(suite, methods=[]), root, out_dir, resume=resume, log=log,
                    active=active if active and active.starts else None, workers=workers, time_limit=time_limit)
    save(read_rows(out_dir / "rows.jsonl"), read_rows(out_dir / ACTIVE_FILE), True, run)
    return write_report(out_dir, command, md_path)


def command_line(argv: list[str]) -> str:
    return "sparseseg bench " + " ".join(shlex.quote(a) for a in argv)
