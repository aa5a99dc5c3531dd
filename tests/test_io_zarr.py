"""zarr stores: plain arrays, OME-Zarr groups (0.4 and 0.5 layouts), our own writer, bad stores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from napari_sparseseg.errors import VolumeError
from napari_sparseseg.io import Volume, read_labels, read_volume, write_zarr
from napari_sparseseg.io.atomic import leftover_temporaries


def _ome_attrs(scale: list[float], trans: list[float]) -> dict:
    return {
        "multiscales": [
            {
                "version": "0.4",
                "axes": [{"name": a, "type": "space"} for a in "zyx"],
                "datasets": [
                    {
                        "path": "s0",
                        "coordinateTransformations": [
                            {"type": "scale", "scale": scale},
                            {"type": "translation", "translation": trans},
                        ],
                    },
                    {"path": "s1", "coordinateTransformations": [{"type": "scale", "scale": [s * 2 for s in scale]}]},
                ],
            }
        ]
    }


def test_plain_array_defaults_to_1mm(tmp_path: Path) -> None:
    data = np.arange(24, dtype=np.uint16).reshape(2, 3, 4)
    zarr.save_array(str(tmp_path / "plain.zarr"), data)
    vol = read_volume(tmp_path / "plain.zarr")
    np.testing.assert_array_equal(vol.array, data)
    assert vol.spacing == (1.0, 1.0, 1.0) and "1 mm" in vol.meta["notes"][0]


def test_ome_group_level0_scale_translation(tmp_path: Path) -> None:
    g = zarr.open_group(str(tmp_path / "ome.zarr"), mode="w", zarr_format=2)
    g.create_array("s0", shape=(4, 5, 6), dtype="float32")[...] = 1.0
    g.create_array("s1", shape=(2, 3, 3), dtype="float32")[...] = 1.0
    g.attrs.update(_ome_attrs([3.0, 0.5, 0.25], [10.0, -2.0, 4.0]))
    vol = read_volume(tmp_path / "ome.zarr")
    assert vol.shape == (4, 5, 6)
    assert vol.spacing == (3.0, 0.5, 0.25)
    assert vol.napari_kwargs() == {"scale": (3.0, 0.5, 0.25), "translate": (10.0, -2.0, 4.0)}


def test_ome_05_layout_and_5d_singletons(tmp_path: Path) -> None:
    g = zarr.open_group(str(tmp_path / "ome5.zarr"), mode="w")
    g.create_array("s0", shape=(1, 1, 3, 4, 5), dtype="uint8")[...] = 2
    ms = _ome_attrs([1, 1, 2.0, 0.5, 0.5], [0, 0, 1.0, 2.0, 3.0])["multiscales"]
    ms[0]["datasets"] = ms[0]["datasets"][:1]
    g.attrs.update({"ome": {"version": "0.5", "multiscales": ms}})
    vol = read_volume(tmp_path / "ome5.zarr")
    assert vol.shape == (3, 4, 5) and vol.spacing == (2.0, 0.5, 0.5)
    assert vol.napari_kwargs()["translate"] == (1.0, 2.0, 3.0)


def test_group_with_spacing_attr(tmp_path: Path) -> None:
    g = zarr.open_group(str(tmp_path / "simple.zarr"), mode="w")
    g.create_array("0", shape=(2, 3, 4), dtype="int16")[...] = 5
    g.attrs.update({"spacing": [5.0, 1.25, 1.25]})
    assert read_volume(tmp_path / "simple.zarr").spacing == (5.0, 1.25, 1.25)


def test_write_zarr_round_trip_keeps_oblique_affine(tmp_path: Path) -> None:
    aff = np.array([[0, 0.2, 0.9, 1.0], [0, 0.9, -0.2, 2.0], [2.0, 0, 0, 3.0], [0, 0, 0, 1]])
    like = Volume(np.zeros((3, 4, 5), np.float32), aff, name="obl")
    labels = np.random.default_rng(0).integers(0, 4, size=like.shape)
    out = write_zarr(tmp_path / "seg.zarr", labels, like)
    back = read_labels(out, like=like)
    np.testing.assert_array_equal(back.array, labels)
    assert back.array.dtype == np.uint8
    np.testing.assert_array_equal(back.affine, aff)
    # overwrite in place: the old store is replaced as a whole, no temporaries left
    write_zarr(out, np.zeros(like.shape, np.uint8), like)
    assert read_labels(out).array.max() == 0
    assert leftover_temporaries(tmp_path) == []
    # OME-only readers see the plain scale/translation
    ms = dict(zarr.open_group(str(out), mode="r").attrs)["multiscales"][0]
    assert ms["datasets"][0]["coordinateTransformations"][0]["type"] == "scale"


def test_write_zarr_failure_keeps_old_store(tmp_path: Path) -> None:
    like = Volume(np.zeros((2, 3, 4), np.float32), np.eye(4))
    out = write_zarr(tmp_path / "keep.zarr", np.ones(like.shape, np.uint8), like)
    with pytest.raises(VolumeError, match="whole numbers"):
        write_zarr(out, np.full(like.shape, 0.5), like, labels=True)
    with pytest.raises(VolumeError, match="does not fit"):
        write_zarr(out, np.zeros((9, 9, 9), np.uint8), like)
    assert read_labels(out).array.min() == 1
    assert leftover_temporaries(tmp_path) == []


def test_bad_stores(tmp_path: Path) -> None:
    zarr.save_array(str(tmp_path / "flat.zarr"), np.zeros((4, 4)))
    with pytest.raises(VolumeError, match="2D"):
        read_volume(tmp_path / "flat.zarr")
    (tmp_path / "broken.zarr").mkdir()
    (tmp_path / "broken.zarr" / ".zarray").write_text("{not json")
    with pytest.raises(VolumeError, match="broken.zarr"):
        read_volume(tmp_path / "broken.zarr")
    g = zarr.open_group(str(tmp_path / "nogroup.zarr"), mode="w")
    g.attrs["x"] = 1
    with pytest.raises(VolumeError, match="holds no array"):
        read_volume(tmp_path / "nogroup.zarr")
    with pytest.raises(FileNotFoundError):
        read_volume(tmp_path / "missing.zarr")
