"""The benchmark suite end to end on real data: rows, report, plots, and numbers that make sense.

The CI test runs the core on one hippocampus case with a tiny budget (the walker, ours, and the
active-learning loop); ``sparseseg bench --quick`` itself is marked slow.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_sparseseg.benchmarking import Budget, SuiteSpec, load_case, make_annotation, read_rows
from napari_sparseseg.benchmarking.report import where_we_lose
from napari_sparseseg.benchmarking.suite import ActiveSpec, run_bench, write_report
from napari_sparseseg.cli import main
from napari_sparseseg.evaluate import dice_per_class


def _chance_dice(gt: np.ndarray, classes: tuple[int, ...], seed: int = 0) -> float:
    """Mean Dice of a random label map with the true class frequencies: what guessing scores."""
    rng = np.random.default_rng(seed)
    vals, counts = np.unique(gt, return_counts=True)
    guess = rng.choice(vals, size=gt.shape, p=counts / counts.sum())
    return float(np.mean(list(dice_per_class(guess, gt, classes).values())))


def test_bench_core_one_case(shared_data: Path, tmp_path: Path) -> None:
    suite = SuiteSpec(settings={"hippocampus": ["slices-3"]}, methods=["random-walker", "sparseseg"],
                      cases={"hippocampus": ["hippocampus_001"]}, budget=Budget(steps=2, warm_steps=1))
    active = ActiveSpec(starts={"hippocampus": "slices-1"}, cases=1, rounds=1, strategies=["entropy", "random"])
    md = run_bench(suite, active, shared_data, tmp_path, command="sparseseg bench (test)")

    rows = read_rows(tmp_path / "rows.jsonl")
    assert {(r["method"], r["setting"]) for r in rows} == {("random-walker", "slices-3"), ("sparseseg", "slices-3")}
    for r in rows:
        assert r["error"] is None, r.get("traceback")
        assert 0.0 <= r["mean_dice"] <= 1.0
        assert all(0.0 <= c["dice"] <= 1.0 for c in r["classes"].values())
        assert r["seconds"] > 0 and r["peak_rss_mib"] > 50
        assert 0.0 < r["marked_fraction"] < 0.5
    case = load_case(shared_data, "hippocampus", "hippocampus_001")
    walker = next(r for r in rows if r["method"] == "random-walker")
    assert walker["mean_dice"] > max(0.5, _chance_dice(case.gt, case.present_classes) + 0.3)
    # the marked fraction is that of the simulated annotator (3 labelled slices of 35)
    assert walker["marked_fraction"] == pytest.approx(make_annotation(case, "slices-3").marked_fraction())

    rec = read_rows(tmp_path / "active.jsonl")
    assert len(rec) == 1 and set(rec[0]["strategies"]) == {"entropy", "random"}
    for s in rec[0]["strategies"].values():
        assert len(s["dice"]) == 2 and all(0.0 <= d <= 1.0 for d in s["dice"])
        assert s["marked_fraction"][1] >= s["marked_fraction"][0]

    meta = json.loads((tmp_path / "results.json").read_text())
    assert meta["machine"]["cpu_count"] >= 1 and meta["wall_seconds"] > 0
    text = md.read_text()
    assert "random-walker" in text and "sparseseg" in text and "Where we lose" in text
    for png in ("dice_vs_effort.png", "dice_vs_rounds.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # resuming does not rerun finished rows
    run_bench(suite, None, shared_data, tmp_path)
    assert len(read_rows(tmp_path / "rows.jsonl")) == 2


def test_where_we_lose_names_the_winning_baseline() -> None:
    def row(method: str, kind: str, dice: float) -> dict:
        return {"dataset": "d", "case": "c", "setting": "s", "method": method, "kind": kind, "mean_dice": dice,
                "error": None}

    rows = [row("sparseseg", "ours", 0.70), row("random-walker", "baseline", 0.80), row("supervised", "upper-bound", 0.9)]
    lose = where_we_lose(rows)
    assert len(lose) == 1 and "random-walker 0.800 vs ours 0.700" in lose[0]
    assert where_we_lose([row("sparseseg", "ours", 0.9), row("random-walker", "baseline", 0.8)]) == []


def test_report_only_regenerates_from_json(tmp_path: Path) -> None:
    row = {"dataset": "hippocampus", "case": "c", "setting": "slices-1", "method": "random-walker",
           "kind": "baseline", "seed": 0, "marked_fraction": 0.03, "mean_dice": 0.7, "mean_hd95_mm": 3.0,
           "mean_assd_mm": 1.0, "seconds": 1.0, "peak_rss_mib": 100.0, "error": None,
           "classes": {"1": {"name": "anterior", "dice": 0.7, "hd95_mm": 3.0, "assd_mm": 1.0}}}
    (tmp_path / "rows.jsonl").write_text(json.dumps(row) + "\n")
    assert main(["bench", "--report-only", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "RESULTS.md").read_text()
    assert "| slices-1 | 3.00 | random-walker | 1 | 0.700 |" in text
    assert (tmp_path / "dice_vs_effort.png").exists()


def test_bench_rejects_unknown_setting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--out", str(tmp_path), "--datasets", "hippocampus", "--settings", "lasso-3"]) == 2
    assert "unknown setting 'lasso-3'" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_quick_cli(tmp_path: Path) -> None:
    assert main(["bench", "--quick", "--out", str(tmp_path)]) == 0
    rows = read_rows(tmp_path / "rows.jsonl")
    assert rows and all(r["error"] is None for r in rows)
    assert {r["dataset"] for r in rows} == {"hippocampus", "acdc"}
    assert (tmp_path / "RESULTS.md").exists() and (tmp_path / "dice_vs_rounds.png").exists()
