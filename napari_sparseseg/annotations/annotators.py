"""Simulated annotators behind one grammar: ``scribbles[:axis]``, ``points:K``, ``slices:K[:axis]``.

Why one grammar: the CLI (``sparseseg simulate --mode``) and the benchmark (``sparseseg bench
--settings``) name the same annotators, and a result row's setting must mean the same thing as a
command's ``--mode``.  ``kind-K`` (``points-5``, ``slices-3``), the spelling of earlier benchmark
results, is read as ``kind:K``; :func:`parse_annotator` returns the canonical spelling in ``.name``.

Modes live in :data:`ANNOTATORS`; a new one is a function ``fn(dense, spec, background_label, seed,
spacing) -> SparseAnnotation`` registered with ``@ANNOTATORS.register("kind")``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import AnnotationError
from ..registry import Registry
from .simulate import simulate_points, simulate_scribbles, simulate_slices
from .sparse import SparseAnnotation

GRAMMAR = "scribbles[:axis] | points:K | slices:K[:axis]"


@dataclass(frozen=True)
class AnnotatorSpec:
    """A parsed mode: ``kind``, ``k`` (clicks or slices; 0 for scribbles) and the slice ``axis``."""

    kind: str
    k: int = 0
    axis: int = 0

    @property
    def name(self) -> str:
        """The canonical spelling (``points:5``, ``slices:3``, ``slices:3:2``, ``scribbles``)."""
        parts = [self.kind] + ([str(self.k)] if self.k else []) + ([str(self.axis)] if self.axis else [])
        return ":".join(parts)


AnnotatorFn = Callable[[np.ndarray, AnnotatorSpec, "int | None", int, tuple], SparseAnnotation]


@dataclass(frozen=True)
class Annotator:
    fn: AnnotatorFn
    needs_k: bool  # points and slices take a count; scribbles do not
    has_axis: bool  # scribbles and slices follow a slice axis


#: simulated annotator modes by kind
ANNOTATORS: Registry[Annotator] = Registry("annotator", error=AnnotationError)


def _register(kind: str, needs_k: bool, has_axis: bool) -> Callable[[AnnotatorFn], AnnotatorFn]:
    def deco(fn: AnnotatorFn) -> AnnotatorFn:
        ANNOTATORS.register(kind, Annotator(fn, needs_k, has_axis))
        return fn

    return deco


@_register("scribbles", needs_k=False, has_axis=True)
def _scribbles(dense: np.ndarray, spec: AnnotatorSpec, bg: int | None, seed: int, spacing: tuple) -> SparseAnnotation:
    return simulate_scribbles(dense, bg, seed=seed, axis=spec.axis)


@_register("points", needs_k=True, has_axis=False)
def _points(dense: np.ndarray, spec: AnnotatorSpec, bg: int | None, seed: int, spacing: tuple) -> SparseAnnotation:
    return simulate_points(dense, spec.k, bg, seed=seed, spacing=spacing)


@_register("slices", needs_k=True, has_axis=True)
def _slices(dense: np.ndarray, spec: AnnotatorSpec, bg: int | None, seed: int, spacing: tuple) -> SparseAnnotation:
    return simulate_slices(dense, spec.k, spec.axis, bg, seed=seed)


_LEGACY = re.compile(r"^([a-z]+)-(\d+)$")  # "points-5": earlier benchmark results


def parse_annotator(text: str) -> AnnotatorSpec:
    """``"scribbles"``, ``"scribbles:2"``, ``"points:5"``, ``"slices:3"``, ``"slices:3:2"`` (and ``"points-5"``)."""
    t = str(text).strip().lower()
    legacy = _LEGACY.match(t)
    if legacy:
        t = f"{legacy.group(1)}:{legacy.group(2)}"
    kind, *args = t.split(":")
    try:
        nums = [int(a) for a in args]
    except ValueError:
        raise AnnotationError(f"annotator {text!r}: numbers expected after ':' ({GRAMMAR})") from None
    if kind not in ANNOTATORS:
        raise AnnotationError(f"annotator {text!r} is not understood; use {GRAMMAR} with K >= 1")
    a = ANNOTATORS.get(kind)
    if a.needs_k:
        if len(nums) not in ((1, 2) if a.has_axis else (1,)) or nums[0] < 1:
            raise AnnotationError(f"annotator {text!r} is not understood; use {GRAMMAR} with K >= 1")
        return AnnotatorSpec(kind, nums[0], nums[1] if len(nums) == 2 else 0)
    if len(nums) > (1 if a.has_axis else 0):
        raise AnnotationError(f"annotator {text!r} is not understood; use {GRAMMAR}")
    return AnnotatorSpec(kind, 0, nums[0] if nums else 0)


def simulate(dense: np.ndarray, spec: AnnotatorSpec | str, background_label: int | None = None, *, seed: int = 0,
             spacing: tuple = (1.0, 1.0, 1.0)) -> SparseAnnotation:
    """The marks annotator ``spec`` draws on the dense label map ``dense``."""
    spec = parse_annotator(spec) if isinstance(spec, str) else spec
    if not 0 <= spec.axis < np.ndim(dense):
        raise AnnotationError(f"axis {spec.axis} does not exist in a {np.ndim(dense)}D label map "
                              f"(use 0..{np.ndim(dense) - 1})")
    return ANNOTATORS.get(spec.kind).fn(dense, spec, background_label, seed, tuple(spacing))
