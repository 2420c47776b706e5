"""Selectors rendered as PromQL matchers: every value escaped; the warm-up a query's range
windows imply (tests/integration/forecaster/test_promql.py checks the matchers select in
Prometheus what Python matching selects)."""

from __future__ import annotations

import pytest

from forecaster import promql
from forecaster.selector import LabelSelector, Op, Requirement


def test_render_escapes_everything_it_is_given():
    # Values reaching render are validated first; render must still be safe on its own.
    sel = LabelSelector(
        (
            Requirement("a", Op.EQ, ('x"} or vector(1) or {y="',)),
            Requirement("b", Op.IN, ("v.1", "w|z")),
            Requirement("c", Op.NE, ("back\\slash",)),
        )
    )
    out = promql.matchers(sel)
    assert out == ('a="x\\"} or vector(1) or {y=\\"",b=~"v\\\\.1|w\\\\|z",c!="back\\\\slash"')


@pytest.mark.parametrize(
    ("template", "warmup"),
    [
        ("sum by (namespace) (rate(x{<<.LabelMatchers>>}[2m]))", 120),
        ("rate(x{<<.LabelMatchers>>}[90s] offset 5m) / rate(y{<<.LabelMatchers>>}[5m])", 300),
        ("max_over_time(rate(x{<<.LabelMatchers>>}[1m])[10m:1m])", 660),
        ("x{<<.LabelMatchers>>}", 0),
    ],
)
def test_the_warm_up_is_the_longest_window_a_query_reads(template: str, warmup: int):
    assert promql.check_template(template).warmup == warmup
