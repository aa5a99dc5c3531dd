"""Study-level (cohort) evaluation: data splits, jobs that train one study model, and honest scores.

Protocol (every number in bench/results/study comes from it):

* ACDC: the 80 ``acdc_cohort`` patients learn, from their human scribbles only; settings are chosen
  on a validation split of that cohort (10 patients); scores are on the 10 ``acdc`` patients, which
  nothing was trained or tuned on.
* Hippocampus: cases split once (seeded) into train / validation / test; each training case gives
  3 simulated labelled slices (or 5 clicks per class).
* Scores: patient-level means (a patient's frames averaged first) with 95 % bootstrap intervals,
  and Dice on unmarked voxels beside Dice on all voxels when the scan's own marks are used.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..annotations.sparse import SparseAnnotation
from ..evaluate.metrics import dice_per_class
from . import cases as C

C.DATASETS.setdefault("acdc_cohort", C.DatasetInfo("acdc_cohort", (1, 2, 3), {1: "RV", 2: "MYO", 3: "LV"},
                                                   human_scribbles="scribblesTr"))


def patient_of(name: str) -> str:
    """ACDC: ``patient003_frame01`` -> ``patient003`` (both frames of a patient stay together)."""
    m = re.match(r"(patient\d+)_", name)
    return m.group(1) if m else name


def split_patients(names: Sequence[str], n_val: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """(train, validation) case names, split by patient with a seeded permutation."""
    patients = sorted({patient_of(n) for n in names})
    order = list(np.random.default_rng(seed).permutation(patients))
    val = set(order[:n_val])
    return [n for n in names if patient_of(n) not in val], [n for n in names if patient_of(n) in val]


def first_patients(names: Sequence[str], n: int, seed: int = 0) -> list[str]:
    """The cases of ``n`` patients drawn in a fixed seeded order (nested: 5 of them are in the 10)."""
    patients = sorted({patient_of(x) for x in names})
    order = list(np.random.default_rng(seed + 1).permutation(patients))[:n]
    keep = set(order)
    return [x for x in names if patient_of(x) in keep]


def annotation_for(case: C.Case, setting: str, seed: int = 0) -> SparseAnnotation:
    """The marks of ``case``: ``human-scribbles``, ``slices-K``, ``points-K``, or ``dense`` (the
    ceiling only: every voxel marked with its expert label)."""
    if setting == "dense":
        bg = case.background_label
        lab = np.where(case.gt > 0, case.gt, bg).astype(np.int16)
        return SparseAnnotation(lab, bg, case.classes, dict(case.info.class_names))
    ann = C.make_annotation(case, setting, seed=seed)
    # every case of a study declares the data set's classes, even one whose marks miss a class
    return SparseAnnotation(ann.labels, ann.background_label, case.classes, dict(case.info.class_names))


def score(pred: np.ndarray, gt: np.ndarray, classes: Sequence[int], marked: np.ndarray | None = None) -> dict[str, Any]:
    """Mean Dice over ``classes`` on all voxels and, if ``marked`` is given, on unmarked voxels only."""
    d = dice_per_class(pred, gt, classes)
    out: dict[str, Any] = {"dice": float(np.nanmean([d[c] for c in classes])), "per_class": {int(c): float(d[c]) for c in classes}}
    if marked is not None:
        keep = ~marked
        du = dice_per_class(np.where(keep, pred, 0), np.where(keep, gt, 0), classes)
        out["dice_unmarked"] = float(np.nanmean([du[c] for c in classes]))
    return out


def bootstrap_ci(values: Sequence[float], n: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and 95 % percentile-bootstrap interval of per-patient values."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, (n, v.size))].mean(1)
    return float(v.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def patient_means(rows: Sequence[dict[str, Any]], key: str) -> list[float]:
    """Average ``key`` over each patient's cases (ACDC: two frames), one value per patient."""
    per: dict[str, list[float]] = {}
    for r in rows:
        if key in r and r[key] is not None:
            per.setdefault(patient_of(r["case"]), []).append(float(r[key]))
    return [float(np.mean(v)) for v in per.values()]


@dataclass
class Summary:
    mean: float
    lo: float
    hi: float
    n: int

    def fmt(self) -> str:
        if not np.isfinite(self.mean):
            return "—"
        return f"{self.mean:.3f} [{self.lo:.3f}, {self.hi:.3f}]"


def summarise(rows: Sequence[dict[str, Any]], key: str) -> Summary:
    vals = patient_means(rows, key)
    m, lo, hi = bootstrap_ci(vals)
    return Summary(m, lo, hi, len(vals))


def load_cases(root: Path, dataset: str, names: Sequence[str]) -> list[C.Case]:
    return [C.load_case(root, dataset, n) for n in names]
