"""Selectors rendered as PromQL matchers: escaped, and equivalent in Prometheus."""

from __future__ import annotations

import httpx
import pytest

from forecaster.selector import LabelSelector, Op, Requirement, parse_selector
from forecaster.sources import promql
from tests.conftest import PrometheusServer


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


SELECTORS = [
    "",
    "service=checkout",
    "service!=checkout",
    "service in (checkout,search)",
    "service notin (search)",
    "namespace=staging,service=checkout",
    "service",
    "!service",
    "zone",
    "!zone",
    "service in (check.ut)",  # '.' must not act as a regex wildcard
]


@pytest.mark.parametrize("text", SELECTORS)
def test_rendered_matchers_select_what_python_matching_selects(text, prometheus: PrometheusServer):
    """The same selector must pick the same series in PromQL and in our own matching."""
    selector = parse_selector(text)
    query = promql.render("http_requests_total{<<.LabelMatchers>>}", selector)
    body = httpx.post(
        f"{prometheus.url}/api/v1/query", data={"query": query, "time": prometheus.end - 60}
    ).json()
    assert body["status"] == "success", body
    from_prometheus = sorted(
        (r["metric"]["namespace"], r["metric"]["service"]) for r in body["data"]["result"]
    )
    from_python = sorted(
        (s.labels["namespace"], s.labels["service"])
        for s in prometheus.series
        if selector.matches(s.labels)
    )
    assert from_prometheus == from_python


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
