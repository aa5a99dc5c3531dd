"""Segmentation networks (MONAI U-Nets) and the rule that picks 2D or 3D from the voxel spacing."""

from .networks import NetworkSpec, build_network, choose_network, default_spec

__all__ = ["NetworkSpec", "build_network", "choose_network", "default_spec"]
