"""The service against a real Prometheus, driven by a test clock: values, errors, outages."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from adapter.service import build_service, prometheus_source
from forecaster.config import PrometheusConfig, Rule
from forecaster.models import ForecastEngine
from forecaster.policy import ServingPolicy
from forecaster.runtime.history import REFETCH_STEPS
from forecaster.sources.base import series_key
from forecaster.times import SETTLE
from harness.prometheus import PrometheusServer
from tests.conftest import RULE_QUERY, STEP, Clock, parse_quantity

BASE = "/apis/external.metrics.k8s.io/v1beta1"
LEAD = 180
QUANTILE = 0.9


def independent_value(
    prom: PrometheusServer, rule: Rule, now: int, **labels: str
) -> tuple[float, float]:
    """(actual, expected served value) from the trace's own counts and a fresh engine,
    without Prometheus, the history book, the cycle, the store or the API."""
    series = prom.series_by(**labels)
    actual = series.rate_at(now)
    y = series.rates(now, rule.history // STEP)
    engine = ForecastEngine(step=STEP, horizon=rule.horizon_steps, lead=LEAD, quantile=QUANTILE)
    _, upper, _ = engine.forecast(series_key(series.labels), y, now)
    ds = now + STEP * np.arange(1, rule.horizon_steps + 1)
    window = (ds > now) & (ds <= now + LEAD + STEP)
    return actual, max(actual, float(upper[window].max()))


@pytest.fixture
def service(prometheus: PrometheusServer):
    rule = Rule(
        name="http_requests_forecast", query=RULE_QUERY, lead="3m", quantile=QUANTILE, history="8d"
    )
    clock = Clock(prometheus.end - 1800 + SETTLE)  # when the scheduler runs a cycle
    svc = build_service([rule], prometheus_source(PrometheusConfig(url=prometheus.url)), clock)
    return svc, rule, clock


def run_cycle(svc, rule, clock):
    """One forecast cycle and one current-value refresh, as the scheduler runs them."""
    report = svc.cycle.run(rule, clock())
    svc.current.refresh(rule)
    return report


def get_metric(
    client: TestClient,
    selector: str | None,
    ns: str = "default",
    metric: str = "http_requests_forecast",
):
    params = {} if selector is None else {"labelSelector": selector}
    return client.get(f"{BASE}/namespaces/{ns}/{metric}", params=params)


def test_served_value_matches_independent_computation(service, prometheus):
    svc, rule, clock = service
    client = TestClient(svc.app)
    assert client.get("/readyz").status_code == 503
    report = run_cycle(svc, rule, clock)
    assert report.series == 3
    assert client.get("/readyz").status_code == 200

    resp = get_metric(client, "service=checkout")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["kind"] == "ExternalMetricValueList"
    assert body["apiVersion"] == "external.metrics.k8s.io/v1beta1"
    [item] = body["items"]
    assert item["metricName"] == "http_requests_forecast"
    assert item["metricLabels"] == {"namespace": "default", "service": "checkout"}
    assert item["value"].endswith("m") or item["value"].isdigit()

    actual, expected = independent_value(
        prometheus, rule, int(clock()) - SETTLE, namespace="default", service="checkout"
    )
    served = parse_quantity(item["value"])
    print(f"served {served:.4f} req/s; independent {expected:.4f} req/s (actual {actual:.4f})")
    # Milli precision, rounded up: within 1 milli above the exact value.
    assert expected - 1e-6 <= served <= expected + 0.001 + 1e-6
    assert served > actual  # the forecast's upper quantile, not just the actual, is served

    metrics = client.get("/metrics").text
    labels = 'namespace="default",rule="http_requests_forecast",service="checkout"'
    assert f"scaleahead_series_served{{{labels}}} " in metrics
    assert f"scaleahead_series_backtest_error{{{labels}}} " in metrics
    assert "scaleahead_series_model_info{" in metrics and 'model="' in metrics
    # What the series' q is, and what a budget's remainder raises its band by.
    for family, low, high in (
        ("scaleahead_series_quantile", 0.5, 0.995),
        ("scaleahead_series_headroom", 1.0, 1.1),
    ):
        [value] = [
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith(f"{family}{{{labels}}} ")
        ]
        assert low <= value <= high, (family, value)
    # A fixed quantile buys nothing: no window it was costed through.
    assert "scaleahead_series_scale_down_seconds{" not in metrics


def test_selectors_namespaces_and_items(service):
    svc, rule, clock = service
    client = TestClient(svc.app)
    run_cycle(svc, rule, clock)
    both = get_metric(client, None).json()["items"]
    assert sorted(i["metricLabels"]["service"] for i in both) == ["checkout", "search"]
    staging = get_metric(client, "service in (checkout,search)", ns="staging").json()["items"]
    assert [i["metricLabels"] for i in staging] == [{"namespace": "staging", "service": "checkout"}]
    not_checkout = get_metric(client, "service!=checkout").json()["items"]
    assert [i["metricLabels"]["service"] for i in not_checkout] == ["search"]


@pytest.mark.parametrize(
    ("metric", "selector", "ns", "code", "needle"),
    [
        ("no_such_metric", "service=checkout", "default", 404, "no_such_metric"),
        ("http_requests_forecast", "service=nothing-here", "default", 404, "service=nothing-here"),
        ("http_requests_forecast", "service in (a,", "default", 400, "labelSelector"),
        ("http_requests_forecast", "app.kubernetes.io/name=x", "default", 400, "label key"),
        ("http_requests_forecast", 'service=a"}or{x="', "default", 400, "label value"),
        ("http_requests_forecast", "service=checkout", "Bad_NS", 400, "namespace"),
        # Prometheus' own labels are not selectable, and never reach Prometheus.
        ("http_requests_forecast", "__name__=up", "default", 400, "reserved"),
        ("http_requests_forecast", "__name__ notin (x)", "default", 400, "reserved"),
        ("http_requests_forecast", "!__name__", "default", 400, "reserved"),
        # A label the rule's query does not keep would silently select the whole service.
        (
            "http_requests_forecast",
            "service=checkout,code=500",
            "default",
            400,
            "keeps namespace, service",
        ),
    ],
)
def test_bad_requests_get_a_status(service, metric, selector, ns, code, needle):
    svc, rule, clock = service
    client = TestClient(svc.app)
    run_cycle(svc, rule, clock)
    resp = get_metric(client, selector, ns=ns, metric=metric)
    assert resp.status_code == code
    body = resp.json()
    assert body["kind"] == "Status" and body["apiVersion"] == "v1"
    assert body["status"] == "Failure" and body["code"] == code
    assert body["reason"] == {400: "BadRequest", 404: "NotFound"}[code]
    assert needle in body["message"]
    assert "items" not in body


def test_stale_forecast_falls_back_to_actual(service, prometheus):
    svc, rule, clock = service
    client = TestClient(svc.app)
    run_cycle(svc, rule, clock)
    clock.t += rule.ttl + STEP  # no cycle since: the forecast is past its TTL
    svc.current.refresh(rule)
    [item] = get_metric(client, "service=checkout").json()["items"]
    actual = prometheus.series_by(namespace="default", service="checkout").rate_at(
        int(clock.t // STEP * STEP)
    )
    assert abs(parse_quantity(item["value"]) - actual) <= 0.001 + 1e-9
    metrics = client.get("/metrics").text
    assert (
        'scaleahead_fallback_total{reason="stale_forecast",rule="http_requests_forecast"} 1.0'
        in metrics
    )
    assert (
        'scaleahead_series_fallback{namespace="default",reason="stale_forecast",'
        'rule="http_requests_forecast",service="checkout"} 1.0' in metrics
    )


def test_prometheus_outage_degrades_and_recovers(service, prometheus):
    svc, rule, clock = service
    client = TestClient(svc.app)
    run_cycle(svc, rule, clock)
    assert get_metric(client, "service=checkout").status_code == 200
    prometheus.stop()
    try:
        # The refresh fails; the current values it had are served until they are stale...
        svc.current.refresh(rule)
        assert parse_quantity(get_metric(client, "service=checkout").json()["items"][0]["value"])
        # ...then the forecast, still fresh, alone (floored at the last actual it saw), not 0.
        clock.t += svc.current_config.max_age + 1
        svc.current.refresh(rule)
        resp = get_metric(client, "service=checkout")
        assert resp.status_code == 200, resp.text
        during = parse_quantity(resp.json()["items"][0]["value"])
        assert during > 0
        # Exactly the forecast's peak over the lead window from now, floored at the last
        # actual it saw (not the value served 61 s earlier: its window held another step).
        [state] = [
            s
            for s in svc.provider.view.rule(rule).series
            if s.labels == {"namespace": "default", "service": "checkout"}
        ]
        forecast = state.forecast
        assert state.actual is None and forecast is not None
        window = ServingPolicy(rule).window_upper(forecast, clock())
        assert window is not None
        expected = max(forecast.last_actual, window)
        assert expected <= during <= expected + 0.001  # a quantity rounds up to the milli
        assert client.get("/readyz").status_code == 200  # it still serves every series
        # The cycle fails but keeps the old forecasts; once past the TTL: 503, never 0.
        with pytest.raises(Exception, match="cannot reach"):
            svc.cycle.run(rule, clock())
        clock.t += rule.ttl + STEP
        resp = get_metric(client, "service=checkout")
        assert resp.status_code == 503
        body = resp.json()
        assert body["kind"] == "Status" and body["reason"] == "ServiceUnavailable"
        assert prometheus.url in body["message"]
        # Nothing can be served: the replica stays ready (it answers), and says so.
        ready = client.get("/readyz?verbose")
        assert ready.status_code == 200 and "no forecast younger than" in ready.text
        assert "[+]rule/http_requests_forecast degraded:" in ready.text
        assert "scaleahead_series_served{" not in client.get("/metrics").text
    finally:
        prometheus.start()
    # Back without a restart of ours: the next cycle and refresh use Prometheus again.
    report = run_cycle(svc, rule, clock)
    assert report.series == 3
    resp = get_metric(client, "service=checkout")
    assert resp.status_code == 200
    metrics = client.get("/metrics").text
    assert "scaleahead_prometheus_query_errors_total" in metrics
    assert 'scaleahead_cycle_failures_total{rule="http_requests_forecast"} 1.0' in metrics


def test_incremental_fetch_reads_only_new_points(service):
    svc, rule, clock = service
    first = svc.cycle.run(rule, clock())
    assert first.fetched_points == 3 * (rule.history // STEP)  # backfill: whole window, chunked
    clock.t += 5 * STEP
    second = svc.cycle.run(rule, clock())
    # Only the 5 new steps plus a re-read of the newest known ones, per series.
    assert second.fetch_start == first.end - (REFETCH_STEPS - 1) * STEP
    assert second.fetched_points == 3 * (5 + REFETCH_STEPS)
    assert second.series == 3


def test_discovery(service):
    svc, _, _ = service
    client = TestClient(svc.app)
    groups = client.get("/apis").json()
    assert groups["kind"] == "APIGroupList"
    assert groups["groups"][0]["name"] == "external.metrics.k8s.io"
    assert groups["groups"][0]["preferredVersion"]["groupVersion"] == (
        "external.metrics.k8s.io/v1beta1"
    )
    group = client.get("/apis/external.metrics.k8s.io").json()
    assert group["kind"] == "APIGroup"
    resources = client.get(BASE).json()
    assert resources["kind"] == "APIResourceList"
    assert resources["groupVersion"] == "external.metrics.k8s.io/v1beta1"
    assert resources["resources"] == [
        {
            "name": "http_requests_forecast",
            "singularName": "",
            "namespaced": True,
            "kind": "ExternalMetricValueList",
            "verbs": ["get"],
        }
    ]
    missing = client.get("/apis/nothing")
    assert missing.status_code == 404 and missing.json()["kind"] == "Status"
    post = client.post(f"{BASE}/namespaces/default/http_requests_forecast")
    assert post.status_code == 405 and post.json()["reason"] == "MethodNotAllowed"


def test_openapi_v2_describes_the_api(service):
    svc, _, _ = service
    doc = TestClient(svc.app).get("/openapi/v2").json()
    assert doc["swagger"] == "2.0"
    get = doc["paths"][f"{BASE}/namespaces/{{namespace}}/{{metric}}"]["get"]
    assert {p["name"] for p in get["parameters"]} == {"namespace", "metric", "labelSelector"}
    ref = get["responses"]["200"]["schema"]["$ref"].split("/")[-1]
    assert set(doc["definitions"][ref]["properties"]) >= {"kind", "apiVersion", "items"}
