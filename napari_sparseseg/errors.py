"""Errors the user can act on.  Each carries a one-line message; the CLI prints it and exits with 2,
the widget shows it in a notification.  Anything else is a bug and keeps its traceback."""


class SparsesegError(ValueError):
    """Base class: bad input or a state the user can fix (wrong file, grid, checkpoint, marks)."""


class VolumeError(SparsesegError):
    """A volume or label file that cannot be used."""


class AnnotationError(SparsesegError):
    """An annotation that cannot be used."""


class CheckpointError(SparsesegError):
    """A model checkpoint that does not load or does not fit the data."""


class PseudoLabelError(SparsesegError):
    """Pseudo-labels that cannot be computed (the image has no usable contrast, a stage ran out of time)."""


class OutputError(SparsesegError):
    """An output that cannot be written where or how it was asked (folder, extension, already exists)."""


class MissingDependencyError(SparsesegError):
    """An optional package (an extra such as ``bench`` or ``export``) that this feature needs is missing."""
