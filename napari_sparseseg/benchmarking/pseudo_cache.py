"""Pseudo-labels computed once per (case, setting, pseudo method) and shared by every method.

Why: the fusion ("auto") pseudo-labels cost far more than a short training on 2 CPU cores (about a
minute for a hippocampus case), and the default, every seed-paper method and the active-learning
simulation all start from the same ones.  Computing them once per case and setting makes the
ablation compare the *methods* at equal input, and cuts the bench's wall time by the number of
methods.

The cost is still charged honestly: every row that uses a cached result reports the seconds it took
to compute (``seconds``), not the zero seconds of the cache hit.

SAM image embeddings depend on the image only, so one :class:`EmbeddingCache` per case is shared by
the ``sam`` and ``fusion`` pseudo-labels of all its settings (the product does the same with its
on-disk embedding cache).  The first pseudo-label of a case therefore pays for the embeddings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ..annotations import SparseAnnotation
from .cases import Case

#: pseudo-label methods that need SAM embeddings (resolved ``auto`` included)
SAM_METHODS = ("auto", "fusion", "sam")


@dataclass
class CachedPseudo:
    pseudo: Any  # PseudoLabels
    seconds: float  # wall time of the one computation
    hits: int = 0  # how many later requests it served


class PseudoCache:
    """In-process cache: ``get(case, setting, ann, method)`` -> (:class:`PseudoLabels`, seconds, shared).

    Keyed by (data set, case, setting, seed, pseudo method); ``ann`` must be the annotation of that
    setting (the runner builds it once per setting).  ``max_cases`` bounds memory: entries of older
    cases are dropped when a new case arrives (the runner visits cases one after another).
    """

    def __init__(self, device: str = "auto", max_cases: int = 1) -> None:
        self.device = device
        self.max_cases = max(1, int(max_cases))
        self._entries: dict[tuple, CachedPseudo] = {}
        self._embeddings: dict[tuple[str, str], Any] = {}
        self._order: list[tuple[str, str]] = []

    def _touch(self, case: Case) -> None:
        key = (case.dataset, case.name)
        if key in self._order:
            return
        self._order.append(key)
        while len(self._order) > self.max_cases:
            old = self._order.pop(0)
            self._embeddings.pop(old, None)
            for k in [k for k in self._entries if k[:2] == old]:
                del self._entries[k]

    def embeddings(self, case: Case) -> Any:
        """The case's SAM :class:`EmbeddingCache` (bundled LiteMedSAM; ONNX encoder on CPU), made once."""
        key = (case.dataset, case.name)
        if key not in self._embeddings:
            from ..pseudo.normalize import percentile_unit_range
            from ..sam.cache import EmbeddingCache
            from ..sam.fast import enable_fast_encoder
            from ..sam.loaders import load_backend

            backend = load_backend(None, device=self.device)
            enable_fast_encoder(backend)  # a no-op on CUDA, where eager torch is already fast
            img01 = percentile_unit_range(case.image.array)
            self._embeddings[key] = EmbeddingCache(backend, img01, max_items=img01.shape[0] + 1)
        return self._embeddings[key]

    def get(self, case: Case, setting: str, ann: SparseAnnotation, method: str, seed: int = 0
            ) -> tuple[Any, float, bool]:
        """Pseudo-labels for this case/setting; ``shared`` is True when an earlier request computed them."""
        from ..pseudo import make_pseudo_labels

        self._touch(case)
        key = (case.dataset, case.name, setting, int(seed), method)
        hit = self._entries.get(key)
        if hit is not None:
            hit.hits += 1
            return hit.pseudo, hit.seconds, True
        t0 = time.perf_counter()
        backend = self.embeddings(case) if method in SAM_METHODS else None
        pl = make_pseudo_labels(case.image, ann, method, backend=backend)
        entry = CachedPseudo(pl, time.perf_counter() - t0)
        self._entries[key] = entry
        return pl, entry.seconds, False

    def stats(self) -> dict[str, int]:
        return {"entries": len(self._entries), "hits": sum(e.hits for e in self._entries.values())}
