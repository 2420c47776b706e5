"""Properties of what callers control: selectors parse, print and match consistently, the
PromQL built from them says exactly what they say (checked by a real PromQL parser), and
no path or query string makes the running service answer 5xx or a non-Status error."""

from __future__ import annotations

import contextlib
import re
import string
import time
from urllib.parse import quote

import promql_parser
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapter.service import DEMO_RULE, build_service, demo_source
from forecaster import promql
from forecaster.selector import LabelSelector, Op, Requirement, SelectorError, parse_selector

KEY = st.from_regex(r"[a-zA-Z][a-zA-Z0-9_]{0,15}", fullmatch=True)
VALUE = st.from_regex(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,20}[A-Za-z0-9])?)?", fullmatch=True)
NONEMPTY = VALUE.filter(bool)


@st.composite
def requirements(draw: st.DrawFn) -> Requirement:
    op = draw(st.sampled_from(list(Op)))
    key = draw(KEY)
    if op in (Op.EQ, Op.NE):
        return Requirement(key, op, (draw(VALUE),))
    if op in (Op.IN, Op.NOT_IN):
        values = draw(st.lists(NONEMPTY, min_size=1, max_size=4, unique=True))
        return Requirement(key, op, tuple(values))
    return Requirement(key, op)


SELECTORS = st.lists(requirements(), min_size=0, max_size=5).map(
    lambda rs: LabelSelector(tuple(rs))
)

# Generating regex-shaped text is slow on a busy 2-core machine; that is not a defect.
RELAXED = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

PROMQL_OP = {
    Op.EQ: "MatchOp.Equal",
    Op.NE: "MatchOp.NotEqual",
    Op.IN: "MatchOp.Re",
    Op.NOT_IN: "MatchOp.NotRe",
    Op.EXISTS: "MatchOp.NotEqual",
    Op.NOT_EXISTS: "MatchOp.Equal",
}


@RELAXED
@given(SELECTORS)
def test_every_valid_selector_round_trips(selector: LabelSelector):
    assert parse_selector(str(selector)) == selector


@RELAXED
@given(st.text(max_size=60))
def test_any_text_parses_or_is_a_selector_error(text: str):
    with contextlib.suppress(SelectorError):
        parse_selector(text)


@RELAXED
@given(SELECTORS)
def test_built_matchers_are_exactly_the_selector(selector: LabelSelector):
    query = promql.render("x{<<.LabelMatchers>>}", selector)
    parsed = promql_parser.parse(query)
    got = [(m.name, str(m.op), m.value) for m in parsed.matchers.matchers]
    expected = (
        [("__name__", "MatchOp.Equal", "x")] if any(n == "__name__" for n, _, _ in got) else []
    )
    for r in selector.requirements:
        if r.op in (Op.EQ, Op.NE):
            value = r.values[0]
        elif r.op in (Op.EXISTS, Op.NOT_EXISTS):
            value = ""
        else:
            value = promql._regex_alternatives(r.values)
        expected.append((r.key, PROMQL_OP[r.op], value))
    assert sorted(got) == sorted(expected)


@RELAXED
@given(st.lists(NONEMPTY, min_size=1, max_size=4, unique=True), VALUE)
def test_in_as_a_regex_matches_exactly_the_listed_values(values: list[str], candidate: str):
    pattern = promql._regex_alternatives(tuple(values))
    assert (re.fullmatch(pattern, candidate) is not None) == (candidate in values)


@RELAXED
@given(st.text(alphabet=string.printable + "äß€\u2028", max_size=40))
def test_no_string_escapes_its_promql_literal(value: str):
    query = f"x{{a={promql.string_literal(value)}}}"
    [matcher] = [m for m in promql_parser.parse(query).matchers.matchers if m.name == "a"]
    assert matcher.value == value


@pytest.fixture(scope="module")
def demo_client() -> TestClient:
    svc = build_service([DEMO_RULE], demo_source, time.time)
    svc.cycle.run(DEMO_RULE, time.time())
    svc.current.refresh(DEMO_RULE)
    return TestClient(svc.app, raise_server_exceptions=False)


SEGMENT = st.one_of(
    st.sampled_from(["apis", "external.metrics.k8s.io", "v1beta1", "namespaces", "default"]),
    st.sampled_from([DEMO_RULE.name, "healthz", "readyz", "openapi", "v2", "v3", "version"]),
    st.text(
        alphabet=string.ascii_letters + string.digits + "-_.~%:@!$&'()*+,;=",
        min_size=1,  # (an empty first segment would make '//', which httpx cannot send)
        max_size=12,
    ),
)
QUERY_VALUE = st.one_of(
    st.sampled_from(["service=nasa-http", "service in (nasa-http)", "!service", "__name__=up"]),
    st.text(max_size=30),
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.lists(SEGMENT, min_size=0, max_size=7),
    st.lists(
        st.tuples(st.sampled_from(["labelSelector", "verbose", "x"]), QUERY_VALUE), max_size=3
    ),
    st.sampled_from(["GET", "HEAD", "POST", "DELETE"]),
)
def test_no_path_or_query_gets_a_5xx_or_a_non_status_error(
    demo_client: TestClient, segments: list[str], params: list[tuple[str, str]], method: str
):
    path = "/" + "/".join(quote(s, safe="%:@!$&'()*+,;=") for s in segments)
    query = "&".join(f"{k}={quote(v)}" for k, v in params)
    resp = demo_client.request(method, path + ("?" + query if query else ""))
    assert resp.status_code < 500, (path, query, resp.text)
    if resp.status_code >= 400 and method != "HEAD":
        body = resp.json()
        assert body["kind"] == "Status" and body["code"] == resp.status_code, (path, body)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SELECTORS)
def test_selectors_on_the_running_service_answer_200_400_or_404(
    demo_client: TestClient, selector: LabelSelector
):
    path = f"/apis/external.metrics.k8s.io/v1beta1/namespaces/default/{DEMO_RULE.name}"
    resp = demo_client.get(path, params={"labelSelector": str(selector)})
    assert resp.status_code in (200, 400, 404), resp.text
    if resp.status_code == 200:
        for item in resp.json()["items"]:
            assert selector.matches(item["metricLabels"])
            assert float(item["value"].rstrip("m")) > 0
