"""Forwarding asks the other server for exactly the metric the caller named, by a URL
built from validated parts, and takes at most MAX_ANSWER bytes of its answer (issue 29,
item 6). The real server on loopback, forwarding to a recording HTTPS server that says
what it was asked and can answer 50 MB."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from adapter.forward import MAX_ANSWER
from harness.net import free_port, wait_http
from harness.pki import CA, Pair
from harness.proc import rss_kib
from harness.prometheus import PrometheusServer
from tests.integration.adapter.test_cli import running, write_config

GROUP_PATH = "/apis/external.metrics.k8s.io/v1beta1"
HUGE = 50 * 2**20


@dataclass
class Upstream:
    """An HTTPS server on loopback that records each request target as it arrived."""

    port: int
    ca: Path
    client: Pair  # a certificate to present, as the aggregator's front-proxy one
    targets: list[str] = field(default_factory=list)
    written: dict[str, int] = field(default_factory=dict)


def _handler(upstream: Upstream) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            upstream.targets.append(self.path)
            metric = self.path.partition("?")[0].rsplit("/", 1)[-1]
            if metric.startswith("huge"):
                self._huge(metric)
                return
            body = json.dumps(
                {
                    "kind": "ExternalMetricValueList",
                    "apiVersion": "external.metrics.k8s.io/v1beta1",
                    "metadata": {},
                    "items": [{"metricName": metric, "metricLabels": {}, "value": "1"}],
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _huge(self, metric: str) -> None:
            """50 MB, announced by Content-Length (huge_sized) or not (huge_unsized)."""
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            if metric == "huge_sized":
                self.send_header("Content-Length", str(HUGE))
            self.end_headers()
            chunk = b" " * 2**16
            written = 0
            try:
                while written < HUGE:
                    self.wfile.write(chunk)
                    written += len(chunk)
            except OSError:
                pass
            upstream.written[metric] = upstream.written.get(metric, 0) + written
            self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    root = tmp_path_factory.mktemp("upstream")
    ca = CA("upstream-ca", root)
    pair = ca.issue("server", "localhost", hosts=("localhost",), client=False, server=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pair.cert, pair.key)
    port = free_port()
    found = Upstream(port, ca.cert, ca.issue("client", "front-proxy-client"))
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(found))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield found
    server.shutdown()
    server.server_close()


@dataclass
class Forwarding:
    port: int
    pid: int
    upstream: Upstream


@pytest.fixture(scope="module")
def forwarding(
    upstream: Upstream, prometheus: PrometheusServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Forwarding]:
    root = tmp_path_factory.mktemp("forwarding")
    config = write_config(root / "config.yaml", prometheus.url)
    config.write_text(
        config.read_text()
        + f"forward:\n  url: https://localhost:{upstream.port}\n  ca_file: {upstream.ca}\n"
        + f"  client_cert_file: {upstream.client.cert}\n"
        + f"  client_key_file: {upstream.client.key}\n"
    )
    port = free_port()
    with running(["serve", f"--config={config}", "--port", str(port)], root / "log") as proc:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
        yield Forwarding(port, proc.pid, upstream)


def raw_get(port: int, target: str) -> tuple[int, dict]:
    """GET `target` exactly as written (no client normalizing it); the code and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("orders%00", r'may not contain "\u0000"'),
        ("..", "may not be empty, '.' or '..'"),
        ("%2e%2e", "may not be empty, '.' or '..'"),
        ("%2E", "may not be empty, '.' or '..'"),
        ("orders%252Fx", 'may not contain "%"'),
        ("orders%0D%0Ax", r'may not contain "\r"'),
    ],
)
def test_a_name_that_would_not_mean_itself_upstream_is_a_400_and_never_forwarded(
    forwarding: Forwarding, name: str, why: str
):
    before = len(forwarding.upstream.targets)
    code, status = raw_get(forwarding.port, f"{GROUP_PATH}/namespaces/default/{name}")
    assert code == 400 and status["kind"] == "Status" and status["reason"] == "BadRequest"
    assert why in status["message"], status["message"]
    assert status["message"].startswith("invalid metric name")
    assert forwarding.upstream.targets[before:] == []


@pytest.mark.parametrize("name", ["orders", "caf%C3%A9", "orders:eu", "a%20b", "x+y", "a..b"])
def test_the_upstream_is_asked_for_exactly_the_name_and_selector_given(
    forwarding: Forwarding, name: str
):
    before = len(forwarding.upstream.targets)
    code, body = raw_get(
        forwarding.port,
        f"{GROUP_PATH}/namespaces/default/{name}?labelSelector=service%3Dcheckout&limit=5",
    )
    assert code == 200, body
    # Only the label selector goes with it: the external metrics API takes no other option.
    assert forwarding.upstream.targets[before:] == [
        f"{GROUP_PATH}/namespaces/default/{name}?labelSelector=service%3Dcheckout"
    ]


@pytest.mark.parametrize("metric", ["huge_sized", "huge_unsized"])
def test_an_answer_over_the_cap_is_a_503_and_is_not_read(forwarding: Forwarding, metric: str):
    """Five 50 MB answers took RSS from 683 to 1,207 MB when every answer was read whole."""
    rss = rss_kib(forwarding.pid)
    for _ in range(5):
        code, status = raw_get(forwarding.port, f"{GROUP_PATH}/namespaces/default/{metric}")
        assert code == 503 and status["reason"] == "ServiceUnavailable"
        assert f"more than {MAX_ANSWER:,} bytes" in status["message"]
    grown = (rss_kib(forwarding.pid) - rss) / 1024
    print(f"{metric}: RSS grew {grown:.1f} MiB over 5 answers of {HUGE // 2**20} MiB")
    assert grown < 5 * MAX_ANSWER / 2**20
    # Refused as soon as known: the upstream could not write most of what it had.
    assert forwarding.upstream.written[metric] < 5 * (MAX_ANSWER + 8 * 2**20)
    # The server still answers others at once.
    assert raw_get(forwarding.port, f"{GROUP_PATH}/namespaces/default/orders")[0] == 200
