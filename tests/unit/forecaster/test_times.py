"""Durations, RFC 3339 and the step grid."""

from __future__ import annotations

import pytest

from forecaster.times import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("1m30s", 90), ("8d", 691200), ("1h", 3600), (45, 45)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("text", ["", "1", "m", "1x", "1.5m", "-1m", "500ms", "1m1"])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="expected"):
        parse_duration(text)
