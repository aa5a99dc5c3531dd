"""A resumable checkpoint of cohort training: weights, optimiser moments, step and elapsed time.

One safetensors file (``cohort_last.safetensors`` in the work folder), written atomically: an
interrupted run (Ctrl-C, a crash, a killed job) continues from its last checkpoint with
``resume=True``, and the same file is a usable model (its metadata is the model's).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import CheckpointError
from ..training.checkpoint import load_checkpoint, save_checkpoint

if TYPE_CHECKING:
    from .trainer import CohortTrainer

RESUME_NAME = "cohort_last.safetensors"


def save_resume(trainer: CohortTrainer, workdir: Path) -> Path:
    tensors: dict[str, torch.Tensor] = {f"model.{k}": v for k, v in trainer.model.state_dict().items()}
    if trainer.model_b is not None:
        tensors.update({f"model_b.{k}": v for k, v in trainer.model_b.state_dict().items()})
    for i, st in trainer.optimizer.state_dict()["state"].items():
        for name, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim.{i}.{name}"] = v.reshape(-1) if v.ndim == 0 else v
    meta = trainer.metadata()
    meta["resume"] = {"step": trainer.step, "elapsed": trainer.elapsed_before, "version": trainer.model_version,
                      "refreshed": sorted(trainer._refreshed)}
    return save_checkpoint(Path(workdir) / RESUME_NAME, tensors, meta)


def load_resume(workdir: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    path = Path(workdir) / RESUME_NAME
    if not path.is_file():
        return None
    return load_checkpoint(path)


def restore(trainer: CohortTrainer, state: tuple[dict[str, torch.Tensor], dict[str, Any]]) -> tuple[int, float, int]:
    tensors, meta = state
    if [int(c) for c in meta.get("classes", [])] != list(trainer.classes):
        raise CheckpointError(f"the work folder's checkpoint is for classes {meta.get('classes')}, the study has "
                              f"{list(trainer.classes)}; use another work folder")
    try:
        trainer.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        if trainer.model_b is not None:
            trainer.model_b.load_state_dict({k[8:]: v for k, v in tensors.items() if k.startswith("model_b.")})
    except RuntimeError as exc:
        raise CheckpointError(f"the work folder's checkpoint does not fit this network ({str(exc).splitlines()[0]}); "
                              "use another work folder or the same settings") from None
    opt = trainer.optimizer.state_dict()
    new_state: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, i, name = key.split(".", 2)
            new_state.setdefault(int(i), {})[name] = v.reshape(()) if name == "step" else v
    if new_state:
        opt["state"] = new_state
        trainer.optimizer.load_state_dict(opt)
    r = meta.get("resume", {})
    trainer._refreshed = set(float(x) for x in r.get("refreshed", []))
    return int(r.get("step", 0)), float(r.get("elapsed", 0.0)), int(r.get("version", 0))
