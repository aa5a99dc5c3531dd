"""Controls whose value is remembered between napari sessions (:mod:`napari_sparseseg.settings`).

One call per control, after it is built: the stored value (if still valid) is restored, and every
change is stored.  Spin boxes, combo boxes (by text) and check boxes are supported.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QAbstractButton, QComboBox, QDoubleSpinBox, QSpinBox

from ..settings import get_setting, set_setting


def remember(widget: Any, key: str) -> None:
    """Restore ``widget``'s value from the settings file under ``key`` and save it on every change."""
    key = f"widget.{key}"
    value = get_setting(key)
    if isinstance(widget, (QSpinBox, QDoubleSpinBox)):
        if isinstance(value, (int, float)) and widget.minimum() <= value <= widget.maximum():
            widget.setValue(type(widget.value())(value))
        widget.valueChanged.connect(lambda v: set_setting(key, v))
    elif isinstance(widget, QComboBox):
        if isinstance(value, str) and widget.findText(value) >= 0:
            widget.setCurrentIndex(widget.findText(value))
        widget.currentTextChanged.connect(lambda t: set_setting(key, t))
    elif isinstance(widget, QAbstractButton) and widget.isCheckable():
        if isinstance(value, bool):
            widget.setChecked(value)
        widget.toggled.connect(lambda b: set_setting(key, bool(b)))
    else:
        raise TypeError(f"cannot remember a {type(widget).__name__}")


def last_folder(kind: str) -> str:
    """The folder the user last picked for ``kind`` (export, session), or '' (Qt's default)."""
    value = get_setting(f"folder.{kind}")
    return value if isinstance(value, str) else ""


def remember_folder(kind: str, path: str) -> None:
    from pathlib import Path

    if path:
        set_setting(f"folder.{kind}", str(Path(path).parent))
