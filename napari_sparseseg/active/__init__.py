"""Active learning: which slice should the user correct next, and which scan to open next (:mod:`.scans`)."""

from __future__ import annotations

from .base import FULLY_LABELLED, ReviewContext, SliceStrategy, next_slice, rank_slices
from .scans import SCAN_STRATEGIES, get_scan_strategy, rank_scans, suggest_scan
from .strategies import (
    STRATEGIES,
    DisagreementStrategy,
    EntropyStrategy,
    RandomStrategy,
    SequentialStrategy,
    normalized_entropy,
)


def get_strategy(name: str, **kwargs) -> SliceStrategy:
    """Instantiate a strategy by name; unknown names list the known ones (a one-line SparsesegError)."""
    return STRATEGIES.get(name)(**kwargs)


__all__ = [
    "SCAN_STRATEGIES",
    "get_scan_strategy",
    "rank_scans",
    "suggest_scan",
    "FULLY_LABELLED",
    "STRATEGIES",
    "DisagreementStrategy",
    "EntropyStrategy",
    "RandomStrategy",
    "ReviewContext",
    "SequentialStrategy",
    "SliceStrategy",
    "get_strategy",
    "next_slice",
    "normalized_entropy",
    "rank_slices",
]
