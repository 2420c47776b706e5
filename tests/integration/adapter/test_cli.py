"""The `scaleahead` command as users run it: real processes, real kubectl, real TLS."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest

from harness.net import free_port, wait_http
from harness.proc import stop
from harness.prometheus import PrometheusServer
from tests.conftest import RULE_QUERY, clean_env, scaleahead_cmd
from tests.integration.conftest import write_kubeconfig

METRIC_PATH = "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/http_requests_forecast"


@contextmanager
def running(
    args: list[str], log: Path, wrapper: tuple[str, ...] = ()
) -> Iterator[subprocess.Popen[bytes]]:
    """`scaleahead` with `args` (run under the command `wrapper`, if any), its output in
    `log`, stopped on leaving."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*wrapper, *scaleahead_cmd(), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=clean_env(),
        )
        try:
            yield proc
        finally:
            stop(proc)


def write_config(path: Path, prometheus_url: str, **rule: str) -> Path:
    extra = "".join(f"    {k}: {v}\n" for k, v in rule.items())
    path.write_text(
        f"prometheus:\n  url: {prometheus_url}\n  timeout: 5s\n"
        "rules:\n"
        "  - name: http_requests_forecast\n"
        f"    query: '{RULE_QUERY}'\n" + extra
    )
    return path


def test_demo_serves_a_forecast_within_30s(tmp_path):
    port = free_port()
    started = time.monotonic()
    with running(["serve", "--port", str(port)], tmp_path / "log") as proc:
        url = f"http://127.0.0.1:{port}{METRIC_PATH}?labelSelector=service%3Dnasa-http"
        body = None
        while time.monotonic() - started < 30 and proc.poll() is None:
            try:
                r = httpx.get(url, timeout=2)
                if r.status_code == 200:
                    body = r.json()
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        elapsed = time.monotonic() - started
        log = (tmp_path / "log").read_text()
    assert body is not None, f"no forecast within 30 s; log:\n{log}"
    print(f"demo served its first forecast {elapsed:.1f}s after start")
    [item] = body["items"]
    assert item["metricLabels"] == {"namespace": "default", "service": "nasa-http"}
    assert float(item["value"].rstrip("m")) > 0
    # The banner names the URL, the metric and a curl that works.
    assert f"http://127.0.0.1:{port}" in log
    assert "http_requests_forecast" in log
    assert (
        f"curl -s 'http://127.0.0.1:{port}{METRIC_PATH}?labelSelector=service%3Dnasa-http'" in log
    )
    assert "PLAIN HTTP" in log


def test_kubectl_reads_discovery_and_metric(tmp_path, prometheus: PrometheusServer, kubectl):
    config = write_config(tmp_path / "config.yaml", prometheus.url)
    port = free_port()
    with running(["serve", "--config", str(config), "--port", str(port)], tmp_path / "log"):
        wait_http(f"http://127.0.0.1:{port}/readyz", timeout=60)
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{port}")

        def kubectl_raw(path: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [kubectl, "--kubeconfig", str(kubeconfig), "get", "--raw", path],
                capture_output=True,
                text=True,
                timeout=30,
                stdin=subprocess.DEVNULL,
            )

        resources = json.loads(kubectl_raw("/apis/external.metrics.k8s.io/v1beta1").stdout)
        assert [r["name"] for r in resources["resources"]] == ["http_requests_forecast"]
        got = kubectl_raw(f"{METRIC_PATH}?labelSelector=service%3Dcheckout")
        assert got.returncode == 0, got.stderr
        [item] = json.loads(got.stdout)["items"]
        assert item["metricLabels"] == {"namespace": "default", "service": "checkout"}
        # kubectl surfaces our Status errors as the API server's would be.
        missing = kubectl_raw(f"{METRIC_PATH}?labelSelector=service%3Dnone")
        assert missing.returncode != 0
        assert "Error from server (NotFound): no series" in missing.stderr
        bad = kubectl_raw(f"{METRIC_PATH}?labelSelector=service%20in%20%28a")
        assert bad.returncode != 0
        assert "Error from server (BadRequest): invalid labelSelector" in bad.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["serve", "--bind-address", "0.0.0.0"], "only served on loopback"),
        (["serve", "--tls-cert-file", "/nonexistent.crt"], "--tls-private-key-file"),
        (["serve", "--secure-port", "6443"], "--secure-port needs a certificate"),
        (["serve", "--config", "/nonexistent.yaml"], "/nonexistent.yaml: cannot read"),
        (["serve", "--state-dir", "/tmp"], "--state-dir: /tmp must be owned by this user"),
    ],
)
def test_serve_refuses_bad_flags(args, needle):
    got = subprocess.run(
        scaleahead_cmd() + args, capture_output=True, text=True, timeout=60, env=clean_env()
    )
    assert got.returncode == 2
    assert needle in got.stderr


def test_a_port_taken_is_an_error_naming_it_and_no_banner():
    """The banner said "serving ... try: curl" before the port was bound, then the
    process exited 3."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        got = subprocess.run(
            [*scaleahead_cmd(), "serve", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            env=clean_env(),
        )
    assert got.returncode == 2, got.stderr
    assert f"scaleahead: cannot listen on 127.0.0.1:{port}" in got.stderr
    assert "address already in use" in got.stderr.lower()
    assert "serving the external metrics API" not in got.stdout


def test_v2_logs_every_request_over_plain_http_too(tmp_path):
    """The access log lived in the TLS guard: `--v 2` logged nothing over plain HTTP."""
    port = free_port()
    with running(["serve", "--port", str(port), "--v", "2"], tmp_path / "log"):
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
        assert httpx.get(f"http://127.0.0.1:{port}/apis/nothing", timeout=5).status_code == 404
        deadline = time.monotonic() + 10
        while 'path="/apis/nothing" code=404' not in (tmp_path / "log").read_text():
            assert time.monotonic() < deadline, (tmp_path / "log").read_text()
            time.sleep(0.1)
    text = (tmp_path / "log").read_text()
    assert 'INFO scaleahead.access: user="" verb=GET path="/healthz" code=200 latency=' in text


def test_version():
    got = subprocess.run(
        [*scaleahead_cmd(), "--version"], capture_output=True, text=True, timeout=60
    )
    assert got.returncode == 0
    assert got.stdout.strip() == f"scaleahead {version('scaleahead')}"


def test_unreachable_prometheus_at_start_leaves_it_alive_and_then_ready(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    config = write_config(tmp_path / "c.yaml", url)
    port = free_port()
    with running(["serve", "--config", str(config), "--port", str(port)], tmp_path / "log") as p:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until the first attempts (with retries) failed
            ready = httpx.get(f"http://127.0.0.1:{port}/readyz?verbose", timeout=5)
            if ready.status_code == 200:
                break
            # Meanwhile its first cycle is still trying: not ready yet, and why.
            assert "its first forecast cycle has not ended yet" in ready.text
            time.sleep(0.5)
        assert p.poll() is None  # a Prometheus restart must not crash-loop scaleahead
        metric = httpx.get(f"http://127.0.0.1:{port}{METRIC_PATH}", timeout=5)
    # Its first cycle has ended (failed): it answers, so it is ready, and says what is
    # wrong; going NotReady would take the APIService down with Prometheus.
    assert ready.status_code == 200
    assert "[+]rule/http_requests_forecast degraded: no forecast cycle has succeeded" in ready.text
    assert url in ready.text
    assert metric.status_code == 503 and metric.json()["kind"] == "Status"


def test_a_restart_with_a_state_dir_takes_up_its_history_and_fits(
    tmp_path, prometheus: PrometheusServer
):
    config = write_config(tmp_path / "config.yaml", prometheus.url)
    state = tmp_path / "state"
    checkpoint = state / "http_requests_forecast.checkpoint"
    logs, values = [], []
    for k in range(2):
        port, log = free_port(), tmp_path / f"log{k}"
        args = ["serve", "--config", str(config), "--port", str(port), "--state-dir", str(state)]
        with running(args, log):
            wait_http(f"http://127.0.0.1:{port}/readyz", timeout=60)
            got = httpx.get(f"http://127.0.0.1:{port}{METRIC_PATH}", timeout=5)
            assert got.status_code == 200, got.text
            values.append(len(got.json()["items"]))
            deadline = time.monotonic() + 60
            while not checkpoint.exists() and time.monotonic() < deadline:
                time.sleep(0.2)  # written by the forecaster process after its first cycle
            assert checkpoint.exists()
        logs.append(log.read_text())
    assert state.stat().st_mode & 0o777 == 0o700 and checkpoint.stat().st_mode & 0o777 == 0o600
    assert "resumed" not in logs[0]
    assert values[0] >= 2 and values[1] == values[0]
    assert re.search(r"rule http_requests_forecast: resumed [1-9]\d* series from the", logs[1])


def test_a_bad_certificate_is_refused_at_start_naming_the_file(tmp_path):
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    key.write_text("garbage")
    got = subprocess.run(
        [
            *scaleahead_cmd(),
            "serve",
            "--tls-cert-file",
            str(cert),
            "--tls-private-key-file",
            str(key),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )
    assert got.returncode == 2
    assert f"--tls-cert-file {cert}: not a PEM certificate" in got.stderr
    assert "Traceback" not in got.stderr


def test_a_half_sent_request_is_cut_off(tmp_path):
    """Slowloris: a connection that never finishes its request head is closed."""
    port = free_port()
    with running(["serve", "--port", str(port)], tmp_path / "log"):
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            started = time.monotonic()
            assert sock.recv(1024) == b""  # the server closed it
            waited = time.monotonic() - started
        assert 5 < waited < 20
        # Healthy clients are served all the while.
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        # Once ready, what the first cycles left alive is frozen out of garbage collection
        # (a second time: the first freeze, before the port opened, says so apart).
        wait_http(f"http://127.0.0.1:{port}/readyz", timeout=60)
        log = tmp_path / "log"
        deadline = time.monotonic() + 10
        while "once every rule had forecasts" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
    assert "froze" in log.read_text().split("before the port opens")[0]
