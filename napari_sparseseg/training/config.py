"""The trainer's settings and the events it yields (the contract the napari widget codes against)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


def cosine_lr(lr: float, frac: float, scale: float = 1.0) -> float:
    """The engine's schedule: cosine from ``lr * scale`` down to a tenth of it as ``frac`` goes 0 -> 1."""
    frac = min(max(frac, 0.0), 1.0)
    return scale * lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


@dataclass
class TrainConfig:
    """Settings of one training run.  Defaults are tuned for ~60-120 s per volume on 2 CPU cores.

    Attributes:
        seed: seeds torch, numpy and the augmentation generator.
        device: ``"auto"`` (CUDA, then MPS, then CPU), or any torch device string.
        network: ``"auto"`` (2D for anisotropic/few-slice scans, else 3D), ``"unet2d"``, ``"unet3d"``.
        budget_seconds: training wall time (paused time not counted); ``max_steps`` stops earlier.
        lr, weight_decay: AdamW; the learning rate follows a cosine over the budget.
        batch: crops per step, ``None`` = 8 in 2D, 4 in 3D.  patch: crop size, ``None`` = (96, 96) in
            2D, (24, 32, 32) in 3D.
        threshold: pseudo-labels with confidence below it are ignored (SA-Net's ``t``).
        w_marks, w_pseudo, w_dice, w_consistency: loss weights (marks CE, pseudo CE, pseudo Dice,
            two-view consistency).
        pseudo_input: also feed the pseudo-label probabilities to the network as input channels,
            so it learns corrections on top of them instead of starting from nothing.
        prior_residual: with ``pseudo_input``, add the prior's log-probabilities to the output, so
            the untrained net already predicts the pseudo-labels (see models.PriorResidual).
        channels: U-Net channels (``None`` = per-dimension default).
        preview_every_seconds: full-volume prediction period; ``first_preview_seconds`` the first.
        step_event_every_seconds: how often ``"step"`` events are yielded (each step is not).
        threads: ``torch.set_num_threads`` for the run (None leaves it alone).
        augment: flips, small rotations (2D), intensity.
        sw_roi: sliding-window inference size (2D: (Y, X), 3D: (Z, Y, X)); None = defaults.
        warm_budget_seconds: training time after :meth:`Trainer.update_annotation`
            (``None`` = half the budget).
        warm_lr_scale: a warm start (new marks, or a second :meth:`Trainer.run`) restarts the cosine
            at ``lr * warm_lr_scale``: the weights are already good, and a full-size first step
            would throw away part of what they learnt before the new marks have any effect.
    """

    seed: int = 0
    device: str = "auto"
    network: str = "auto"
    budget_seconds: float = 90.0
    max_steps: int | None = None
    lr: float = 3e-3
    weight_decay: float = 1e-4
    batch: int | None = None
    patch: tuple[int, ...] | None = None
    threshold: float = 0.5
    w_marks: float = 1.0
    w_pseudo: float = 1.0
    w_dice: float = 0.5
    w_consistency: float = 0.1
    pseudo_input: bool = True
    prior_residual: bool = True
    channels: tuple[int, ...] | None = None
    preview_every_seconds: float = 10.0
    first_preview_seconds: float = 4.0
    step_event_every_seconds: float = 0.5
    threads: int | None = 2
    augment: bool = True
    sw_roi: tuple[int, ...] | None = None
    warm_budget_seconds: float | None = None
    warm_lr_scale: float = 0.3

    def __post_init__(self) -> None:
        """Refuse settings that would spin or fail later (a negative budget, a threshold outside 0-1)."""
        from ..errors import SparsesegError

        def bad(msg: str) -> SparsesegError:
            return SparsesegError(msg)

        if not (isinstance(self.budget_seconds, (int, float)) and math.isfinite(self.budget_seconds)
                and self.budget_seconds >= 0):
            raise bad(f"the training budget must be a finite number of seconds >= 0, got {self.budget_seconds}")
        if self.warm_budget_seconds is not None and not (math.isfinite(self.warm_budget_seconds) and self.warm_budget_seconds >= 0):
            raise bad(f"the warm-start budget must be >= 0 seconds, got {self.warm_budget_seconds}")
        if self.max_steps is not None and self.max_steps < 0:
            raise bad(f"max_steps must be >= 0, got {self.max_steps}")
        if not (math.isfinite(self.threshold) and 0.0 <= self.threshold <= 1.0):
            raise bad(f"the confidence threshold must lie in [0, 1], got {self.threshold}")
        if self.threads is not None and self.threads < 1:
            raise bad(f"threads must be >= 1, got {self.threads}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise bad(f"the learning rate must be > 0, got {self.lr}")
        if self.batch is not None and self.batch < 1:
            raise bad(f"batch must be >= 1, got {self.batch}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainEvent:
    """One progress report from :meth:`Trainer.run`.

    ``kind``: ``"step"`` (losses), ``"prediction"`` (a full-volume preview), ``"done"`` (final
    prediction attached), ``"cancelled"``, ``"error"`` (``message`` says what went wrong).
    ``prediction`` is an int16 label map on the image grid (0 = background), ``uncertainty`` the
    normalised entropy in [0, 1], ``changed`` the bounding box of voxels whose label changed since
    the previous prediction (the whole grid for the first one, None when nothing changed), so the
    widget refreshes only that part of its Labels layer.
    """

    kind: str
    step: int = 0
    elapsed: float = 0.0
    eta: float | None = None
    lr: float = 0.0
    losses: dict[str, float] = field(default_factory=dict)
    prediction: np.ndarray | None = None
    uncertainty: np.ndarray | None = None
    changed: tuple[slice, slice, slice] | None = None
    message: str = ""


def changed_box(old: np.ndarray | None, new: np.ndarray, tolerance: int = 0) -> tuple[slice, ...] | None:
    """Bounding box of voxels that differ by more than ``tolerance`` (the whole grid when there is no
    previous map; None when nothing changed): what a streamed prediction needs to send or repaint."""
    if old is None or old.shape != new.shape:
        return tuple(slice(0, s) for s in new.shape)
    diff = old != new if tolerance == 0 else np.abs(old.astype(np.int16) - new.astype(np.int16)) > tolerance
    if not diff.any():
        return None
    box = []
    for ax in range(diff.ndim):
        other = tuple(a for a in range(diff.ndim) if a != ax)
        idx = np.flatnonzero(diff.any(axis=other))
        box.append(slice(int(idx[0]), int(idx[-1]) + 1))
    return tuple(box)

