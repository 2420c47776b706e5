"""The backtest's verdict: one sentence against reactive scaling, and what to do."""

from __future__ import annotations

import io

import numpy as np

from forecaster.evaluation.command import rates_warning
from forecaster.evaluation.verdict import verdict
from forecaster.sources.trace import read_trace


def _data(**methods: tuple[float, float]) -> dict:
    rows = [
        {"method": name.replace("_", "-"), "beyond_capacity_share": d, "pod_minutes": m}
        for name, (d, m) in methods.items()
    ]
    return {"methods": [*rows, {"method": "perfect foresight", "beyond_capacity_share": 0.0,
                                "pod_minutes": 90.0}]}  # fmt: skip


def test_a_gain_is_recommended_with_its_figures():
    said = verdict(
        _data(reactive=(0.04, 100.0), scaleahead=(0.01, 110.0), holt_winters=(0.02, 105.0))
    )
    assert said.startswith(
        "On this traffic the default drops 25% of what reactive scaling drops (1.00% of "
        "requests against 4.00%), for 10% more pod-minutes."
    )
    assert said.endswith("Recommended: it scales ahead of this traffic at that cost.")


def test_a_baseline_that_does_as_well_for_less_is_named():
    said = verdict(
        _data(reactive=(0.04, 100.0), scaleahead=(0.01, 110.0), holt_winters=(0.01, 104.0))
    )
    assert "Not recommended as it is: holt-winters drops 1.00% for 104 pod-minutes" in said


def test_no_gain_and_nothing_to_gain_are_said():
    said = verdict(_data(reactive=(0.02, 100.0), scaleahead=(0.03, 95.0)))
    assert "150% of what reactive scaling drops" in said and "5% fewer pod-minutes" in said
    assert said.endswith("No gain: keep scaling on the current rate.")
    said = verdict(_data(reactive=(0.0, 100.0), scaleahead=(0.0, 120.0)))
    assert said.startswith("On this traffic reactive scaling drops nothing")


def _trace(values: np.ndarray):
    rows = "\n".join(f"2026-01-01T00:{i:02d}:00Z,{v}" for i, v in enumerate(values))
    return read_trace(io.StringIO("timestamp,value\n" + rows), "t.csv")


def test_rates_are_told_apart_from_counts():
    rng = np.random.default_rng(0)
    counts = rng.poisson(300, 30).astype(float)
    assert rates_warning(_trace(counts), "t.csv") is None
    warning = rates_warning(_trace(counts / 60), "t.csv")
    assert warning is not None and "multiply them by 60" in warning
