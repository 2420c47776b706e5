"""The Grafana dashboard: the committed JSON is what Grafana's foundation SDK builds, and
every panel's queries return data from a real Prometheus scraping two real scaleahead
replicas that forecast a small real workload.

No Grafana server can be installed from the registries here, so the test does what
Grafana would do with the JSON: it resolves the variables with the same queries
(`label_values`, `query_result` and its regex), substitutes them, and runs every target.
kube-state-metrics cannot run here either; a fake exporter serves its HPA metrics in the
text format under their real names and labels.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

from forecaster.sources.trace import Trace
from harness.net import free_port, wait_http
from harness.prometheus import PrometheusServer, system_tool, write_blocks
from tests.conftest import REPO, clean_env, scaleahead_cmd

RULE = "web_requests_forecast"
LEAD, STEP = 10, 5
HORIZON = 45
"""Forecast TTL = horizon - lead - step = 30 s: more than the 10 s a point settles before
a cycle reads it plus the 5 s interval, so the series does not fall back between cycles
(with 30 s, TTL 15 s, it did: the forecast gauges at lead were then absent at times)."""
NAMESPACE, SERVICE = "shop", "web"
METRIC_PATH = f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{NAMESPACE}/{RULE}"
HISTORY = 30 * 3600  # past a day and an hour: old enough for the daily models
LIVE_MEAN = 40.0  # requests per second the workload's client makes on average
RATE_INTERVAL = "1m"  # Grafana's $__rate_interval for a data source scraped every 15s


def generator() -> Any:
    spec = importlib.util.spec_from_file_location("generate", REPO / "dashboards" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_json_is_what_the_sdk_builds():
    gen = generator()
    committed = gen.OUT.read_text()
    assert committed == gen.render(), "run: python dashboards/generate.py"
    # Grafana's own types read it back unchanged.
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models.dashboard import Dashboard

    register_default_plugins()
    again = Dashboard.from_json(json.loads(committed))
    reread = json.loads(gen.JSONEncoder(sort_keys=True).encode(again))
    assert _pruned(reread) == _pruned(json.loads(committed))
    ids = [p["id"] for p in json.loads(committed)["panels"]]
    assert len(ids) == len(set(ids))


def _pruned(value: Any) -> Any:
    """Without empty objects and lists (the SDK's reader adds empty `custom` objects)."""
    if isinstance(value, dict):
        kept = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in ({}, [])}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def serve_http(respond: Callable[[str], bytes]) -> ThreadingHTTPServer:
    """A loopback HTTP server, in a daemon thread, answering each GET with 200 and
    respond(path) in Prometheus' text format."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = respond(self.path)
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class Workload:
    """A small HTTP service counting its requests, and a client calling it at a rate that
    rises and falls over a minute."""

    def __init__(self) -> None:
        registry = CollectorRegistry()
        requests = Counter("http_requests", "Requests served.", registry=registry)

        def respond(path: str) -> bytes:
            if path == "/metrics":
                return generate_latest(registry)
            requests.inc()
            return b"ok\n"

        self.server = serve_http(respond)
        self.port = self.server.server_address[1]
        self.stopped = threading.Event()
        threading.Thread(target=self._load, daemon=True).start()

    def _load(self) -> None:
        started = time.monotonic()
        with httpx.Client(base_url=f"http://127.0.0.1:{self.port}") as client:
            while not self.stopped.is_set():
                t = time.monotonic() - started
                client.get("/")
                time.sleep(1.0 / (LIVE_MEAN + 25 * math.sin(2 * math.pi * t / 60)))

    def stop(self) -> None:
        self.stopped.set()
        self.server.shutdown()


class FakeKubeStateMetrics:
    """kube-state-metrics' HPA families for two HPAs: one on our rule, one on another
    metric (which the dashboard must leave out)."""

    def __init__(self) -> None:
        registry = CollectorRegistry()
        hpa = ["namespace", "horizontalpodautoscaler"]
        desired = Gauge(
            "kube_horizontalpodautoscaler_status_desired_replicas",
            "Desired number of replicas of pods managed by this autoscaler.",
            hpa,
            registry=registry,
        )
        current = Gauge(
            "kube_horizontalpodautoscaler_status_current_replicas",
            "Current number of replicas of pods managed by this autoscaler.",
            hpa,
            registry=registry,
        )
        target = Gauge(
            "kube_horizontalpodautoscaler_spec_target_metric",
            "The metric specifications used by this autoscaler when calculating the "
            "desired replica count.",
            [*hpa, "metric_name", "metric_target_type"],
            registry=registry,
        )
        for name, metric, want, have in (("web", RULE, 4, 3), ("batch", "queue_depth", 7, 7)):
            desired.labels(NAMESPACE, name).set(want)
            current.labels(NAMESPACE, name).set(have)
            target.labels(NAMESPACE, name, metric, "average").set(20)

        self.server = serve_http(lambda _: generate_latest(registry))
        self.port = self.server.server_address[1]


@dataclass
class Stack:
    prometheus: PrometheusServer
    replicas: list[str]  # scaleahead base URLs

    def query(self, path: str, **params: Any) -> Any:
        r = httpx.get(f"{self.prometheus.url}{path}", params=params, timeout=30)
        body = r.json()
        assert body["status"] == "success", body
        return body["data"]


def _scrape_config(scaleahead_ports: list[int], workload: int, ksm: int) -> str:
    def job(name: str, ports: list[int], labels: str = "", honor: bool = False) -> str:
        targets = ", ".join(f"'127.0.0.1:{p}'" for p in ports)
        text = f"  - job_name: {name}\n    honor_labels: {str(honor).lower()}\n"
        text += f"    static_configs:\n      - targets: [{targets}]\n"
        return text + (f"        labels: {labels}\n" if labels else "")

    return (
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n"
        # honor_labels: the series' own namespace and service are the workload's.
        + job("scaleahead", scaleahead_ports, honor=True)
        + job("web", [workload], f"{{namespace: {NAMESPACE}, service: {SERVICE}}}")
        + job("kube-state-metrics", [ksm], honor=True)
    )


def _backfill(data: Path, nasa: Trace) -> None:
    """The workload's past: HISTORY seconds of the NASA trace, scaled to the live load's
    mean, as the counter a 5s scrape would have recorded, ending now. The series is then
    old enough for the seasonal models and their backtest."""
    end = int(time.time()) // STEP * STEP
    minutes = HISTORY // 60
    counts = nasa.counts[10 * 1440 : 10 * 1440 + minutes]
    per_second = np.repeat(counts / counts.mean() * LIVE_MEAN, 60 // STEP)
    stamps = end - HISTORY + STEP * np.arange(1, len(per_second) + 1)
    totals = np.cumsum(per_second * STEP)
    labels = f'namespace="{NAMESPACE}",service="{SERVICE}",job="web",instance="backfill"'
    lines = ["# HELP http_requests Requests served.", "# TYPE http_requests counter"]
    lines += [
        f"http_requests_total{{{labels}}} {v:.3f} {t}"
        for t, v in zip(stamps.tolist(), totals.tolist(), strict=True)
    ]
    write_blocks(lines, data)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, nasa: Trace) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("dashboard")
    workload, ksm = Workload(), FakeKubeStateMetrics()
    ports = [free_port(), free_port()]
    config = root / "prometheus.yml"
    config.write_text(_scrape_config(ports, workload.port, ksm.port))
    _backfill(root / "data", nasa)
    prometheus = PrometheusServer(system_tool("prometheus"), root / "data", config, free_port(), 0)
    prometheus.start()
    scaleahead_config = root / "scaleahead.yaml"
    scaleahead_config.write_text(
        f"prometheus:\n  url: {prometheus.url}\n  timeout: 5s\n"
        "current:\n  interval: 2s\n  max_age: 15s\n"
        f"rules:\n  - name: {RULE}\n"
        "    query: 'sum by (namespace, service) "
        "(rate(http_requests_total{<<.LabelMatchers>>}[5s]))'\n"
        f"    step: {STEP}s\n    lead: {LEAD}s\n    horizon: {HORIZON}s\n    interval: {STEP}s\n"
        f"    history: {HISTORY}s\n"
        # A floor below the demand, active for 30 s (+ lead) of every minute: the
        # served-value panel draws it while it is active.
        "    schedules:\n      - {name: every-minute, cron: '* * * * *', time_zone: UTC,"
        " duration: 30s, floor: 1}\n"
    )
    procs = []
    for i, port in enumerate(ports):
        log = (root / f"scaleahead-{i}.log").open("wb")
        cmd = [*scaleahead_cmd(), "serve", "--config", str(scaleahead_config), "--port", str(port)]
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=clean_env()))
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    stack = Stack(prometheus, urls)
    try:
        for url in urls:
            wait_http(f"{url}/livez", timeout=60)
        _run_until_judged(stack)
        yield stack
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(15)
        prometheus.stop()
        workload.stop()
        ksm.server.shutdown()


def _run_until_judged(stack: Stack, timeout: float = 240) -> None:
    """Call the API as an HPA would (and as a confused client would), until Prometheus
    holds judged lead windows from both replicas and the forecasts of lead + step ago."""
    deadline = time.monotonic() + timeout
    judged: list[Any] = []
    while time.monotonic() < deadline:
        for url in stack.replicas:
            httpx.get(f"{url}{METRIC_PATH}", params={"labelSelector": f"service={SERVICE}"})
            httpx.get(f"{url}{METRIC_PATH}", params={"labelSelector": "service in (web"})  # 400
            httpx.get(f"{url}/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/nope")  # 404
        judged = stack.query(
            "/api/v1/query",
            query=f'scaleahead_series_lead_windows_total{{rule="{RULE}"}} > 0 '
            f"and on (instance) scaleahead_series_forecast_at_lead offset {LEAD + STEP}s",
        )["result"]
        if len(judged) == len(stack.replicas):
            time.sleep(5)  # a few more scrapes for rates
            return
        time.sleep(2)
    raise TimeoutError(f"no judged lead windows after {timeout}s: {judged}")


def _grafana_format(result: list[dict[str, Any]]) -> list[str]:
    """Grafana's query_result text per sample: name{labels} value timestamp_ms."""
    out = []
    for r in result:
        labels = dict(r["metric"])
        name = labels.pop("__name__", "")
        inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        t, v = r["value"]
        out.append(f"{name}{{{inner}}} {v} {int(float(t) * 1000)}")
    return out


def resolve_variables(stack: Stack, board: dict[str, Any]) -> dict[str, str]:
    """What Grafana would substitute, resolved in the dashboard's order."""
    values: dict[str, str] = {}
    for var in board["templating"]["list"]:
        name, kind = var["name"], var["type"]
        if kind in ("datasource", "adhoc"):
            continue  # the data source is this Prometheus; no ad hoc filter is set
        if kind == "custom":
            values[name] = var["current"]["value"]
            continue
        assert kind == "query", var
        q = substitute(var["query"], values)
        if m := re.fullmatch(r"label_values\((.+), (\w+)\)", q):
            options = stack.query(f"/api/v1/label/{m[2]}/values", **{"match[]": m[1]})
        elif m := re.fullmatch(r"query_result\((.+)\)", q):
            texts = _grafana_format(stack.query("/api/v1/query", query=m[1])["result"])
            pattern = re.compile(var["regex"].strip("/"))
            options = [hit[1] for t in texts if (hit := pattern.search(t))]
        else:
            raise AssertionError(f"variable {name}: unknown query {q}")
        assert options, f"variable {name} has no options: {q}"
        values[name] = RULE if name == "rule" else options[0]
        if name == "rule":
            assert RULE in options
    return values


def substitute(expr: str, values: dict[str, str]) -> str:
    expr = expr.replace("$__rate_interval", RATE_INTERVAL)
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(f"${{{name}}}", values[name]).replace(f"${name}", values[name])
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    return expr


def _wait_for_served_history(
    stack: Stack, board: dict[str, Any], values: dict[str, str], seconds: float
) -> None:
    """Sleep until the served value has been recorded for `seconds`, so that a range over
    it spans the every-minute schedule's inactive part as well as its active part."""
    [served_panel] = [p for p in board["panels"] if p["title"] == "Served value against actual"]
    expr = substitute(served_panel["targets"][0]["expr"], values)
    now = time.time()
    data = stack.query("/api/v1/query_range", query=expr, start=now - 300, end=now, step=1)
    first = min((float(s["values"][0][0]) for s in data["result"]), default=now)
    time.sleep(max(0.0, first + seconds - now))


def test_every_panel_returns_data(stack: Stack):
    board = json.loads((REPO / "dashboards" / "scaleahead.json").read_text())
    values = resolve_variables(stack, board)
    assert values["lead_step"] == str(LEAD + STEP)
    assert values["namespace"] == NAMESPACE
    _wait_for_served_history(stack, board, values, seconds=70)
    end = time.time()
    rows: list[tuple[str, str, int]] = []
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            expr = substitute(target["expr"], values)
            data = stack.query(
                "/api/v1/query_range", query=expr, start=end - 300, end=end, step=STEP
            )
            series = [s for s in data["result"] if any(v != "NaN" for _, v in s["values"])]
            rows.append((panel["title"], target["refId"], len(series)))
            results[(panel["title"], target["refId"])] = series
    width = max(len(t) for t, _, _ in rows)
    print("\npanel".ljust(width + 2), "query  series")
    for title, ref, n in rows:
        print(title.ljust(width + 1), ref.ljust(6), n)
    empty = [(t, r) for t, r, n in rows if n == 0]
    assert not empty, f"panels with no data: {empty}"

    # Two replicas export every series; the panels show each once.
    assert len(results[("Served value against actual", "A")]) == 1
    [floor] = results[("Served value against actual", "D")]
    assert floor["metric"]["schedule"] == "every-minute"
    # Present only while active: 30 s of every minute plus the lead before it.
    # A range query skips absent steps; the served value exists since the replicas started.
    [served] = results[("Served value against actual", "A")]
    present = len(floor["values"]) / len(served["values"])
    assert 0.3 < present < 0.95, (len(floor["values"]), len(served["values"]))
    # Only the HPA whose External metric is this rule.
    [desired] = results[("HPA replicas beside the served value", "A")]
    assert desired["metric"]["horizontalpodautoscaler"] == "web"
    codes = {s["metric"]["code"] for s in results[("API requests by route and code", "A")]}
    assert {"200", "400", "404"} <= codes
    coverage = [
        float(v) for _, v in results[("Peak coverage against the quantile", "A")][0]["values"]
    ]
    assert all(0.0 <= c <= 1.0 for c in coverage if not math.isnan(c))
    reasons = {s["metric"]["reason"] for s in results[("Series by fallback reason", "A")]}
    assert "forecast served" in reasons


def test_every_metric_the_alerts_read_is_exported(stack: Stack):
    """A renamed metric would leave an alert silently unable to fire."""
    from tests.integration.manifests.test_manifests import one, render

    rule = one(render("monitoring"), "PrometheusRule")
    exprs = " ".join(r["expr"] for g in rule["spec"]["groups"] for r in g["rules"])
    read = set(re.findall(r"\bscaleahead_[a-z_]+", exprs))
    exported = set(stack.query("/api/v1/label/__name__/values"))
    print(f"alerts read {sorted(read)}")
    assert read and read <= exported, sorted(read - exported)
