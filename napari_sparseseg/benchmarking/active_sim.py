"""Simulated active learning: does "correct here next" beat random and sequential slice choice?

One *round* is the product's round, run by the same controller the widget drives
(:class:`~napari_sparseseg.loop.CorrectionLoop`): the strategy names a slice
(:meth:`~CorrectionLoop.next_slice`); the simulated annotator (:func:`simulate_correction`) draws one
correction scribble on the largest error region of that slice; :meth:`~CorrectionLoop.accept` combines
it with the marks, re-solves the pseudo-labels around it and hands both to the trainer, which
warm-starts from its current weights (``budget.warm_steps`` steps); Dice is recorded.

Fairness: every strategy starts from the *same* initially trained weights (one initial training
per case, its weights handed to each strategy's trainer with ``init=``), the same marks and the same
pseudo-labels, and gets the same number of rounds and warm steps.  Pseudo-labels are not recomputed
per round: each correction re-solves them around itself (or, with ``refine=False``, is only mixed in).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

from ..active import STRATEGIES, get_strategy
from ..annotations import SparseAnnotation, combine, simulate_correction
from ..evaluate import dice_per_class
from ..loop import CorrectionLoop
from .cases import Case
from .contenders import SHARED_PSEUDO, Budget, train_config
from .pseudo_cache import PseudoCache


def default_strategy() -> str:
    """The product's default: what the widget's strategy box shows first (or ``DEFAULT_STRATEGY``)."""
    from .. import active

    return str(getattr(active, "DEFAULT_STRATEGY", next(iter(STRATEGIES))))


def _mean_dice(pred: np.ndarray, gt: np.ndarray, classes: tuple[int, ...]) -> float:
    vals = np.array(list(dice_per_class(pred, gt, classes).values()), dtype=float)
    return float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")


def initial_model(case: Case, ann: SparseAnnotation, budget: Budget, setting: str = "",
                  pseudo_cache: PseudoCache | None = None, pseudo_method: str = SHARED_PSEUDO
                  ) -> tuple[dict, Any, Any]:
    """Train once from the starting marks: (init dict for ``Trainer(init=...)``, pseudo, done event).

    The pseudo-labels come from ``pseudo_cache`` (shared with the suite's rows of the same case and
    setting when the runner ran them in this process)."""
    cache = pseudo_cache if pseudo_cache is not None else PseudoCache(budget.device)
    pseudo, _, _ = cache.get(case, setting or "active-start", ann, pseudo_method, seed=budget.seed)
    loop = CorrectionLoop(case.image, config=train_config(budget))
    loop.set_marks(ann)
    loop.set_pseudo(pseudo, ann)
    ev = loop.run_to_end()
    return loop.carry_over(), pseudo, ev


def correct_slice(pred: np.ndarray, gt: np.ndarray, z: int, ann: SparseAnnotation, seed: int,
                  regions: int = 1, min_region: int = 10) -> SparseAnnotation | None:
    """The simulated annotator's correction of slice ``z``: one scribble (the foundation's
    :func:`simulate_correction`) on each of the ``regions`` largest connected error regions, largest
    first, skipping regions under ``min_region`` voxels (nobody scribbles on a 3-pixel error).

    ``regions=1`` is the original single-scribble round.  After each scribble its region counts as
    fixed, so the next call finds the next-largest region.
    """
    from scipy import ndimage

    classes = tuple(ann.classes)
    view = np.array(pred, copy=True)
    out: SparseAnnotation | None = None
    for k in range(max(1, int(regions))):
        corr = simulate_correction(view, gt, z, background_label=ann.background_label, seed=seed + 1000 * k,
                                   classes=classes)
        if corr is None:
            break
        g, v2 = gt[z], view[z]
        hit = corr.marked[z]
        true_vals = np.unique(g[hit])
        region = np.zeros(g.shape, bool)
        for v in true_vals:  # the error component(s) the scribble lies in
            lab, _ = ndimage.label((v2 != g) & (g == v), structure=np.ones((3, 3), bool))
            ids = np.unique(lab[hit & (g == v)])
            region |= np.isin(lab, ids[ids > 0])
        if region.sum() < min_region and (out is not None or regions > 1):
            break
        v2[region] = g[region]
        out = corr if out is None else combine(out, corr)
    return out


def run_strategy(
    case: Case,
    ann0: SparseAnnotation,
    strategy: str,
    rounds: int,
    budget: Budget,
    init: dict,
    pseudo: Any,
    first_event: Any,
    *,
    log: Callable[[str], None] | None = None,
    regions: int = 1,
    refine: bool = True,
    seed: int | None = None,
) -> dict[str, Any]:
    """``rounds`` correction rounds with one strategy; returns the Dice curve and what happened.
    ``seed``: the random strategy's seed (default ``budget.seed``).
    ``regions``: error regions the annotator corrects on each suggested slice (:func:`correct_slice`).
    ``refine``: re-solve the pseudo-labels around each correction (:func:`refine_around_marks`, what
    the product does) instead of mixing in only the scribbled voxels."""
    classes = tuple(ann0.classes)
    strat = (get_strategy(strategy, seed=budget.seed if seed is None else seed) if strategy == "random"
             else get_strategy(strategy))
    # the product's loop from the shared start: same weights, marks and pseudo-labels for every strategy
    loop = CorrectionLoop(case.image, config=train_config(budget, max_steps=budget.warm_steps), strategy=strat,
                          refine=refine, init=init)
    loop.set_marks(ann0)
    loop.set_pseudo(pseudo, ann0)
    loop.use_trainer(loop.build_trainer(ann0, pseudo))
    loop.prediction, loop.uncertainty = np.asarray(first_event.prediction), first_event.uncertainty
    dice = [_mean_dice(loop.prediction, case.gt, classes)]
    marked = [ann0.marked_fraction()]
    slices: list[int | None] = []
    corrected: list[int] = []
    marked_slices = ann0.annotated_slices()
    current: int | None = marked_slices[0] if marked_slices else None  # the user looks at their own marks
    t0 = time.perf_counter()
    for r in range(rounds):
        z = loop.next_slice(current)
        slices.append(z)
        n_new = 0
        if z is not None:
            loop.reviewed.add(z)  # looked at, even when there is nothing worth a scribble
            current = z
            corr = correct_slice(loop.prediction, case.gt, z, loop.marks, seed=budget.seed + r, regions=regions)
            if corr is not None:
                n_new = loop.accept(corr, slices=(z,)).added_voxels  # combine -> refine -> update the trainer
        corrected.append(n_new)
        loop.run_to_end()  # warm start: continues from the current weights
        dice.append(_mean_dice(loop.prediction, case.gt, classes))
        marked.append(loop.marks.marked_fraction())
        if log:
            log(f"  {case.dataset}/{case.name} {strategy} round {r + 1}: slice {z}, +{n_new} marks, Dice {dice[-1]:.3f}")
    return {"strategy": strategy, "dice": dice, "marked_fraction": marked, "slices": slices,
            "corrected_voxels": corrected, "seconds": time.perf_counter() - t0}


def rounds_to_reach(curve: list[float], target: float) -> int | None:
    """First round whose Dice is at least ``target`` (round 0 = before any correction), else None."""
    for r, d in enumerate(curve):
        if d >= target - 1e-9:
            return r
    return None


def simulate_active(
    case: Case,
    ann0: SparseAnnotation,
    strategies: list[str],
    rounds: int,
    budget: Budget,
    *,
    setting: str = "",
    log: Callable[[str], None] | None = None,
    pseudo_cache: PseudoCache | None = None,
    pseudo_method: str = SHARED_PSEUDO,
    regions: int = 1,
    refine: bool = True,
    random_draws: int = 1,
) -> dict[str, Any]:
    """Every strategy on one case from the same start; one JSON-able record.

    ``random_draws`` > 1 runs the random strategy that many times (seeds differ per case and per draw)
    and records the mean curve, with each draw under ``draws``: one draw is one lucky or unlucky order,
    and the goal compares against random's *expected* final Dice.
    """
    t0 = time.perf_counter()
    init, pseudo, ev = initial_model(case, ann0, budget, setting, pseudo_cache, pseudo_method)
    t_init = time.perf_counter() - t0
    curves = {}
    for s in strategies:
        if s == "random" and random_draws > 1:
            base = budget.seed + zlib.crc32(case.name.encode()) % 10_000
            draws = [run_strategy(case, ann0, s, rounds, budget, init, pseudo, ev, log=log, regions=regions,
                                  refine=refine, seed=base + i) for i in range(random_draws)]
            curves[s] = {"strategy": s, "dice": [float(np.mean(v)) for v in zip(*(d["dice"] for d in draws))],
                         "marked_fraction": [float(np.mean(v)) for v in zip(*(d["marked_fraction"] for d in draws))],
                         "seconds": float(sum(d["seconds"] for d in draws)), "draws": draws}
        else:
            curves[s] = run_strategy(case, ann0, s, rounds, budget, init, pseudo, ev, log=log, regions=regions,
                                     refine=refine)
    return {"dataset": case.dataset, "case": case.name, "setting": setting, "rounds": rounds,
            "budget": {"steps": budget.steps, "warm_steps": budget.warm_steps, "seed": budget.seed},
            "regions_per_round": regions, "refine_pseudo": refine, "random_draws": random_draws,
            "initial_seconds": t_init, "pseudo_method": pseudo_method, "strategies": curves, "default_strategy": default_strategy()}


def summarise_active(records: list[dict[str, Any]], default: str | None = None) -> dict[str, Any]:
    """Mean Dice per round per strategy over cases, and the goal: does the default strategy reach the
    random strategy's final mean Dice in at most half the rounds?"""
    default = default or default_strategy()
    if not records:
        return {}
    names = list(records[0]["strategies"])
    n = min(len(r["strategies"][s]["dice"]) for r in records for s in names)
    mean = {s: [float(np.mean([r["strategies"][s]["dice"][i] for r in records])) for i in range(n)] for s in names}
    out: dict[str, Any] = {"mean_dice": mean, "cases": len(records), "rounds": n - 1, "default": default}
    if "random" in mean and default in mean:
        target = mean["random"][-1]
        out["random_final_dice"] = target
        if target <= mean["random"][0] + 1e-9:  # random never improved: "reaching" it says nothing
            out["default_rounds_to_random_final"] = None
            out["goal_half_rounds_met"] = None
        else:
            reach = rounds_to_reach(mean[default], target)
            out["default_rounds_to_random_final"] = reach
            out["goal_half_rounds_met"] = reach is not None and reach <= (n - 1) / 2
    return out
