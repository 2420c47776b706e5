"""Degraded histories written into a real Prometheus, read by the real service: gaps,
NaN and Inf samples, a counter reset, a series that disappears and comes back, a flat-zero
outage and a history shorter than a day. Each is served a finite value at or above its
actual and within reach of its own demand; none is served 0 or NaN because data failed."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from adapter.service import build_service, prometheus_source
from forecaster.config import PrometheusConfig, Rule
from forecaster.sources.trace import Trace
from forecaster.times import SETTLE
from harness.prometheus import (
    PrometheusServer,
    backfilled,
)
from tests.conftest import RULE_QUERY, Clock, parse_quantity

MINUTE = 60
SCRAPE = 15
DAYS = 2
PATH = "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/http_requests_forecast"


def _counter(
    counts: np.ndarray, start: int, keep: np.ndarray, nan: np.ndarray
) -> list[tuple[int, str]]:
    """(timestamp, value) samples of a counter growing by `counts` per minute from
    `start`, scraped every 15 s; scrapes where `keep` is False are missing, where `nan` is
    True their value is NaN (a broken exporter)."""
    sub = MINUTE // SCRAPE
    cumulative = np.concatenate([[0.0], np.cumsum(np.repeat(counts / sub, sub))])
    stamps = start + SCRAPE * np.arange(len(cumulative))
    minute = np.minimum(np.arange(len(cumulative)) // sub, len(counts) - 1)
    return [
        (t, "NaN" if nan[m] else f"{v:.6f}")
        for t, v, m in zip(stamps.tolist(), cumulative.tolist(), minute.tolist(), strict=True)
        if keep[m]
    ]


@pytest.fixture(scope="module")
def degraded(
    nasa: Trace, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[PrometheusServer, int, np.ndarray, dict[str, tuple]]]:
    root = tmp_path_factory.mktemp("degraded")
    now = (int(time.time()) // MINUTE) * MINUTE
    end = now + 3600
    n = DAYS * 1440 + 60
    start = end - n * MINUTE
    counts = nasa.counts[8 * 1440 : 8 * 1440 + n]
    assert not np.isnan(counts).any()
    t_minute = start + MINUTE * np.arange(n)  # each minute's start

    def ago(hours: float) -> int:
        return int(np.searchsorted(t_minute, now - hours * 3600))

    everything = np.ones(n, bool)
    nothing = np.zeros(n, bool)
    cases: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, int | None]] = {}
    cases["steady"] = (counts, everything, nothing, None)
    gap = everything.copy()
    gap[ago(3) : ago(2.5)] = False
    cases["gaps"] = (counts, gap, nothing, None)
    nans = nothing.copy()
    nans[ago(5) : ago(4.6)] = True
    cases["nan"] = (counts, everything, nans, None)
    cases["reset"] = (counts, everything, nothing, ago(4))  # the process restarted
    away = everything.copy()
    away[ago(5) : ago(1)] = False
    cases["returning"] = (counts, away, nothing, None)
    flat = counts.copy()
    flat[ago(0.5) :] = 0.0  # the workload went down half an hour ago
    cases["zero"] = (flat, everything, nothing, None)
    young = everything.copy()
    young[: ago(3)] = False
    cases["young"] = (counts, young, nothing, None)

    lines = ["# HELP http_requests Requests served.", "# TYPE http_requests counter"]
    for service, (c, keep, nan, reset_at) in cases.items():
        labels = f'namespace="default",service="{service}"'
        if reset_at is None:
            samples = _counter(c, start, keep, nan)
        else:  # counts from zero again after the restart
            before = _counter(c[:reset_at], start, keep[:reset_at], nan[:reset_at])[:-1]
            after = _counter(
                c[reset_at:], start + reset_at * MINUTE, keep[reset_at:], nan[reset_at:]
            )
            samples = before + after
        lines += [f"http_requests_total{{{labels}}} {v} {t}" for t, v in samples]
    server = backfilled(lines, root, end)
    server.start()
    yield server, now, counts, cases
    server.stop()


def served(client: TestClient, service: str) -> tuple[int, float | None, str]:
    resp = client.get(PATH, params={"labelSelector": f"service={service}"})
    if resp.status_code != 200:
        return resp.status_code, None, resp.text
    [item] = json.loads(resp.text)["items"]
    return 200, parse_quantity(item["value"]), resp.text


def test_degraded_histories_are_served_sane_values(degraded, tmp_path: Path):
    server, now, counts, cases = degraded
    rule = Rule(name="http_requests_forecast", query=RULE_QUERY, history=f"{DAYS}d")
    clock = Clock(now + SETTLE)
    svc = build_service([rule], prometheus_source(PrometheusConfig(url=server.url)), clock)
    # The damage is really in what Prometheus answers: holes, a reset, a late start.
    fetched = svc.source.fetch_range(rule, now - DAYS * 86400, now)
    points = {s.labels["service"]: len(s.timestamps) for s in fetched}
    missing = {k: points["steady"] - v for k, v in points.items()}
    assert 25 <= missing["gaps"] <= 35 and 20 <= missing["nan"] <= 30
    assert 235 <= missing["returning"] <= 245 and points["young"] <= 3 * 60 + 2
    client_ = svc.source.client  # type: ignore[attr-defined]
    [reset] = client_.query('resets(http_requests_total{service="reset"}[3d])', now)
    assert reset.value == 1
    report = svc.cycle.run(rule, clock())
    svc.current.refresh(rule)
    assert report.series == len(cases) and report.fit_failures == 0
    client = TestClient(svc.app)
    day_peak = float(np.nanmax(counts[-1500:])) / MINUTE  # req/s, the last day's busiest minute
    state = {s.labels["service"]: s for s in svc.provider.view.rule(rule).series}
    for service in cases:
        code, value, body = served(client, service)
        assert code == 200, (service, body)
        assert value is not None and np.isfinite(value), service
        actual = state[service].actual
        assert actual is not None and value >= actual - 1e-3, (service, value, actual)
        forecast = state[service].forecast
        assert forecast is not None and np.isfinite(forecast.upper).all(), service
        # A reset, a NaN or a hole never shows up as a spike: within 3x the day's peak.
        assert value <= 3 * day_peak, (service, value, day_peak)
        assert forecast.upper.max() <= 3 * day_peak, service
        if service != "zero":
            assert value > 0, service
    # The flat-zero outage: its actual is a true 0, served as what it is (floored there),
    # and the forecast above it (scale ahead of the recovery), not a NaN or an error.
    assert state["zero"].actual == 0.0
    steady = served(client, "steady")[1]
    assert steady is not None
    # Histories that lost points serve what the intact series does, within 25 %.
    for service in ("gaps", "nan", "reset", "returning"):
        value = served(client, service)[1]
        assert value is not None and abs(value - steady) <= 0.25 * steady, (service, value, steady)
    # The series younger than a day gets a short-history model, not an error.
    assert state["young"].forecast is not None
    assert state["young"].forecast.model != state["steady"].forecast.model
