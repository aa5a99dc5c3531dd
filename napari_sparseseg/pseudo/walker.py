"""Random-walker pseudo-labels: the classical baseline and the backbone of the fusion.

Per slice along axis 0 (the thick-slice axis of clinical scans), scikit-image's random walker spreads
the user's marks along intensity edges.  Slices without marks are handled by ``unmarked``:

* ``"walker3d"`` -- one 3D walker over the whole volume (in-plane downsampled for speed) gives the
  unmarked slices their labels, with its max probability as confidence;
* ``"nearest"``  -- copy the probabilities of the nearest slice that has marks;
* ``"ignore"``   -- background with confidence 0 (the loss will not look at them).

Pitfall handled here: ``random_walker(..., return_full_prob=True)`` returns one channel per *present*
positive seed value, in sorted order, so seeds 1, 3, 4 come back as channels 0, 1, 2.  We map them back.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import random_walker

from ..annotations.sparse import SparseAnnotation
from ..errors import PseudoLabelError
from .compact import argmax_labels
from .normalize import percentile_unit_range
from .types import PseudoLabels

UNMARKED_MODES = ("walker3d", "nearest", "ignore")


def seed_channels(marks: np.ndarray, background_label: int, classes: tuple[int, ...]) -> np.ndarray:
    """Sparse marks -> seed image with value ``channel + 1`` (channel 0 = background), 0 = unmarked."""
    seeds = np.zeros(marks.shape, dtype=np.int32)
    seeds[marks == background_label] = 1
    for i, c in enumerate(classes):
        seeds[marks == c] = i + 2
    return seeds


def walker_probabilities(
    image: np.ndarray, seeds: np.ndarray, n_channels: int, *, beta: float = 130.0, spacing=None
) -> np.ndarray:
    """Full probabilities ``(n_channels, *image.shape)`` from seeds valued ``channel + 1``.

    Channels with no seed get probability 0.  With a single seed value, that channel gets 1 everywhere.

    Zero spread (a constant slice or volume): scikit-image divides ``beta`` by the image's standard
    deviation, so a constant image gives NaN edge weights and a conjugate-gradient solve that never
    converges (it then runs ``10 * n`` iterations: minutes on one slice).  There are no edges to follow
    in a constant image, so every edge gets the same weight (``beta = 0``: a walk on a uniform graph,
    i.e. harmonic interpolation between the seeds), which is the walker's own limit as contrast -> 0.
    """
    present = [int(v) for v in np.unique(seeds) if v > 0]
    out = np.zeros((n_channels,) + image.shape, dtype=np.float32)
    if not present:
        raise ValueError("no seeds")
    if len(present) == 1:
        out[present[0] - 1] = 1.0
        return out
    if (seeds > 0).all():  # a fully labelled slice: nothing to walk (skimage returns odd shapes here)
        for v in present:
            out[v - 1] = seeds == v
        return out
    data = image.astype(np.float64)
    if not np.all(np.isfinite(data)):
        raise PseudoLabelError("the image holds NaN or infinite values; the walker cannot use them")
    if float(data.std()) < 1e-8:
        # uniform weights; skimage still divides by std, so hand it any non-constant array with beta 0
        data = np.arange(data.size, dtype=np.float64).reshape(data.shape)
        beta = 0.0
    with warnings.catch_warnings():
        # the solver's tolerance lets probabilities overshoot [0, 1] slightly; we clip below
        warnings.filterwarnings("ignore", message="The probability range is outside")
        prob = random_walker(
            data, seeds, beta=beta, mode="cg_j", tol=1e-3, return_full_prob=True,
            spacing=spacing,
        )
    if not np.all(np.isfinite(prob)):
        raise PseudoLabelError("the random walker did not converge (non-finite probabilities)")
    prob = np.clip(prob, 0.0, 1.0)
    # the solver's tolerance can leave a voxel with every channel <= 0 (seen along the last column of
    # brain MRI slices); an all-zero prior lets the network paint anything there, so such voxels take
    # the probabilities of the nearest voxel that has some
    empty = prob.sum(0) < 1e-3
    if empty.any() and not empty.all():
        idx = ndi.distance_transform_edt(empty, return_distances=False, return_indices=True)
        prob = prob[(slice(None), *idx)]
    prob /= np.maximum(prob.sum(0, keepdims=True), 1e-6)
    # prob[k] belongs to the k-th *present* seed value (sorted), not to value k + 1
    for k, v in enumerate(present):
        out[v - 1] = prob[k]
    return out


#: the 3D walker's solver (scikit-image, float64 Laplacian + conjugate gradients) needs ~0.6 kB per
#: voxel: 4.9 M voxels (300 x 128 x 128) peaked at +2.9 GB.  Larger scans are downsampled in-plane
#: further to stay under this; every shared data set (at most 0.4 M voxels after the 128 cap) is below it.
MAX_WALKER3D_VOXELS = 2_500_000


def _walker3d(image: np.ndarray, seeds: np.ndarray, n_channels: int, beta: float,
              spacing: tuple[float, ...], max_inplane: int = 128) -> np.ndarray:
    """3D walker, in-plane downsampled so that no in-plane side exceeds ``max_inplane`` (and the whole
    grid stays under :data:`MAX_WALKER3D_VOXELS`)."""
    f = max(1.0, max(image.shape[1:]) / max_inplane)
    inplane = image.shape[1] * image.shape[2] / f**2
    if image.shape[0] * inplane > MAX_WALKER3D_VOXELS:
        f *= float(np.sqrt(image.shape[0] * inplane / MAX_WALKER3D_VOXELS))
    if f > 1.0:
        small_shape = (image.shape[0],) + tuple(max(2, int(round(s / f))) for s in image.shape[1:])
        zoom = [a / b for a, b in zip(small_shape, image.shape)]
        img_s = ndi.zoom(image, zoom, order=1, mode="nearest")
        # nearest-neighbour downsampling would drop thin scribbles: max-pool each seed value instead
        seeds_s = np.zeros(img_s.shape, dtype=np.int32)
        for v in [int(u) for u in np.unique(seeds) if u > 0]:
            m = ndi.zoom((seeds == v).astype(np.float32), zoom, order=1, mode="nearest") > 0.25
            seeds_s[m & (seeds_s == 0)] = v
        sp = (spacing[0], spacing[1] * f, spacing[2] * f)
    else:
        img_s, seeds_s, sp = image, seeds, spacing
    probs = walker_probabilities(img_s, seeds_s, n_channels, beta=beta, spacing=sp)
    if f > 1.0:
        zoom_back = [a / b for a, b in zip(image.shape, img_s.shape)]
        # mode="nearest": with the default cval 0, rounding puts the last column just outside the
        # grid on every other row, and those voxels came back with all-zero probabilities
        # one channel at a time into one float32 volume, clipped and normalised in place: on a
        # 512 x 512 x 300 scan a stacked copy plus clip/normalise temporaries cost ~2.5 GB more
        full = np.empty((probs.shape[0],) + image.shape, dtype=np.float32)
        for k, p in enumerate(probs):
            full[k] = ndi.zoom(p, zoom_back, order=1, mode="nearest")[: image.shape[0], : image.shape[1], : image.shape[2]]
        probs = np.clip(full, 0, 1, out=full)
        probs /= np.maximum(probs.sum(0, keepdims=True), 1e-6)
    return probs.astype(np.float32)


def random_walker_pseudo(
    image: np.ndarray,
    ann: SparseAnnotation,
    *,
    unmarked: str = "walker3d",
    beta: float = 130.0,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    progress: Callable[[int, int], None] | None = None,
) -> PseudoLabels:
    """Random-walker pseudo-labels per slice along axis 0 (see the module docstring)."""
    if unmarked not in UNMARKED_MODES:
        raise ValueError(f"unmarked must be one of {UNMARKED_MODES}, got {unmarked!r}")
    img = percentile_unit_range(image)
    classes = tuple(ann.classes)
    n_ch = len(classes) + 1
    seeds = seed_channels(ann.labels, ann.background_label, classes)
    probs = np.zeros((n_ch,) + img.shape, dtype=np.float32)
    done = np.zeros(img.shape[0], dtype=bool)
    n = img.shape[0]
    for z in range(n):
        s = seeds[z]
        present = np.unique(s[s > 0])
        if len(present) >= 2 or (len(present) == 1 and present[0] == 1):
            # two or more labels, or background only ("nothing of interest on this slice")
            probs[:, z] = walker_probabilities(img[z], s, n_ch, beta=beta, spacing=spacing[1:])
            done[z] = True
        if progress is not None:
            progress(z + 1, n)
    conf = probs.max(0)
    todo = np.flatnonzero(~done)
    mode_used = unmarked
    if todo.size:
        if not done.any() or unmarked == "ignore":
            conf[todo] = 0.0
            probs[0, todo] = 1.0
            mode_used = "ignore" if done.any() else "ignore(no complete slice)"
        elif unmarked == "nearest":
            ref = np.flatnonzero(done)
            for z in todo:
                src = ref[np.argmin(np.abs(ref - z))]
                probs[:, z] = probs[:, src]
            conf[todo] = probs[:, todo].max(0)
        else:
            p3 = _walker3d(img, seeds, n_ch, beta, spacing)
            for z in todo:  # slice by slice: no volume-sized fancy-index copies
                probs[:, z] = p3[:, z]
                conf[z] = p3[:, z].max(0)
            del p3
    labels = argmax_labels(probs, np.array((0,) + classes, dtype=np.int16))
    info = {"method": "random-walker", "unmarked": mode_used, "slices_with_marks": int(done.sum()),
            "beta": beta}
    return PseudoLabels(labels, conf, probs, classes, info).with_marks(ann, copy=False)
