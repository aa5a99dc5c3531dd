"""One interface for every segmentation method: the engine's default and the seed papers' variants.

Why one interface: the CLI (``sparseseg segment --method NAME``), the benchmark's ablation table and
the tests all call :func:`run_method` the same way, so a paper's idea is one small module that
registers a function and inherits the budget, the device choice, seeding, cancellation and progress.

A method function takes a :class:`MethodContext` and returns a :class:`MethodOutput` whose label map
uses the annotation's class ids on the image grid (0 = background).  The context hands out the same
prepared tensors the default :class:`~napari_sparseseg.training.Trainer` uses (normalised image,
pseudo-label prior channels, mark targets, MIX pseudo targets + confidence weights, crop sampler),
so the variants differ from the default only in what their paper adds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..annotations.sparse import SparseAnnotation
from ..errors import SparsesegError
from ..io.volume import Volume
from ..registry import Registry
from ..training.config import TrainConfig

ProgressFn = Callable[[int, dict[str, float]], None]


@dataclass
class MethodOutput:
    labels: np.ndarray  # int16 class ids on the image grid, 0 = background
    uncertainty: np.ndarray | None = None  # float32 in [0, 1], same grid (None if the method has none)
    info: dict[str, Any] = field(default_factory=dict)  # steps, seconds, anything worth a table column


@dataclass
class MethodContext:
    """Everything a method needs; build it with :func:`make_context`.

    ``config.max_steps`` (if set) and ``config.budget_seconds`` both bound training: a method stops at
    whichever comes first (:meth:`steps`).  A method that trains two or three networks counts one
    optimisation step of all of them as one step, so rows of the ablation table cost comparable
    compute per step; say in ``info`` what a step is.
    """

    image: Volume
    annotation: SparseAnnotation
    pseudo: Any | None  # PseudoLabels (labels, confidence, probabilities, classes, info) or None
    config: TrainConfig
    progress: ProgressFn | None = None
    should_stop: Callable[[], bool] | None = None
    _prepared: Any = None

    @property
    def classes(self) -> tuple[int, ...]:
        return tuple(int(c) for c in self.annotation.classes)

    @property
    def n_channels_out(self) -> int:
        """Network output channels: background + one per class."""
        return len(self.classes) + 1

    @property
    def device(self) -> torch.device:
        from ..training.trainer import pick_device

        return pick_device(self.config.device)

    def rng(self, offset: int = 0) -> np.random.Generator:
        return np.random.default_rng(self.config.seed + offset)

    def seed_torch(self, offset: int = 0) -> torch.Generator:
        torch.manual_seed(self.config.seed + offset)
        if self.config.threads:
            torch.set_num_threads(int(self.config.threads))
        return torch.Generator().manual_seed(self.config.seed + offset)

    def prepared(self):
        """The default Trainer's tensors: ``TrainingData`` (x = image [+ prior channels], marks,
        pseudo targets, weights, crop centres).  Built once; crop with
        :func:`napari_sparseseg.training.data.crop_batch`."""
        if self._prepared is None:
            from ..training.data import build_training_data, percentile_zscore

            norm, _ = percentile_zscore(self.image.array)
            use_prior = bool(self.config.pseudo_input and self.pseudo is not None)
            self._prepared = build_training_data(norm, self.annotation, self.pseudo, use_prior,
                                                 self.config.threshold, self.rng())
        return self._prepared

    def steps(self) -> Iterator[int]:
        """Yield step indices until ``max_steps`` or ``budget_seconds`` runs out, or ``should_stop``."""
        t0 = time.perf_counter()
        step = 0
        while True:
            if self.config.max_steps is not None and step >= self.config.max_steps:
                return
            if time.perf_counter() - t0 >= self.config.budget_seconds:
                return
            if self.should_stop is not None and self.should_stop():
                return
            yield step
            step += 1

    def report(self, step: int, losses: dict[str, float]) -> None:
        if self.progress is not None:
            self.progress(step, losses)

    def lr_at(self, step: int) -> float:
        """The default's cosine from ``lr`` to ``lr / 10``, over ``max_steps`` (or 200 if unset)."""
        from ..training.config import cosine_lr

        return cosine_lr(self.config.lr, step / max(self.config.max_steps or 200, 1))

    def outputs(self, prob: torch.Tensor, info: dict[str, Any] | None = None) -> MethodOutput:
        """Softmax ``(K, Z, Y, X)`` over network channels -> label map (class ids) + uncertainty."""
        from ..training.data import channel_to_class
        from ..training.inference import probabilities_to_outputs

        labels, unc = probabilities_to_outputs(prob, channel_to_class(self.classes))
        return MethodOutput(labels, unc, dict(info or {}))


MethodFn = Callable[[MethodContext], MethodOutput]


@dataclass(frozen=True)
class MethodInfo:
    name: str
    fn: MethodFn
    paper: str  # which seed paper, or "engine"
    description: str


def _import_method_modules() -> None:
    from . import load_all

    load_all()


#: segmentation methods by name; every module of this package registers its own on import
SEGMENT_METHODS: Registry[MethodInfo] = Registry("method", load=_import_method_modules)


def register(name: str, *, paper: str, description: str) -> Callable[[MethodFn], MethodFn]:
    """Decorator: make ``fn`` available as ``sparseseg segment --method NAME`` and in the ablation."""

    def deco(fn: MethodFn) -> MethodFn:
        SEGMENT_METHODS.register(name, MethodInfo(name, fn, paper, description))
        return fn

    return deco


def make_context(image: Volume, annotation: SparseAnnotation, pseudo: Any | None, config: TrainConfig,
                 progress: ProgressFn | None = None, should_stop: Callable[[], bool] | None = None) -> MethodContext:
    annotation.validate(image.shape)
    return MethodContext(image, annotation, pseudo, config, progress, should_stop)


def run_method(name: str, ctx: MethodContext) -> MethodOutput:
    """Run method ``name`` (see :data:`SEGMENT_METHODS`); adds ``seconds`` to ``info``."""
    from . import FAILED, load_all

    load_all()
    if name in FAILED:
        raise SparsesegError(f"method {name!r} could not be imported: {FAILED[name]}")
    spec = SEGMENT_METHODS.get(name)
    t0 = time.perf_counter()
    out = spec.fn(ctx)
    labels = np.asarray(out.labels)
    if labels.shape != tuple(ctx.image.shape):
        raise SparsesegError(f"method {name} returned shape {labels.shape}, image is {tuple(ctx.image.shape)}")
    out.labels = labels.astype(np.int16, copy=False)
    out.info.setdefault("seconds", time.perf_counter() - t0)
    out.info.setdefault("method", name)
    return out
