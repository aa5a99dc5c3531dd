"""Compare two ``sparseseg bench`` output folders row by row: did a refactor change any number?

Rows (``rows.jsonl``) are matched on (data set, case, setting, method) and active-learning curves
(``active.jsonl``) on (case, setting, strategy); settings are compared in their canonical spelling
(``slices-1`` = ``slices:1``).  A suite row that stopped on the time cap (fewer steps than the budget,
on a loaded machine) is flagged: its Dice measures the load, not the code.

    python bench/scripts/compare_bench_runs.py BEFORE_DIR AFTER_DIR [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.is_file() else []


def compare(before: Path, after: Path) -> dict:
    from napari_sparseseg.benchmarking.cases import canonical_setting

    def rows(d: Path) -> dict:
        return {(r["dataset"], r["case"], canonical_setting(r["setting"]), r["method"]): r for r in _lines(d / "rows.jsonl")}

    def curves(d: Path) -> dict:
        return {(r["case"], canonical_setting(r["setting"]), s): v
                for r in _lines(d / "active.jsonl") for s, v in r["strategies"].items()}

    ra, rb, ca, cb = rows(before), rows(after), curves(before), curves(after)
    out = {"suite": [], "active": []}
    for k in sorted(set(ra) | set(rb)):
        a, b = ra.get(k, {}), rb.get(k, {})
        steps = [a.get("info", {}).get("steps"), b.get("info", {}).get("steps")]
        out["suite"].append({"key": list(k), "before": a.get("mean_dice"), "after": b.get("mean_dice"), "steps": steps,
                             "same": bool(a) and a.get("mean_dice") == b.get("mean_dice") and a.get("classes") == b.get("classes"),
                             "time_capped": steps[0] != steps[1]})
    for k in sorted(set(ca) | set(cb)):
        a, b = ca.get(k, {}), cb.get(k, {})
        out["active"].append({"key": list(k), "before": a.get("dice"), "after": b.get("dice"),
                              "same": a.get("dice") == b.get("dice") and a.get("slices") == b.get("slices")})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    res = compare(args.before, args.after)
    for r in res["suite"] + res["active"]:
        flag = "SAME " if r["same"] else ("CAP  " if r.get("time_capped") else "DIFF ")
        print(flag + " / ".join(map(str, r["key"])), r["before"], "->", r["after"],
              f"steps {r['steps']}" if "steps" in r else "")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
