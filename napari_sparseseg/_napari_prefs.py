"""Make napari open NIfTI files with this plugin without asking the user every time.

napari's built-in reader also claims ``*.nii``/``*.nii.gz`` (through imageio) and napari 0.9 has no
reader priority: when two plugins match a file, ``viewer.open`` raises ``MultipleReaderError`` and
the GUI shows a "choose a reader" dialog, unless ``settings.plugins.extension2reader`` names one.
That preference is the only mechanism napari offers, so on plugin activation we add our NIfTI
patterns to it -- but only for patterns the user has no preference for (an existing entry, or any
broader pattern such as ``*.gz`` that already covers NIfTI files, is left alone).  Users can change or
remove it in Preferences > Plugins.  Folders (zarr, DICOM) are not registered: other plugins (e.g.
napari-ome-zarr) read zarr too, and a folder has no extension to match.

npe2 activates a plugin lazily, the first time one of its commands runs (sample data, the writer,
the widget, or a reader choice in the dialog); :func:`register_reader_preferences` can also be
called directly, e.g. from a script before the first ``viewer.open``.
"""

from __future__ import annotations

from fnmatch import fnmatch
from typing import Any

PLUGIN = "napari-sparseseg"
#: pattern -> a representative file name used to detect broader existing preferences
PATTERNS = {"*.nii": "/data/scan.nii", "*.nii.gz": "/data/scan.nii.gz"}


def register_reader_preferences(settings: Any = None) -> list[str]:
    """Prefer this plugin for NIfTI where the user has no preference; returns the patterns added."""
    if settings is None:
        from napari.settings import get_settings

        settings = get_settings()
    current = dict(settings.plugins.extension2reader)
    added = [
        pat
        for pat, example in PATTERNS.items()
        if pat not in current and not any(fnmatch(example, existing) for existing in current)
    ]
    if added:
        settings.plugins.extension2reader = {**current, **{p: PLUGIN for p in added}}
    return added


def activate(context: Any = None) -> None:  # noqa: ARG001 - npe2 passes a PluginContext
    """npe2 ``on_activate`` hook."""
    try:
        register_reader_preferences()
    except Exception:  # never break plugin activation over a settings problem  # pragma: no cover
        pass
