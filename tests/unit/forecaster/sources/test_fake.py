"""The fake source answers as Prometheus would, and fails, stalls or hangs when told to."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from forecaster.config import Rule
from forecaster.selector import parse_selector
from forecaster.sources.base import SourceError
from forecaster.sources.fake import FakeSource

RULE = Rule(name="m", query="x{<<.LabelMatchers>>}")


def test_ranges_follow_the_grid_the_selector_and_drop_what_is_not_a_rate():
    source = FakeSource()
    rates = np.array([1.0, np.nan, 3.0, -1.0, 5.0])
    source.add({"service": "a"}, 600, 60, rates)
    source.add({"service": "b"}, 600, 60, rates * 10)
    [a] = source.fetch_range(RULE, 660, 840, parse_selector("service=a"))
    assert a.timestamps.tolist() == [720, 840]  # 660 holds NaN, 780 a negative rate
    assert a.values.tolist() == [3.0, 5.0]
    assert len(source.fetch_range(RULE, 0, 10_000)) == 2
    phased = Rule(name="m", query="x{<<.LabelMatchers>>}", phase=30, step=60)
    assert source.fetch_range(phased, 0, 10_000) == []  # off its grid
    assert source.calls["range"] == 3


def test_instant_values_are_the_rate_at_the_grid_point_or_what_was_set():
    source = FakeSource()
    source.add({"service": "a"}, 600, 60, np.array([1.0, 2.0, np.nan]))
    assert [s.value for s in source.fetch_current(RULE, parse_selector(""), 689)] == [2.0]
    assert source.fetch_current(RULE, parse_selector(""), 720) == []  # nothing recorded
    source.set_current({"service": "a"}, float("nan"))  # as Prometheus may answer
    source.set_current({"service": "z"}, 7.0)
    got = {
        s.labels["service"]: s.value for s in source.fetch_current(RULE, parse_selector(""), 689)
    }
    assert np.isnan(got["a"]) and got["z"] == 7.0


def test_it_fails_stalls_and_hangs_when_told_to():
    source = FakeSource()
    source.down = "cannot reach http://p:9090"
    with pytest.raises(SourceError, match="cannot reach"):
        source.fetch_range(RULE, 0, 60)
    source.down = None
    source.delay = 0.2
    started = time.monotonic()
    source.fetch_range(RULE, 0, 60)
    assert time.monotonic() - started >= 0.2
    source.delay = 0.0
    source.gate = threading.Event()
    worker = threading.Thread(target=source.fetch_current, args=(RULE, parse_selector(""), 0))
    worker.start()
    worker.join(0.2)
    assert worker.is_alive()  # hung until released
    source.gate.set()
    worker.join(2)
    assert not worker.is_alive()
