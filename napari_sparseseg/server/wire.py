"""What travels between the server and its clients: npz (no pickle), NIfTI, JSON and safetensors.

Why npz with ``allow_pickle=False`` and nothing else for arrays: a pickle from the network can run
code on the receiving machine; npz holds plain typed arrays, NIfTI is the clinical format, and
safetensors carries the model.  Every reader here checks sizes *before* it allocates, so a small
compressed upload cannot expand into gigabytes (a "zip bomb").

Streamed predictions are *updates*: only the bounding box of the voxels whose label changed since
the previous update, zlib-compressed; the uncertainty is quantised to :data:`UNC_LEVELS` + 1 levels
(1/63 steps: enough for a colour map, and the noise of finer steps defeats compression; measured in
bench/results/server) and sent for the box of the voxels that moved by more than
:data:`UNC_TOLERANCE` steps since what the receiver holds.  A receiver that missed nothing holds
exactly the sender's labels and the uncertainty to within ``(UNC_TOLERANCE + 0.5) / UNC_LEVELS``;
the final full-precision outputs are fetched once at the end.
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..annotations.sparse import SparseAnnotation
from ..errors import SparsesegError
from ..io.volume import Volume
from ..training.config import changed_box

Box = tuple[slice, ...]
#: streamed uncertainty is sent in steps of 1/UNC_LEVELS
UNC_LEVELS = 63
#: uncertainty changes of at most this many steps are not sent (the receiver's map stays within it)
UNC_TOLERANCE = 1


class WireError(SparsesegError):
    """A payload that is not a valid npz / NIfTI / update, or one that is too large."""


class TooLarge(WireError):
    """An upload (or what it would expand to) above the server's limit."""


# ---------------------------------------------------------------------------------------- npz
def to_npz(arrays: dict[str, np.ndarray], compress: bool = True) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def read_npz(data: bytes, max_bytes: int) -> dict[str, np.ndarray]:
    """Arrays of an npz payload; object arrays (pickles) and oversized members are refused."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            total = sum(i.file_size for i in zf.infolist())
    except (zipfile.BadZipFile, ValueError) as exc:
        raise WireError(f"not an npz payload ({exc})") from None
    if total > max_bytes:
        raise TooLarge(f"npz payload expands to {total} bytes; the limit is {max_bytes}")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except ValueError as exc:  # object arrays need pickle: refused
        raise WireError(f"npz payload refused ({str(exc).splitlines()[0]})") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise WireError(f"corrupt npz payload ({exc})") from None


def _need(arrays: dict[str, np.ndarray], key: str) -> np.ndarray:
    if key not in arrays:
        raise WireError(f"npz payload has no {key!r} array (has {sorted(arrays)})")
    return arrays[key]


# ------------------------------------------------------------------------------ volume, marks
def volume_to_npz(vol: Volume) -> bytes:
    return to_npz({"array": vol.array, "affine": vol.affine})


def volume_from_npz(data: bytes, max_bytes: int, name: str = "upload") -> Volume:
    arrays = read_npz(data, max_bytes)
    arr, affine = _need(arrays, "array"), _need(arrays, "affine")
    if arr.ndim != 3:
        raise WireError(f"the image must be 3D, got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise WireError(f"unsupported image dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise WireError("the image holds NaN or infinite values")
    return Volume(array=arr, affine=np.asarray(affine, dtype=float), name=name)


def annotation_to_npz(ann: SparseAnnotation) -> bytes:
    names = json.dumps({str(k): str(v) for k, v in ann.class_names.items()})
    return to_npz({"labels": ann.labels, "background_label": np.int64(ann.background_label),
                   "classes": np.asarray(ann.classes, dtype=np.int64), "class_names": np.str_(names)})


def annotation_from_npz(data: bytes, max_bytes: int) -> SparseAnnotation:
    arrays = read_npz(data, max_bytes)
    labels = _need(arrays, "labels")
    if labels.ndim != 3:
        raise WireError(f"the marks must be 3D, got shape {labels.shape}")
    bg = int(_need(arrays, "background_label"))
    classes = tuple(int(c) for c in np.atleast_1d(arrays.get("classes", np.zeros(0, np.int64))))
    names: dict[int, str] = {}
    if "class_names" in arrays:
        try:
            names = {int(k): str(v) for k, v in json.loads(str(arrays["class_names"])).items()}
        except (ValueError, AttributeError):
            raise WireError("class_names must be a JSON object {id: name}") from None
    return SparseAnnotation(labels, bg, classes, names)


def scan_to_npz(image: Volume, ann: SparseAnnotation | None) -> bytes:
    """One scan of a study: the image, and its marks when it has any (one npz)."""
    arrays: dict[str, np.ndarray] = {"array": image.array, "affine": image.affine}
    if ann is not None:
        arrays.update(labels=ann.labels, background_label=np.int64(ann.background_label),
                      classes=np.asarray(ann.classes, dtype=np.int64))
    return to_npz(arrays)


def scan_from_npz(data: bytes, max_bytes: int, name: str) -> tuple[Volume, SparseAnnotation | None]:
    arrays = read_npz(data, max_bytes)
    vol = volume_from_npz(to_npz({"array": _need(arrays, "array"), "affine": _need(arrays, "affine")}, compress=False),
                          max_bytes, name)
    if "labels" not in arrays:
        return vol, None
    classes = tuple(int(c) for c in np.atleast_1d(arrays.get("classes", np.zeros(0, np.int64))))
    return vol, SparseAnnotation(arrays["labels"], int(_need(arrays, "background_label")), classes)


# ---------------------------------------------------------------------------- streamed updates
def quantise_uncertainty(unc: np.ndarray) -> np.ndarray:
    return np.round(np.clip(np.asarray(unc, dtype=np.float32), 0, 1) * UNC_LEVELS).astype(np.uint8)


def encode_block(array: np.ndarray, box: Box) -> dict[str, Any]:
    block = np.ascontiguousarray(array[box])
    return {"box": [[s.start, s.stop] for s in box], "dtype": block.dtype.str,
            "data": base64.b64encode(zlib.compress(block.tobytes(), 3)).decode("ascii")}


def apply_block(target: np.ndarray, block: dict[str, Any]) -> Box:
    """Write an encoded block into ``target`` in place; returns the box it covered."""
    try:
        box = tuple(slice(int(a), int(b)) for a, b in block["box"])
        dtype = np.dtype(str(block["dtype"]))
        if dtype.kind not in "biuf" or len(box) != target.ndim:
            raise ValueError("bad dtype or box")
        shape = tuple(s.stop - s.start for s in box)
        if any(n < 0 for n in shape) or any(s.stop > t for s, t in zip(box, target.shape)):
            raise ValueError(f"box {block['box']} outside the grid {target.shape}")
        raw = zlib.decompress(base64.b64decode(block["data"]), bufsize=int(np.prod(shape)) * dtype.itemsize or 1)
        target[box] = np.frombuffer(raw, dtype=dtype).reshape(shape)
    except (KeyError, TypeError, ValueError, zlib.error) as exc:
        raise WireError(f"malformed prediction update ({exc})") from None
    return box


class UpdateEncoder:
    """Per-receiver state: what it already holds, so each update carries only what changed."""

    def __init__(self) -> None:
        self.labels: np.ndarray | None = None
        self.unc: np.ndarray | None = None

    def encode(self, labels: np.ndarray, uncertainty: np.ndarray | None) -> dict[str, Any]:
        out: dict[str, Any] = {"shape": list(labels.shape)}
        box = changed_box(self.labels, labels)
        if box is not None:
            out["labels"] = encode_block(labels, box)
        self.labels = labels.copy()
        if uncertainty is not None:
            q = quantise_uncertainty(uncertainty)
            ubox = changed_box(self.unc, q, UNC_TOLERANCE)
            if ubox is not None:
                out["uncertainty"] = encode_block(q, ubox)
                if self.unc is None or self.unc.shape != q.shape:
                    self.unc = q
                else:  # what the receiver now holds: new values in the box, its old ones elsewhere
                    self.unc[ubox] = q[ubox]
        return out


class UpdateDecoder:
    """The receiving side of :class:`UpdateEncoder`: full arrays, patched in place."""

    def __init__(self) -> None:
        self.labels: np.ndarray | None = None
        self.uncertainty: np.ndarray | None = None  # float32 in [0, 1] (steps of 1/UNC_LEVELS)

    def apply(self, update: dict[str, Any]) -> Box | None:
        """Patch the arrays; returns the labels' changed box (None if the labels did not change)."""
        try:
            shape = tuple(int(s) for s in update["shape"])
        except (KeyError, TypeError, ValueError):
            raise WireError("malformed prediction update (no shape)") from None
        if self.labels is None or self.labels.shape != shape:
            self.labels = np.zeros(shape, np.int16)
            self.uncertainty = np.zeros(shape, np.float32)
        box = apply_block(self.labels, update["labels"]) if "labels" in update else None
        if "uncertainty" in update:
            q = np.zeros(shape, np.uint8)
            ubox = apply_block(q, update["uncertainty"])
            assert self.uncertainty is not None
            self.uncertainty[ubox] = q[ubox].astype(np.float32) / UNC_LEVELS
        return box


def box_to_json(box: Sequence[slice] | None) -> list[list[int]] | None:
    return None if box is None else [[int(s.start), int(s.stop)] for s in box]
