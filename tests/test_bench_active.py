"""The active-learning summary: the "half the rounds" goal is judged on mean curves, never vacuously."""

from __future__ import annotations

from napari_sparseseg.benchmarking.active_sim import default_strategy, rounds_to_reach, summarise_active


def _rec(**curves: list[float]) -> dict:
    return {"dataset": "d", "case": "c", "setting": "slices-1",
            "strategies": {k: {"dice": v} for k, v in curves.items()}}


def test_rounds_to_reach() -> None:
    assert rounds_to_reach([0.5, 0.6, 0.7], 0.6) == 1
    assert rounds_to_reach([0.5, 0.6], 0.9) is None


def test_goal_met_when_default_reaches_random_final_in_half_the_rounds() -> None:
    s = summarise_active([_rec(entropy=[0.5, 0.7, 0.72, 0.73, 0.74], random=[0.5, 0.55, 0.6, 0.65, 0.7])],
                         default="entropy")
    assert s["random_final_dice"] == 0.7 and s["default_rounds_to_random_final"] == 1
    assert s["goal_half_rounds_met"] is True


def test_goal_not_met_and_means_over_cases() -> None:
    a = _rec(entropy=[0.5, 0.5, 0.6, 0.7, 0.8], random=[0.5, 0.6, 0.7, 0.75, 0.8])
    b = _rec(entropy=[0.6, 0.6, 0.6, 0.7, 0.8], random=[0.6, 0.7, 0.7, 0.75, 0.8])
    s = summarise_active([a, b], default="entropy")
    assert s["cases"] == 2 and abs(s["mean_dice"]["random"][1] - 0.65) < 1e-12
    assert s["default_rounds_to_random_final"] == 4 and s["goal_half_rounds_met"] is False


def test_goal_not_measurable_when_random_never_improves() -> None:
    s = summarise_active([_rec(entropy=[0.6, 0.6, 0.6], random=[0.6, 0.59, 0.58])], default="entropy")
    assert s["goal_half_rounds_met"] is None and s["default_rounds_to_random_final"] is None


def test_default_strategy_is_the_widget_default() -> None:
    from napari_sparseseg.active import STRATEGIES

    assert default_strategy() in STRATEGIES
