""""Compute on: this machine / server URL": where the training panel's next model is computed.

Why a separate setting file instead of napari's settings: napari's settings schema is closed to
plugins; a small JSON in the user config folder (``$SPARSESEG_CONFIG_DIR`` overrides it) keeps the
choice between sessions.  The token is never stored: it comes from ``$SPARSESEG_TOKEN`` or
``$SPARSESEG_TOKEN_FILE`` like everywhere else.  The switch applies to the next new model; a model
already trained keeps running where it lives.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget

from .guard import guarded, notify_info

LOCAL, SERVER = "this machine", "server"
SETTINGS_FILE = "compute.json"


def settings_path() -> Path:
    env = os.environ.get("SPARSESEG_CONFIG_DIR")
    if env:
        return Path(env) / SETTINGS_FILE
    from platformdirs import user_config_dir

    return Path(user_config_dir("napari-sparseseg")) / SETTINGS_FILE


def load_setting() -> dict[str, str]:
    try:
        data = json.loads(settings_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"where": LOCAL, "url": ""}
    if not isinstance(data, dict):
        return {"where": LOCAL, "url": ""}
    where = data.get("where") if data.get("where") in (LOCAL, SERVER) else LOCAL
    return {"where": str(where), "url": str(data.get("url", ""))}


def save_setting(where: str, url: str) -> None:
    from ..io import atomic_write_text

    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"where": where, "url": url}, indent=2) + "\n")


class ComputeOnWidget(QWidget):
    """The choice, its URL and a "Check" button that asks the server for its health."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        s = load_setting()
        self.where = QComboBox()
        self.where.addItems([LOCAL, SERVER])
        self.where.setCurrentText(s["where"])
        self.where.setToolTip("Train here, or on a `sparseseg serve` (e.g. a GPU machine); the token comes from "
                              "$SPARSESEG_TOKEN")
        self.url = QLineEdit(s["url"])
        self.url.setPlaceholderText("http://127.0.0.1:8765")
        self.check_btn = QPushButton("Check")
        self.check_btn.clicked.connect(lambda *_: self.check())
        self.info = QLabel("")
        row = QHBoxLayout()
        row.addWidget(QLabel("Compute on"))
        row.addWidget(self.where, 1)
        row.addWidget(self.check_btn)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(row)
        lay.addWidget(self.url)  # its own row: a URL needs the width
        lay.addWidget(self.info)
        self.where.currentTextChanged.connect(lambda *_: self._save())
        self.url.editingFinished.connect(self._save)
        self._sync()

    @property
    def server_url(self) -> str | None:
        """The URL when computing on a server, else None."""
        url = self.url.text().strip()
        return url if self.where.currentText() == SERVER and url else None

    def set_server(self, url: str | None) -> None:
        """Programmatic switch (tests, scripts): a URL selects the server, None this machine."""
        if url:
            self.url.setText(url)
        self.where.setCurrentText(SERVER if url else LOCAL)
        self._save()

    def _sync(self) -> None:
        remote = self.where.currentText() == SERVER
        self.url.setVisible(remote)
        self.check_btn.setEnabled(remote)
        if not remote:
            self.info.setText("")
        self.info.setVisible(bool(self.info.text()))

    def _save(self) -> None:
        self._sync()
        try:
            save_setting(self.where.currentText(), self.url.text().strip())
        except OSError as exc:  # an unwritable config folder must not break the widget
            self.info.setText(f"(not remembered: {exc.strerror})")
            self.info.setVisible(True)
        self.changed.emit()

    @guarded
    def check(self) -> dict[str, Any]:
        from ..server.client import ServerClient

        url = self.server_url
        if url is None:
            raise ValueError("enter the server's URL first, e.g. http://127.0.0.1:8765")
        with ServerClient(url, timeout=10.0) as c:
            h = c.health()
        self.info.setText(f"server {h.get('version')} on {h.get('device')}, {h.get('sessions')} session(s)")
        self.info.setVisible(True)
        notify_info(f"connected to {url} ({h.get('device')})")
        return h
