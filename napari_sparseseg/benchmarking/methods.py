"""The methods a benchmark compares, behind one registry so a seed-paper method is one small function.

Every method takes the case (image + ground truth), the sparse marks and a :class:`Budget`, and
returns a dense label map on the image grid.  Only ``supervised`` may look at ``case.gt`` (it is the
upper bound); the others see the image and the marks only.

Add a method (e.g. a seed paper's)::

    from napari_sparseseg.benchmarking import register_method

    @register_method("cross-latent-graph", kind="seed-paper", description="...")
    def _clg(case, ann, budget):
        return MethodResult(labels, {"anything": "useful"})
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..annotations import SparseAnnotation
from ..errors import SparsesegError
from .cases import Case


@dataclass(frozen=True)
class Budget:
    """Training budget shared by every trained method, so they are compared at equal cost.

    A step budget (not a time budget) keeps the comparison fair on a shared, noisy machine;
    ``seconds`` is only a safety cap.  ``warm_steps`` is the budget of each active-learning round.
    """

    steps: int = 200
    seconds: float = 600.0
    warm_steps: int = 40
    threads: int = 2
    seed: int = 0
    device: str = "auto"


@dataclass
class MethodResult:
    labels: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


MethodFn = Callable[[Case, SparseAnnotation, Budget], MethodResult]


@dataclass(frozen=True)
class MethodSpec:
    name: str
    fn: MethodFn
    kind: str  # "ours", "baseline", "upper-bound" or "seed-paper"
    description: str
    uses_marks: bool = True  # False: trained on the dense labels, run once per case (setting "dense")


METHODS: dict[str, MethodSpec] = {}


def register_method(name: str, *, kind: str, description: str, uses_marks: bool = True
                    ) -> Callable[[MethodFn], MethodFn]:
    """Decorator: add ``fn`` to :data:`METHODS` under ``name``."""
    if kind not in ("ours", "baseline", "upper-bound", "seed-paper"):
        raise ValueError(f"unknown method kind {kind!r}")

    def deco(fn: MethodFn) -> MethodFn:
        METHODS[name] = MethodSpec(name, fn, kind, description, uses_marks)
        return fn

    return deco


def get_method(name: str) -> MethodSpec:
    try:
        return METHODS[name]
    except KeyError:
        raise SparsesegError(f"unknown method {name!r}; choose from {', '.join(METHODS)}") from None


# ---------------------------------------------------------------------------------- helpers
def train_config(budget: Budget, **overrides: Any):
    """The product's :class:`TrainConfig` with the benchmark budget (previews off: they cost time)."""
    from ..training import TrainConfig

    kw: dict[str, Any] = dict(
        seed=budget.seed, device=budget.device, budget_seconds=budget.seconds, max_steps=budget.steps,
        threads=budget.threads, first_preview_seconds=1e9, preview_every_seconds=1e9,
    )
    kw.update(overrides)
    return TrainConfig(**kw)


def run_to_end(trainer: Any) -> Any:
    """Iterate :meth:`Trainer.run` to its terminal event; raise on error/cancel."""
    last = None
    for ev in trainer.run():
        last = ev
    if last is None or last.kind != "done" or last.prediction is None:
        msg = getattr(last, "message", "") or "no final prediction"
        raise SparsesegError(f"training ended with {getattr(last, 'kind', 'nothing')}: {msg}")
    return last


def dense_annotation(case: Case) -> SparseAnnotation:
    """Every voxel marked with its expert label: the annotation of the fully supervised upper bound."""
    return SparseAnnotation.from_dense(case.gt, np.ones(case.gt.shape, bool), case.background_label,
                                       case.present_classes)


# ---------------------------------------------------------------------------------- methods
@register_method(
    "sparseseg", kind="ours",
    description="the product default (`sparseseg segment`): pseudo-labels (method 'auto') + the weakly "
    "supervised Trainer, same step budget",
)
def _sparseseg(case: Case, ann: SparseAnnotation, budget: Budget) -> MethodResult:
    from ..pseudo import make_pseudo_labels
    from ..training import Trainer

    pseudo = make_pseudo_labels(case.image, ann, "auto")
    trainer = Trainer(case.image, ann, train_config(budget), pseudo=pseudo)
    t0 = time.perf_counter()
    ev = run_to_end(trainer)
    return MethodResult(np.asarray(ev.prediction), {"steps": trainer.step, "network": trainer.spec.name,
                                                    "train_seconds": time.perf_counter() - t0,
                                                    "pseudo_method": pseudo.info.get("method")})


@register_method(
    "random-walker", kind="baseline",
    description="scikit-image random walker from the same marks (per slice, 3D walker for unmarked slices)",
)
def _walker(case: Case, ann: SparseAnnotation, budget: Budget) -> MethodResult:
    from ..pseudo import make_pseudo_labels

    pl = make_pseudo_labels(case.image, ann, "random-walker")
    return MethodResult(pl.labels, {"unmarked": pl.info.get("unmarked")})


@register_method(
    "sam", kind="baseline",
    description="SAM pseudo-labels alone (bundled LiteMedSAM, prompts from the marks), no training",
)
def _sam(case: Case, ann: SparseAnnotation, budget: Budget) -> MethodResult:
    from ..pseudo import make_pseudo_labels

    pl = make_pseudo_labels(case.image, ann, "sam")
    return MethodResult(pl.labels, {"backend": pl.info.get("backend")})


@register_method(
    "supervised", kind="upper-bound", uses_marks=False,
    description="the same U-Net trained on the dense expert labels of this volume, same step budget "
    "(run once per case, reported as setting 'dense')",
)
def _supervised(case: Case, ann: SparseAnnotation, budget: Budget) -> MethodResult:
    from ..training import Trainer

    dense = dense_annotation(case)
    trainer = Trainer(case.image, dense, train_config(budget))
    t0 = time.perf_counter()
    ev = run_to_end(trainer)
    return MethodResult(np.asarray(ev.prediction), {"steps": trainer.step, "network": trainer.spec.name,
                                                    "train_seconds": time.perf_counter() - t0})
