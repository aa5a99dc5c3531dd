"""``CohortModel``: a saved study model applied to a scan, with or without marks on it.

Without marks the network gets a uniform prior (what it was trained to handle for half of its
crops) and segments from the image alone: opening a new scan of a study pre-segments it.  With
marks the scan's own pseudo-labels become the prior, as in training, and the marks themselves are
kept in the output (what the user drew is never overwritten).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..annotations.sparse import SparseAnnotation
from ..errors import CheckpointError
from ..io.volume import Volume
from ..models.networks import NetworkSpec, build_network
from ..pseudo.types import PseudoLabels
from ..training.checkpoint import load_checkpoint
from ..training.data import channel_to_class, percentile_zscore, pseudo_prior
from ..training.inference import predict_probabilities, probabilities_to_outputs
from ..training.trainer import pick_device
from .data import uniform_prior
from .predict import predict_scan_probabilities


class CohortModel:
    """Inference-side view of a checkpoint written by :meth:`CohortTrainer.save` (or the per-scan Trainer)."""

    def __init__(self, model: torch.nn.Module, spec: NetworkSpec, meta: dict[str, Any], device: torch.device) -> None:
        self.model = model.eval()
        self.spec = spec
        self.meta = meta
        self.device = device
        self.classes = tuple(int(c) for c in meta.get("classes", []))
        self.class_names = {int(k): str(v) for k, v in meta.get("class_names", {}).items()}
        self.background_label = int(meta.get("background_label", max(self.classes, default=0) + 1))
        cohort = meta.get("cohort", {})
        self.version = int(cohort.get("version", 0))
        self.pseudo_method = str(cohort.get("pseudo_method", "random-walker"))
        self.uses_prior = bool(meta.get("pseudo_input", False))

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> CohortModel:
        state, meta = load_checkpoint(path)
        try:
            spec = NetworkSpec.from_dict(meta["network"])
            if not meta.get("classes"):
                raise KeyError("classes")
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{Path(path).name}: metadata lacks a usable {exc} entry") from None
        dev = pick_device(device)
        net = build_network(spec)
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise CheckpointError(f"{Path(path).name}: weights do not fit {spec.name} ({str(exc).splitlines()[0]})") from None
        return cls(net.to(dev), spec, meta, dev)

    def prior_for(self, image: Volume, annotation: SparseAnnotation | None,
                  pseudo: PseudoLabels | None = None) -> tuple[np.ndarray | None, PseudoLabels | None]:
        """The prior channels for ``image``: its pseudo-labels' probabilities, or None (uniform) without marks."""
        if annotation is None or not bool(annotation.marked.any()):
            return None, None
        if tuple(annotation.classes) != self.classes:
            raise CheckpointError(f"the model segments classes {list(self.classes)}, the marks have {list(annotation.classes)}")
        if pseudo is None:
            from ..pseudo import make_pseudo_labels

            pseudo = make_pseudo_labels(image, annotation, method=self.pseudo_method)
        return pseudo_prior(pseudo, self.classes, image.shape), pseudo

    def predict_proba(self, image: Volume, annotation: SparseAnnotation | None = None,
                      pseudo: PseudoLabels | None = None) -> torch.Tensor:
        """Softmax ``(K, Z, Y, X)`` on the image grid."""
        norm, _ = percentile_zscore(image.array)
        img = torch.from_numpy(norm)
        k = len(self.classes) + 1
        prior_np, _ = self.prior_for(image, annotation, pseudo) if self.uses_prior else (None, None)
        if self.uses_prior:
            prior = torch.from_numpy(prior_np) if prior_np is not None else uniform_prior(k, norm.shape)
        if self.spec.dims == 2 and self.uses_prior:
            return predict_scan_probabilities(self.model, img, prior, self.device)
        x = torch.cat([img[None], prior]) if self.uses_prior else img[None]
        prob = predict_probabilities(self.model, x, self.spec.dims, self.device)
        assert prob is not None
        return prob

    def predict(self, image: Volume, annotation: SparseAnnotation | None = None,
                pseudo: PseudoLabels | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Label map (int16, the model's class ids, 0 = background) and uncertainty (float32, [0, 1])."""
        prob = self.predict_proba(image, annotation, pseudo)
        labels, unc = probabilities_to_outputs(prob, channel_to_class(self.classes))
        if annotation is not None:
            t = annotation.to_targets()
            marked = annotation.marked
            labels[marked] = t[marked]
            unc[marked] = 0.0
        return labels, unc
