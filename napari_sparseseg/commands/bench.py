"""``sparseseg bench``: Dice against human effort, side by side with the baselines, and simulated
active learning (code in :mod:`napari_sparseseg.benchmarking`).

    sparseseg bench --quick --out /tmp/bench-quick          # < 3 min on 2 cores (CI)
    sparseseg bench --out bench/results                     # every setting on every shared case
    sparseseg bench --out bench/results --report-only       # regenerate RESULTS.md + plots from JSON
    sparseseg bench --preset ablation --workers 8 --time-limit 480 --out bench/results_ablation
        # the seed-paper ablation (ours, every seed-paper method, walker, SAM) on a 16-core GPU machine

Heavy runs on a shared machine: ``flock /tmp/sparseseg_heavy.lock nice -n 5 sparseseg bench ...``.
A run resumes where it stopped (rows already in ``OUT/rows.jsonl`` are kept); ``--fresh`` starts over.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench",
        help="benchmark: Dice vs marked voxels for ours and the baselines, and simulated active learning",
        description="Run settings x methods x cases on the shared data, write one JSON row per run, "
        "RESULTS.md with tables, and PNG plots (Dice vs marked voxels, Dice vs correction rounds).",
    )
    p.add_argument("--out", type=Path, default=Path("bench/results"), help="output folder (default bench/results)")
    p.add_argument("--md", type=Path, default=None,
                   help="markdown report to write (default OUT/RESULTS.md; the committed one: bench/results/full/RESULTS.md)")
    p.add_argument("--data", type=Path, default=None, help="data folder in the MSD layout (default: $SPARSESEG_DATA; --quick falls back to the bundled samples)")
    p.add_argument("--quick", action="store_true",
                   help="1 hippocampus case + 1 ACDC volume (or the two bundled samples), short budgets (a few minutes)")
    p.add_argument("--preset", choices=("quick", "full", "ablation"), default=None,
                   help="quick (= --quick); full (every setting and method, the default); ablation (seed-paper methods: "
                   "ACDC 20 volumes human scribbles, hippocampus 10 + brain tumour 4 patients at slices:3, ours + "
                   "every seed-paper method + walker + SAM, 300 steps, no active learning)")
    p.add_argument("--workers", type=int, default=1,
                   help="cases run in parallel spawned processes, each with max(1, cores // N) torch threads "
                   "(default 1: in this process)")
    p.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                   help="stop starting new cases after this many seconds; the report says how many cases each "
                   "row holds")
    p.add_argument("--pseudo", default=None,
                   help="pseudo-labels shared by ours, the seed-paper methods and active learning (default auto = "
                   "the product default; random-walker is much faster on CPU)")
    p.add_argument("--device", default=None, help="torch device of every trained method and SAM (auto, cpu, cuda)")
    p.add_argument("--datasets", nargs="+", default=None, help="subset of data sets (acdc hippocampus brain_tumor)")
    p.add_argument("--settings", nargs="+", default=None,
                   help="override the settings for every simulated data set (e.g. slices:1 slices:3 points:5)")
    p.add_argument("--methods", nargs="+", default=None, help="subset of methods (see --list)")
    p.add_argument("--cases", type=int, default=None, help="at most this many cases per data set")
    p.add_argument("--steps", type=int, default=None, help="training steps of every trained method")
    p.add_argument("--warm-steps", type=int, default=None, help="training steps per active-learning round")
    p.add_argument("--rounds", type=int, default=None, help="active-learning rounds")
    p.add_argument("--strategies", nargs="+", default=None,
                   help="active-learning strategies (default: entropy random sequential)")
    p.add_argument("--correct-regions", type=int, default=None,
                   help="active learning: error regions the simulated annotator corrects on each suggested slice "
                   "(one scribble each, largest first; default 1)")
    p.add_argument("--random-draws", type=int, default=None,
                   help="active learning: runs of the random strategy per case, averaged (default 1)")
    p.add_argument("--no-refine", action="store_true",
                   help="active learning: mix a correction into the pseudo-labels voxel by voxel only, instead of "
                   "re-solving the pseudo-labels around it (the product's behaviour; this flag is the ablation)")
    p.add_argument("--active-cases", type=int, default=None, help="active-learning cases per data set")
    p.add_argument("--active-datasets", nargs="+", default=None,
                   help="data sets of the active-learning simulation (default: hippocampus from slices:1, "
                   "ACDC from its human scribbles)")
    p.add_argument("--no-active", action="store_true", help="skip the active-learning simulation")
    p.add_argument("--no-suite", action="store_true", help="only the active-learning simulation")
    p.add_argument("--no-distances", action="store_true", help="skip HD95/ASSD (faster)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--label", default=None, help="a line printed at the top of RESULTS.md (e.g. 'reduced run: ...')")
    p.add_argument("--fresh", action="store_true", help="discard earlier rows in OUT instead of resuming")
    p.add_argument("--report-only", action="store_true", help="only regenerate RESULTS.md and the plots")
    p.add_argument("--list", action="store_true", help="list methods, data sets and settings, then exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ..benchmarking import CONTENDERS, get_contender
    from ..benchmarking.cases import DATASETS, check_setting, find_data_root, has_case
    from ..benchmarking.contenders import sync_segment_methods
    from ..benchmarking.suite import PRESETS, ablation_specs, command_line, full_specs, run_bench, write_report

    sync_segment_methods()
    if args.list:
        for name, m in CONTENDERS.items():
            print(f"method   {name:14s} [{m.kind}] {m.description}")
        for name, d in DATASETS.items():
            extra = ", human-scribbles" if d.human_scribbles else ""
            print(f"dataset  {name:14s} classes {dict(d.class_names)}; settings scribbles, points:K, slices:K{extra}")
        return 0
    from .._optional import require

    require("matplotlib", "bench", "sparseseg bench")
    require("psutil", "bench", "sparseseg bench")
    command = command_line(sys.argv[2:] if len(sys.argv) > 1 and sys.argv[1] == "bench" else [])
    if args.report_only:
        path = write_report(args.out, md_path=args.md, label=args.label)
        print(f"wrote {path}")
        return 0
    if args.settings:  # a typo fails before any data is looked for
        for d in args.datasets or [d for d in DATASETS if d != "acdc"]:
            if d in DATASETS and d != "acdc":
                for s in args.settings:
                    check_setting(d, s)
    preset = "quick" if args.quick else (args.preset or "full")
    root = find_data_root(args.data, sample_fallback=preset == "quick")
    if preset == "quick" and not has_case(root, "acdc", "patient041_frame01"):
        print(f"bench --quick: no ACDC under {root}; running on the bundled sample cases", file=sys.stderr)
    suite, active = (full_specs(args.cases, root) if preset == "full" else
                     ablation_specs(root) if preset == "ablation" else PRESETS[preset](root))
    if args.datasets:
        unknown = [d for d in args.datasets if d not in DATASETS]
        if unknown:
            from ..errors import SparsesegError

            raise SparsesegError(f"unknown data set(s) {unknown}; choose from {', '.join(DATASETS)}")
        suite.settings = {d: s for d, s in suite.settings.items() if d in args.datasets}
        for d in args.datasets:
            suite.settings.setdefault(d, ["human-scribbles"] if d == "acdc" else ["slices:3"])
        active.starts = {d: s for d, s in active.starts.items() if d in args.datasets}
    if args.settings:  # ACDC keeps its human scribbles; the simulated data sets take these
        suite.settings = {d: (s if d == "acdc" else list(args.settings)) for d, s in suite.settings.items()}
        for d, ss in suite.settings.items():
            for s in ss:
                check_setting(d, s)
    if args.methods:
        suite.methods = list(args.methods)
    if args.cases is not None:
        suite.max_cases = args.cases
        suite.case_limits = {}
        suite.cases = {d: (names[: args.cases] if names else None) for d, names in suite.cases.items()}
    b = suite.budget
    suite.budget = replace(b, steps=args.steps or b.steps, warm_steps=args.warm_steps or b.warm_steps, seed=args.seed,
                           device=args.device or b.device)
    if args.workers < 1:
        from ..errors import SparsesegError

        raise SparsesegError("--workers must be >= 1")
    for m in suite.methods:
        get_contender(m)  # an unknown name fails here, before any data is loaded
    suite.seed = args.seed
    if args.pseudo:
        from ..pseudo import PSEUDO_METHODS

        if args.pseudo != "auto":
            PSEUDO_METHODS.get(args.pseudo)  # an unknown name fails here, listing the choices
        suite.shared_pseudo = args.pseudo
    suite.distances = not args.no_distances
    if args.rounds is not None:
        active.rounds = args.rounds
    if args.active_datasets:
        active.starts = {d: s for d, s in {"hippocampus": "slices:1", "acdc": "human-scribbles",
                                           "brain_tumor": "slices:1"}.items() if d in args.active_datasets}
    if args.strategies:
        from ..active import STRATEGIES

        bad = [x for x in args.strategies if x not in STRATEGIES]
        if bad:
            from ..errors import SparsesegError

            raise SparsesegError(f"unknown strategy {bad}; choose from {', '.join(STRATEGIES)}")
        active.strategies = list(args.strategies)
    if args.correct_regions is not None:
        active.regions = args.correct_regions
    if args.no_refine:
        active.refine = False
    if args.random_draws is not None:
        active.random_draws = max(1, args.random_draws)
    if args.active_cases is not None:
        active.cases = args.active_cases
    if args.no_suite:
        suite.methods = []
    path = run_bench(suite, None if args.no_active else active, root, args.out, resume=not args.fresh,
                     command=command, label=args.label, md_path=args.md, log=lambda s: print(s, file=sys.stderr, flush=True),
                     workers=args.workers, time_limit=args.time_limit)
    print(f"wrote {path}")
    return 0
