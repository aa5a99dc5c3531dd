"""Segmentation methods behind one switch (``sparseseg segment --method NAME``).

``default`` is the engine's weakly supervised Trainer; every other module in this package adds one
seed paper's idea on top of it (see each module's docstring for the mapping to its paper).  Modules
register themselves with :func:`register`; :func:`load_all` imports every module of the package, so
a new method is one new file.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import SEGMENT_METHODS, MethodContext, MethodInfo, MethodOutput, make_context, register, run_method

_LOADED = False


def load_all() -> dict[str, MethodInfo]:
    """Import every method module once; returns the registry."""
    global _LOADED
    if not _LOADED:
        for mod in pkgutil.iter_modules(__path__):
            if mod.name != "base" and not mod.name.startswith("_"):
                importlib.import_module(f"{__name__}.{mod.name}")
        _LOADED = True
    return SEGMENT_METHODS


__all__ = ["SEGMENT_METHODS", "MethodContext", "MethodInfo", "MethodOutput", "load_all", "make_context",
           "register", "run_method"]
