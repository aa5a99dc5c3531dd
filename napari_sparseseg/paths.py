"""Where napari-sparseseg keeps files on the user's machine, following each platform's convention
(platformdirs): Linux ``~/.local/share`` / ``~/.cache`` / ``~/.config`` (or the ``XDG_*`` variables),
macOS ``~/Library/...``, Windows ``%LOCALAPPDATA%``.

* user data (``user_data_dir``): what costs the user effort and must survive a cache cleaner --
  the autosaved marks (``autosave/``);
* cache (``cache_dir``): what can be recomputed -- SAM image embeddings (``embeddings/``) and the
  ONNX export of the SAM encoder (``onnx/``);
* settings (``settings_path``): a small JSON of choices remembered between runs (:mod:`.settings`).

Each has an environment override, used by the tests and by anyone who wants the files elsewhere:
``$SPARSESEG_DATA_HOME``, ``$SPARSESEG_CACHE_HOME``, ``$SPARSESEG_CONFIG_HOME`` (and, per folder,
``$SPARSESEG_AUTOSAVE_DIR`` and ``$SPARSESEG_CACHE`` for the embeddings).
"""

from __future__ import annotations

import os
from pathlib import Path

APP = "napari-sparseseg"


def _env(name: str) -> Path | None:
    v = os.environ.get(name)
    return Path(v).expanduser() if v else None


def user_data_dir() -> Path:
    """Per-user data folder (not a cache: never cleaned behind the user's back)."""
    from platformdirs import user_data_path

    return _env("SPARSESEG_DATA_HOME") or user_data_path(APP, appauthor=False)


def cache_dir() -> Path:
    """Per-user cache folder: everything in it can be recomputed."""
    from platformdirs import user_cache_path

    return _env("SPARSESEG_CACHE_HOME") or user_cache_path(APP, appauthor=False)


def config_dir() -> Path:
    from platformdirs import user_config_path

    return _env("SPARSESEG_CONFIG_HOME") or user_config_path(APP, appauthor=False)


def autosave_dir() -> Path:
    """Autosaved marks: ``$SPARSESEG_AUTOSAVE_DIR`` or ``<user data>/autosave``."""
    return _env("SPARSESEG_AUTOSAVE_DIR") or user_data_dir() / "autosave"


def legacy_autosave_dir() -> Path:
    """Where versions up to 0.1.0 autosaved marks (a cache folder); still read so nothing is lost."""
    return Path.home() / ".cache" / APP / "autosave"


def embeddings_dir() -> Path:
    """SAM image-embedding cache: ``$SPARSESEG_CACHE`` or ``<cache>/embeddings``."""
    return _env("SPARSESEG_CACHE") or cache_dir() / "embeddings"


def settings_path() -> Path:
    return config_dir() / "settings.json"
