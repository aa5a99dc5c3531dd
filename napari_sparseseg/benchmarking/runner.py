"""The benchmark runner: settings x methods x cases -> one JSON row per run.

Rows are appended to ``rows.jsonl`` as soon as each run ends, so a long run that is interrupted (or
waits for the shared heavy-job lock) resumes where it stopped: a row whose key (dataset, case,
setting, method, seed) is already in the file is not run again.  Errors become rows with an
``error`` field instead of stopping the suite.
"""

from __future__ import annotations

import json
import math
import platform
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from ..annotations import SparseAnnotation
from ..evaluate import PeakMemory, Timer, evaluate_labels
from .cases import Case, check_setting, list_cases, load_case, make_annotation
from .methods import Budget, dense_annotation, get_method

ROWS_FILE = "rows.jsonl"


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

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["budget"] = asdict(self.budget)
        return d


def row_key(row: dict[str, Any]) -> tuple:
    return (row["dataset"], row["case"], row["setting"], row["method"], int(row["seed"]))


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
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
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


def run_method(case: Case, ann: SparseAnnotation, setting: str, method: str, spec: SuiteSpec) -> dict[str, Any]:
    """Run one method on one annotated case and measure it (seconds, peak RSS, metrics)."""
    m = get_method(method)
    row: dict[str, Any] = {
        "dataset": case.dataset, "case": case.name, "setting": setting, "method": method, "kind": m.kind,
        "seed": spec.seed, "shape": list(case.image.shape), "spacing_mm": list(case.image.spacing),
        "marked_fraction": ann.marked_fraction(), "marked_voxels": int(ann.marked.sum()),
        "annotated_slices": len(ann.annotated_slices()), "error": None,
    }
    try:
        with PeakMemory() as mem, Timer() as t:
            res = m.fn(case, ann, spec.budget)
        labels = np.asarray(res.labels)
        ev = evaluate_labels(labels, case.gt, ann.classes, case.image.spacing, case.info.class_names,
                             distances=spec.distances)
        row.update(
            seconds=t.seconds, peak_rss_mib=mem.peak_rss_bytes / 2**20, delta_rss_mib=mem.delta_rss_bytes / 2**20,
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
        for s in settings:
            check_setting(dataset, s)
        names = spec.cases.get(dataset) or list_cases(root, dataset)
        limit = spec.case_limits.get(dataset, spec.max_cases)
        if limit is not None and not spec.cases.get(dataset):
            names = names[:limit]
        for name in names:
            for s in settings:
                yield dataset, name, s


def run_suite(
    spec: SuiteSpec, root: Path, out_dir: Path, *, resume: bool = True, log: Callable[[str], None] = print
) -> list[dict[str, Any]]:
    """Run everything in ``spec``; rows go to ``out_dir/rows.jsonl`` as they finish."""
    for m in spec.methods:
        get_method(m)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows_path = out_dir / ROWS_FILE
    done = {row_key(r) for r in read_rows(rows_path)} if resume else set()
    if not resume and rows_path.exists():
        rows_path.unlink()
    jobs = list(iter_jobs(spec, root))
    sparse = [m for m in spec.methods if get_method(m).uses_marks]
    dense = [m for m in spec.methods if not get_method(m).uses_marks]
    # methods that ignore the marks (the upper bound) run once per case, as setting "dense"
    seen_cases: list[tuple[str, str]] = []
    for dataset, name, _ in jobs:
        if (dataset, name) not in seen_cases:
            seen_cases.append((dataset, name))
    plan = [(d, n, s, sparse) for d, n, s in jobs] + [(d, n, "dense", dense) for d, n in seen_cases if dense]
    plan.sort(key=lambda j: (list(spec.settings).index(j[0]), j[1]))  # stable: one case loaded once
    cache: tuple[str, str, Case] | None = None
    n_total = sum(len(j[3]) for j in plan)
    i = 0
    for dataset, name, setting, methods in plan:
        todo = [m for m in methods if (dataset, name, setting, m, spec.seed) not in done]
        i += len(methods) - len(todo)
        if not todo:
            continue
        if cache is None or cache[:2] != (dataset, name):
            cache = (dataset, name, load_case(root, dataset, name))
        case = cache[2]
        ann = dense_annotation(case) if setting == "dense" else make_annotation(case, setting, seed=spec.seed)
        for method in todo:
            i += 1
            t0 = time.perf_counter()
            row = run_method(case, ann, setting, method, spec)
            with rows_path.open("a") as f:
                f.write(json.dumps(row) + "\n")
            what = row["error"] or f"Dice {row['mean_dice']:.3f}"
            log(f"[{i}/{n_total}] {dataset}/{name} {setting} {method}: {what} ({time.perf_counter() - t0:.1f} s)")
    return [r for r in read_rows(rows_path)]


def machine_info() -> dict[str, Any]:
    """The machine a result came from (benchmarks on a shared box are only comparable within a run)."""
    import os

    import psutil

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
