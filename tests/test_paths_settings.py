"""Where files live (platformdirs), settings remembered between runs, and autosaves kept from 0.1.0."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_sparseseg import paths
from napari_sparseseg.settings import get_setting, load_settings, set_setting

OVERRIDES = ("SPARSESEG_DATA_HOME", "SPARSESEG_CACHE_HOME", "SPARSESEG_CONFIG_HOME", "SPARSESEG_AUTOSAVE_DIR",
             "SPARSESEG_CACHE")


@pytest.fixture
def xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No overrides; the platform folders (XDG on Linux) and $HOME point into tmp_path."""
    for k in OVERRIDES:
        monkeypatch.delenv(k, raising=False)
    for k in ("DATA", "CACHE", "CONFIG"):
        monkeypatch.setenv(f"XDG_{k}_HOME", str(tmp_path / k.lower()))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="XDG folders: Linux")
def test_marks_are_user_data_and_embeddings_a_cache(xdg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from napari_sparseseg.sam.cache import default_cache_dir
    from napari_sparseseg.session import default_autosave_root

    assert default_autosave_root() == xdg / "data" / "napari-sparseseg" / "autosave"
    assert default_cache_dir() == xdg / "cache" / "napari-sparseseg" / "embeddings"
    assert paths.settings_path() == xdg / "config" / "napari-sparseseg" / "settings.json"
    monkeypatch.setenv("SPARSESEG_AUTOSAVE_DIR", str(xdg / "elsewhere"))  # the override still wins
    assert default_autosave_root() == xdg / "elsewhere"


def test_settings_survive_a_restart_and_a_damaged_file_reads_as_empty(tmp_path: Path) -> None:
    p = tmp_path / "cfg" / "settings.json"
    assert load_settings(p) == {} and get_setting("a", 7, p) == 7
    set_setting("widget.budget_seconds", 120.0, p)
    set_setting("folder.session", "/data/scans", p)
    assert load_settings(p) == {"widget.budget_seconds": 120.0, "folder.session": "/data/scans"}
    p.write_text("{not json")
    assert load_settings(p) == {}
    set_setting("x", 1, p)  # a damaged file is replaced, not an error
    assert load_settings(p) == {"x": 1}


def test_an_autosave_written_by_0_1_0_is_adopted(xdg: Path) -> None:
    from napari_sparseseg.session import AnnotationAutosave, ClassTable

    old = AnnotationAutosave("fp123", root=xdg / "home" / ".cache" / "napari-sparseseg" / "autosave")
    marks = np.zeros((3, 4, 5), np.uint8)
    marks[1, 2, 3] = 2
    old.save(marks, ClassTable.default(2))
    new = AnnotationAutosave("fp123")
    assert new.folder == paths.autosave_dir() / "fp123" and new.exists()
    np.testing.assert_array_equal(new.load().labels, marks)


def test_widget_controls_remember_their_value(qtbot) -> None:
    from qtpy.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox

    from napari_sparseseg.widget.remember import remember

    def build() -> tuple[QDoubleSpinBox, QComboBox, QCheckBox]:
        spin, combo, check = QDoubleSpinBox(), QComboBox(), QCheckBox()
        spin.setRange(2, 3600)
        spin.setValue(60)
        combo.addItems(["entropy", "random"])
        check.setCheckable(True)
        for w, k in ((spin, "budget"), (combo, "strategy"), (check, "sam")):
            qtbot.addWidget(w)
            remember(w, k)
        return spin, combo, check

    spin, combo, check = build()
    assert (spin.value(), combo.currentText(), check.isChecked()) == (60, "entropy", False)
    spin.setValue(240)
    combo.setCurrentText("random")
    check.setChecked(True)
    spin2, combo2, check2 = build()  # the next napari session
    assert (spin2.value(), combo2.currentText(), check2.isChecked()) == (240, "random", True)
    set_setting("widget.budget", 99999)  # out of range (e.g. edited by hand): the default stays
    assert build()[0].value() == 60
