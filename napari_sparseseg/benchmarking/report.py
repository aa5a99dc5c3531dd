"""Tables (markdown) and plots (matplotlib, Agg) from benchmark rows and active-learning records.

Everything in ``RESULTS.md`` is computed here from the JSON of one run, so the document can always
be regenerated (``sparseseg bench --report-only --out DIR``) and never drifts from its numbers.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

KIND_ORDER = {"ours": 0, "seed-paper": 1, "baseline": 2, "upper-bound": 3}


def _ok(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if not r.get("error")]


def _f(x: Any, nd: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{nd}f}"


def _mean(vals: list[Any]) -> float:
    v = [float(x) for x in vals if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return float(np.mean(v)) if v else math.nan


def _setting_order(s: str) -> tuple:
    head, _, num = s.replace("-", ":").partition(":")
    order = {"human": 0, "scribbles": 1, "points": 2, "slices": 3, "dense": 4}
    return (order.get(head, 9), int(num) if num.isdigit() else 0, s)


def _methods(rows: list[dict[str, Any]]) -> list[str]:
    kinds = {r["method"]: r.get("kind", "") for r in rows}
    return sorted(kinds, key=lambda m: (KIND_ORDER.get(kinds[m], 9), m))


def grouped(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    g: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in _ok(rows):
        g[(r["dataset"], r["setting"], r["method"])].append(r)
    return g


def summary_table(rows: list[dict[str, Any]]) -> str:
    """One markdown table per data set: setting x method, means over cases (± SD of the mean Dice)."""
    g = grouped(rows)
    methods = _methods(rows)
    out: list[str] = []
    for ds in sorted({r["dataset"] for r in rows}):
        settings = sorted({r["setting"] for r in rows if r["dataset"] == ds}, key=_setting_order)
        cls_names: dict[str, str] = {}
        for r in _ok(rows):
            if r["dataset"] == ds:
                cls_names.update({c: v["name"] for c, v in r["classes"].items()})
        cls = sorted(cls_names, key=int)
        out.append(f"### {ds}\n")
        head = ["setting", "marked %", "method", "cases", "mean Dice", *[f"Dice {cls_names[c]}" for c in cls],
                "HD95 mm", "ASSD mm", "pseudo s", "method s", "s / case", "peak RSS MiB"]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        for s in settings:
            for m in methods:
                rs = g.get((ds, s, m), [])
                if not rs:
                    continue
                dice = [r["mean_dice"] for r in rs]
                sd = float(np.std(dice)) if len(dice) > 1 else math.nan
                cells = [s, _f(100 * _mean([r["marked_fraction"] for r in rs]), 2), m, str(len(rs)),
                         _f(_mean(dice)) + ("" if math.isnan(sd) else f" ± {sd:.3f}")]
                cells += [_f(_mean([r["classes"].get(c, {}).get("dice") for r in rs])) for c in cls]
                cells += [_f(_mean([r["mean_hd95_mm"] for r in rs]), 1), _f(_mean([r["mean_assd_mm"] for r in rs]), 2),
                          _f(_mean([r.get("pseudo_seconds") or 0.0 for r in rs]), 1),
                          _f(_mean([r.get("method_seconds", r["seconds"]) for r in rs]), 1),
                          _f(_mean([r["seconds"] for r in rs]), 1), _f(max(r["peak_rss_mib"] for r in rs), 0)]
                out.append("| " + " | ".join(cells) + " |")
        out.append("")
    errors = [r for r in rows if r.get("error")]
    if errors:
        out.append(f"**{len(errors)} run(s) failed** (excluded above):\n")
        for r in errors:
            out.append(f"- {r['dataset']}/{r['case']} {r['setting']} {r['method']}: `{r['error'][:200]}`")
        out.append("")
    return "\n".join(out)


def where_we_lose(rows: list[dict[str, Any]], ours: str = "sparseseg", margin: float = 0.005) -> list[str]:
    """Sentences naming every (data set, setting) where a non-upper-bound method beats ours on mean Dice."""
    g = grouped(rows)
    kinds = {r["method"]: r.get("kind") for r in rows}
    out = []
    for (ds, s, m), rs in sorted(g.items()):
        if m == ours or kinds.get(m) == "upper-bound" or (ds, s, ours) not in g:
            continue
        ours_rs = {r["case"]: r["mean_dice"] for r in g[(ds, s, ours)]}
        paired = [(ours_rs[r["case"]], r["mean_dice"]) for r in rs if r["case"] in ours_rs]
        if not paired:
            continue
        a, b = _mean([p[0] for p in paired]), _mean([p[1] for p in paired])
        if b > a + margin:
            out.append(f"{ds} / {s}: {m} {b:.3f} vs ours {a:.3f} (mean Dice, {len(paired)} case(s))")
    return out


def upper_bound_notes(rows: list[dict[str, Any]], ours: str = "sparseseg") -> list[str]:
    """Data sets where the 'upper bound' scores below ours: at this budget it bounds nothing (say so)."""
    g = grouped(rows)
    kinds = {r["method"]: r.get("kind") for r in rows}
    out = []
    for ds in sorted({r["dataset"] for r in _ok(rows)}):
        ub = [r["mean_dice"] for (d, s, m), rs in g.items() if d == ds and kinds.get(m) == "upper-bound" for r in rs]
        our = [r["mean_dice"] for (d, s, m), rs in g.items() if d == ds and m == ours for r in rs]
        if ub and our and _mean(ub) < _mean(our):
            steps = next((r.get("info", {}).get("steps") for r in _ok(rows)
                          if r["dataset"] == ds and kinds.get(r["method"]) == "upper-bound"), None)
            out.append(f"{ds}: the fully supervised network reaches only {_mean(ub):.3f} mean Dice after {steps} "
                       f"steps (ours {_mean(our):.3f}): at this budget a network trained from scratch is not an "
                       "upper bound; ours starts from the pseudo-labels (prior-residual head) and is not.")
    return out


def plot_effort(rows: list[dict[str, Any]], path: Path) -> Path:
    """Dice against marked-voxel fraction: one subplot per data set, one line per method."""
    from .._optional import require

    require("matplotlib", "bench", "benchmark plots").use("Agg")
    import matplotlib.pyplot as plt

    g = grouped(rows)
    datasets = sorted({r["dataset"] for r in _ok(rows)})
    methods = _methods(rows)
    fig, axes = plt.subplots(1, max(1, len(datasets)), figsize=(5.2 * max(1, len(datasets)), 4.2), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        for m in methods:
            pts = []
            for (d, s, mm), rs in g.items():
                if d == ds and mm == m:
                    pts.append((_mean([r["marked_fraction"] for r in rs]) * 100, _mean([r["mean_dice"] for r in rs]), s))
            if not pts:
                continue
            pts.sort()
            if all(p[2] == "dense" for p in pts):  # the upper bound: a reference line, not an effort curve
                ax.axhline(pts[0][1], linestyle="--", color="grey", label=f"{m} (dense labels)")
                continue
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=m)
            if m == methods[0]:
                for x, y, s in pts:
                    ax.annotate(s, (x, y), fontsize=7, xytext=(3, -10), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("marked voxels (% of the volume, log)")
        ax.set_ylabel("mean Dice")
        ax.set_ylim(0, 1)
        ax.set_title(ds)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_active(records: list[dict[str, Any]], path: Path) -> Path:
    """Mean Dice against correction rounds, one subplot per (data set, setting), one line per strategy."""
    from .._optional import require

    require("matplotlib", "bench", "benchmark plots").use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from .active_sim import summarise_active

    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[(r["dataset"], r.get("setting", ""))].append(r)
    keys = sorted(groups)
    fig, axes = plt.subplots(1, max(1, len(keys)), figsize=(5.2 * max(1, len(keys)), 4.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        summ = summarise_active(groups[key])
        for s, curve in summ.get("mean_dice", {}).items():
            label = s + (" (default)" if s == summ.get("default") else "")
            ax.plot(range(len(curve)), curve, marker="o", label=label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("correction rounds")
        ax.set_ylabel("mean Dice")
        ax.set_title(f"{key[0]} / {key[1]} ({summ.get('cases', 0)} case(s))")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def active_table(records: list[dict[str, Any]]) -> str:
    from .active_sim import summarise_active

    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[(r["dataset"], r.get("setting", ""))].append(r)
    out = []
    for key in sorted(groups):
        summ = summarise_active(groups[key])
        n = summ["rounds"]
        out.append(f"### {key[0]} / {key[1]} ({summ['cases']} case(s), {n} rounds)\n")
        out.append("| strategy | " + " | ".join(f"round {i}" for i in range(n + 1)) + " |")
        out.append("|---|" + "---|" * (n + 1))
        for s, curve in summ["mean_dice"].items():
            name = s + (" (default)" if s == summ["default"] else "")
            out.append(f"| {name} | " + " | ".join(_f(d) for d in curve) + " |")
        if "random_final_dice" in summ and summ.get("goal_half_rounds_met") is None:
            out.append(f"\nGoal not measurable here: the random strategy ended at {summ['random_final_dice']:.3f}, "
                       "no better than before any correction.\n")
        elif "random_final_dice" in summ:
            reach = summ["default_rounds_to_random_final"]
            met = "**met**" if summ["goal_half_rounds_met"] else "**not met**"
            out.append(
                f"\nGoal (default reaches random's final Dice {summ['random_final_dice']:.3f} in <= {n / 2:g} rounds): "
                f"{met}; default got there after {'never' if reach is None else f'{reach} round(s)'}.\n"
            )
        out.append("")
    return "\n".join(out)
