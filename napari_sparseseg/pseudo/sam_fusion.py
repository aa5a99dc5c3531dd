"""SAM pseudo-labels and their fusion with the random walker.

Two SAM methods, both per slice along axis 0 with embeddings from an :class:`EmbeddingCache`:

* ``"sam"``    -- prompts from the marks only (:func:`prompts_from_marks`): scribble boxes + points,
  points, fully labelled slices; slices without marks get masks propagated from the nearest
  annotated slice (:func:`propagate_mask`, with its stop rule).
* ``"fusion"`` -- the walker's dense guess gives every class a box on every slice (a better box than a
  scribble's extent), SAM refines the outline, and the two probability maps are averaged:
  ``P = (1 - lam) * P_walker + lam * P_sam``.  Classes SAM could not be prompted for keep the walker.

Nested classes (found by :func:`detect_nesting` on the walker's labels) are segmented as the union
of outer + inner, then the inner class is subtracted: ``p_outer = p_union * (1 - p_inner)``.

Confidence = max fused probability, halved where the walker and SAM disagree on the label (agreement
between two independent methods is the best cheap error detector we measured).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ..annotations.sparse import SparseAnnotation
from ..sam.cache import EmbeddingCache, order_by_distance
from ..sam.loaders import load_backend
from ..sam.prompts import ClassPrompt, bbox, detect_nesting, prompts_from_marks
from ..sam.propagate import StopRule, propagate_mask
from .normalize import percentile_unit_range
from .types import PseudoLabels
from .walker import random_walker_pseudo


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))).astype(np.float32)


def _decode(cache: EmbeddingCache, z: int, p: ClassPrompt, use_points: bool) -> tuple[np.ndarray, float]:
    emb = cache.get(z)
    has_pts = len(p.points) > 0 and (use_points or p.box is None)
    logits, scores = cache.backend.decode(
        emb,
        boxes=None if p.box is None else p.box[None],
        points=p.points[None] if has_pts else None,
        point_labels=p.point_labels[None] if has_pts else None,
    )
    return _sigmoid(logits[0, 0]), float(scores[0, 0])


def _class_maps(cache: EmbeddingCache, z: int, prompts: dict[int, ClassPrompt],
                nesting: dict[int, tuple[int, ...]], use_points: bool) -> tuple[dict[int, np.ndarray], dict[int, float]]:
    """SAM probability per prompted class on slice ``z`` (outer classes minus their inner ones)."""
    probs: dict[int, np.ndarray] = {}
    scores: dict[int, float] = {}
    for c, p in prompts.items():
        probs[c], scores[c] = _decode(cache, z, p, use_points)
    for outer, inners in nesting.items():
        if outer in probs:
            for i in inners:
                if i in probs:
                    probs[outer] = probs[outer] * (1.0 - probs[i])
    return probs, scores


def _stack(shape2d: tuple[int, int], classes: tuple[int, ...], maps: dict[int, np.ndarray],
           fallback: np.ndarray | None) -> np.ndarray:
    """Per-class SAM maps -> normalised (n_ch, H, W); missing classes take ``fallback`` channels."""
    n_ch = len(classes) + 1
    out = np.zeros((n_ch,) + shape2d, np.float32)
    bg = np.ones(shape2d, np.float32)
    for i, c in enumerate(classes):
        if c in maps:
            out[i + 1] = maps[c]
            bg *= 1.0 - maps[c]
        elif fallback is not None:
            out[i + 1] = fallback[i + 1]
            bg *= 1.0 - fallback[i + 1]
    out[0] = bg
    return out / np.maximum(out.sum(0, keepdims=True), 1e-6)


def _region_prompts(dense2d: np.ndarray, classes: tuple[int, ...], nesting: dict[int, tuple[int, ...]],
                    margin: float, min_area: int) -> dict[int, ClassPrompt]:
    """Box prompts from a dense guess (the walker's labels): outer classes take their filled union."""
    out: dict[int, ClassPrompt] = {}
    for c in classes:
        region = dense2d == c
        for i in nesting.get(c, ()):
            region = region | (dense2d == i)
        if c in nesting:
            region = ndi.binary_fill_holes(region)
        if region.sum() < min_area:
            continue
        out[c] = ClassPrompt(c, "region", bbox(region, margin, dense2d.shape))
    return out


def sam_probabilities(
    img01: np.ndarray,
    ann: SparseAnnotation,
    cache: EmbeddingCache,
    *,
    mode: str,
    walker: PseudoLabels | None = None,
    nesting: dict[int, tuple[int, ...]] | None = None,
    use_points: bool = False,
    box_margin: float = 0.05,
    stop: StopRule | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """SAM probabilities ``(n_ch, *shape)``, a bool map of slices SAM covered, and a log.

    ``mode="marks"``: prompts from the marks, propagation to unmarked slices.
    ``mode="regions"``: box prompts from ``walker``'s labels on every slice.
    """
    classes = tuple(ann.classes)
    n_ch = len(classes) + 1
    nz = img01.shape[0]
    probs = np.zeros((n_ch,) + img01.shape, np.float32)
    probs[0] = 1.0
    covered = np.zeros(nz, bool)
    log: dict[str, Any] = {"scores": {}, "stops": []}
    marked = ann.annotated_slices(0)
    order = order_by_distance(nz, marked)
    fb = walker.probabilities if walker is not None else None
    if mode == "regions":
        assert walker is not None
        for k, z in enumerate(order):
            prompts = _region_prompts(walker.labels[z], classes, nesting or {}, box_margin, min_area=10)
            if prompts:
                maps, sc = _class_maps(cache, z, prompts, nesting or {}, use_points)
                probs[:, z] = _stack(img01.shape[1:], classes, maps, None if fb is None else fb[:, z])
                log["scores"][z] = sc
            elif fb is not None:
                probs[:, z] = fb[:, z]
            covered[z] = True
            if progress:
                progress(k + 1, nz)
        return probs, covered, log
    # mode == "marks"
    class_maps: dict[int, dict[int, np.ndarray]] = {z: {} for z in range(nz)}
    for k, z in enumerate(marked):
        prompts = prompts_from_marks(ann.labels[z], classes, ann.background_label, nesting=nesting,
                                     box_margin=max(box_margin, 0.15), seed=z)
        full = {c: p for c, p in prompts.items() if p.kind == "slice"}
        rest = {c: p for c, p in prompts.items() if p.kind != "slice"}
        maps, sc = _class_maps(cache, z, rest, nesting or {}, use_points=True)
        for c, p in full.items():
            maps[c] = p.mask.astype(np.float32)
            for i in (nesting or {}).get(c, ()):
                if i in full:
                    maps[c] = maps[c] * (1.0 - full[i].mask)
        class_maps[z] = maps
        log["scores"][z] = sc
        covered[z] = True
        if progress:
            progress(k + 1, len(marked) + 1)
    # propagate each class (outer ones as their union) from every marked slice outward
    marked_set = set(marked)
    for z in marked:
        for c in classes:
            if c not in class_maps[z]:
                continue
            m = class_maps[z][c] > 0.5
            for i in (nesting or {}).get(c, ()):
                if i in class_maps[z]:
                    m = ndi.binary_fill_holes(m | (class_maps[z][i] > 0.5))
            if m.sum() == 0:
                continue
            for d in (-1, 1):
                got, why = propagate_mask(cache, z, m, d, stop=stop, blocked=lambda q: q in marked_set)
                log["stops"].append((z, c, d, why, len(got)))
                for q, (p, _s) in got.items():
                    prev = class_maps[q].get(c)
                    class_maps[q][c] = p if prev is None else np.maximum(prev, p)
    for z in range(nz):
        maps = dict(class_maps[z])
        if z not in marked_set:
            for outer, inners in (nesting or {}).items():
                if outer in maps:
                    for i in inners:
                        if i in maps:
                            maps[outer] = maps[outer] * (1.0 - maps[i])
            covered[z] = bool(maps)
        probs[:, z] = _stack(img01.shape[1:], classes, maps, None)
    if progress:
        progress(1, 1)
    return probs, covered, log


def fuse(p_walker: np.ndarray, p_sam: np.ndarray, lam: float | np.ndarray, covered: np.ndarray | None = None) -> np.ndarray:
    """Linear pool of the two probability maps; slices SAM did not cover keep the walker.

    ``lam`` is SAM's weight, one number or one per channel (e.g. lower for a ring class, where
    SAM's union-minus-inner mask is least reliable).
    """
    lam_a = np.asarray(lam, dtype=np.float32).reshape((-1,) + (1,) * (p_walker.ndim - 1))
    p = (1.0 - lam_a) * p_walker + lam_a * p_sam
    if covered is not None:
        p[:, ~covered] = p_walker[:, ~covered]
    p /= np.maximum(p.sum(0, keepdims=True), 1e-6)
    return p


def labels_and_confidence(p: np.ndarray, classes: tuple[int, ...], agree_with: tuple[np.ndarray, ...] = (),
                          disagree_factor: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Argmax labels and confidence (max prob, times ``disagree_factor`` where the sources disagree)."""
    idx = p.argmax(0)
    conf = p.max(0)
    for q in agree_with:
        conf = np.where(q.argmax(0) == idx, conf, conf * disagree_factor)
    lut = np.array((0,) + tuple(classes), np.int16)
    return lut[idx], conf.astype(np.float32)


def channel_lambdas(classes: tuple[int, ...], nesting: dict[int, tuple[int, ...]], lam: float,
                    lam_nested: float | None) -> np.ndarray:
    """SAM weight per channel (background, classes...): ``lam_nested`` for outer (ring) classes."""
    out = np.full(len(classes) + 1, lam, np.float32)
    if lam_nested is not None:
        for i, c in enumerate(classes):
            if c in nesting:
                out[i + 1] = lam_nested
    return out


def sam_pseudo(
    image: np.ndarray,
    ann: SparseAnnotation,
    *,
    method: str = "fusion",
    backend: Any = None,
    cache: EmbeddingCache | None = None,
    cache_dir: str | Path | None = None,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    lam: float = 0.3,
    lam_nested: float | None = None,
    box_margin: float = 0.1,
    fast: bool = True,
    progress: Callable[[int, int], None] | None = None,
    walker: PseudoLabels | None = None,
    **options: Any,
) -> PseudoLabels:
    """``method="sam"`` or ``"fusion"`` (see the module docstring).

    ``backend``: a spec string (``load_backend``), a :class:`SamBackend` or an :class:`EmbeddingCache`
    of this volume; ``fast`` switches a CPU backend to the ONNX Runtime encoder.  ``lam`` and
    ``box_margin`` defaults are the best measured on ACDC (bench/results/pseudo/pseudo_results.md).  ``walker``:
    the walker's pseudo-labels when the caller has them already (they are not computed twice).
    The fusion runs slice by slice (:class:`~.slice_fusion.SliceFusion`): same result as
    :func:`sam_probabilities` + :func:`fuse`, without a full-size SAM probability volume.
    """
    img01 = percentile_unit_range(image)
    if isinstance(backend, EmbeddingCache):
        cache = backend
    if cache is None:
        be = load_backend(backend)
        if fast:
            from ..sam.fast import enable_fast_encoder

            enable_fast_encoder(be)
        cache = EmbeddingCache(be, img01, cache_dir=cache_dir)
    own_walker = walker is None
    if walker is None:
        walker = random_walker_pseudo(image, ann, spacing=spacing)
    if method == "fusion":
        from .slice_fusion import SliceFusion

        sf = SliceFusion(ann, walker, cache, lam=lam, lam_nested=lam_nested, box_margin=box_margin,
                         use_points=bool(options.get("use_points", False)), inplace=own_walker)
        for k, z in enumerate(sf.order):
            sf.fuse_slice(z)
            if progress:
                progress(k + 1, len(sf.order))
        return sf.snapshot(copy=False)
    nesting = detect_nesting(walker.labels, tuple(ann.classes))
    classes = tuple(ann.classes)
    if method == "sam":
        ps, covered, log = sam_probabilities(img01, ann, cache, mode="marks", nesting=nesting,
                                             box_margin=box_margin, progress=progress, **options)
        labels, conf = labels_and_confidence(ps, classes)
        conf[~covered] = 0.0
        probs = ps
    elif method == "fusion":
        ps, covered, log = sam_probabilities(img01, ann, cache, mode="regions", walker=walker, nesting=nesting,
                                             box_margin=box_margin, progress=progress, **options)
        probs = fuse(walker.probabilities, ps, channel_lambdas(classes, nesting, lam, lam_nested), covered)
        labels, conf = labels_and_confidence(probs, classes, agree_with=(walker.probabilities, ps))
    else:
        raise ValueError(f"unknown SAM method {method!r}")
    info = {"method": method, "backend": cache.backend.name, "nesting": {int(k): list(v) for k, v in nesting.items()},
            "lam": lam, "lam_nested": lam_nested, "box_margin": box_margin, "cache": dict(cache.stats), "stops": log.get("stops", [])}
    return PseudoLabels(labels, conf, probs, classes, info).with_marks(ann)
