"""Active-learning strategies on synthetic volumes where the right answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sparseseg.active import (
    STRATEGIES,
    ReviewContext,
    get_strategy,
    next_slice,
    normalized_entropy,
    rank_slices,
)


def _probs_with_uncertain_slice(shape=(6, 20, 20), bad=4, seed=0):
    rng = np.random.default_rng(seed)
    p = np.zeros((3, *shape), np.float32)
    p[0] = 0.98
    p[1] = 0.01
    p[2] = 0.01
    # a small uncertain blob on slice `bad` only: most of the slice is still confident background
    p[:, bad, 5:8, 5:8] = 1 / 3
    p[:, 1, :, :] += rng.random((3, 20, 20)).astype(np.float32) * 1e-3  # noise elsewhere
    return p / p.sum(axis=0, keepdims=True)


def test_entropy_ranks_the_slice_with_an_uncertain_blob_first() -> None:
    p = _probs_with_uncertain_slice()
    ctx = ReviewContext(shape=p.shape[1:], probabilities=p)
    assert next_slice(get_strategy("entropy"), ctx) == 4


def test_entropy_uses_uncertainty_map_when_no_probabilities() -> None:
    u = np.zeros((5, 10, 10), np.float32)
    u[2, 0, 0] = 0.9  # one voxel: the plain mean would barely notice, the top-fraction mean does
    u[3] = 0.05
    ctx = ReviewContext(shape=u.shape, uncertainty=u)
    assert rank_slices(get_strategy("entropy", fraction=0.01), ctx)[0] == 2


def test_normalized_entropy_bounds() -> None:
    p = np.array([[1.0, 0.5], [0.0, 0.5]], np.float32)  # (2 classes, 2 voxels)
    h = normalized_entropy(p)
    assert h[0] == pytest.approx(0.0, abs=1e-4)
    assert h[1] == pytest.approx(1.0, abs=1e-4)


def test_disagreement_finds_the_slice_where_sam_and_network_differ() -> None:
    pred = np.zeros((5, 16, 16), np.int16)
    pred[:, 4:12, 4:12] = 1
    ref = pred.copy()
    ref[3, 4:12, 4:8] = 0  # SAM says half of the structure is missing on slice 3
    ref[1, 4, 4] = 2  # one voxel of another class on slice 1
    ctx = ReviewContext(shape=pred.shape, prediction=pred, reference=ref)
    assert rank_slices(get_strategy("disagreement"), ctx)[:2] == [3, 1]


def test_disagreement_without_a_reference_says_nothing() -> None:
    ctx = ReviewContext(shape=(4, 3, 3), prediction=np.zeros((4, 3, 3), np.int16))
    assert next_slice(get_strategy("disagreement"), ctx) is None


def test_reviewed_and_fully_labelled_slices_are_skipped() -> None:
    u = np.zeros((4, 5, 5), np.float32)
    u[0] = 0.9
    u[1] = 0.8
    u[2] = 0.7
    ann = np.zeros((4, 5, 5), np.int16)
    ann[1] = 4  # a fully labelled slice (all background)
    ctx = ReviewContext(shape=u.shape, uncertainty=u, annotation=ann, reviewed={0})
    assert rank_slices(get_strategy("entropy"), ctx) == [2, 3]


def test_random_is_seeded_and_a_permutation() -> None:
    ctx = ReviewContext(shape=(9, 2, 2))
    a = rank_slices(get_strategy("random", seed=3), ctx)
    b = rank_slices(get_strategy("random", seed=3), ctx)
    c = rank_slices(get_strategy("random", seed=4), ctx)
    assert a == b and sorted(a) == list(range(9)) and a != c


def test_sequential_starts_after_the_current_slice_and_wraps() -> None:
    ctx = ReviewContext(shape=(5, 2, 2), current=3)
    assert rank_slices(get_strategy("sequential"), ctx) == [4, 0, 1, 2, 3]


def test_other_slice_axis() -> None:
    u = np.zeros((3, 6, 4), np.float32)
    u[:, 5, :] = 1.0
    ctx = ReviewContext(shape=u.shape, uncertainty=u, axis=1)
    assert next_slice(get_strategy("entropy"), ctx) == 5


def test_unknown_strategy_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="entropy"):
        get_strategy("bald")
    assert set(STRATEGIES) >= {"entropy", "disagreement", "random", "sequential"}


def test_entropy_spread_moves_away_from_reviewed_slices() -> None:
    """Uncertainty of a structure peaks on neighbouring slices; with ``spread`` the next suggestion
    leaves the neighbourhood of the slice just corrected."""
    p = np.full((3, 12, 10, 10), 1 / 3, np.float32)
    conf = np.array([0.9, 0.05, 0.05], np.float32)[:, None, None]
    for z, u in enumerate([0, 0, 0, 0.5, 0.8, 1.0, 0.9, 0.7, 0, 0.6, 0, 0]):
        p[:, z] = conf * (1 - u) + u / 3  # slice z: uncertainty u everywhere
    ctx = ReviewContext(shape=p.shape[1:], probabilities=p, reviewed={5})
    assert next_slice(get_strategy("entropy", spread=0), ctx) == 6  # plain entropy: the neighbour
    assert next_slice(get_strategy("entropy"), ctx) == 9  # the default spread: the next uncertain region
    assert rank_slices(get_strategy("entropy", spread=2.0), ReviewContext(shape=p.shape[1:], probabilities=p))[0] == 5
