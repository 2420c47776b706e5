"""`scaleahead serve` with its default fitting workers against a real Prometheus: a worker
SIGKILLed during the first cycle loses no forecast, the service is ready on time, and the
replacement is counted where the alert reads it."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from forecaster.runtime.fitting import LEAST
from forecaster.sources.trace import Trace
from harness.net import free_port, wait_http
from harness.proc import spawned
from harness.prometheus import (
    PrometheusServer,
    backfilled,
    counter_lines,
)
from tests.conftest import parse_quantity
from tests.integration.adapter.test_cli import running

SERIES = LEAST + 8  # one batch the workers take: the first cycle's refits
HOURS = 50  # past the ladder's young series (statsforecast, batched in process)
PATH = "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/http_requests_forecast"


@pytest.fixture
def many_series(nasa: Trace, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A Prometheus with SERIES counters (HOURS of NASA, each series at its own offset
    and scale), running an hour past now."""
    end = int(time.time()) // 60 * 60 + 3600
    minutes = (HOURS + 1) * 60
    start = end - minutes * 60
    lines = ["# HELP http_requests Requests served.", "# TYPE http_requests counter"]
    for k in range(SERIES):
        first = (1 + k % 25) * 1440  # before the trace's August outage
        counts = nasa.counts[first : first + minutes] * (1 + k / 10)
        assert np.isfinite(counts).all()
        lines += counter_lines(f'namespace="default",service="s{k}"', counts, start)
    prom = backfilled(lines, tmp_path, end)
    prom.start()
    yield prom
    prom.stop()


def workers_of(pid: int) -> list[int]:
    """The fitting workers of `scaleahead serve` (pid): the children of its forecaster
    process."""
    return [w for forecaster in spawned(pid) for w in spawned(forecaster)]


def metric_lines(base: str, name: str) -> list[str]:
    text = httpx.get(f"{base}/metrics", timeout=5).text
    return [line for line in text.splitlines() if line.startswith(name)]


def served_values(base: str) -> list[float]:
    """The value served for each of the SERIES series (each answered 200, one item)."""
    values = []
    for k in range(SERIES):
        r = httpx.get(f"{base}{PATH}", params={"labelSelector": f"service=s{k}"}, timeout=5)
        assert r.status_code == 200, r.text
        [item] = json.loads(r.text)["items"]
        values.append(parse_quantity(item["value"]))
    return values


def test_a_worker_killed_in_the_first_cycle_loses_no_forecast(
    many_series: PrometheusServer, tmp_path: Path
):
    config = tmp_path / "scaleahead.yaml"
    config.write_text(
        f"prometheus:\n  url: {many_series.url}\n"
        "rules:\n  - name: http_requests_forecast\n"
        "    query: 'sum by (namespace, service) "
        "(rate(http_requests_total{<<.LabelMatchers>>}[1m]))'\n"
        f"    history: {HOURS}h\n"
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "scaleahead.log"
    # --fit-workers left to its default: one per core
    with running(["serve", "--config", str(config), "--port", str(port)], log) as proc:
        wait_http(f"{base}/healthz", timeout=60)
        deadline = time.monotonic() + 60
        killed = None
        while killed is None and time.monotonic() < deadline:
            found = workers_of(proc.pid)
            if found:
                killed = found[0]
                os.kill(killed, signal.SIGKILL)
            time.sleep(0.05)
        assert killed is not None, "no fitting worker started for the first cycle"
        ready_at = None
        while time.monotonic() < deadline:
            if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                ready_at = time.monotonic()
                break
            time.sleep(0.2)
        assert ready_at is not None, log.read_text()[-3000:]

        # Every series forecast (no fallback to its actual), and served a positive value.
        fallback = metric_lines(base, "scaleahead_series_fallback{")
        assert len(fallback) == SERIES, fallback
        assert all(line.endswith(" 0.0") for line in fallback), fallback
        assert min(served_values(base)) > 0
        # The replacement counted once, for the alert, and said in the log.
        [restarts] = metric_lines(base, "scaleahead_fit_worker_restarts_total")
        assert restarts.endswith(" 1.0"), restarts
        assert "a fitting worker died" in log.read_text()
        assert killed not in workers_of(proc.pid)
    assert proc.returncode == 0, log.read_text()[-3000:]
