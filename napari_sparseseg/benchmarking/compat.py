"""Run-time guards for known bugs in other modules, applied only while the bug still reproduces.

Why here and not in the owning module: the benchmark must run today, and fixes to shared modules
belong to their owners.  Each guard first *checks* that the bug is present on a tiny input, so it
turns itself into a no-op once the owner fixes it.  Every guard applied is recorded in the run's
metadata (``applied_guards``), so results never hide a patch.
"""

from __future__ import annotations

import numpy as np

_APPLIED: list[str] = []


def _walker_full_seed_bug() -> bool:
    """scikit-image returns channel-last one-hot maps when *every* pixel is seeded (a labelled slice)."""
    from ..pseudo import walker

    seeds = np.array([[1, 1, 2], [1, 2, 2]], dtype=np.int32)
    try:
        out = walker.walker_probabilities(np.zeros(seeds.shape), seeds, 2)
    except ValueError:
        return True
    return not (np.array_equal(out[0], seeds == 1) and np.array_equal(out[1], seeds == 2))


def apply_guards() -> list[str]:
    """Apply every guard whose bug reproduces; returns the names applied (idempotent)."""
    from ..pseudo import walker

    if "walker-fully-seeded-slice" not in _APPLIED and _walker_full_seed_bug():
        original = walker.walker_probabilities

        def walker_probabilities(image, seeds, n_channels, **kw):  # type: ignore[no-untyped-def]
            if np.all(np.asarray(seeds) > 0):  # a fully labelled slice: its labels are the answer
                out = np.zeros((n_channels,) + np.asarray(image).shape, dtype=np.float32)
                for v in np.unique(seeds):
                    out[int(v) - 1] = seeds == v
                return out
            return original(image, seeds, n_channels, **kw)

        walker.walker_probabilities = walker_probabilities
        _APPLIED.append("walker-fully-seeded-slice")
    return list(_APPLIED)
