"""The quick preset's `sparseseg` rows with no time cap (12 steps exactly), in whichever tree is on PYTHONPATH.

Why: on a loaded machine `sparseseg bench --quick` stops training at its 120 s safety cap, so two runs of
the same code can train different numbers of steps; this runs the same rows by steps only, for a
before/after comparison of a refactor.

    PYTHONPATH=. python bench/scripts/quick_ours_rows.py slices:1   # slices-1 for trees before the grammar change
"""
import json
import sys
from pathlib import Path

from napari_sparseseg.benchmarking.cases import load_case, make_annotation
from napari_sparseseg.benchmarking.pseudo_cache import PseudoCache

try:
    from napari_sparseseg.benchmarking.contenders import Budget, get_contender
except ImportError:
    from napari_sparseseg.benchmarking.methods import Budget
    from napari_sparseseg.benchmarking.methods import get_method as get_contender
import numpy as np

from napari_sparseseg.evaluate import dice_per_class

root = Path("/work/shared/data")
out = {}
for ds, name, setting in [("acdc", "patient041_frame01", "human-scribbles"), ("hippocampus", "hippocampus_001", sys.argv[1])]:
    case = load_case(root, ds, name)
    ann = make_annotation(case, setting, seed=0)
    budget = Budget(steps=12, warm_steps=4, seconds=1e5)
    pseudo, _, _ = PseudoCache(budget.device).get(case, setting, ann, "random-walker", seed=0)
    res = get_contender("sparseseg").fn(case, ann, budget, pseudo)
    d = dice_per_class(np.asarray(res.labels), case.gt, tuple(ann.classes))
    out[ds] = {"mean_dice": float(np.mean(list(d.values()))), "steps": res.info.get("steps")}
print(json.dumps(out))
