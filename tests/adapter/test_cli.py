"""The `scaleahead` command as users run it: real processes, real kubectl, real TLS."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    RULE_QUERY,
    PrometheusServer,
    clean_env,
    free_port,
    scaleahead_cmd,
    wait_http,
    write_kubeconfig,
)

METRIC_PATH = "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/http_requests_forecast"


@contextmanager
def running(args: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            scaleahead_cmd() + args, stdout=out, stderr=subprocess.STDOUT, env=clean_env()
        )
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


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


def make_cert(dir: Path) -> tuple[Path, Path, Path]:
    """A CA and a serving certificate for 127.0.0.1 signed by it (openssl CLI)."""
    ca_key, ca, key, csr, cert = (
        dir / n for n in ("ca.key", "ca.crt", "tls.key", "tls.csr", "tls.crt")
    )
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    run(
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=scaleahead-test-ca",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
    )
    run(
        "openssl",
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=scaleahead",
        "-keyout",
        str(key),
        "-out",
        str(csr),
    )
    ext = dir / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run(
        "openssl",
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        str(ext),
        "-out",
        str(cert),
    )
    return ca, cert, key


def test_tls_serving_with_kubectl(tmp_path, prometheus: PrometheusServer, kubectl):
    ca, cert, key = make_cert(tmp_path)
    config = write_config(tmp_path / "config.yaml", prometheus.url)
    port = free_port()
    args = [
        "serve",
        "--config",
        str(config),
        "--bind-address",
        "127.0.0.1",
        "--secure-port",
        str(port),
        "--tls-cert-file",
        str(cert),
        "--tls-private-key-file",
        str(key),
    ]
    with running(args, tmp_path / "log"):
        wait_http(f"https://127.0.0.1:{port}/readyz", timeout=60)
        with pytest.raises(httpx.HTTPError):  # plain HTTP is not served on that port
            httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
        kubeconfig = write_kubeconfig(tmp_path / "kc", f"https://127.0.0.1:{port}", ca_file=ca)
        got = subprocess.run(
            [
                kubectl,
                "--kubeconfig",
                str(kubeconfig),
                "get",
                "--raw",
                f"{METRIC_PATH}?labelSelector=service%3Dsearch",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
        assert got.returncode == 0, got.stderr
        assert json.loads(got.stdout)["items"][0]["metricLabels"]["service"] == "search"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["serve", "--bind-address", "0.0.0.0"], "only served on loopback"),
        (["serve", "--tls-cert-file", "/nonexistent.crt"], "--tls-private-key-file"),
        (["serve", "--secure-port", "6443"], "--secure-port needs --tls-cert-file"),
        (["serve", "--config", "/nonexistent.yaml"], "/nonexistent.yaml: cannot read"),
    ],
)
def test_serve_refuses_bad_flags(args, needle):
    got = subprocess.run(
        scaleahead_cmd() + args, capture_output=True, text=True, timeout=60, env=clean_env()
    )
    assert got.returncode == 2
    assert needle in got.stderr


def test_unreachable_prometheus_at_start_names_the_url(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    config = write_config(tmp_path / "c.yaml", url)
    got = subprocess.run(
        [*scaleahead_cmd(), "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(),
    )
    assert got.returncode == 2
    assert f"{config}: prometheus.url" in got.stderr and url in got.stderr
