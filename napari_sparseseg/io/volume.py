"""The `Volume`: an image array that knows where it lies in the patient.

Axis convention (used everywhere in the package): the array is stored in *reversed* NIfTI order,
``(k, j, i)`` -- the SimpleITK/ITK ``GetArrayFromImage`` order -- so that axis 0 is the slice axis of
the usual axial/short-axis acquisitions.  napari then scrolls through slices with its first slider and
every 2D model works on ``array[z]``.

``affine`` maps an *array index* ``(a0, a1, a2, 1)`` to RAS world millimetres ``(x, y, z, 1)``; it is
the NIfTI affine with its first three columns reversed, so writing back to NIfTI is exact.  napari's
world axes are also shown in reversed order (z, y, x), which makes an axis-aligned scan a plain
``scale``/``translate`` pair and leaves ``affine`` for oblique scans only.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VolumeError

_REVERSE = np.array(
    [[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float
)  # swaps axes 0 and 2 (rows: world order; columns: index order)


def nifti_to_volume_affine(nifti_affine: np.ndarray) -> np.ndarray:
    """Reorder the index columns of a NIfTI affine (i, j, k) -> array order (k, j, i)."""
    return np.asarray(nifti_affine, dtype=float) @ _REVERSE


def volume_to_nifti_affine(volume_affine: np.ndarray) -> np.ndarray:
    """Inverse of :func:`nifti_to_volume_affine` (the permutation is its own inverse)."""
    return np.asarray(volume_affine, dtype=float) @ _REVERSE


@dataclass
class Volume:
    """A 3D scalar image (or label map) with its geometry.

    Attributes:
        array: 3D array in (k, j, i) order (see the module docstring).
        affine: 4x4 array-index -> RAS world (mm) transform.
        name: short display name (file stem by default).
        source: the file or folder it was read from, if any.
        meta: free-form metadata (e.g. DICOM series UID, original dtype).
    """

    array: np.ndarray
    affine: np.ndarray = field(default_factory=lambda: np.eye(4))
    name: str = ""
    source: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.affine = np.asarray(self.affine, dtype=float)
        if self.affine.shape != (4, 4):
            raise VolumeError(f"affine must be 4x4, got {self.affine.shape}")
        if not np.all(np.isfinite(self.affine)):
            raise VolumeError("affine contains NaN or infinite values")
        if abs(np.linalg.det(self.affine[:3, :3])) < 1e-12:
            raise VolumeError("affine is singular (zero voxel size or collapsed axes)")

    # ----------------------------------------------------------------- geometry
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.array.shape)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along array axes 0, 1, 2."""
        sp = np.linalg.norm(self.affine[:3, :3], axis=0)
        return tuple(float(s) for s in sp)  # type: ignore[return-value]

    @property
    def origin(self) -> tuple[float, float, float]:
        """World (RAS, mm) position of voxel (0, 0, 0)."""
        return tuple(float(v) for v in self.affine[:3, 3])  # type: ignore[return-value]

    @property
    def direction(self) -> np.ndarray:
        """3x3 unit direction cosines; column ``a`` is the world direction of array axis ``a``."""
        return self.affine[:3, :3] / np.asarray(self.spacing)[None, :]

    def same_grid(self, other: Volume, atol: float = 1e-3) -> bool:
        """True if ``other`` has the same shape and (within ``atol`` mm) the same affine."""
        return self.shape == other.shape and bool(np.allclose(self.affine, other.affine, atol=atol))

    def with_array(self, array: np.ndarray, name: str | None = None) -> Volume:
        """A new volume on the same grid (labels, predictions, confidence maps)."""
        if tuple(array.shape) != self.shape:
            raise VolumeError(f"array shape {tuple(array.shape)} does not match the grid {self.shape}")
        return replace(self, array=array, name=self.name if name is None else name, meta=dict(self.meta))

    # ------------------------------------------------------------------ napari
    def napari_affine(self) -> np.ndarray:
        """The 4x4 data -> napari-world transform (napari world axes in (z, y, x) order)."""
        return _REVERSE @ self.affine

    def napari_kwargs(self) -> dict[str, Any]:
        """Layer keyword arguments that place this volume correctly in napari.

        An axis-aligned scan with positive axes gives ``scale`` and ``translate``; any other
        direction (oblique or flipped) gives a full ``affine``.
        """
        a = self.napari_affine()
        lin = a[:3, :3]
        off_diag = lin - np.diag(np.diag(lin))
        if np.allclose(off_diag, 0, atol=1e-6) and np.all(np.diag(lin) > 0):
            return {"scale": tuple(float(v) for v in np.diag(lin)), "translate": tuple(float(v) for v in a[:3, 3])}
        return {"affine": a}

    @staticmethod
    def affine_from_napari(
        scale: Any = None, translate: Any = None, affine: Any = None
    ) -> np.ndarray:
        """Invert :meth:`napari_kwargs`: napari layer transform -> volume affine.

        napari composes ``affine @ (translate . scale)``; we do the same, then go back from napari's
        (z, y, x) world to RAS (x, y, z).
        """
        st = np.eye(4)
        if scale is not None:
            st[:3, :3] = np.diag(np.asarray(scale, dtype=float)[-3:])
        if translate is not None:
            st[:3, 3] = np.asarray(translate, dtype=float)[-3:]
        a = np.eye(4) if affine is None else np.asarray(affine, dtype=float)
        if a.shape != (4, 4):
            raise VolumeError(f"napari affine must be 4x4 for a 3D layer, got {a.shape}")
        return _REVERSE @ (a @ st)

    @classmethod
    def from_napari_layer(cls, layer: Any) -> Volume:
        """Rebuild a volume from a napari Image/Labels layer (duck-typed: no napari import)."""
        data = np.asarray(layer.data)
        if data.ndim != 3:
            raise VolumeError(f"layer {layer.name!r} is {data.ndim}D; a 3D volume is needed")
        aff = layer.affine.affine_matrix if hasattr(layer.affine, "affine_matrix") else layer.affine
        affine = cls.affine_from_napari(layer.scale, layer.translate, aff)
        meta = dict(getattr(layer, "metadata", {}) or {})
        src = meta.get("sparseseg_source")
        return cls(array=data, affine=affine, name=str(layer.name), source=Path(src) if src else None, meta=meta)

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary (used by ``sparseseg info``)."""
        arr = self.array
        finite = np.isfinite(arr) if np.issubdtype(arr.dtype, np.floating) else None
        return {
            "name": self.name,
            "source": str(self.source) if self.source else None,
            "shape": list(self.shape),
            "dtype": str(arr.dtype),
            "spacing_mm": [round(s, 6) for s in self.spacing],
            "origin_mm": [round(o, 6) for o in self.origin],
            "direction": np.round(self.direction, 6).tolist(),
            "min": float(np.nanmin(arr)) if arr.size else None,
            "max": float(np.nanmax(arr)) if arr.size else None,
            "non_finite_voxels": int((~finite).sum()) if finite is not None else 0,
        }
