"""The trace source: rates on a rule's grid, looping."""

from __future__ import annotations

import numpy as np

from forecaster.config import Rule
from forecaster.sources.trace import Trace, TraceSource


def test_trace_source_rates_and_loop():
    trace = Trace(start=0, resolution=60, counts=np.array([60.0, 120.0, np.nan, 30.0]))
    rule = Rule(name="m", query="x{<<.LabelMatchers>>}", step=120, lead="0s", history="20m")
    looped = TraceSource(trace, {"s": "a"}, loop=True)
    [series] = looped.fetch_range(rule, 120, 480)
    # Grid 120: minutes 0-1 -> 180/120; 240: minute 2 missing, 3 = 30 -> 30/120; 480 wraps.
    assert series.timestamps.tolist() == [120, 240, 360, 480]
    assert series.values.tolist() == [1.5, 0.25, 1.5, 0.25]
    once = TraceSource(trace, {"s": "a"})
    assert once.fetch_range(rule, 360, 480) == []
