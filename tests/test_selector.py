"""Label selectors: parsing, validation, PromQL rendering, and agreement with Prometheus."""

from __future__ import annotations

import re

import httpx
import pytest

from forecaster import promql
from forecaster.selector import LabelSelector, Op, Requirement, SelectorError, parse_selector
from tests.conftest import PrometheusServer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ()),
        ("a=b", (Requirement("a", Op.EQ, ("b",)),)),
        ("a==b, c!=d", (Requirement("a", Op.EQ, ("b",)), Requirement("c", Op.NE, ("d",)))),
        ("a in (x, y),!b", (Requirement("a", Op.IN, ("x", "y")), Requirement("b", Op.NOT_EXISTS))),
        ("a notin (x),b", (Requirement("a", Op.NOT_IN, ("x",)), Requirement("b", Op.EXISTS))),
        ("a=", (Requirement("a", Op.EQ, ("",)),)),
    ],
)
def test_parse(text, expected):
    assert parse_selector(text).requirements == expected


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("a in (x", "unclosed"),
        ("a in x", "expected '('"),
        ("a in ()", "empty value set"),
        ("=b", "expected a label key"),
        ("a=b,", "trailing ','"),
        ("a=b c=d", "expected ','"),
        ("app.kubernetes.io/name=x", "not a Prometheus label name"),
        ('a=x"y', "not a valid Kubernetes label value"),
        ("a=" + "x" * 64, "not a valid Kubernetes label value"),
        ("a>1", "not a Prometheus label name"),
        ("a b", "expected an operator"),
    ],
)
def test_malformed(text, needle):
    with pytest.raises(SelectorError, match=re.escape(needle)):
        parse_selector(text)


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
