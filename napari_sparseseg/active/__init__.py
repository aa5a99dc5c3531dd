"""Active learning: which slice should the user correct next?  Small pluggable strategies."""

from __future__ import annotations

from .base import FULLY_LABELLED, ReviewContext, SliceStrategy, next_slice, rank_slices
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
