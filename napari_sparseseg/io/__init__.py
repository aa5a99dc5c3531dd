"""Readers and writers; a :class:`Volume` carries its grid (spacing, origin, direction)."""

from ..errors import VolumeError
from .atomic import atomic_path, atomic_write_bytes, atomic_write_text
from .dicom import read_dicom_series
from .nifti import read_nifti, read_nifti_header, write_labels_nifti, write_volume_nifti
from .readers import detect_format, read_labels, read_volume
from .volume import Volume, nifti_to_volume_affine, volume_to_nifti_affine
from .zarr_io import read_zarr, write_zarr

__all__ = [
    "Volume",
    "VolumeError",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "detect_format",
    "nifti_to_volume_affine",
    "read_dicom_series",
    "read_labels",
    "read_nifti",
    "read_nifti_header",
    "read_volume",
    "read_zarr",
    "volume_to_nifti_affine",
    "write_labels_nifti",
    "write_volume_nifti",
    "write_zarr",
]
