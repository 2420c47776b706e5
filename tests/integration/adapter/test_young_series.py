"""A series born while scaleahead runs, read from a real Prometheus through the real
service minute by minute: while its rate() window fills, the query's values ramp up from
near zero; a forecast fitted on that ramp chased it upwards (a steady 15 req/s served 30
to 45). Now the ramp is left out: a steady series is served within 20% of its rate from
the first cycle that forecasts it, and its actual until then."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from adapter.service import build_service, prometheus_source
from forecaster.config import PrometheusConfig, Rule
from forecaster.times import SETTLE
from harness.prometheus import (
    PrometheusServer,
    backfilled,
)
from tests.conftest import Clock, parse_quantity

MINUTE = 60
SCRAPE = 15
RATE = 15.0
MINUTES = 40
PATH = "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/http_requests_forecast"


@pytest.fixture(scope="module")
def born(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, int]]:
    """Prometheus holding a counter that starts at 0 at `birth` (between two grid points)
    and grows by a Poisson 15 req/s, scraped every 15 s, for 40 minutes; and an older
    series, so the rule has series before the birth."""
    root = tmp_path_factory.mktemp("young")
    birth = (int(time.time()) // MINUTE) * MINUTE - 3600 + 23
    rng = np.random.default_rng(3)
    scrapes = MINUTES * MINUTE // SCRAPE
    lines = ["# HELP http_requests Requests served.", "# TYPE http_requests counter"]
    for service, start in (("older", birth - 3 * 3600), ("newborn", birth)):
        n = scrapes + (birth - start) // SCRAPE
        counts = rng.poisson(RATE * SCRAPE, n).astype(float)
        totals = np.concatenate([[0.0], np.cumsum(counts)])
        stamps = start + SCRAPE * np.arange(len(totals))
        labels = f'namespace="default",service="{service}"'
        lines += [
            f"http_requests_total{{{labels}}} {v:.1f} {t}"
            for t, v in zip(stamps.tolist(), totals.tolist(), strict=True)
        ]
    server = backfilled(lines, root, birth + MINUTES * MINUTE)
    server.start()
    yield server, birth
    server.stop()


def served(client: TestClient, service: str) -> float | None:
    resp = client.get(PATH, params={"labelSelector": f"service={service}"})
    if resp.status_code != 200:
        return None
    [item] = json.loads(resp.text)["items"]
    return parse_quantity(item["value"])


@pytest.mark.parametrize("window", ["2m", "5m"])
def test_a_newborn_steady_series_is_served_its_rate_not_its_ramp(born, window: str):
    server, birth = born
    query = (
        f"sum by (namespace, service) (rate(http_requests_total{{<<.LabelMatchers>>}}[{window}]))"
    )
    rule = Rule(name="http_requests_forecast", query=query, history="1d")
    assert rule.warmup_steps == {"2m": 2, "5m": 5}[window]
    grid = birth - birth % MINUTE
    clock = Clock(grid + SETTLE)
    svc = build_service([rule], prometheus_source(PrometheusConfig(url=server.url)), clock)
    client = TestClient(svc.app)
    ramp: list[float] = []  # what the query itself says in the newborn's first minutes
    first_forecast = None
    for k in range(1, 31):
        clock.t = grid + k * MINUTE + SETTLE
        svc.cycle.run(rule, clock())
        svc.current.refresh(rule)
        [state] = [
            s for s in svc.provider.view.rule(rule).series if s.labels["service"] == "newborn"
        ] or [None]
        value = served(client, "newborn")
        if state is None or value is None:
            continue
        if state.forecast is None:
            # Warming up: served its actual, as a reactive HPA would be, never a guess.
            assert first_forecast is None, "a forecast went missing after the first"
            assert state.actual is not None and value == pytest.approx(state.actual, abs=1e-3)
            ramp.append(value)
            continue
        if first_forecast is None:
            first_forecast = k
        assert 0.8 * RATE <= value <= 1.2 * RATE, (window, k, value)
    # The ramp was real (the first values were well under the rate) and lasted about the
    # window; the first forecast came with the first full window.
    assert ramp and min(ramp) < 0.7 * RATE, ramp
    assert first_forecast is not None
    assert first_forecast <= rule.warmup_steps + 2, (first_forecast, ramp)
