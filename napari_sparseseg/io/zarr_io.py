"""zarr stores: a plain 3D array, or an OME-Zarr-style multiscale group.

Geometry, in order of preference when reading:
1. ``attrs['sparseseg']['affine']``: the exact 4x4 volume affine we write ourselves (keeps oblique
   directions, which OME-Zarr 0.4 cannot express);
2. OME-Zarr ``multiscales[0]``: ``datasets[0].coordinateTransformations`` scale/translation, composed
   with the multiscale-level ones (OME-Zarr 0.4 in ``attrs``, 0.5 under ``attrs['ome']``);
3. simple ``spacing`` (and optional ``origin``) attributes, in array-axis order;
4. otherwise 1 mm isotropic at the origin (recorded in ``meta['notes']``).

OME-Zarr axes are ``(z, y, x)`` for 3D, which is our array order, so a scale/translation pair maps to
the volume through :meth:`Volume.affine_from_napari` exactly as a napari layer's would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VolumeError
from .atomic import atomic_path
from .checks import check_array_values, check_shape, label_dtype, reason, to_label_array
from .volume import Volume


def is_zarr_path(path: str | Path) -> bool:
    p = Path(path)
    return p.suffix.lower() == ".zarr" or (p.is_dir() and any((p / m).exists() for m in (".zarray", ".zgroup", "zarr.json")))


def _transforms(ts: Any, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    scale, trans = np.ones(ndim), np.zeros(ndim)
    for t in ts or []:
        if not isinstance(t, dict):
            continue
        if t.get("type") == "scale" and "scale" in t:
            scale = scale * np.asarray(t["scale"], dtype=float)[-ndim:]
        elif t.get("type") == "translation" and "translation" in t:
            trans = trans + np.asarray(t["translation"], dtype=float)[-ndim:]
    return scale, trans


def _open(path: Path) -> Any:
    import zarr

    if not path.exists():
        raise FileNotFoundError(2, "No such file or directory", str(path))
    try:
        return zarr.open(str(path), mode="r")
    except Exception as exc:
        raise VolumeError(f"{path.name}: not a readable zarr store ({reason(exc)})") from exc


def read_zarr(path: str | Path, *, nonfinite: str = "raise", is_label: bool = False) -> Volume:
    """Read a zarr array or OME-Zarr-style group (level 0) into a :class:`Volume`."""
    import zarr

    path = Path(path)
    node = _open(path)
    notes: list[str] = []
    try:
        attrs = dict(node.attrs)
        if isinstance(node, zarr.Group):
            ome = attrs.get("ome", attrs)  # OME-Zarr 0.5 nests its metadata under "ome"
            ms = ome.get("multiscales") if isinstance(ome, dict) else None
            if ms:
                ds_path = str(ms[0]["datasets"][0]["path"])
            else:
                arrays = sorted(k for k, _ in node.arrays())
                if not arrays:
                    raise VolumeError(f"{path.name}: the zarr group holds no array")
                ds_path = "0" if "0" in arrays else arrays[0]
            arr_node = node[ds_path]
            arr_attrs = dict(arr_node.attrs)
        else:
            ms, arr_node, arr_attrs = None, node, attrs
        shape = tuple(int(s) for s in arr_node.shape)
        lead = 0
        while len(shape) - lead > 3 and shape[lead] == 1:  # OME (t, c, z, y, x) with singleton t/c
            lead += 1
        if lead:
            notes.append(f"squeezed singleton leading axes: store shape {shape} read as {shape[lead:]}")
        shape3, more = check_shape(shape[lead:], path.name)
        notes += more
        data = np.asarray(arr_node[...]).reshape(shape3)
    except (VolumeError, FileNotFoundError):
        raise
    except Exception as exc:
        raise VolumeError(f"{path.name}: cannot read the zarr data ({reason(exc)})") from exc
    if data.dtype.fields is not None or data.dtype.kind not in "biuf":
        raise VolumeError(f"{path.name}: unsupported voxel type {data.dtype}")
    affine = _affine(attrs, arr_attrs, ms, notes, path.name)
    meta: dict[str, Any] = {"format": "zarr"}
    if notes:
        meta["notes"] = notes
    if not is_label:
        data = check_array_values(data, path.name, nonfinite, meta)
    return Volume(array=data, affine=affine, name=path.stem, source=path, meta=meta)


def _affine(attrs: dict, arr_attrs: dict, ms: Any, notes: list[str], name: str) -> np.ndarray:
    try:
        own = attrs.get("sparseseg") or arr_attrs.get("sparseseg")
        if isinstance(own, dict) and "affine" in own:
            return np.asarray(own["affine"], dtype=float).reshape(4, 4)
        if ms:
            scale, trans = _transforms(ms[0]["datasets"][0].get("coordinateTransformations"), 3)
            s2, t2 = _transforms(ms[0].get("coordinateTransformations"), 3)
            return Volume.affine_from_napari(scale=scale * s2, translate=trans * s2 + t2)
        for a in (arr_attrs, attrs):
            if "spacing" in a:
                origin = a.get("origin", a.get("translation", [0.0, 0.0, 0.0]))
                return Volume.affine_from_napari(
                    scale=np.asarray(a["spacing"], dtype=float)[-3:], translate=np.asarray(origin, dtype=float)[-3:]
                )
    except Exception as exc:
        raise VolumeError(f"{name}: unreadable geometry metadata ({reason(exc)})") from exc
    notes.append("no spacing metadata: assuming 1 mm voxels at the origin")
    return Volume.affine_from_napari(scale=(1.0, 1.0, 1.0), translate=(0.0, 0.0, 0.0))


def write_zarr(path: str | Path, array: np.ndarray, like: Volume, *, labels: bool | None = None) -> Path:
    """Write ``array`` on ``like``'s grid as an OME-Zarr-style group (zarr v2 format, OME-Zarr 0.4).

    ``labels`` (default: integer input) casts to the smallest integer type, as for NIfTI labels.
    Besides the OME scale/translation, ``attrs['sparseseg']['affine']`` keeps the exact affine and
    ``attrs['spacing']``/``attrs['origin']`` the plain geometry.  The whole folder is swapped in
    atomically (see :func:`atomic_path`).
    """
    import zarr

    path = Path(path)
    arr = np.asarray(array)
    if arr.shape != like.shape:
        raise VolumeError(f"array of shape {arr.shape} does not fit the grid {like.shape}")
    if labels is None:
        labels = arr.dtype.kind in "iub"
    if labels:
        arr = to_label_array(arr, path.name)
        arr = arr.astype(label_dtype(arr), copy=False)
    elif arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise VolumeError(f"{path.name}: refusing to write NaN/inf values")
    kw = like.napari_kwargs()
    scale = list(kw.get("scale", like.spacing))
    trans = list(kw.get("translate", [float(v) for v in like.napari_affine()[:3, 3]]))
    attrs = {
        "multiscales": [
            {
                "version": "0.4",
                "name": like.name or path.stem,
                "axes": [{"name": n, "type": "space", "unit": "millimeter"} for n in ("z", "y", "x")],
                "datasets": [
                    {
                        "path": "0",
                        "coordinateTransformations": [
                            {"type": "scale", "scale": scale},
                            {"type": "translation", "translation": trans},
                        ],
                    }
                ],
            }
        ],
        "spacing": list(like.spacing),
        "origin": list(like.origin),
        "sparseseg": {"affine": like.affine.tolist(), "labels": bool(labels), "source": str(like.source or "")},
    }
    with atomic_path(path, directory=True) as tmp:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=2)
        chunks = (1,) + arr.shape[1:] if arr.nbytes > 64 * 2**20 else arr.shape
        z = group.create_array("0", shape=arr.shape, dtype=arr.dtype, chunks=chunks)
        z[...] = arr
        group.attrs.update(attrs)
    return path
