"""Two replicas reading the same Prometheus serve the same value for the same series at
the same time, however long each has been running and whichever cycles it missed (for
the series in use: one nobody asks for may be forecast by a fresh replica and dropped by
one that has run past its drop_after)."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from adapter.service import build_service, prometheus_source
from forecaster.config import PrometheusConfig, Rule
from forecaster.times import SETTLE
from harness.prometheus import PrometheusServer
from tests.conftest import RULE_QUERY, STEP, Clock
from tests.integration.adapter.test_service import QUANTILE, get_metric


def _values(client: TestClient) -> dict[tuple[str, str], str]:
    out = {}
    for ns in ("default", "staging"):
        resp = get_metric(client, None, ns=ns)
        assert resp.status_code == 200, resp.text
        for item in resp.json()["items"]:
            labels = item["metricLabels"]
            out[(labels["namespace"], labels["service"])] = item["value"]
    return out


def test_a_long_running_and_a_restarted_replica_serve_the_same_values(
    prometheus: PrometheusServer, tmp_path: Path
):
    rule = Rule(
        name="http_requests_forecast", query=RULE_QUERY, lead="3m", quantile=QUANTILE, history="8d"
    )
    config = PrometheusConfig(url=prometheus.url)
    start = prometheus.end - 3 * 3600
    old_clock = Clock(start)
    state = tmp_path / "state"  # the long-running replica saves its fits there
    old = build_service([rule], prometheus_source(config), old_clock, state_dir=state)
    old_client = TestClient(old.app)
    # The long-running replica: a cycle SETTLE seconds after every minute for 70 minutes
    # (past every series' hourly refit and the drop_after of series nobody asks for),
    # some missed, current values every 15 s, and the HPAs' requests (on both replicas,
    # behind one Service) every 15 s too.
    for k in range(70):
        for q in range(0, STEP, 15):
            old_clock.t = start + k * STEP + q + SETTLE
            old.current.refresh(rule)
            if k >= 1:
                _values(old_client)
        if k % 9 != 4:
            old_clock.t = start + k * STEP + SETTLE
            old.cycle.run(rule, old_clock())
    now = start + 70 * STEP + 40  # a request 40 s into the minute
    old_clock.t = start + 70 * STEP + SETTLE
    old.cycle.run(rule, old_clock())
    old_clock.t = now
    old.current.refresh(rule)

    # The other replica starts 20 s into the minute: one cycle, one refresh.
    new_clock = Clock(start + 70 * STEP + 20)
    new = build_service([rule], prometheus_source(config), new_clock)
    new.cycle.run(rule, new_clock())
    new.current.refresh(rule)
    new_clock.t = now  # its refresh schedule, like the other's, runs SETTLE past each 15 s
    new.current.refresh(rule)

    # A third, restarted at the same moment from the long-running one's last checkpoint
    # (up to 5 minutes old): it fetches what is new and refits what fell due since.
    resumed_clock = Clock(start + 70 * STEP + 20)
    resumed = build_service([rule], prometheus_source(config), resumed_clock, state_dir=state)
    assert resumed.cycle is not None
    report = resumed.cycle.run(rule, resumed_clock())
    assert report.fetch_start >= start + 65 * STEP  # not the whole history
    resumed.current.refresh(rule)
    resumed_clock.t = now
    resumed.current.refresh(rule)

    a, b = _values(old_client), _values(TestClient(new.app))
    c = _values(TestClient(resumed.app))
    print("old replica", a, "restarted replica", b, "resumed replica", c)
    assert len(a) == 3
    assert a == b == c  # to the milli-unit
    # Not a trivial agreement: the forecasts lie above the actual rates.
    assert any(
        old.current.get(rule.name).values[key] < int(a[(ns, svc)].rstrip("m")) / 1000
        for key in old.current.get(rule.name).values
        for ns, svc in [(dict(key)["namespace"], dict(key)["service"])]
    )
