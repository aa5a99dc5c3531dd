"""The benchmark runner: settings x methods x cases -> one JSON row per run.

Rows are appended to ``rows.jsonl`` as soon as each case ends, so a long run that is interrupted (or
waits for the shared heavy-job lock) resumes where it stopped: a row whose key (dataset, case,
setting, method, seed) is already in the file is not run again.  Errors become rows with an
``error`` field instead of stopping the suite.

The unit of work is one *case*: every setting and method of it (and its active-learning simulation,
if asked) runs in one process, so the pseudo-labels of a (case, setting) are computed once and
shared (:class:`~napari_sparseseg.benchmarking.pseudo_cache.PseudoCache`).  ``workers > 1`` runs
cases in parallel spawned processes (:mod:`napari_sparseseg.benchmarking.parallel`); the parent
appends their rows.  ``time_limit`` stops *starting* cases after that many seconds, so a capped run
still ends with an honest partial report.
"""

from __future__ import annotations

import json
import math
import platform
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..annotations import SparseAnnotation
from ..evaluate import PeakMemory, Timer, evaluate_labels
from .cases import Case, canonical_setting, check_setting, list_cases, load_case, make_annotation
from .contenders import SHARED_PSEUDO, Budget, dense_annotation, get_contender
from .parallel import run_jobs
from .pseudo_cache import PseudoCache

ROWS_FILE = "rows.jsonl"
ACTIVE_FILE = "active.jsonl"


@dataclass
class SuiteSpec:
    """What to run.  ``settings`` maps each data set to its settings; ``cases`` to its case names
    (``None`` = the first ``max_cases`` cases, sorted by name)."""

    settings: dict[str, list[str]]
    methods: list[str]
    cases: dict[str, list[str] | None] = field(default_factory=dict)
    max_cases: int | None = None
    case_limits: dict[str, int] = field(default_factory=dict)  # per data set, overrides max_cases
    seed: int = 0
    budget: Budget = field(default_factory=Budget)
    distances: bool = True
    #: pseudo-labels of every method that starts from the shared ones (ours, seed papers, active learning);
    #: "auto" is the product default, "random-walker" a fast stand-in for tests
    shared_pseudo: str = SHARED_PSEUDO
    #: per data set, methods not run there (e.g. the quick preset runs SAM on its ACDC volume only)
    skip_methods: dict[str, list[str]] = field(default_factory=dict)
    #: one job per (case, setting) instead of per case: more, shorter jobs for many parallel workers
    #: (a case's SAM image embeddings are then computed once per setting instead of once per case)
    split_settings: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["budget"] = asdict(self.budget)
        return d


def row_key(row: dict[str, Any]) -> tuple:
    return (row["dataset"], row["case"], canonical_setting(row["setting"]), row["method"], int(row["seed"]))


def read_rows(path: Path) -> list[dict[str, Any]]:
    """All rows of a ``rows.jsonl`` (a torn last line from a killed run is skipped)."""
    rows: list[dict[str, Any]] = []
    if not Path(path).is_file():
        return rows
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("setting"), str):
            row["setting"] = canonical_setting(row["setting"])  # "slices-3" in earlier files: "slices:3"
        rows.append(row)
    return rows


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return None if not math.isfinite(float(x)) else float(x)
    return x


def run_contender(case: Case, ann: SparseAnnotation, setting: str, method: str, spec: SuiteSpec,
               pseudo_cache: PseudoCache | None = None) -> dict[str, Any]:
    """Run one method on one annotated case and measure it (seconds, peak RSS, metrics).

    ``seconds`` = ``pseudo_seconds`` (the one computation of the shared pseudo-labels, charged to
    every row that uses them, even when they came from the cache) + ``method_seconds``.
    """
    m = get_contender(method)
    row: dict[str, Any] = {
        "dataset": case.dataset, "case": case.name, "setting": setting, "method": method, "kind": m.kind,
        "seed": spec.seed, "shape": list(case.image.shape), "spacing_mm": list(case.image.spacing),
        "marked_fraction": ann.marked_fraction(), "marked_voxels": int(ann.marked.sum()),
        "annotated_slices": len(ann.annotated_slices()), "error": None,
        "pseudo_method": spec.shared_pseudo if m.pseudo == SHARED_PSEUDO else m.pseudo,
        "pseudo_seconds": 0.0, "pseudo_shared": False,
    }
    cache = pseudo_cache if pseudo_cache is not None else PseudoCache(spec.budget.device)
    try:
        with PeakMemory() as mem:
            pseudo = None
            if m.pseudo is not None:
                pseudo, p_sec, shared = cache.get(case, setting, ann, row["pseudo_method"], seed=spec.seed)
                row.update(pseudo_seconds=p_sec, pseudo_shared=shared)
            with Timer() as t:
                res = m.fn(case, ann, spec.budget, pseudo)
        labels = np.asarray(res.labels)
        ev = evaluate_labels(labels, case.gt, ann.classes, case.image.spacing, case.info.class_names,
                             distances=spec.distances)
        row.update(
            seconds=row["pseudo_seconds"] + t.seconds, method_seconds=t.seconds,
            peak_rss_mib=mem.peak_rss_bytes / 2**20, delta_rss_mib=mem.delta_rss_bytes / 2**20,
            cuda_peak_mib=None if mem.cuda_peak_bytes is None else mem.cuda_peak_bytes / 2**20,
            classes={str(c): {k: r[k] for k in ("name", "dice", "hd95_mm", "assd_mm")} for c, r in ev["classes"].items()},
            mean_dice=ev["mean"]["dice"], mean_hd95_mm=ev["mean"]["hd95_mm"], mean_assd_mm=ev["mean"]["assd_mm"],
            info=res.info,
        )
    except Exception as exc:  # one failing run must not stop a two-hour suite
        row["error"] = f"{type(exc).__name__}: {exc}"
        row["traceback"] = traceback.format_exc(limit=6)
    return _jsonable(row)


def iter_jobs(spec: SuiteSpec, root: Path) -> Iterable[tuple[str, str, str]]:
    """(dataset, case, setting) in run order; validates settings up front."""
    for dataset, settings in spec.settings.items():
        settings = [canonical_setting(s) for s in settings]
        for s in settings:
            check_setting(dataset, s)
        names = spec.cases.get(dataset) or list_cases(root, dataset)
        limit = spec.case_limits.get(dataset, spec.max_cases)
        if limit is not None and not spec.cases.get(dataset):
            names = names[:limit]
        for name in names:
            for s in settings:
                yield dataset, name, s


@dataclass
class CaseJob:
    """Everything one process does for one case: (setting, methods) pairs, then active learning."""

    dataset: str
    name: str
    items: list[tuple[str, list[str]]] = field(default_factory=list)
    active_setting: str | None = None
    n_rows: int = 0


def plan_jobs(spec: SuiteSpec, root: Path, done: set, active_cases: list[tuple[str, str, str]] = ()
              ) -> tuple[list[CaseJob], int]:
    """Case jobs still to run (finished rows skipped) and the total number of rows of the spec."""
    for m in spec.methods:
        get_contender(m)
    sparse = [m for m in spec.methods if get_contender(m).uses_marks]
    dense = [m for m in spec.methods if not get_contender(m).uses_marks]
    jobs: dict[tuple[str, str, str], CaseJob] = {}
    n_total = 0
    split = spec.split_settings
    for dataset, name, setting in iter_jobs(spec, root) if spec.methods else []:
        skip = set(spec.skip_methods.get(dataset, ()))
        job = jobs.setdefault((dataset, name, setting if split else ""), CaseJob(dataset, name))
        job.items.append((setting, [m for m in sparse if m not in skip]))
    for dataset, name in dict.fromkeys((d, n) for d, n, _ in jobs):  # each case once, in order
        skip = set(spec.skip_methods.get(dataset, ()))
        ms = [m for m in dense if m not in skip]
        if ms:  # methods that ignore the marks run once per case, as setting "dense"
            jobs.setdefault((dataset, name, "dense" if split else ""), CaseJob(dataset, name)).items.append(("dense", ms))
    for job in jobs.values():
        n_total += sum(len(ms) for _, ms in job.items)
        job.items = [(s, [m for m in ms if (job.dataset, job.name, s, m, spec.seed) not in done])
                     for s, ms in job.items]
        job.items = [(s, ms) for s, ms in job.items if ms]
        job.n_rows = sum(len(ms) for _, ms in job.items)
    for dataset, name, setting in active_cases:
        jobs.setdefault((dataset, name, "active" if split else ""), CaseJob(dataset, name)).active_setting = setting
    todo = [j for j in jobs.values() if j.items or j.active_setting]
    if split:  # active-learning jobs are the longest (rounds run one after another): start them first
        return interleave([j for j in todo if not j.items]) + interleave([j for j in todo if j.items]), n_total
    return interleave(todo), n_total


def interleave(jobs: list[CaseJob]) -> list[CaseJob]:
    """Round-robin over data sets (case order kept within each), so a run capped by ``time_limit``
    still covers every data set and parallel workers mix small and large volumes."""
    by_ds: dict[str, list[CaseJob]] = {}
    for j in jobs:
        by_ds.setdefault(j.dataset, []).append(j)
    out: list[CaseJob] = []
    while any(by_ds.values()):
        for queue in by_ds.values():
            if queue:
                out.append(queue.pop(0))
    return out


def run_case_job(job: CaseJob, spec: SuiteSpec, root: Path, active: Any = None,
                 log: Callable[[str], None] = print) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Run one case job in this process: its rows, and its active-learning record (or None)."""
    case = load_case(root, job.dataset, job.name)
    cache = PseudoCache(spec.budget.device)
    rows: list[dict[str, Any]] = []
    anns: dict[str, SparseAnnotation] = {}

    def annotation(setting: str) -> SparseAnnotation:
        if setting not in anns:
            anns[setting] = dense_annotation(case) if setting == "dense" else make_annotation(case, setting, seed=spec.seed)
        return anns[setting]

    for setting, methods in job.items:
        for method in methods:
            t0 = time.perf_counter()
            row = run_contender(case, annotation(setting), setting, method, spec, cache)
            rows.append(row)
            what = row["error"] or f"Dice {row['mean_dice']:.3f}"
            log(f"{job.dataset}/{job.name} {setting} {method}: {what} ({time.perf_counter() - t0:.1f} s"
                f"{', pseudo-labels shared' if row.get('pseudo_shared') else ''})")
    record = None
    if job.active_setting is not None and active is not None:
        from .active_sim import simulate_active

        ann = annotation(job.active_setting)
        log(f"active: {job.dataset}/{job.name} from {job.active_setting}, {active.rounds} rounds x {active.strategies}")
        record = simulate_active(case, ann, list(active.strategies), active.rounds, spec.budget,
                                 setting=job.active_setting, log=log, pseudo_cache=cache,
                                 pseudo_method=spec.shared_pseudo, regions=getattr(active, "regions", 1),
                                 refine=getattr(active, "refine", True),
                                 random_draws=int(getattr(active, "random_draws", 1)))
    return rows, _jsonable(record) if record is not None else None


def run_suite(
    spec: SuiteSpec, root: Path, out_dir: Path, *, resume: bool = True, log: Callable[[str], None] = print,
    active: Any = None, workers: int = 1, time_limit: float | None = None,
) -> dict[str, Any]:
    """Run everything in ``spec`` (and ``active``, an :class:`ActiveSpec`); rows go to
    ``out_dir/rows.jsonl`` and active records to ``out_dir/active.jsonl`` as each case finishes.

    Returns a summary: cases planned / run / skipped by ``time_limit``, rows total, stopped early.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows_path, active_path = out_dir / ROWS_FILE, out_dir / ACTIVE_FILE
    if not resume:
        for p in (rows_path, active_path):
            if p.exists():
                p.unlink()
    done = {row_key(r) for r in read_rows(rows_path)}
    active_done = {(r["dataset"], r["case"], r.get("setting")) for r in read_rows(active_path)}
    active_cases = []
    if active is not None:
        for dataset, setting in active.starts.items():
            setting = canonical_setting(setting)
            check_setting(dataset, setting)
            skip = int(getattr(active, "skip", {}).get(dataset, 0))
            for name in list_cases(root, dataset)[skip: skip + active.cases]:
                if (dataset, name, setting) not in active_done:
                    active_cases.append((dataset, name, setting))
    jobs, n_total = plan_jobs(spec, root, done, active_cases)

    def on_done(job: CaseJob, rows: list[dict[str, Any]], record: dict[str, Any] | None) -> None:
        if rows:
            with rows_path.open("a") as f:
                f.write("".join(json.dumps(r) + "\n" for r in rows))
        if record is not None:
            with active_path.open("a") as f:
                f.write(json.dumps(record) + "\n")

    summary = run_jobs(jobs, spec, root, active, on_done, run_job=run_case_job, workers=workers,
                       time_limit=time_limit, log=log)
    summary.update(rows_total=n_total, rows_done=len(read_rows(rows_path)))
    return summary


def machine_info() -> dict[str, Any]:
    """The machine a result came from (benchmarks on a shared box are only comparable within a run)."""
    import os

    from .._optional import require

    psutil = require("psutil", "bench", "sparseseg bench")

    info: dict[str, Any] = {
        "platform": platform.platform(), "python": platform.python_version(), "processor": platform.processor(),
        "cpu_count": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        info["torch_threads"] = torch.get_num_threads()
    except Exception:  # pragma: no cover - torch is a dependency
        pass
    return info
