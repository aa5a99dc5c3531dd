"""The correction loop, headless: one controller that the widget, the benchmark and the CLI all drive.

``controller``: :class:`CorrectionLoop` (state + the user's operations); ``items``: what a run yields;
``background``: :class:`BackgroundRun`, the one thread that iterates a run for an event loop.
"""

from .background import BackgroundRun, Cancelled, error_message
from .controller import CorrectionLoop
from .items import (
    AcceptedStep,
    LoopRun,
    LoopStatus,
    PseudoReady,
    TrainerReady,
    mix_marks,
    needs_walk,
)

__all__ = [
    "AcceptedStep",
    "BackgroundRun",
    "Cancelled",
    "CorrectionLoop",
    "LoopRun",
    "LoopStatus",
    "PseudoReady",
    "TrainerReady",
    "error_message",
    "mix_marks",
    "needs_walk",
]
