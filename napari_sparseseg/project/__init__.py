"""Projects: a study's scans, their sparse marks, predictions and one shared model, in one folder.

The CLI (``sparseseg project ...``) and the widget's project panel share the same folder; see
``docs/project.md`` for the workflow and :mod:`.store` for the layout.
"""

from .records import (
           PROJECT_FILE,
           PROJECT_VERSION,
           STATUSES,
           LabelSpec,
           ModelRecord,
           ProjectError,
           ScanRecord,
)
from .store import Project

__all__ = ["PROJECT_FILE", "PROJECT_VERSION", "STATUSES", "LabelSpec", "ModelRecord", "Project", "ProjectError",
           "ScanRecord"]
