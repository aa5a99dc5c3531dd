"""The widget's layers, all on the image's grid: annotations, prompts, SAM preview, prediction, uncertainty.

Every layer copies the image layer's full transform (scale, translate, rotate, shear, affine) so that
marks, predictions and exports line up with the scan voxel for voxel, also for oblique scans.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.layers import Image, Labels, Points, Shapes
from napari.utils.colormaps import DirectLabelColormap

from ..session import ClassTable

ANNOTATIONS = "annotations"
PROMPTS = "SAM prompts"
BOXES = "SAM box"
PREVIEW = "SAM preview"
PREDICTION = "prediction"
UNCERTAINTY = "uncertainty"


def grid_kwargs(image: Image) -> dict[str, Any]:
    """The transform of ``image`` as layer keyword arguments, with its units (mm from the plugin's
    reader) and axis labels, so every layer of the session reads the same on the sliders."""
    return {
        "scale": tuple(image.scale),
        "translate": tuple(image.translate),
        "rotate": np.asarray(image.rotate),
        "shear": np.asarray(image.shear),
        "affine": image.affine.affine_matrix,
        "units": tuple(str(u) for u in image.units),
        "axis_labels": tuple(image.axis_labels),
    }


def class_colormap(classes: ClassTable, *, dense: bool) -> DirectLabelColormap:
    """Colours from the class table.  ``dense`` maps (predictions): 0 = background, drawn transparent."""
    colors: dict[Any, Any] = {None: (0, 0, 0, 0), 0: (0, 0, 0, 0)}
    for spec in classes.classes:
        if dense and spec.id == classes.background:
            continue
        colors[spec.id] = spec.color
    return DirectLabelColormap(color_dict=colors)


def _find(viewer, name: str, kind: type):
    for layer in viewer.layers:
        if layer.name == name and isinstance(layer, kind) and layer.metadata.get("sparseseg_role") == name:
            return layer
    return None


def ensure_labels(viewer, image: Image, name: str, classes: ClassTable, *, dense: bool, data: np.ndarray | None = None,
                  opacity: float = 0.7) -> Labels:
    """Find our Labels layer ``name`` on ``image``'s grid, or create it (zeros or ``data``)."""
    layer = _find(viewer, name, Labels)
    shape = tuple(image.data.shape)
    if layer is not None and tuple(layer.data.shape) == shape and layer.metadata.get("sparseseg_image") == image.name:
        if data is not None:
            layer.data = data
        layer.colormap = class_colormap(classes, dense=dense)
        return layer
    if layer is not None:
        viewer.layers.remove(layer)
    meta = dict(image.metadata)
    meta.update({"sparseseg_role": name, "sparseseg_image": image.name})
    arr = np.zeros(shape, np.int16) if data is None else data
    return viewer.add_labels(arr, name=name, opacity=opacity, metadata=meta, colormap=class_colormap(classes, dense=dense),
                             **grid_kwargs(image))


def ensure_uncertainty(viewer, image: Image, data: np.ndarray) -> Image:
    layer = _find(viewer, UNCERTAINTY, Image)
    if layer is not None and tuple(layer.data.shape) == tuple(data.shape):
        layer.data = data
        return layer
    if layer is not None:
        viewer.layers.remove(layer)
    meta = {"sparseseg_role": UNCERTAINTY, "sparseseg_image": image.name}
    return viewer.add_image(
        data, name=UNCERTAINTY, colormap="inferno", contrast_limits=(0.0, 1.0), opacity=0.5, blending="additive",
        visible=False, metadata=meta, **grid_kwargs(image),
    )


def ensure_prompts(viewer, image: Image) -> Points:
    """Points layer for positive (green) / negative (red) SAM clicks; features say sign and class."""
    layer = _find(viewer, PROMPTS, Points)
    if layer is not None:
        return layer
    meta = {"sparseseg_role": PROMPTS, "sparseseg_image": image.name}
    layer = viewer.add_points(
        np.zeros((0, image.data.ndim)), ndim=image.data.ndim, name=PROMPTS, metadata=meta,
        features={"positive": np.zeros(0, bool), "class_id": np.zeros(0, int)},
        face_color="positive", face_color_cycle=["red", "lime"], size=max(2.0, min(image.data.shape[1:]) / 40),
        out_of_slice_display=False, **grid_kwargs(image),
    )
    layer.feature_defaults["positive"] = True
    layer.feature_defaults["class_id"] = 1
    return layer


def ensure_boxes(viewer, image: Image) -> Shapes:
    layer = _find(viewer, BOXES, Shapes)
    if layer is not None:
        return layer
    meta = {"sparseseg_role": BOXES, "sparseseg_image": image.name}
    return viewer.add_shapes(
        ndim=image.data.ndim, name=BOXES, metadata=meta, edge_color="yellow", face_color="transparent", edge_width=1,
        **grid_kwargs(image),
    )


def current_slice(viewer, image: Image, axis: int = 0) -> int:
    """The data index along ``axis`` of the slice the viewer shows."""
    pos = image.world_to_data(viewer.dims.point[-image.ndim:])
    return int(np.clip(round(float(pos[axis])), 0, image.data.shape[axis] - 1))


def go_to_slice(viewer, image: Image, z: int, axis: int = 0) -> None:
    """Move the viewer to data slice ``z`` (world position through the image's transform)."""
    idx = np.asarray(image.data.shape, float) / 2
    idx[axis] = z
    world = image.data_to_world(idx)
    world_axis = viewer.dims.ndim - image.ndim + axis
    viewer.dims.set_point(world_axis, float(world[axis]))
