"""Evaluation: per-class Dice / HD95 / ASSD in mm, and timing / peak-memory helpers.

Importing this package does not import torch or MONAI (only :func:`surface_distances` does, lazily).
"""

from .metrics import dice_per_class, evaluate_labels, mean_metrics, present_classes, surface_distances
from .timing import PeakMemory, Timer, max_rss_bytes, rss_bytes

__all__ = [
    "PeakMemory",
    "Timer",
    "dice_per_class",
    "evaluate_labels",
    "max_rss_bytes",
    "mean_metrics",
    "present_classes",
    "rss_bytes",
    "surface_distances",
]
