"""The forecaster process against a real Prometheus: its snapshots are the forecasts the
cycle makes in process (replicas agree); killed or hung, it is replaced while the last
forecasts are served, and /readyz?verbose, the log and a metric say so."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from adapter.forecasting.supervisor import ForecasterProcess
from adapter.forecasting.worker import WorkerSpec
from adapter.service import demo_source, prometheus_source
from forecaster.config import PrometheusConfig, Rule
from forecaster.runtime.cycle import ForecastCycle
from forecaster.runtime.demand import SeriesDemand
from forecaster.runtime.store import ForecastStore
from forecaster.sources.prometheus import PrometheusClient, PrometheusSource
from forecaster.times import SETTLE
from harness.net import free_port, wait_http
from harness.proc import alive, spawned
from harness.prometheus import PrometheusServer
from tests.integration.adapter.test_cli import running
from tests.integration.adapter.test_fit_workers import (  # noqa: F401 - a fixture
    HOURS,
    SERIES,
    many_series,
    metric_lines,
    served_values,
)
from tests.integration.manifests.test_install import wait_for

QUERY = "sum by (namespace, service) (rate(http_requests_total{<<.LabelMatchers>>}[1m]))"


def test_snapshots_are_the_in_process_forecasts_and_a_hung_process_is_replaced(
    many_series: PrometheusServer,  # noqa: F811
):
    rule = Rule(name="http_requests_forecast", query=QUERY, history=f"{HOURS}h")
    config = PrometheusConfig(url=many_series.url)
    store = ForecastStore()
    registry = CollectorRegistry()
    spec = WorkerSpec([rule], prometheus_source(config), fit_workers=0)
    supervisor = ForecasterProcess(spec, store, SeriesDemand([rule]), registry, hang=4)
    supervisor.start()
    try:
        first = wait_for("the first snapshot", lambda: store.snapshot(rule.name), timeout=120)
        assert len(first) == SERIES

        # The same forecasts as the cycle makes in this process at the same grid point.
        [end] = {int(f.ds[0]) - rule.step for f in first.values()}
        local = ForecastStore()
        source = PrometheusSource(PrometheusClient(config))
        ForecastCycle([rule], source, local).run(rule, end + SETTLE)
        here = local.snapshot(rule.name)
        assert here is not None and set(here) == set(first)
        for key, theirs in first.items():
            ours = here[key]
            assert ours.model == theirs.model
            np.testing.assert_array_equal(ours.point, theirs.point)
            np.testing.assert_array_equal(ours.upper, theirs.upper)
        assert supervisor.check().ok and not supervisor.check().degraded
        assert registry.get_sample_value("scaleahead_forecaster_up") == 1

        # Stopped (SIGSTOP): nothing heard for `hang` s, so killed and replaced; the store
        # keeps the last snapshot meanwhile.
        [pid] = spawned(os.getpid())
        os.kill(pid, signal.SIGSTOP)
        wait_for(
            "the hung process replaced",
            lambda: registry.get_sample_value(
                "scaleahead_forecaster_restarts_total", {"reason": "hung"}
            ),
            timeout=30,
        )
        assert store.snapshot(rule.name) is first
        check = supervisor.check()
        assert check.ok and check.degraded and "hung" in check.detail, check
        assert registry.get_sample_value("scaleahead_forecaster_up") == 0
        wait_for("a new snapshot", lambda: store.snapshot(rule.name) is not first, timeout=120)
        assert not supervisor.check().degraded
        assert pid not in spawned(os.getpid())
        assert (
            registry.get_sample_value("scaleahead_forecaster_restarts_total", {"reason": "died"})
            == 0
        )
        replacement = spawned(os.getpid())
    finally:
        supervisor.stop()
    assert not [pid for pid in replacement if alive(pid)]


def _serving(server: PrometheusServer, tmp_path: Path) -> tuple[list[str], str, Path]:
    """`scaleahead serve`'s arguments for one rule over `server`'s series, on a free
    port; its base URL, and the file for its log."""
    config = tmp_path / "scaleahead.yaml"
    config.write_text(
        f"prometheus:\n  url: {server.url}\n"
        f"rules:\n  - name: http_requests_forecast\n    query: '{QUERY}'\n"
        f"    history: {HOURS}h\n"
    )
    port = free_port()
    args = ["serve", "--config", str(config), "--port", str(port)]
    return args, f"http://127.0.0.1:{port}", tmp_path / "scaleahead.log"


def _await_replacement(base: str, log: Path) -> None:
    """Until a new forecaster process has delivered its first snapshot."""
    wait_for(
        "the replacement's first snapshot",
        lambda: (
            "[+]forecaster ok"
            in httpx.get(f"{base}/readyz", params={"verbose": "1"}, timeout=5).text
        ),
        timeout=120,
        logs=[log],
    )


def test_serve_survives_its_forecaster_process_being_killed(
    many_series: PrometheusServer,  # noqa: F811
    tmp_path: Path,
):
    args, base, log = _serving(many_series, tmp_path)

    def all_forecast() -> bool:
        lines = metric_lines(base, "scaleahead_series_fallback{")
        return len(lines) == SERIES and all(line.endswith(" 0.0") for line in lines)

    with running(args, log) as proc:
        wait_http(f"{base}/healthz", timeout=60)
        wait_for(
            "ready",
            lambda: httpx.get(f"{base}/readyz", timeout=5).status_code == 200,
            timeout=120,
            logs=[log],
        )
        assert all_forecast()
        before = served_values(base)
        assert min(before) > 0
        [forecaster] = spawned(proc.pid)

        os.kill(forecaster, signal.SIGKILL)
        wait_for("the death logged", lambda: "the forecaster process died" in log.read_text(), 10)
        # Served on from the last snapshot: every series from its forecast, never 0.
        ready = httpx.get(f"{base}/readyz", params={"verbose": "1"}, timeout=5)
        assert ready.status_code == 200, ready.text
        assert "[+]forecaster degraded: the forecaster process died" in ready.text, ready.text
        assert all_forecast()
        assert min(served_values(base)) > 0
        [restarts] = metric_lines(base, 'scaleahead_forecaster_restarts_total{reason="died"}')
        assert restarts.endswith(" 1.0"), restarts

        # Replaced: a new process forecasts again and the check is clean.
        _await_replacement(base, log)
        [replacement] = spawned(proc.pid)
        assert replacement != forecaster
        assert all_forecast()
        # The cycle's metrics come from the forecaster process (with a heartbeat, every
        # worker.FULL_EVERY of them).
        wait_for("the cycle's metrics", lambda: metric_lines(base, "scaleahead_cycle_series{"), 30)
        [series] = metric_lines(base, "scaleahead_cycle_series{")
        assert series.endswith(f" {float(SERIES)}"), series
        left = [replacement, *spawned(replacement)]  # with its fitting workers
        assert len(left) > 1, "no fitting worker started"
    assert proc.returncode == 0, log.read_text()[-3000:]
    wait_for("no process left", lambda: not [pid for pid in left if alive(pid)], timeout=10)


@pytest.mark.parametrize("after", [0.0, 0.3, 1.0, 3.0])
def test_a_stop_at_any_moment_of_its_start_leaves_no_process(after: float):
    """Stopped while it was still importing, the process had no group to kill yet and
    lived on, and the serving process' exit waited on it for good."""
    rule = Rule(name="http_requests_forecast", query=QUERY)
    spec = WorkerSpec([rule], demo_source, fit_workers=0)
    supervisor = ForecasterProcess(spec, ForecastStore(), SeriesDemand([rule]), CollectorRegistry())
    supervisor.start()
    time.sleep(after)
    started = [pid for pid in spawned(os.getpid()) if alive(pid)]
    began = time.monotonic()
    supervisor.stop()
    assert time.monotonic() - began < 10
    assert not [pid for pid in started if alive(pid)]
    assert not [pid for pid in spawned(os.getpid()) if alive(pid)]
    assert multiprocessing.active_children() == []  # nothing for the exit to join


def test_a_replaced_forecaster_process_resumes_from_the_state_dir(
    many_series: PrometheusServer,  # noqa: F811
    tmp_path: Path,
):
    args, base, log = _serving(many_series, tmp_path)
    checkpoint = tmp_path / "state" / "http_requests_forecast.checkpoint"
    with running([*args, "--state-dir", str(tmp_path / "state")], log) as proc:
        wait_http(f"{base}/healthz", timeout=60)
        wait_for("the first checkpoint", checkpoint.exists, timeout=180, logs=[log])
        assert "resumed" not in log.read_text()
        [forecaster] = spawned(proc.pid)
        os.kill(forecaster, signal.SIGKILL)
        wait_for("the death logged", lambda: "the forecaster process died" in log.read_text(), 10)
        _await_replacement(base, log)
        assert min(served_values(base)) > 0
    # The replacement took up the history and fits its predecessor saved.
    text = log.read_text()
    assert f"rule http_requests_forecast: resumed {SERIES} series from the checkpoint" in text
    assert proc.returncode == 0, text[-3000:]
