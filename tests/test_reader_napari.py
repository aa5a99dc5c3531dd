"""The napari face of the I/O layer: manifest, reader, writer, sample data, reader preference.

The ``gui`` test opens a NIfTI in a real napari viewer the way File > Open and drag-and-drop do
(``QtViewer._qt_open``, no plugin named) and fails if napari would show its "choose a reader" dialog.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_sparseseg._reader import get_reader, is_label_path, read_layers
from napari_sparseseg._writer import write_labels
from napari_sparseseg.errors import VolumeError
from napari_sparseseg.io import Volume, read_labels, read_volume, write_zarr

HIPPO = ("hippocampus", "hippocampus_001")
TUMOR = ("brain_tumor", "PGBM-008_1993-06-10")


def _case(root: Path, dataset: str, case: str, sub: str = "imagesTr") -> Path:
    return root / dataset / sub / f"{case}.nii.gz"


def test_manifest_is_valid_and_declares_reader_writer_samples() -> None:
    from npe2 import PluginManifest

    mf = PluginManifest.from_distribution("napari-sparseseg")
    mf.validate_imports()
    c = mf.contributions
    assert {"*.nii", "*.nii.gz", "*.zarr"} <= set(c.readers[0].filename_patterns)
    assert c.readers[0].accepts_directories
    assert c.writers[0].layer_types == ["labels"] and ".nii.gz" in c.writers[0].filename_extensions
    assert {s.key for s in c.sample_data} == {"hippocampus", "brain_tumor"}


def test_sample_data_is_bundled_with_attribution(sample_dir: Path) -> None:
    for dataset, case in (HIPPO, TUMOR):
        for sub in ("imagesTr", "labelsTr"):
            assert _case(sample_dir, dataset, case, sub).is_file()
    text = (sample_dir / "README.md").read_text()
    for needle in ("CC BY-SA 4.0", "CC BY 3.0", "Medical Segmentation Decathlon", "Brain-Tumor-Progression"):
        assert needle in text


def test_get_reader_claims_only_what_it_reads(tmp_path: Path, sample_dir: Path) -> None:
    assert get_reader(str(_case(sample_dir, *HIPPO))) is not None
    (tmp_path / "photo.png").write_bytes(b"\x89PNG")
    assert get_reader(str(tmp_path / "photo.png")) is None
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "notes.txt").write_text("x")
    assert get_reader(str(tmp_path / "folder")) is None
    like = Volume(np.zeros((2, 3, 4), np.float32), np.eye(4))
    write_zarr(tmp_path / "s.zarr", np.ones(like.shape, np.float32), like, labels=False)
    assert get_reader(str(tmp_path / "s.zarr")) is not None
    assert get_reader([str(tmp_path / "s.zarr"), str(tmp_path / "s.zarr")]) is None


def test_image_layer_has_world_placement_and_robust_contrast(sample_dir: Path) -> None:
    path = _case(sample_dir, *TUMOR)
    [(data, kw, kind)] = read_layers(str(path))
    assert kind == "image" and data.shape == tuple(reversed(nib.load(str(path)).shape))
    assert "affine" in kw  # this scan is oblique: scale/translate cannot place it
    vol = Volume(data, Volume.affine_from_napari(affine=kw["affine"]))
    np.testing.assert_allclose(vol.affine, kw["metadata"]["sparseseg_affine"])
    lo, hi = kw["contrast_limits"]
    assert data.min() <= lo < hi < data.max()  # a percentile window, not min/max
    assert kw["metadata"]["sparseseg_source"] == str(path)

    [(_, kw2, _)] = read_layers(str(_case(sample_dir, *HIPPO)))
    zooms = nib.load(str(_case(sample_dir, *HIPPO))).header.get_zooms()
    np.testing.assert_allclose(kw2["scale"], tuple(reversed(zooms)))


def test_label_files_become_labels_layers(sample_dir: Path) -> None:
    path = _case(sample_dir, *HIPPO, sub="labelsTr")
    assert is_label_path(path) and is_label_path("/x/case_seg.nii.gz") and not is_label_path("/x/imagesTr/a.nii")
    [(data, kw, kind)] = read_layers(str(path))
    assert kind == "labels" and data.dtype == np.uint8 and kw["name"] == "hippocampus_001 labels"


@pytest.mark.parametrize("ext", [".nii.gz", ".nii", ".zarr"])
def test_writer_puts_labels_on_the_source_grid(tmp_path: Path, sample_dir: Path, ext: str) -> None:
    src = _case(sample_dir, *TUMOR)
    [(img, kw, _)] = read_layers(str(src))
    labels = (img > np.percentile(img, 99)).astype(np.uint8)
    attrs = {"name": "seg", "metadata": kw["metadata"], "scale": (1, 1, 1), "translate": (0, 0, 0), "affine": kw["affine"]}
    [out] = write_labels(str(tmp_path / f"seg{ext}"), labels, attrs)
    like = read_volume(src)
    back = read_labels(out, like=like)
    np.testing.assert_array_equal(back.array, labels)
    if ext != ".zarr":
        assert np.array_equal(nib.load(out).affine, nib.load(str(src)).affine)


def test_writer_without_reader_metadata_uses_layer_transform(tmp_path: Path) -> None:
    data = np.zeros((3, 4, 5), np.int32)
    data[1, 2, 3] = 7
    [out] = write_labels(str(tmp_path / "new.nii.gz"), data, {"name": "new", "scale": (3.0, 0.5, 0.5), "translate": (1, 2, 3)})
    back = read_labels(out)
    assert back.spacing == pytest.approx((3.0, 0.5, 0.5))
    assert back.napari_kwargs()["translate"] == pytest.approx((1, 2, 3))
    assert back.array[1, 2, 3] == 7 and back.array.dtype == np.uint8
    with pytest.raises(VolumeError, match="2D"):
        write_labels(str(tmp_path / "flat.nii.gz"), np.zeros((4, 4), np.uint8), {})
    with pytest.raises(VolumeError, match=r"\.nii\.gz"):
        write_labels(str(tmp_path / "x.tif"), data, {})


def test_reader_preference_respects_existing_choices() -> None:
    from napari.settings import NapariSettings

    from napari_sparseseg._napari_prefs import register_reader_preferences

    s = NapariSettings(config_path=None)
    assert register_reader_preferences(s) == ["*.nii", "*.nii.gz"]
    assert s.plugins.extension2reader["*.nii.gz"] == "napari-sparseseg"
    assert register_reader_preferences(s) == []  # idempotent

    s2 = NapariSettings(config_path=None)
    s2.plugins.extension2reader = {"*.gz": "other-plugin", "*.nii": "napari"}
    assert register_reader_preferences(s2) == []  # both patterns already covered by the user
    assert s2.plugins.extension2reader == {"*.gz": "other-plugin", "*.nii": "napari"}


@pytest.fixture
def fresh_napari_settings(monkeypatch: pytest.MonkeyPatch):
    """In-memory napari settings: the test must not read or write the user's preferences."""
    import napari.settings
    from napari.settings import NapariSettings

    monkeypatch.setattr(napari.settings, "_SETTINGS", NapariSettings(config_path=None))
    return napari.settings.get_settings()


@pytest.mark.gui
def test_open_nifti_in_real_viewer_picks_plugin_without_dialog(
    fresh_napari_settings, make_napari_viewer, sample_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import napari._qt.qt_viewer as qt_viewer_mod
    from npe2 import PluginManager

    def no_dialog(*args, **kwargs):
        raise AssertionError("napari asked the user to choose a reader")

    monkeypatch.setattr(qt_viewer_mod, "handle_gui_reading", no_dialog)
    viewer = make_napari_viewer()
    pm = PluginManager.instance()
    pm.deactivate("napari-sparseseg")  # start as a fresh session would: not yet activated
    assert fresh_napari_settings.plugins.extension2reader == {}
    viewer.open_sample("napari-sparseseg", "hippocampus")  # first use activates the plugin
    assert fresh_napari_settings.plugins.extension2reader.get("*.nii.gz") == "napari-sparseseg"

    path = _case(sample_dir, *HIPPO)
    n = len(viewer.layers)
    viewer.window._qt_viewer._qt_open([str(path)], stack=False)  # what File > Open / drag-and-drop call
    [layer] = viewer.layers[n:]
    assert layer.metadata["sparseseg_source"] == str(path)
    zooms = nib.load(str(path)).header.get_zooms()
    np.testing.assert_allclose(layer.scale, tuple(reversed(zooms)))

    tumor = _case(sample_dir, *TUMOR)
    [layer2] = viewer.open(str(tumor), plugin=None)  # scripting equivalent: "let napari choose"
    vol = Volume.from_napari_layer(layer2)
    np.testing.assert_allclose(vol.spacing, tuple(reversed(nib.load(str(tumor)).header.get_zooms())), rtol=1e-5)
    np.testing.assert_allclose(vol.affine, read_volume(tumor).affine, atol=1e-9)


def test_volume_from_reader_layer_writes_bit_identical_affine(tmp_path: Path, sample_dir: Path) -> None:
    """The widget path: layer -> Volume.from_napari_layer -> write_labels_nifti keeps the source header."""
    from napari.layers import Image

    from napari_sparseseg.io import write_labels_nifti

    src = _case(sample_dir, *TUMOR)
    [(data, kw, _)] = read_layers(str(src))
    layer = Image(data, **kw)
    like = Volume.from_napari_layer(layer)
    out = write_labels_nifti(tmp_path / "seg.nii.gz", np.zeros(like.shape, np.uint8), like)
    back, orig = nib.load(str(out)), nib.load(str(src))
    assert np.array_equal(back.affine, orig.affine)
    for field in ("qform_code", "sform_code", "quatern_b", "quatern_c", "quatern_d", "qoffset_x", "pixdim"):
        assert np.array_equal(back.header[field], orig.header[field]), field  # the source header was reused
