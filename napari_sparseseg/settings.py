"""Choices remembered between runs (last folders, training budget, ...), one small JSON file in the
platform's config folder (:func:`napari_sparseseg.paths.settings_path`).

Qt-free and forgiving: a missing, unreadable or damaged file reads as "no settings" (never an error:
losing a remembered folder is harmless), and writes are atomic so a crash cannot leave half a file.
Only JSON scalars, lists and dicts are stored.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from .io.atomic import atomic_write_text
from .paths import settings_path

log = logging.getLogger(__name__)


def load_settings(path: Path | None = None) -> dict[str, Any]:
    p = path or settings_path()
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable settings file %s (%s)", p, exc)
        return {}
    return data if isinstance(data, dict) else {}


def get_setting(key: str, default: Any = None, path: Path | None = None) -> Any:
    return load_settings(path).get(key, default)


def set_setting(key: str, value: Any, path: Path | None = None) -> None:
    """Remember ``key = value`` (read-modify-write of the whole small file; failures only log)."""
    p = path or settings_path()
    data = load_settings(p)
    data[key] = value
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(p, json.dumps(data, indent=1, sort_keys=True))
    except OSError as exc:
        log.warning("could not save settings to %s (%s)", p, exc)
