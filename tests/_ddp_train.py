"""Run by tests/test_cohort_ddp.py under torchrun (or plainly): train the study model on the
synthetic study and write its Dice on an unseen scan plus the shard sizes as JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _study_helpers import synthetic_scan, synthetic_study  # noqa: E402

from napari_sparseseg.cohort import CohortConfig, CohortModel, CohortTrainer, distributed  # noqa: E402
from napari_sparseseg.evaluate.metrics import dice_per_class  # noqa: E402


def main(out: str, batch: int) -> None:
    study = [s for s, _ in synthetic_study(4)]
    cfg = CohortConfig(max_steps=80, budget_seconds=1e9, batch=batch, patch=(48, 48), channels=(8, 16, 32), threads=1,
                       device="cpu", checkpoint_every_seconds=1e9, refresh_at=())
    trainer = CohortTrainer(study, cfg)
    pseudo_events = sum(ev.kind == "pseudo" for ev in trainer.run())
    vol, gt = synthetic_scan(99)
    model = CohortModel(trainer.model, trainer.spec, trainer.metadata(), trainer.device)
    d = dice_per_class(model.predict(vol)[0], gt, (1, 2))
    res = {"rank": distributed.rank(), "world": distributed.world(), "scans_made": pseudo_events,
           "dice": (d[1] + d[2]) / 2, "first_weight": float(next(iter(trainer.model.parameters())).detach().flatten()[0])}
    Path(out).with_suffix(f".{distributed.rank()}.json").write_text(json.dumps(res))
    distributed.finish()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
