"""``sparseseg segment``'s streaming start: train on the first good prior, fold SAM in as it is ready.

Kept apart from ``segment.py`` so the command stays a readable list of steps.  Without progressive
mode (``--no-progressive``, another training method, or no training at all) the complete
pseudo-labels are computed first, exactly as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..annotations.sparse import SparseAnnotation
from ..io.volume import Volume


def first_pseudo(image: Volume, ann: SparseAnnotation, method: str, threshold: float, *,
                 progressive: bool, time_limit: float | None = None) -> tuple[Any, Any]:
    """``(ProgressivePseudo or None, the pseudo-labels to start training on)``.

    Embeddings go to the user's cache folder, so a later run on the same scan encodes nothing.
    """
    from ..pseudo import make_pseudo_labels
    from ..pseudo.progressive import ProgressivePseudo
    from ..sam.cache import default_cache_dir

    if progressive:
        prog = ProgressivePseudo(image, ann, method, cache_dir=default_cache_dir(), threshold=threshold)
        return prog, prog.first(time_limit)
    return None, make_pseudo_labels(image, ann, method=method, threshold=threshold, cache_dir=default_cache_dir(),
                                    time_limit=time_limit)


def start_second_stage(prog: Any, trainer: Any, ann: SparseAnnotation, say: Callable[[str], None], t0: float) -> None:
    """Run the SAM stage in the background; each part replaces the trainer's pseudo-labels.

    Partial maps keep the budget and schedule; the complete map is a warm start (the Trainer's usual
    ``update_annotation``: a fresh half budget at the warm learning rate), so the network always
    gets a stretch of training on the final pseudo-labels -- on a busy 2-core machine SAM can
    finish near the end of the budget (measured: bench/results/speed/speed.md).
    """
    if prog is None or not prog.has_second_stage:
        return

    def deliver(pseudo: Any, final: bool) -> None:
        trainer.update_annotation(ann, pseudo, restart=final)
        if final:
            say(f"SAM-fused pseudo-labels folded in after {time.perf_counter() - t0:.1f} s "
                f"({pseudo.info.get('sam_slices', '?')} slices embedded or read from the cache)")

    prog.start(deliver)


def needs_final_round(prog: Any, trainer: Any) -> bool:
    """After the budget: wait for the SAM stage; True if its complete map arrived too late to be trained on.

    Then the caller runs the trainer once more (a warm start), so the saved model has always seen the
    final pseudo-labels, whatever the machine's load.
    """
    if prog is None or not prog.has_second_stage:
        return False
    prog.join()
    return prog.error is None and trainer.has_pending_update
