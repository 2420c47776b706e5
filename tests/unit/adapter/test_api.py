"""The HTTP surface alone, against the fake provider (as custom-metrics-apiserver tests
its plumbing with pkg/provider/fake): paths, items, quantities, Status errors."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Counter

from adapter.errors import Unavailable
from adapter.provider import Check, MetricValue
from adapter.provider.fake import FakeProvider
from adapter.server.app import create_app
from forecaster.selector import LabelSelector

BASE = "/apis/external.metrics.k8s.io/v1beta1"
NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z


@pytest.fixture
def provider() -> FakeProvider:
    return FakeProvider(
        {
            "qps_forecast": [
                ({"service": "checkout"}, 12.3456),
                ({"service": "search"}, 2.0),
            ],
            "queue_forecast": [({"queue": "orders"}, 0.0001)],
        },
        clock=lambda: NOW,
    )


@pytest.fixture
def client(provider: FakeProvider) -> TestClient:
    registry = CollectorRegistry()
    Counter("scaleahead_test_total", "A metric of the given registry.", registry=registry)
    return TestClient(create_app(provider, registry), raise_server_exceptions=False)


def test_items_carry_labels_timestamp_and_milli_quantities_rounded_up(client, provider):
    resp = client.get(f"{BASE}/namespaces/shop/qps_forecast", params={"labelSelector": ""})
    assert resp.status_code == 200
    body = resp.json()
    assert body["kind"] == "ExternalMetricValueList"
    assert body["apiVersion"] == "external.metrics.k8s.io/v1beta1"
    assert body["items"] == [
        {
            "metricName": "qps_forecast",
            "metricLabels": {"service": "checkout"},
            "timestamp": "2023-11-14T22:13:20Z",
            "value": "12346m",
        },
        {
            "metricName": "qps_forecast",
            "metricLabels": {"service": "search"},
            "timestamp": "2023-11-14T22:13:20Z",
            "value": "2",
        },
    ]
    [item] = client.get(f"{BASE}/namespaces/shop/queue_forecast").json()["items"]
    assert item["value"] == "1m"  # a tiny positive rate is never rounded down to 0


def test_the_provider_gets_the_namespace_and_the_parsed_selector(client, provider):
    resp = client.get(
        f"{BASE}/namespaces/shop/qps_forecast", params={"labelSelector": "service in (search)"}
    )
    assert [i["metricLabels"]["service"] for i in resp.json()["items"]] == ["search"]
    namespace, metric, selector = provider.asked[-1]
    assert (namespace, metric, str(selector)) == ("shop", "qps_forecast", "service in (search)")


@pytest.mark.parametrize(
    ("path", "params", "code", "reason", "needle"),
    [
        ("namespaces/shop/nope", {}, 404, "NotFound", '"nope"'),
        ("namespaces/shop/qps_forecast", {"labelSelector": "service=none"}, 404, "NotFound", ""),
        ("namespaces/Shop/qps_forecast", {}, 400, "BadRequest", "namespace"),
        ("namespaces/shop/qps_forecast", {"labelSelector": "a in (b"}, 400, "BadRequest", "("),
        ("namespaces/shop/qps_forecast", {"labelSelector": "x.y/z=1"}, 400, "BadRequest", "key"),
        ("namespaces/shop/down", {}, 503, "ServiceUnavailable", "prometheus down"),
        ("namespaces/shop/broken", {}, 500, "InternalError", "internal error"),
        ("no/such/path", {}, 404, "NotFound", "/apis/"),
    ],
)
def test_errors_are_kubernetes_status_objects(client, provider, path, params, code, reason, needle):
    provider.series["down"] = []
    provider.failing["down"] = Unavailable("prometheus down")
    provider.series["broken"] = [({"s": "a"}, float("nan"))]  # a provider bug: never served
    resp = client.get(f"{BASE}/{path}", params=params)
    assert resp.status_code == code
    body = resp.json()
    assert (body["kind"], body["apiVersion"], body["status"]) == ("Status", "v1", "Failure")
    assert (body["code"], body["reason"]) == (code, reason)
    assert needle in body["message"]
    assert "items" not in body


def test_a_repeated_selector_is_refused(client):
    resp = client.get(f"{BASE}/namespaces/shop/qps_forecast?labelSelector=a%3Db&labelSelector=c")
    assert resp.status_code == 400 and "more than once" in resp.json()["message"]


def test_writes_are_405_status_with_allow(client):
    resp = client.post(f"{BASE}/namespaces/shop/qps_forecast", json={})
    assert resp.status_code == 405 and resp.json()["reason"] == "MethodNotAllowed"
    assert set(resp.headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD"}


def test_a_trailing_slash_is_not_redirected_anywhere(client):
    resp = client.get(f"{BASE}/", headers={"Host": "evil.example"}, follow_redirects=False)
    assert resp.status_code == 404 and resp.json()["kind"] == "Status"
    assert "location" not in resp.headers


def test_an_encoded_slash_never_reaches_a_route(client, provider):
    resp = client.get(f"{BASE}/namespaces/shop%2Fqps_forecast")
    assert resp.status_code == 404 and resp.json()["kind"] == "Status"
    resp = client.get(f"{BASE}/namespaces/shop/qps%2fforecast")
    assert resp.status_code == 404
    assert provider.asked == []


def test_health_answers_head_and_verbose(client, provider):
    assert client.head("/healthz").status_code == 200
    assert client.head("/readyz").status_code == 200
    verbose = client.get("/livez?verbose")
    assert verbose.text.splitlines() == ["[+]ping ok", "livez check passed"]
    provider.checks.append(Check("rule/queue_forecast", True, "3 series"))
    provider.checks.append(Check("rule/lag_forecast", True, "Prometheus down", degraded=True))
    degraded = client.get("/readyz?verbose")
    assert degraded.status_code == 200 and client.get("/readyz").text == "ok"
    assert degraded.text.splitlines()[-2:] == [
        "[+]rule/lag_forecast degraded: Prometheus down",
        "readyz check passed",
    ]
    provider.checks.append(Check("rule/qps_forecast", False, "no forecast cycle has completed"))
    failed = client.get("/readyz?verbose")
    assert failed.status_code == 503
    assert failed.text.splitlines() == [
        "[+]ping ok",
        "[+]rule/queue_forecast ok: 3 series",
        "[+]rule/lag_forecast degraded: Prometheus down",
        "[-]rule/qps_forecast failed: no forecast cycle has completed",
        "readyz check failed",
    ]
    assert (
        client.get("/readyz").text
        == "failed:\nrule/qps_forecast: no forecast cycle has completed\n"
    )


def test_liveness_fails_with_a_stalled_check(provider):
    stalled: list[Check] = []
    client = TestClient(create_app(provider, CollectorRegistry(), lambda: stalled))
    assert client.get("/livez").status_code == 200 and client.get("/healthz").text == "ok"
    stalled.append(Check("cycle:qps_forecast", False, "running without progress for 11m"))
    for path in ("/livez", "/healthz"):
        resp = client.get(f"{path}?verbose")
        assert resp.status_code == 503
        assert "[-]cycle:qps_forecast failed: running without progress for 11m" in resp.text
    assert client.get("/readyz").status_code == 200  # readiness is the provider's alone


def test_version_and_openapi_v3(client):
    v = client.get("/version").json()
    assert v["gitVersion"].startswith("v") and v["major"].isdigit()
    index = client.get("/openapi/v3").json()
    [(gv, ref)] = index["paths"].items()
    assert gv == "apis/external.metrics.k8s.io/v1beta1"
    doc = client.get(ref["serverRelativeURL"].split("?")[0]).json()
    assert doc["openapi"].startswith("3.")
    get = doc["paths"][f"{BASE}/namespaces/{{namespace}}/{{metric}}"]["get"]
    namespace = next(p for p in get["parameters"] if p["name"] == "namespace")
    assert namespace["schema"]["pattern"] == "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
    ok = get["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ok.split("/")[-1] in doc["components"]["schemas"]


def test_discovery_lists_what_the_provider_serves(client, provider):
    resources = client.get(BASE).json()
    assert resources["kind"] == "APIResourceList"
    assert [r["name"] for r in resources["resources"]] == ["qps_forecast", "queue_forecast"]
    assert all(r["namespaced"] and r["verbs"] == ["get"] for r in resources["resources"])
    group = client.get("/apis/external.metrics.k8s.io").json()
    assert group["preferredVersion"]["groupVersion"] == "external.metrics.k8s.io/v1beta1"


def test_readiness_follows_the_provider_and_metrics_expose_the_registry(client, provider):
    assert client.get("/readyz").status_code == 200
    provider.checks.append(Check("rule/qps_forecast", False, "no forecast cycle yet"))
    resp = client.get("/readyz")
    assert resp.status_code == 503 and "qps_forecast" in resp.text
    assert client.get("/livez").text == "ok"
    assert "scaleahead_test_total 0.0" in client.get("/metrics").text


class EmptyProvider(FakeProvider):
    """A provider that breaks the contract: it answers a question with no values."""

    def values(self, namespace: str, metric: str, selector: LabelSelector) -> list[MetricValue]:
        return []


def test_an_empty_answer_is_a_404_never_an_empty_success():
    app = create_app(EmptyProvider({"qps_forecast": []}), CollectorRegistry())
    resp = TestClient(app).get(f"{BASE}/namespaces/shop/qps_forecast")
    assert resp.status_code == 404 and resp.json()["kind"] == "Status"
    assert "no series" in resp.json()["message"]
