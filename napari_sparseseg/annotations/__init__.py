"""Sparse annotations (0 = unmarked, classes > 0, one declared background label) and simulators."""

from ..errors import AnnotationError
from .sparse import IGNORE_INDEX, SparseAnnotation, mix

__all__ = ["AnnotationError", "IGNORE_INDEX", "SparseAnnotation", "mix"]
