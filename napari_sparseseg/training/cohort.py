"""Pretrain the default network on a cohort of annotated volumes, then fine-tune on the current one.

Why: training from scratch on one volume's marks is the slow part of the loop (a 2D U-Net from
scratch needs ~20 min on 2 cores to reach 0.79 on ACDC), and the network learns little beyond its
pseudo-labels in a 60-120 s budget.  A network pretrained once on other patients' dense labels,
with the same inputs it sees at run time (image + the pseudo-label prior made from those patients'
own sparse marks), starts each new volume knowing how pseudo-labels go wrong.  The per-volume run
is then a warm start (``sparseseg segment --init model.safetensors``).

One optimisation step = one batch of crops from one cohort volume (volumes taken in turn), with
the same losses, augmentation and schedule as :class:`~napari_sparseseg.training.Trainer`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..annotations.sparse import SparseAnnotation
from ..errors import AnnotationError
from ..io.volume import Volume
from .config import TrainConfig
from .data import TrainingData, build_training_data, percentile_zscore
from .trainer import Trainer


@dataclass
class CohortItem:
    """One training volume: its image, its (dense or sparse) labels as an annotation, and optionally
    the pseudo-labels made from its sparse marks (the prior the network will see at run time)."""

    image: Volume
    annotation: SparseAnnotation
    pseudo: Any | None = None


def dense_item(image: Volume, dense: np.ndarray, background_label: int, classes: Sequence[int],
               pseudo: Any | None = None) -> CohortItem:
    """A cohort item whose every voxel is labelled (expert masks)."""
    ann = SparseAnnotation.from_dense(np.asarray(dense), np.ones(np.shape(dense), bool), background_label, classes)
    return CohortItem(image, ann, pseudo)


def _item_data(item: CohortItem, use_prior: bool, threshold: float, rng: np.random.Generator) -> TrainingData:
    """The Trainer's tensors for one cohort volume (each volume normalised on its own)."""
    if use_prior and item.pseudo is None:
        raise AnnotationError(f"{item.image.name or 'a cohort volume'} has no pseudo-labels; give every volume "
                              "pseudo-labels or none")
    norm, _ = percentile_zscore(item.image.array)
    return build_training_data(norm, item.annotation, item.pseudo, use_prior, threshold, rng, pseudo_targets_too=False)


def pretrain_cohort(items: Sequence[CohortItem], config: TrainConfig, steps: int,
                    progress: Callable[[int, dict[str, float]], None] | None = None,
                    should_stop: Callable[[], bool] | None = None) -> Trainer:
    """Train one network on every item in turn for ``steps`` steps; returns the Trainer (``.save()`` it).

    Every item must share the classes; the network (2D/3D) is chosen from the first item's spacing.
    The targets are each item's annotation (dense labels: every voxel counts); pseudo-labels only
    feed the prior input channels, so the network learns to correct them.
    """
    if not items:
        raise AnnotationError("the cohort is empty")
    classes = tuple(items[0].annotation.classes)
    for it in items:
        it.annotation.validate(it.image.shape)
        if tuple(it.annotation.classes) != classes:
            raise AnnotationError(f"cohort classes differ: {list(classes)} vs {list(it.annotation.classes)}")
    with_pseudo = [it.pseudo is not None for it in items]
    if any(with_pseudo) and not all(with_pseudo):
        raise AnnotationError("give every cohort volume pseudo-labels, or none")
    first = items[0]
    trainer = Trainer(first.image, first.annotation, config, pseudo=first.pseudo)
    rng = np.random.default_rng(config.seed)
    datas = [_item_data(it, trainer.use_prior, config.threshold, rng) for it in items]
    if config.threads:
        torch.set_num_threads(int(config.threads))
    order = rng.permutation(len(datas))
    for step in range(int(steps)):
        if should_stop is not None and should_stop():
            break
        trainer._data = datas[order[step % len(order)]]
        if step % len(order) == len(order) - 1:
            order = rng.permutation(len(datas))
        losses = trainer.train_step(trainer._lr_at(step / max(steps, 1)))
        if progress is not None:
            progress(step, losses)
    trainer._data = datas[0]
    return trainer
