"""npe2 widget entry point: Plugins > SparseSeg > Sparse segmentation.

napari instantiates the class it finds here, passing the viewer (it inspects ``__init__`` for a
``napari_viewer`` parameter, which is why this is a class and not a factory function).  The module is
only imported when the widget is opened; torch/MONAI load later still, on the first Start/SAM use.
"""

from __future__ import annotations

from typing import Any

from .widget._llvm import isolate_triton

isolate_triton()  # before anything can import MONAI/torchvision next to napari's OpenGL; see widget/_llvm.py

from .widget.main import SparseSegWidget  # noqa: E402


def make_widget(napari_viewer: Any) -> SparseSegWidget:
    """The dock widget for ``napari_viewer`` (for scripts: ``viewer.window.add_dock_widget(make_widget(viewer))``)."""
    return SparseSegWidget(napari_viewer)


__all__ = ["SparseSegWidget", "make_widget"]
