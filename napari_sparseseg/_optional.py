"""Optional packages (pip extras) behind one helper, so a missing one is a one-line error naming the
extra to install instead of an ``ImportError`` traceback from deep inside a benchmark."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        top = module.split(".")[0]
        raise MissingDependencyError(
            f"{purpose} needs the optional package {top!r}: pip install 'napari-sparseseg[{extra}]'"
        ) from None


def available(module: str) -> bool:
    """Whether ``module`` imports (for optional speed-ups that fall back quietly)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
