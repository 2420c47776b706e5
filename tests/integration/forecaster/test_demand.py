"""The cap, the drop, and a dropped series asked for again, backfilled from a real
Prometheus."""

from __future__ import annotations

import json
import logging

import pytest
from fastapi.testclient import TestClient

from adapter.service import build_service, prometheus_source
from forecaster.config import PrometheusConfig, Rule
from forecaster.models import ladder
from forecaster.sources.base import series_key
from forecaster.times import SETTLE
from harness.prometheus import PrometheusServer
from tests.conftest import RULE_QUERY, Clock

BASE = "/apis/external.metrics.k8s.io/v1beta1/namespaces"


def key(ns: str, svc: str):
    return series_key({"namespace": ns, "service": svc})


@pytest.fixture
def capped(prometheus: PrometheusServer):
    rule = Rule(
        name="http_requests_forecast",
        query=RULE_QUERY,
        history="8d",
        drop_after="5m",
        max_series=2,
    )

    clock = Clock(prometheus.end - 3 * 3600 + SETTLE)
    svc = build_service([rule], prometheus_source(PrometheusConfig(url=prometheus.url)), clock)
    return svc, rule, clock


def served(client: TestClient, ns: str, selector: str):
    resp = client.get(f"{BASE}/{ns}/http_requests_forecast", params={"labelSelector": selector})
    return resp.status_code, json.loads(resp.text)


def test_the_cap_the_drop_and_a_backfill_when_asked_again(capped, caplog):
    svc, rule, clock = capped
    client = TestClient(svc.app)
    svc.cycle.run(rule, clock())
    svc.current.refresh(rule)
    # Three series, a cap of two: one is refused, loudly, and served its actual alone.
    snap = svc.store.snapshot(rule.name)
    assert snap is not None and len(snap) == 2
    [refused] = svc.store.refused(rule.name)
    assert "beyond max_series (2)" in caplog.text
    metrics = client.get("/metrics").text
    assert 'scaleahead_cycle_series_refused{rule="http_requests_forecast"} 1.0' in metrics
    ready = client.get("/readyz", params={"verbose": "1"}).text
    assert "1 beyond max_series (2) served their actual" in ready, ready
    ns, svc_name = dict(refused)["namespace"], dict(refused)["service"]
    code, body = served(client, ns, f"service={svc_name}")
    assert code == 200 and body["items"]
    assert (
        f'scaleahead_series_fallback{{namespace="{ns}",reason="series_cap",'
        f'rule="http_requests_forecast",service="{svc_name}"}} 1.0'
    ) in client.get("/metrics").text
    # An HPA asks for default/checkout every cycle; nobody asks for the rest. Past
    # drop_after, they are dropped (and the cap no longer refuses anything).
    for _ in range(7):
        assert served(client, "default", "service=checkout")[0] == 200
        clock.t += 60
        svc.cycle.run(rule, clock())
        svc.current.refresh(rule)
    snap = svc.store.snapshot(rule.name)
    assert snap is not None and set(snap) == {key("default", "checkout")}
    assert not svc.store.refused(rule.name)
    # default/search, asked for again: answered at once from its actual...
    code, body = served(client, "default", "service=search")
    assert code == 200
    [state] = [s for s in svc.provider.view.rule(rule).series if s.labels["service"] == "search"]
    assert state.forecast is None and state.served is not None and state.actual is not None
    # ...and forecast by the next cycle from its whole history, backfilled: a seasonal model
    # (young series get ETS or naive), not a warm-up of a day.
    caplog.clear()
    caplog.set_level(logging.INFO, logger="forecaster.runtime.cycle")
    clock.t += 60
    svc.cycle.run(rule, clock())
    assert "backfilled 1 series asked for" in caplog.text
    snap = svc.store.snapshot(rule.name)
    assert snap is not None
    forecast = snap[key("default", "search")]
    assert forecast.model not in ("ets", "naive")
    book = svc.cycle._books[rule.name]
    obs = book.observed(key("default", "search"))
    assert not ladder.is_young(obs.last - obs.first)
