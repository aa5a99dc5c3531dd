"""Segmentation methods behind one switch (``sparseseg segment --method NAME``).

``default`` is the engine's weakly supervised Trainer; every other module in this package adds one
seed paper's idea on top of it (see each module's docstring for the mapping to its paper).  Modules
register themselves with :func:`register`; :func:`load_all` imports every module of the package, so
a new method is one new file.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil

from ..registry import Registry
from .base import SEGMENT_METHODS, MethodContext, MethodInfo, MethodOutput, make_context, register, run_method

log = logging.getLogger(__name__)
_LOADED = False
#: method modules that failed to import: module name -> error (one broken module must not hide the others)
FAILED: dict[str, str] = {}


def load_all() -> Registry[MethodInfo]:
    """Import every method module once (each alone: a failure is logged and skipped); returns the registry."""
    global _LOADED
    if not _LOADED:
        _LOADED = True
        for mod in pkgutil.iter_modules(__path__):
            if mod.name != "base" and not mod.name.startswith("_"):
                try:
                    importlib.import_module(f"{__name__}.{mod.name}")
                except Exception as exc:  # noqa: BLE001 - reported, not fatal
                    FAILED[mod.name.replace("_", "-")] = f"{type(exc).__name__}: {exc}"
                    log.warning("method module %s failed to import: %s", mod.name, exc)
    return SEGMENT_METHODS


__all__ = ["FAILED", "SEGMENT_METHODS", "MethodContext", "MethodInfo", "MethodOutput", "load_all", "make_context",
           "register", "run_method"]
