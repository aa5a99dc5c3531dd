"""Readers and writers; a :class:`Volume` carries its grid (spacing, origin, direction)."""

from ..errors import VolumeError
from .volume import Volume, nifti_to_volume_affine, volume_to_nifti_affine

__all__ = ["Volume", "VolumeError", "nifti_to_volume_affine", "volume_to_nifti_affine"]
