"""Selectors rendered as PromQL matchers select in a real Prometheus exactly the series
Python's own matching selects."""

from __future__ import annotations

import httpx
import pytest

from forecaster import promql
from forecaster.selector import parse_selector
from harness.prometheus import PrometheusServer

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
