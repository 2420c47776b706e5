"""A rule's times as pure functions: the derived defaults, the TTLs, measured leads."""

from __future__ import annotations

import pytest

from forecaster.config import timing
from forecaster.times import SETTLE


@pytest.mark.parametrize("step", [30, 60, 120, 300, 600])
def test_a_derived_horizon_keeps_forecasts_fresh_through_two_missed_cycles(step: int):
    lead = timing.default_lead(step)
    assert lead >= timing.DEFAULT_LEAD and lead % step == 0 and lead - step < timing.DEFAULT_LEAD
    horizon = timing.default_horizon(step, lead, interval=60)
    assert horizon % step == 0 and horizon >= timing.DEFAULT_HORIZON
    every = timing.refresh(60, step)
    # A forecast made before two missed cycles still covers now + lead + step.
    assert timing.max_ttl(horizon, lead, step) >= 2 * every + SETTLE
    timing.check(
        step=step,
        interval=60,
        phase=0,
        history=100 * step,
        horizon=horizon,
        lead=lead,
        forecast_ttl=None,
        drop_after=3600,
        lead_min=None,
        lead_max=None,
    )


def test_a_measured_lead_is_rounded_up_to_steps_within_its_bounds():
    bounds = timing.lead_bounds(60, 180, 600, 60, None, None)
    # One step; the longest lead a 10-minute horizon covers with forecasts fresh through a
    # late cycle: 600 - 60 - (2 x 60 + 10) = 410 s, in whole steps.
    assert bounds == (60, 360)
    assert timing.bounded_lead(61, 60, bounds) == 120
    assert timing.bounded_lead(5, 60, bounds) == 60
    assert timing.bounded_lead(3600, 60, bounds) == 360
    assert timing.lead_bounds(60, 180, 600, 60, 120, 240) == (120, 240)


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"lead": 90}, "lead: expected a multiple of step"),
        ({"horizon": 180}, "horizon: must cover lead \\+ one step"),
        ({"horizon": 240}, "horizon: with lead 3m and step 1m, a 4m forecast is fresh for 0s"),
        ({"forecast_ttl": 30}, "forecast_ttl: 30s is too short"),
        ({"lead_max": 3600}, "lead_max: a 10m horizon covers leads up to"),
        ({"drop_after": 30}, "drop_after: expected at least one refresh"),
        ({"phase": 60}, "phase: expected a duration from 0 up to the step"),
    ],
)
def test_times_that_cannot_work_together_name_the_key(changes: dict[str, int], key: str):
    times = {
        "step": 60,
        "interval": 60,
        "phase": 0,
        "history": 86400,
        "horizon": 600,
        "lead": 180,
        "forecast_ttl": None,
        "drop_after": 3600,
        "lead_min": None,
        "lead_max": None,
    }
    with pytest.raises(ValueError, match=key):
        timing.check(**{**times, **changes})
