"""NIfTI (.nii, .nii.gz) reading and writing through nibabel.

Reading keeps the source header (its 348/540 raw bytes go into ``Volume.meta['nifti_header']``) so
that a label map written for that volume reuses the *same* qform/sform fields: the file it produces
reopens with the bit-identical affine, which is what lets it overlay the original in 3D Slicer, ITK-SNAP
or nibabel.  Every nibabel, gzip or zlib failure is turned into a one-line :class:`VolumeError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VolumeError
from .atomic import atomic_path
from .checks import check_array_values, check_shape, label_dtype, reason, to_label_array
from .volume import Volume, nifti_to_volume_affine, volume_to_nifti_affine

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti_path(path: str | Path) -> bool:
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def nifti_stem(path: str | Path) -> str:
    """``case_001`` for ``case_001.nii.gz``."""
    name = Path(path).name
    for suf in (".nii.gz", ".nii"):
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return Path(path).stem


def _load(path: Path) -> Any:
    import nibabel as nib

    try:
        img = nib.load(str(path))
    except FileNotFoundError:
        raise
    except Exception as exc:  # nibabel, gzip, zlib, struct, numpy errors all mean "not readable"
        raise VolumeError(f"{path.name}: not a readable NIfTI file ({reason(exc)})") from exc
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise VolumeError(f"{path.name}: not a NIfTI image ({type(img).__name__})")
    return img


def read_nifti_header(path: str | Path) -> tuple[tuple[int, ...], tuple[float, ...], np.ndarray]:
    """Shape, spacing (array order) and volume affine from the header only (no voxel data read)."""
    path = Path(path)
    img = _load(path)
    try:
        file_shape = tuple(int(s) for s in img.header.get_data_shape())
    except Exception as exc:
        raise VolumeError(f"{path.name}: corrupt NIfTI header ({reason(exc)})") from exc
    shape, _ = check_shape(file_shape, path.name)
    vol_affine = _volume_affine(img, path)
    sp = tuple(float(s) for s in np.linalg.norm(vol_affine[:3, :3], axis=0))
    return tuple(reversed(shape)), sp, vol_affine


def _volume_affine(img: Any, path: Path) -> np.ndarray:
    try:
        aff = np.asarray(img.affine, dtype=float)
    except Exception as exc:
        raise VolumeError(f"{path.name}: unreadable geometry in the header ({reason(exc)})") from exc
    if aff.shape != (4, 4) or not np.all(np.isfinite(aff)):
        raise VolumeError(f"{path.name}: the header's affine is missing or not finite")
    return nifti_to_volume_affine(aff)


def read_nifti(path: str | Path, *, nonfinite: str = "raise", is_label: bool = False) -> Volume:
    """Read a NIfTI file into a :class:`Volume` (array in reversed NIfTI order).

    Args:
        nonfinite: ``"raise"`` (default) rejects NaN/inf intensities; ``"fill"`` replaces them with
            the lowest finite value and records the count in ``meta['nonfinite_filled']``.
        is_label: skip the intensity checks that only make sense for images.
    """
    path = Path(path)
    img = _load(path)
    try:
        file_shape = tuple(int(s) for s in img.header.get_data_shape())
        dtype = img.header.get_data_dtype()
        offset = int(img.header.get_data_offset())
    except Exception as exc:  # nonsense header fields
        raise VolumeError(f"{path.name}: corrupt NIfTI header ({reason(exc)})") from exc
    shape, notes = check_shape(file_shape, path.name)
    if dtype.fields is not None or dtype.kind not in "biuf":
        raise VolumeError(f"{path.name}: unsupported voxel type {dtype} (need a scalar integer or float image)")
    _check_size(path, offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)
    affine = _volume_affine(img, path)
    try:
        data = np.asanyarray(img.dataobj)
    except MemoryError as exc:
        raise VolumeError(f"{path.name}: image of shape {shape} does not fit in memory") from exc
    except Exception as exc:
        raise VolumeError(f"{path.name}: truncated or corrupt voxel data ({reason(exc)})") from exc
    data = np.asarray(data).reshape(shape)
    arr = np.ascontiguousarray(data.transpose(2, 1, 0))
    meta: dict[str, Any] = {
        "format": "nifti",
        "nifti_header": bytes(img.header.binaryblock),
        "qform_code": int(img.header["qform_code"]),
        "sform_code": int(img.header["sform_code"]),
        "file_dtype": str(dtype),
    }
    if notes:
        meta["notes"] = notes
    if not is_label:
        arr = check_array_values(arr, path.name, nonfinite, meta)
    return Volume(array=arr, affine=affine, name=nifti_stem(path), source=path, meta=meta)


#: above this compression ratio a .nii.gz is decompressed once, in 1 MiB pieces, to prove that the data
#: its header promises is there before anything of that size is allocated
SUSPICIOUS_RATIO = 50


def _check_size(path: Path, expected: int) -> None:
    """Refuse a header that promises more data than the file holds, *before* nibabel allocates it.

    An uncompressed file must be at least as large as the header says.  Deflate cannot compress
    better than about 1032:1, which bounds a .nii.gz; above :data:`SUSPICIOUS_RATIO` the stream is
    decompressed (bounded memory, stopping as soon as enough bytes are seen), so a small file whose
    header claims gigabytes costs one streaming pass, not gigabytes of memory.
    """
    size = path.stat().st_size
    gz = path.name.lower().endswith(".gz")
    limit = size * 1032 + 65536 if gz else size
    if expected > limit:
        what = "compressed file of" if gz else "file of"
        raise VolumeError(
            f"{path.name}: truncated or corrupt: the header needs {expected} bytes but a {what} {size} bytes "
            "cannot hold them"
        )
    if gz and expected > size * SUSPICIOUS_RATIO + 65536:
        have = _gzip_length_at_least(path, expected)
        if have < expected:
            raise VolumeError(
                f"{path.name}: truncated or corrupt: the header needs {expected} bytes but the compressed "
                f"data holds {have}"
            )


def _gzip_length_at_least(path: Path, wanted: int, piece: int = 1 << 20) -> int:
    """Bytes of decompressed data, counting up to ``wanted`` (never holds more than ``piece`` bytes)."""
    import gzip
    import zlib

    n = 0
    try:
        with gzip.open(path, "rb") as fh:
            while n < wanted:
                chunk = fh.read(min(piece, wanted - n))
                if not chunk:
                    break
                n += len(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        raise VolumeError(f"{path.name}: corrupt compressed data ({reason(exc)})") from None
    return n


# ---------------------------------------------------------------------------------------- writing
def _header_for(like: Volume, data_shape: tuple[int, ...]) -> Any | None:
    """The source header, if ``like`` still has it and its affine is ``like``'s affine."""
    import nibabel as nib

    meta = like.meta or {}
    # "sparseseg_nifti_header" is the napari layer-metadata key (Volume.from_napari_layer keeps it)
    raw = meta.get("nifti_header", meta.get("sparseseg_nifti_header"))
    if not isinstance(raw, (bytes, bytearray)) or len(raw) not in (348, 540):
        return None
    try:
        hdr = (nib.Nifti1Header if len(raw) == 348 else nib.Nifti2Header)(binaryblock=bytes(raw))
        hdr = hdr.copy()
        best = hdr.get_best_affine()
    except Exception:  # a damaged header in layer metadata: fall back to the affine
        return None
    if not np.allclose(best, volume_to_nifti_affine(like.affine), atol=1e-5):
        return None
    return hdr


def _nifti_image(array: np.ndarray, like: Volume, *, label: bool) -> Any:
    import nibabel as nib

    data = np.asarray(array).transpose(2, 1, 0)
    hdr = _header_for(like, data.shape)
    if hdr is not None:
        cls = nib.Nifti1Image if isinstance(hdr, nib.Nifti1Header) else nib.Nifti2Image
        img = cls(data, None, header=hdr)  # affine=None keeps the header's qform/sform fields bit-for-bit
    else:
        img = nib.Nifti1Image(data, volume_to_nifti_affine(like.affine))
        code = int(like.meta.get("sform_code", 0) or like.meta.get("qform_code", 0) or 1) if like.meta else 1
        img.header.set_sform(img.affine, code=code)
        img.header.set_qform(img.affine, code=code)
        img.header.set_xyzt_units("mm")
    img.set_data_dtype(data.dtype)
    h = img.header
    h["scl_slope"], h["scl_inter"] = np.nan, np.nan  # raw values are the labels: no scaling
    h["cal_min"], h["cal_max"] = 0, 0
    if label:
        h.set_intent("label")
    else:
        h.set_intent("none")
    return img


def _save(img: Any, path: Path) -> Path:
    import nibabel as nib

    if not is_nifti_path(path):
        raise VolumeError(f"{path.name}: NIfTI output needs a .nii or .nii.gz name")
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return path


def write_labels_nifti(path: str | Path, labels: np.ndarray, like: Volume) -> Path:
    """Write an integer label map on ``like``'s grid (same shape, same affine, source header).

    The dtype is the smallest of uint8/int16/int32 that holds the values; float input holding
    whole numbers is accepted.  The write is atomic.
    """
    path = Path(path)
    arr = to_label_array(np.asarray(labels), path.name)
    if arr.shape != like.shape:
        raise VolumeError(f"labels of shape {arr.shape} do not fit the image grid {like.shape}")
    arr = arr.astype(label_dtype(arr), copy=False)
    return _save(_nifti_image(arr, like, label=True), path)


def write_volume_nifti(path: str | Path, volume: Volume) -> Path:
    """Write an image volume (its own dtype) with its affine; atomic."""
    path = Path(path)
    arr = np.asarray(volume.array)
    if arr.ndim != 3:
        raise VolumeError(f"a 3D volume is needed, got shape {arr.shape}")
    if arr.dtype == np.float16 or arr.dtype.kind == "b":
        arr = arr.astype(np.float32 if arr.dtype == np.float16 else np.uint8)
    if arr.dtype == np.int64 or arr.dtype == np.uint64:
        arr = arr.astype(label_dtype(arr))
    return _save(_nifti_image(arr, volume, label=False), path)
