"""The cold-start ladder: candidates grow with history."""

from __future__ import annotations

from forecaster.models.ladder import candidates_for
from forecaster.times import DAY, WEEK


def test_ladder_grows_with_history():
    strong = {DAY: 0.8, WEEK: 0.8}
    kinds = lambda span: {(c.kind, c.period) for c in candidates_for(span, strong)}  # noqa: E731
    assert {p for _, p in kinds(3 * 3600)} == {0}  # minutes or hours: level models only
    assert ("profile-add", DAY) in kinds(DAY + 2 * 3600)  # a day: daily profile
    assert ("profile-add", WEEK) not in kinds(13 * DAY)
    assert ("profile-add", WEEK) in kinds(15 * DAY)  # two weeks: weekly
    # A cycle that can be measured and is absent is not offered.
    assert {
        p for _, p in {(c.kind, c.period) for c in candidates_for(15 * DAY, {DAY: 0.05, WEEK: 0.0})}
    } == {0}
