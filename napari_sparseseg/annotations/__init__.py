"""Sparse annotations (0 = unmarked, classes > 0, one declared background label) and simulators."""

from ..errors import AnnotationError
from .build import combine, from_layers, label_slice
from .files import load_annotation, read_sidecar, save_annotation, sidecar_path
from .simulate import (
    choose_slices,
    simulate_correction,
    simulate_points,
    simulate_scribbles,
    simulate_slices,
)
from .sparse import IGNORE_INDEX, SparseAnnotation, mix

__all__ = [
    "AnnotationError",
    "IGNORE_INDEX",
    "SparseAnnotation",
    "choose_slices",
    "combine",
    "from_layers",
    "label_slice",
    "load_annotation",
    "read_sidecar",
    "save_annotation",
    "sidecar_path",
    "mix",
    "simulate_correction",
    "simulate_points",
    "simulate_scribbles",
    "simulate_slices",
]
