"""Fine-tune a study model on one scan's marks (``segment --init MODEL --annotations ANN``).

Why not the per-scan Trainer: it would pull the network towards the scan's own walker
pseudo-labels, the very thing the study model already does better than.  Here the targets are the
marks plus the voxels where the study model and the walker agree (the same self-training rule the
cohort uses), and training starts at a reduced learning rate from the study weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from .config import CohortConfig, CohortEvent
from .data import CohortScan
from .model import CohortModel
from .trainer import CohortTrainer


def fine_tune(model_path: str | Path, scan: CohortScan, budget_seconds: float = 60.0, max_steps: int | None = None,
              device: str = "auto", seed: int = 0, threads: int | None = 2,
              on_event: Callable[[CohortEvent], None] | None = None) -> CohortModel:
    """A :class:`CohortModel` fine-tuned on ``scan`` (which must carry marks) within the budget."""
    base = CohortModel.load(model_path, device=device)
    cfg = CohortConfig.from_dict(base.meta.get("cohort", {}).get("config", {}))
    cfg = replace(cfg, budget_seconds=float(budget_seconds) if max_steps is None else 1e9, max_steps=max_steps,
                  device=device, seed=seed, threads=threads, refresh_at=(0.0,), prior_dropout=0.2,
                  mutual=False, checkpoint_every_seconds=1e9)
    trainer = CohortTrainer([scan], cfg, init=model_path)
    for ev in trainer.run():
        if on_event is not None:
            on_event(ev)
    return CohortModel(trainer.model, trainer.spec, trainer.metadata(), trainer.device)
