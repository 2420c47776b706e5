"""scaleahead against a real Prometheus that is missing at start, killed, hung and back:
health never waits, the metric is served per the fallback rules (never 0), everything
recovers without a restart, and SIGTERM exits promptly even with Prometheus hung."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from forecaster.sources.trace import Trace
from harness.net import free_port, wait_http
from harness.prometheus import (
    PrometheusServer,
    backfilled,
    counter_lines,
)
from tests.conftest import clean_env, parse_quantity, scaleahead_cmd

STEP = 5  # seconds: the rule's step and interval, so that a TTL passes within the test
LEAD = 10
TTL = 25  # horizon 40s = lead + step + TTL
HOURS = 6
PATH = "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/http_requests_forecast"
SELECTOR = {"labelSelector": "service=checkout"}


@dataclass
class Answer:
    at: float  # seconds since the test started
    path: str
    code: int
    seconds: float
    body: str


class Prober:
    """Asks /healthz, /readyz and the metric every 0.25 s from a thread and keeps every
    answer."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.answers: list[Answer] = []
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def now(self) -> float:
        return time.monotonic() - self.started

    def _run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=10) as client:
            while not self._stop.is_set():
                for path, params in (("/healthz", {}), ("/readyz", {}), (PATH, SELECTOR)):
                    began = time.monotonic()
                    try:
                        r = client.get(path, params=params)
                        code, body = r.status_code, r.text
                    except httpx.HTTPError as err:
                        code, body = 0, str(err)
                    took = time.monotonic() - began
                    self.answers.append(Answer(began - self.started, path, code, took, body))
                time.sleep(0.25)

    def since(self, t: float, path: str = PATH) -> list[Answer]:
        return [a for a in self.answers if a.at >= t and a.path == path]

    def wait_for(self, code: int, timeout: float) -> float:
        """Wait until the metric answers `code` (after now); return when it first did."""
        t = self.now()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hit = [a for a in self.since(t) if a.code == code]
            if hit:
                return hit[0].at
            time.sleep(0.1)
        last = self.since(t)[-1:] or self.answers[-1:]
        raise AssertionError(f"the metric never answered {code} in {timeout}s: {last}")


def wait_forecast(base: str, since: float, timeout: float = 30) -> float:
    """Wait until a cycle has succeeded after wall-clock time `since`; return when."""
    deadline = time.monotonic() + timeout
    name = "scaleahead_cycle_last_success_timestamp_seconds"
    while time.monotonic() < deadline:
        for line in httpx.get(f"{base}/metrics", timeout=5).text.splitlines():
            if line.startswith(name + "{") and float(line.split()[-1]) >= since:
                return time.time()
        time.sleep(0.2)
    raise AssertionError(f"no successful cycle after {since} within {timeout}s")


def served_value(body: str) -> float:
    import json

    [item] = json.loads(body)["items"]
    return parse_quantity(item["value"])


@pytest.fixture
def own_prometheus(nasa: Trace, tmp_path: Path) -> PrometheusServer:
    """A Prometheus of this test's own (it is killed and stopped), not yet started: six
    hours of one NASA series as a counter, running an hour past now."""
    end = int(time.time()) // 60 * 60 + 3600
    minutes = (HOURS + 1) * 60
    counts = nasa.counts[10 * 1440 : 10 * 1440 + minutes]
    assert not np.isnan(counts).any()
    start = end - minutes * 60
    lines = ["# HELP http_requests Requests served.", "# TYPE http_requests counter"]
    lines += counter_lines('namespace="default",service="checkout"', counts, start)
    return backfilled(lines, tmp_path, end)


def test_prometheus_missing_killed_and_hung(own_prometheus: PrometheusServer, tmp_path: Path):
    prom = own_prometheus
    config = tmp_path / "scaleahead.yaml"
    config.write_text(
        f"prometheus:\n  url: {prom.url}\n  timeout: 1s\n  retries: 1\n"
        "current:\n  interval: 2s\n  max_age: 15s\n"
        "rules:\n  - name: http_requests_forecast\n"
        "    query: 'sum by (namespace, service) "
        "(rate(http_requests_total{<<.LabelMatchers>>}[1m]))'\n"
        f"    step: {STEP}s\n    interval: {STEP}s\n    lead: {LEAD}s\n"
        f"    horizon: {LEAD + STEP + TTL}s\n    history: {HOURS}h\n"
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "scaleahead.log"
    timeline: list[str] = []
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*scaleahead_cmd(), "serve", "--config", str(config), "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=clean_env(),
        )
    try:
        wait_http(f"{base}/healthz", timeout=60)
        with Prober(base) as probe:
            # 1. Prometheus does not exist yet: alive, ready once its first cycle
            # failed (it answers 503 naming the error), and saying why.
            time.sleep(8)
            ready = httpx.get(f"{base}/readyz?verbose", timeout=5)
            assert ready.status_code == 200 and "degraded" in ready.text
            assert f"cannot reach {prom.url}" in ready.text and "next attempt in" in ready.text
            assert proc.poll() is None
            t = probe.now()
            prom.start()
            up = probe.wait_for(200, timeout=30)
            wait_forecast(base, time.time() - 1)
            timeline.append(
                f"Prometheus started at {t:.1f}s; first value (reactive) at {up:.1f}s, "
                f"first forecast at {probe.now():.1f}s"
            )

            # 2. SIGKILL: the forecast alone while it is fresh, then 503; never 0.
            t = probe.now()
            assert prom.proc is not None
            prom.proc.kill()
            prom.proc.wait()
            gone = probe.wait_for(503, timeout=TTL + 30)
            timeline.append(f"Prometheus killed at {t:.1f}s; served until {gone:.1f}s, then 503")
            time.sleep(3)
            t = probe.now()
            prom.start()
            back = probe.wait_for(200, timeout=30)
            wait_forecast(base, time.time() - 1)
            timeline.append(
                f"restarted at {t:.1f}s; served again at {back:.1f}s, forecast at "
                f"{probe.now():.1f}s"
            )

            # 3. SIGSTOP for longer than the TTL: connections hang; health must not.
            time.sleep(3)
            t = probe.now()
            os.kill(prom.proc.pid, signal.SIGSTOP)
            hung = probe.wait_for(503, timeout=TTL + 30)
            live = httpx.get(f"{base}/livez", timeout=5)
            assert live.status_code == 200  # a hung Prometheus must not get us restarted
            time.sleep(5)
            timeline.append(f"Prometheus stopped at {t:.1f}s; served until {hung:.1f}s, then 503")
            t = probe.now()
            os.kill(prom.proc.pid, signal.SIGCONT)
            again = probe.wait_for(200, timeout=30)
            timeline.append(f"continued at {t:.1f}s; served again at {again:.1f}s")
            time.sleep(2)

        # Throughout: health answered at once; the metric a positive value or a Status.
        health = [a for a in probe.answers if a.path == "/healthz"]
        slowest = max(a.seconds for a in health)
        assert all(a.code == 200 for a in health), [a for a in health if a.code != 200][:3]
        metric = [a for a in probe.answers if a.path == PATH]
        assert {a.code for a in metric} == {200, 503}
        values = [served_value(a.body) for a in metric if a.code == 200]
        assert min(values) > 0
        statuses = [a for a in metric if a.code == 503]
        assert all('"kind":"Status"' in a.body.replace(" ", "") for a in statuses)
        timeline.append(
            f"{len(health)} /healthz answers, slowest {slowest * 1000:.1f} ms; "
            f"{len(metric)} metric answers: {len(values)} values "
            f"({min(values):.3f}..{max(values):.3f}), {len(statuses)} Status 503"
        )
        slow = sorted(health, key=lambda a: -a.seconds)[:5]
        timeline.append(
            "slowest: " + ", ".join(f"{a.seconds * 1000:.0f} ms at {a.at:.1f}s" for a in slow)
        )
        # Health that waited on Prometheus would take its whole timeout (1 s) at least;
        # half of that leaves room for a CI machine running other tests beside this one
        # (a 158 ms answer once, all others under 10 ms), not for a wait.
        assert slowest < 0.5
        # Ready once its first cycle ended, and ready throughout every outage after: an
        # outage of Prometheus must not take the APIService's endpoints away.
        ready = [a for a in probe.answers if a.path == "/readyz"]
        first = next(i for i, a in enumerate(ready) if a.code == 200)
        assert all(a.code == 200 for a in ready[first:]), [a for a in ready if a.code != 200]

        # 4. SIGTERM with Prometheus hung mid-cycle: out within seconds, exit code 0.
        os.kill(prom.proc.pid, signal.SIGSTOP)
        time.sleep(STEP + 2)
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
        took = time.monotonic() - began
        timeline.append(f"SIGTERM with Prometheus hung: exit {code} after {took:.1f}s")
        assert code == 0 and took < 10
    finally:
        if proc.poll() is None:
            proc.kill()
        if prom.proc is not None:
            os.kill(prom.proc.pid, signal.SIGCONT)
            prom.stop()
        print("\n".join(timeline))
    text = log.read_text()
    # A line on entering and on leaving each degraded state.
    for line in (
        "current values unavailable",
        "current values available again",
        "cycle failed",
        "cycle succeeded again",
    ):
        assert line in text, f"no log line {line!r}:\n{text[-3000:]}"
    assert "Traceback" not in text
