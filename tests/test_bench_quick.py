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
from napari_sparseseg.benchmarking.suite import ActiveSpec, run_bench
from napari_sparseseg.cli import main
from napari_sparseseg.evaluate import dice_per_class


def _chance_dice(gt: np.ndarray, classes: tuple[int, ...], seed: int = 0) -> float:
    """Mean Dice of a random label map with the true class frequencies: what guessing scores."""
    rng = np.random.default_rng(seed)
    vals, counts = np.unique(gt, return_counts=True)
    guess = rng.choice(vals, size=gt.shape, p=counts / counts.sum())
    return float(np.mean(list(dice_per_class(guess, gt, classes).values())))


@pytest.fixture
def echo_method():
    """A seed-paper-style method registered in ``napari_sparseseg.methods`` for the test only: it returns
    the pseudo-labels it was given, so its Dice equals theirs exactly iff the bench shared them."""
    from napari_sparseseg.benchmarking.contenders import CONTENDERS
    from napari_sparseseg.methods import SEGMENT_METHODS, MethodOutput, register

    @register("test-echo", paper="test", description="returns ctx.pseudo.labels")
    def _echo(ctx):
        return MethodOutput(ctx.pseudo.labels.copy(), None, {"device": str(ctx.device)})

    yield "test-echo"
    SEGMENT_METHODS.pop("test-echo", None)
    CONTENDERS.pop("test-echo", None)


def test_bench_core_one_case(sample_dir: Path, tmp_path: Path, echo_method: str) -> None:
    # the walker as the shared pseudo-labels keeps this CI test fast (fusion costs ~1 min per case on CPU)
    suite = SuiteSpec(settings={"hippocampus": ["slices:3"]}, methods=["random-walker", "sparseseg", echo_method],
                      cases={"hippocampus": ["hippocampus_001"]}, budget=Budget(steps=2, warm_steps=1),
                      shared_pseudo="random-walker")
    active = ActiveSpec(starts={"hippocampus": "slices:1"}, cases=1, rounds=1, strategies=["entropy", "random"])
    md = run_bench(suite, active, sample_dir, tmp_path, command="sparseseg bench (test)")

    rows = read_rows(tmp_path / "rows.jsonl")
    assert {(r["method"], r["setting"]) for r in rows} == {("random-walker", "slices:3"), ("sparseseg", "slices:3"),
                                                          (echo_method, "slices:3")}
    for r in rows:
        assert r["error"] is None, r.get("traceback")
        assert 0.0 <= r["mean_dice"] <= 1.0
        assert all(0.0 <= c["dice"] <= 1.0 for c in r["classes"].values())
        assert r["seconds"] > 0 and r["peak_rss_mib"] > 50
        assert 0.0 < r["marked_fraction"] < 0.5
        assert r["seconds"] == pytest.approx(r["pseudo_seconds"] + r["method_seconds"])
    by = {r["method"]: r for r in rows}
    # computed once (by the first method that asked), then shared and charged at the same cost
    assert [by[m]["pseudo_shared"] for m in ("random-walker", "sparseseg", echo_method)] == [False, True, True]
    assert by["sparseseg"]["pseudo_seconds"] == by["random-walker"]["pseudo_seconds"] > 0
    assert by[echo_method]["kind"] == "seed-paper" and by["sparseseg"]["info"]["method"] == "default"
    assert by[echo_method]["mean_dice"] == by["random-walker"]["mean_dice"]
    assert by["sparseseg"]["info"]["steps"] == 2
    case = load_case(sample_dir, "hippocampus", "hippocampus_001")
    walker = next(r for r in rows if r["method"] == "random-walker")
    assert walker["mean_dice"] > max(0.5, _chance_dice(case.gt, case.present_classes) + 0.3)
    # the marked fraction is that of the simulated annotator (3 labelled slices of 35)
    assert walker["marked_fraction"] == pytest.approx(make_annotation(case, "slices:3").marked_fraction())

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
    run_bench(suite, None, sample_dir, tmp_path)
    assert len(read_rows(tmp_path / "rows.jsonl")) == 3


def test_time_limit_gives_an_honest_partial_report(shared_data: Path, tmp_path: Path) -> None:
    suite = SuiteSpec(settings={"hippocampus": ["slices:3"]}, methods=["random-walker"],
                      cases={"hippocampus": ["hippocampus_001", "hippocampus_003"]}, budget=Budget(steps=1))
    md = run_bench(suite, None, shared_data, tmp_path, time_limit=0.0)
    assert read_rows(tmp_path / "rows.jsonl") == []
    meta = json.loads((tmp_path / "results.json").read_text())
    assert meta["run"]["cases_run"] == 0 and meta["run"]["cases_planned"] == 2
    assert "Capped run" in md.read_text() and "hippocampus/hippocampus_003" in md.read_text()


def test_workers_run_cases_in_spawned_processes(shared_data: Path, tmp_path: Path) -> None:
    from napari_sparseseg.benchmarking import run_suite

    suite = SuiteSpec(settings={"hippocampus": ["slices:1"]}, methods=["random-walker"],
                      cases={"hippocampus": ["hippocampus_001", "hippocampus_003"]}, budget=Budget(steps=1),
                      distances=False)
    summary = run_suite(suite, shared_data, tmp_path, workers=2)
    rows = read_rows(tmp_path / "rows.jsonl")
    assert summary["cases_run"] == 2 and summary["threads_per_worker"] >= 1
    assert sorted(r["case"] for r in rows) == ["hippocampus_001", "hippocampus_003"]
    assert all(r["error"] is None and r["mean_dice"] > 0.3 for r in rows), rows
    # same numbers as in this process (the walker is deterministic)
    serial = run_suite(suite, shared_data, tmp_path / "serial", workers=1)
    assert serial["cases_run"] == 2
    one = {r["case"]: r["mean_dice"] for r in read_rows(tmp_path / "serial" / "rows.jsonl")}
    assert {r["case"]: r["mean_dice"] for r in rows} == one


def test_seed_paper_methods_join_the_bench_registry(shared_data: Path) -> None:
    from napari_sparseseg.benchmarking.contenders import CONTENDERS, sync_segment_methods
    from napari_sparseseg.benchmarking.suite import ablation_methods, ablation_specs
    from napari_sparseseg.methods import SEGMENT_METHODS as seg

    sync_segment_methods()
    for name in seg:
        if name != "default":
            assert CONTENDERS[name].kind == "seed-paper" and CONTENDERS[name].pseudo == "auto"
    assert "default" not in CONTENDERS and CONTENDERS["sparseseg"].pseudo == "auto"
    names = ablation_methods()
    assert names[0] == "sparseseg" and names[-2:] == ["random-walker", "sam"]
    assert set(names[1:-2]) == set(seg) - {"default"}
    suite, active = ablation_specs(shared_data)
    assert suite.budget.steps == 300 and not active.starts
    tumours = suite.cases["brain_tumor"]
    assert len(tumours) == 4 and len({n.split("_")[0] for n in tumours}) == 4  # one visit per patient
    assert suite.settings == {"acdc": ["human-scribbles"], "hippocampus": ["slices:3"], "brain_tumor": ["slices:3"]}


def test_where_we_lose_names_the_winning_baseline() -> None:
    def row(method: str, kind: str, dice: float) -> dict:
        return {"dataset": "d", "case": "c", "setting": "s", "method": method, "kind": kind, "mean_dice": dice,
                "error": None}

    rows = [row("sparseseg", "ours", 0.70), row("random-walker", "baseline", 0.80), row("supervised", "upper-bound", 0.9)]
    lose = where_we_lose(rows)
    assert len(lose) == 1 and "random-walker 0.800 vs ours 0.700" in lose[0]
    assert where_we_lose([row("sparseseg", "ours", 0.9), row("random-walker", "baseline", 0.8)]) == []


def test_report_only_regenerates_from_json(tmp_path: Path) -> None:
    row = {"dataset": "hippocampus", "case": "c", "setting": "slices:1", "method": "random-walker",
           "kind": "baseline", "seed": 0, "marked_fraction": 0.03, "mean_dice": 0.7, "mean_hd95_mm": 3.0,
           "mean_assd_mm": 1.0, "seconds": 1.0, "peak_rss_mib": 100.0, "error": None,
           "classes": {"1": {"name": "anterior", "dice": 0.7, "hd95_mm": 3.0, "assd_mm": 1.0}}}
    (tmp_path / "rows.jsonl").write_text(json.dumps(row) + "\n")
    assert main(["bench", "--report-only", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "RESULTS.md").read_text()
    assert "| slices:1 | 3.00 | random-walker | 1 | 0.700 |" in text
    assert (tmp_path / "dice_vs_effort.png").exists()


def test_bench_rejects_unknown_setting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--out", str(tmp_path), "--datasets", "hippocampus", "--settings", "lasso-3"]) == 2
    assert "unknown setting 'lasso-3'" in capsys.readouterr().err


def test_bench_quick_cli(sample_dir: Path, tmp_path: Path) -> None:
    """``sparseseg bench --quick`` runs in CI on the bundled samples: ours and every baseline on the
    hippocampus and the brain-tumour sample, and 2 active-learning rounds."""
    assert main(["bench", "--quick", "--data", str(sample_dir), "--out", str(tmp_path)]) == 0
    rows = read_rows(tmp_path / "rows.jsonl")
    assert rows and all(r["error"] is None for r in rows)
    assert {r["dataset"] for r in rows} == {"hippocampus", "brain_tumor"}
    assert {r["method"] for r in rows} == {"sparseseg", "random-walker", "sam", "supervised"}
    assert (tmp_path / "RESULTS.md").exists() and (tmp_path / "dice_vs_rounds.png").exists()


def test_quick_preset_falls_back_to_the_bundled_samples(sample_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from napari_sparseseg.benchmarking import cases
    from napari_sparseseg.benchmarking.suite import quick_specs

    monkeypatch.setenv("SPARSESEG_DATA", str(sample_dir / "nowhere"))
    monkeypatch.setattr(cases, "__file__", str(sample_dir / "nowhere" / "a" / "b" / "cases.py"))  # nothing beside
    with pytest.raises(FileNotFoundError):
        cases.find_data_root()
    assert cases.find_data_root(sample_fallback=True) == sample_dir
    suite, _ = quick_specs(sample_dir)
    assert suite.cases == {"brain_tumor": ["PGBM-008_1993-06-10"], "hippocampus": ["hippocampus_001"]}
    assert quick_specs(None)[0].cases["acdc"] == ["patient041_frame01"]


def test_split_settings_plans_one_job_per_case_and_setting(shared_data: Path) -> None:
    from napari_sparseseg.benchmarking.runner import plan_jobs

    suite = SuiteSpec(settings={"hippocampus": ["slices:1", "slices:3"]}, methods=["random-walker", "supervised"],
                      cases={"hippocampus": ["hippocampus_001"]}, budget=Budget(steps=1))
    per_case, n = plan_jobs(suite, shared_data, set(), [("hippocampus", "hippocampus_003", "slices:1")])
    assert n == 3 and [len(j.items) for j in per_case] == [3, 0]  # 2 settings + the dense upper bound
    suite.split_settings = True
    split, n2 = plan_jobs(suite, shared_data, set(), [("hippocampus", "hippocampus_001", "slices:1")])
    assert n2 == n
    assert split[0].active_setting == "slices:1" and not split[0].items  # the long active job goes first
    assert sorted(s for j in split[1:] for s, _ in j.items) == ["dense", "slices:1", "slices:3"]
    assert all(len(j.items) == 1 for j in split[1:])
