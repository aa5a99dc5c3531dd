"""Learning across the scans of a study from their sparse marks: one network, better with every scan.

:class:`CohortTrainer` trains it (resumable, pausable, under torchrun too); :class:`CohortModel`
applies a saved one to a new scan, with or without marks.
"""

from .config import CohortConfig, CohortEvent
from .data import CohortScan
from .model import CohortModel
from .trainer import CohortTrainer

__all__ = ["CohortConfig", "CohortEvent", "CohortScan", "CohortModel", "CohortTrainer"]
