"""The forecast-only recipes: a real Prometheus scrapes a running scaleahead (the demo),
and the PromQL of the KEDA Prometheus trigger and of the prometheus-adapter rule, taken
from the shipped examples, returns the value scaleahead's API serves."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import yaml

from forecaster.sources.trace import DEMO_LABELS
from harness.net import free_port, wait_http
from harness.prometheus import system_tool
from tests.conftest import REPO, clean_env, parse_quantity
from tests.integration.manifests.test_manifests import one, render

METRIC = "http_requests_forecast"


@dataclass
class Running:
    api: str
    prometheus: str


@pytest.fixture(scope="module")
def running(tmp_path_factory) -> Iterator[Running]:
    root = tmp_path_factory.mktemp("recipes")
    api_port, prom_port = free_port(), free_port()
    log = (root / "serve.log").open("wb")
    serve = subprocess.Popen(
        [sys.executable, "-m", "adapter.cli", "serve", f"--port={api_port}"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=clean_env(),
        cwd=REPO,
    )
    # As the shipped ServiceMonitor does: honor the series' own namespace label.
    (root / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: scaleahead\n"
        "    honor_labels: true\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{api_port}']}}]\n"
    )
    prometheus = subprocess.Popen(
        [
            system_tool("prometheus"),
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(root / "prometheus.log").open("wb"),
    )
    api = f"http://127.0.0.1:{api_port}"
    try:
        wait_http(f"{api}/readyz", timeout=120)
        wait_http(f"http://127.0.0.1:{prom_port}/-/ready", timeout=60)
        yield Running(api, f"http://127.0.0.1:{prom_port}")
    finally:
        for proc in (serve, prometheus):
            proc.terminate()
            proc.wait(timeout=30)


def promql(running: Running, query: str) -> list[float]:
    resp = httpx.get(f"{running.prometheus}/api/v1/query", params={"query": query}, timeout=10)
    resp.raise_for_status()
    return [float(r["value"][1]) for r in resp.json()["data"]["result"]]


def served(running: Running) -> float:
    """What the external metrics API serves for the demo series right now."""
    resp = httpx.get(
        f"{running.api}/apis/external.metrics.k8s.io/v1beta1/namespaces/default/{METRIC}",
        params={"labelSelector": f"service={DEMO_LABELS['service']}"},
        timeout=10,
    )
    [item] = resp.json()["items"]
    return parse_quantity(item["value"])


def agrees(running: Running, query: str) -> tuple[list[float], float]:
    """The query's result and the served value, read until a scrape shows the value the
    API serves (the value changes at each step; a scrape may predate the change)."""
    deadline = time.monotonic() + 60
    while True:
        result, value = promql(running, query), served(running)
        if len(result) == 1 and abs(result[0] - value) <= 0.001:
            return result, value
        assert time.monotonic() < deadline, f"{query} gives {result}, the API serves {value}"
        time.sleep(0.5)


def for_demo(query: str) -> str:
    """The recipe's query for the demo's series (service nasa-http, not checkout)."""
    return query.replace('service="checkout"', f'service="{DEMO_LABELS["service"]}"')


def test_the_keda_prometheus_trigger_reads_the_served_value(running):
    scaled = one(render("examples/forecast-only/keda"), "ScaledObject")
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    meta = trigger["metadata"]
    assert meta["ignoreNullValues"] == "false"  # an outage is an error, never a 0
    assert f'namespace="{scaled["metadata"]["namespace"]}"' in meta["query"]
    result, value = agrees(running, for_demo(meta["query"]))
    print(f"{for_demo(meta['query'])} = {result}; the API serves {value}")
    assert value > 0


def test_the_prometheus_adapter_rule_serves_the_served_value(running):
    docs = render("examples/forecast-only/prometheus-adapter")
    config = yaml.safe_load(one(docs, "ConfigMap")["data"]["config.yaml"])
    [rule] = config["externalRules"]
    hpa = one(docs, "HorizontalPodAutoscaler")
    metric = hpa["spec"]["metrics"][0]["external"]["metric"]
    # The adapter's discovery: the series query finds the series, and the name rule maps
    # it to the metric the HPA asks for.
    found = httpx.get(
        f"{running.prometheus}/api/v1/series", params={"match[]": rule["seriesQuery"]}
    ).json()["data"]
    names = {s["__name__"] for s in found}
    assert names == {"scaleahead_series_served"}
    assert re.sub(rule["name"]["matches"], rule["name"]["as"], names.pop()) == metric["name"]
    # The adapter's query for the HPA: its selector's labels and its namespace as matchers.
    labels = {**metric["selector"]["matchLabels"], "service": DEMO_LABELS["service"]}
    matchers = ",".join(f'{k}="{v}"' for k, v in sorted({**labels, "namespace": "default"}.items()))
    query = (
        rule["metricsQuery"]
        .replace("<<.GroupBy>>", "namespace")
        .replace("<<.LabelMatchers>>", matchers)
    )
    result, value = agrees(running, query)
    print(f"{query} = {result}; the API serves {value}")
    assert value > 0
