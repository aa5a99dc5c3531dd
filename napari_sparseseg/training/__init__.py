"""Weakly supervised training: trainer (event generator), losses, checkpoints, background worker."""

from .checkpoint import check_compatible, load_checkpoint, save_checkpoint
from .config import TrainConfig, TrainEvent
from .trainer import Trainer, pick_device

__all__ = [
    "TrainConfig",
    "TrainEvent",
    "Trainer",
    "pick_device",
    "save_checkpoint",
    "load_checkpoint",
    "check_compatible",
]
