"""bench.closed_loop's choice of stretch and its verdict: the predictive arm against the
line through the two reactive arms."""

from __future__ import annotations

import numpy as np
import pytest

from bench.closed_loop import HISTORY_DAYS, PEAK, stretch, verdict


def _row(shed: float, minutes: float) -> dict[str, float]:
    return {"shed_share": shed, "pod_minutes": minutes}


@pytest.mark.parametrize(
    ("headroom", "predictive", "expected"),
    [
        # Reactive 2 % at 200 pod-minutes, headroom 0 % at 240: at 220 the line sheds 1 %.
        (
            (0.0, 240),
            (0.004, 220),
            "220.0 pod-minutes (between them): 1.00% shed; predictive 0.40%",
        ),
        # Beyond the reactive arms the line is extrapolated, and never below zero.
        ((0.01, 240), (0.0, 300), "(extrapolated beyond them): 0.00% shed"),
        ((0.01, 240), (0.0, 180), "(extrapolated beyond them): 2.50% shed"),
        # A headroom arm that cost no more gives no line.
        ((0.01, 200), (0.0, 210), "no line"),
    ],
)
def test_the_verdict_reads_the_reactive_line_at_the_predictive_arms_pod_minutes(
    headroom: tuple[float, float], predictive: tuple[float, float], expected: str
):
    rows = {
        "reactive": _row(0.02, 200),
        "headroom": _row(*headroom),
        "predictive": _row(*predictive),
    }
    assert expected in verdict(rows)


@pytest.mark.parametrize("seed", [None, 1, 2])
def test_a_stretch_is_whole_minutes_scaled_to_the_peak_after_its_history(seed: int | None):
    history, demand, minute = stretch(30, seed)
    assert demand.size == 30 and history.size == HISTORY_DAYS * 1440
    assert demand.min() > 0 and demand.max() == pytest.approx(PEAK)
    assert minute >= HISTORY_DAYS * 1440


def test_a_seed_draws_the_same_stretch_each_time_and_another_seed_another():
    assert stretch(30, 1)[2] == stretch(30, 1)[2]
    assert len({stretch(30, seed)[2] for seed in (1, 2, 3, 4)}) > 1


def test_without_a_seed_the_stretch_rises_more_than_any_drawn_one():
    def rise(demand: np.ndarray) -> float:
        smooth = np.convolve(demand, np.ones(5) / 5, mode="same")
        return float(smooth.max() / smooth[:7].mean())

    surge = rise(stretch(30, None)[1])
    assert all(surge > rise(stretch(30, seed)[1]) for seed in range(1, 6))
