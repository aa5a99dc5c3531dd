"""The contenders a benchmark compares (ours, baselines, seed-paper methods, the upper bound), behind one
registry (:data:`CONTENDERS`) so a seed-paper method costs no bench code.

Every method takes the case (image + ground truth), the sparse marks, a :class:`Budget` and the
pseudo-labels it asked for (``MethodSpec.pseudo``, computed once per case and setting by the runner's
:class:`~napari_sparseseg.benchmarking.pseudo_cache.PseudoCache` and shared by every method that asks
for the same kind), and returns a dense label map on the image grid.  Only ``supervised`` may look at
``case.gt`` (it is the upper bound); the others see the image and the marks only.

Every method of :mod:`napari_sparseseg.methods` other than ``default`` (the seed-paper variants)
appears here automatically as kind ``seed-paper`` under its own name (:func:`sync_segment_methods`),
run through ``run_method(name, make_context(...))`` exactly like ``sparseseg`` runs ``default``, so the
ablation table times and feeds them identically.  A bench-only method::

    from napari_sparseseg.benchmarking import register_contender

    @register_contender("my-baseline", kind="baseline", description="...", pseudo="random-walker")
    def _mine(case, ann, budget, pseudo):
        return MethodResult(labels, {"anything": "useful"})
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..annotations import SparseAnnotation
from ..errors import SparsesegError
from ..registry import Registry
from .cases import Case

#: the pseudo-labels every trained weakly supervised method starts from (the product default)
SHARED_PSEUDO = "auto"


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


MethodFn = Callable[[Case, SparseAnnotation, Budget, Any], MethodResult]


@dataclass(frozen=True)
class MethodSpec:
    name: str
    fn: MethodFn
    kind: str  # "ours", "baseline", "upper-bound" or "seed-paper"
    description: str
    uses_marks: bool = True  # False: trained on the dense labels, run once per case (setting "dense")
    pseudo: str | None = None  # pseudo-label method the runner computes (once, shared) and passes in


def _sync() -> None:
    sync_segment_methods()


#: benchmark contenders by name (``sparseseg bench --methods``); the seed-paper methods join on first lookup
CONTENDERS: Registry[MethodSpec] = Registry("benchmark method", load=_sync)
KINDS = ("ours", "baseline", "upper-bound", "seed-paper")


def register_contender(name: str, *, kind: str, description: str, uses_marks: bool = True,
                    pseudo: str | None = None) -> Callable[[MethodFn], MethodFn]:
    """Decorator: add ``fn(case, ann, budget, pseudo)`` to :data:`CONTENDERS` under ``name``."""
    if kind not in KINDS:
        raise ValueError(f"unknown method kind {kind!r}")

    def deco(fn: MethodFn) -> MethodFn:
        CONTENDERS.register(name, MethodSpec(name, fn, kind, description, uses_marks, pseudo))
        return fn

    return deco


def sync_segment_methods() -> list[str]:
    """Register every :mod:`napari_sparseseg.methods` method except ``default`` as ``seed-paper``.

    Called before every lookup, so a method module added (or registered by a test) after this module
    was imported still shows up.  A module that fails to import is logged and skipped by
    :func:`~napari_sparseseg.methods.load_all`: one broken seed-paper module must not take the bench down.
    """
    from .. import methods as seg

    added = []
    for name, info in seg.load_all().items():
        if name == "default" or name in CONTENDERS._items:
            continue
        CONTENDERS.register(name, MethodSpec(name, _segment_method(name), "seed-paper",
                                             f"{info.description} (paper: {info.paper}); shared '{SHARED_PSEUDO}' "
                                             "pseudo-labels, same step budget", True, SHARED_PSEUDO))
        added.append(name)
    return added


def get_contender(name: str) -> MethodSpec:
    if name not in CONTENDERS._items:
        sync_segment_methods()
    return CONTENDERS.get(name)


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


def run_segment_method(name: str, case: Case, ann: SparseAnnotation, budget: Budget, pseudo: Any) -> MethodResult:
    """``run_method(name, make_context(...))`` of :mod:`napari_sparseseg.methods`, as the CLI runs it."""
    from ..methods import make_context, run_method

    out = run_method(name, make_context(case.image, ann, pseudo, train_config(budget)))
    info = dict(out.info)
    info["train_seconds"] = info.get("seconds")  # training + prediction, without the pseudo-labels
    return MethodResult(np.asarray(out.labels), info)


def _segment_method(name: str) -> MethodFn:
    def fn(case: Case, ann: SparseAnnotation, budget: Budget, pseudo: Any) -> MethodResult:
        return run_segment_method(name, case, ann, budget, pseudo)

    fn.__name__ = f"segment_{name.replace('-', '_')}"
    return fn


# ---------------------------------------------------------------------------------- methods
register_contender(
    "sparseseg", kind="ours", pseudo=SHARED_PSEUDO,
    description="the product default (`sparseseg segment`, method `default`): shared 'auto' pseudo-labels + "
    "the weakly supervised Trainer, same step budget",
)(_segment_method("default"))


@register_contender(
    "random-walker", kind="baseline", pseudo="random-walker",
    description="scikit-image random walker from the same marks (per slice, 3D walker for unmarked slices)",
)
def _walker(case: Case, ann: SparseAnnotation, budget: Budget, pseudo: Any) -> MethodResult:
    return MethodResult(pseudo.labels, {"unmarked": pseudo.info.get("unmarked")})


@register_contender(
    "sam", kind="baseline", pseudo="sam",
    description="SAM pseudo-labels alone (bundled LiteMedSAM, prompts from the marks), no training",
)
def _sam(case: Case, ann: SparseAnnotation, budget: Budget, pseudo: Any) -> MethodResult:
    return MethodResult(pseudo.labels, {"backend": pseudo.info.get("backend")})


@register_contender(
    "supervised", kind="upper-bound", uses_marks=False,
    description="the same U-Net (method `default`) trained on the dense expert labels of this volume, same "
    "step budget, no pseudo-labels (run once per case, reported as setting 'dense')",
)
def _supervised(case: Case, ann: SparseAnnotation, budget: Budget, pseudo: Any) -> MethodResult:
    return run_segment_method("default", case, dense_annotation(case), budget, None)
