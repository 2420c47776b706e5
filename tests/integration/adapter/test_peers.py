"""A new replica borrows a Ready peer's forecasts until its own first cycle ends, against
a real kube-apiserver v1.28 (the peer found in its Service's EndpointSlice, the request
authorized by SubjectAccessReview under the RBAC manifests/base ships) and a real
Prometheus, whose history queries reach the new replica only after a hold, as a slow
backfill of many series would."""

from __future__ import annotations

import os
import re
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from harness.aggregation import PEERS_SLICE, endpoint_slice, peer_rbac, registration, wait_ready
from harness.controlplane import ControlPlane
from harness.net import free_port
from harness.node import Bridge
from harness.pki import CA
from harness.proc import stop
from harness.prometheus import PrometheusServer
from tests.integration.adapter.test_secure import CHECKOUT, METRIC, start_secure, write_config

HOLD = 25.0
"""Seconds the new replica's history queries are held: its own first cycle cannot end
sooner, so whatever it serves before comes from its peer."""
HELD_TIMEOUT = "60s"
"""The new replica's Prometheus timeout: longer than the hold, so its first cycle ends."""


@contextmanager
def holding_history(upstream: str, hold: float) -> Iterator[str]:
    """A proxy in front of Prometheus that passes every call on, query_range calls only
    after `hold` seconds from its start; yields its URL."""
    opened = time.monotonic()
    client = httpx.Client(base_url=upstream, timeout=60)

    class Forward(BaseHTTPRequestHandler):
        def _pass(self) -> None:
            if self.path.startswith("/api/v1/query_range"):
                time.sleep(max(0.0, opened + hold - time.monotonic()))
            length = int(self.headers.get("content-length") or 0)
            answer = client.request(
                self.command,
                self.path,
                content=self.rfile.read(length) if length else None,
                headers={"content-type": self.headers.get("content-type", "")},
            )
            self.send_response(answer.status_code)
            self.send_header("content-type", answer.headers.get("content-type", ""))
            self.send_header("content-length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        do_GET = do_POST = _pass

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        client.close()


def wait_for_line(log: Path, text: str, timeout: float = 15) -> str:
    """The first line of `log` that holds `text`, once written."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [line for line in log.read_text().splitlines() if text in line]
        if lines:
            return lines[0]
        time.sleep(0.3)
    raise AssertionError(f"{log} has no line with {text!r}:\n{log.read_text()[-3000:]}")


def readyz(url: str, ca: Path) -> httpx.Response:
    context = ssl.create_default_context(cafile=str(ca))
    return httpx.get(f"{url}/readyz?verbose", verify=context, timeout=5)


def value(plane: ControlPlane, url: str, ca: Path) -> str:
    """The served value of checkout, asked as the aggregator asks for user "reader"."""
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(plane.front_proxy_client.cert, plane.front_proxy_client.key)
    answer = httpx.get(
        f"{url}{CHECKOUT}", headers={"X-Remote-User": "reader"}, verify=context, timeout=10
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["items"][0]["value"])


def agree(plane: ControlPlane, urls: tuple[str, str], ca: Path) -> str:
    """The value both replicas serve (asked again, up to five times, when a refresh of
    the current values fell between the two questions)."""
    seen = []
    for _ in range(5):
        a, b = (value(plane, url, ca) for url in urls)
        if a == b:
            return a
        seen.append((a, b))
        time.sleep(1)
    raise AssertionError(f"the replicas serve different values: {seen}")


@pytest.fixture
def bridge() -> Iterator[Bridge]:
    """An address of this machine the API server takes in an EndpointSlice (it refuses
    loopback): the gateway of a bridge of our own, in the benchmarking range."""
    try:
        claimed = Bridge.claim()
    except (OSError, subprocess.CalledProcessError) as err:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot make a bridge: {err}")
        pytest.skip(f"cannot make a bridge (needs root and iproute2): {err}")
    yield claimed
    claimed.release()


def test_a_new_replica_serves_its_peers_forecasts_until_its_own_first_cycle_ends(
    control_plane: ControlPlane, prometheus: PrometheusServer, bridge: Bridge, tmp_path: Path
):
    plane = control_plane
    lender_port, port, other_port = free_port(), free_port(), free_port()
    lender, new, other = (tmp_path / name for name in ("lender", "new", "other"))
    for root in (lender, new, other):
        root.mkdir()
    # The certificate the replicas share (as through the Secret scaleahead-certs).
    ca = CA("serving-ca", tmp_path / "pki")
    pair = ca.issue("shared", "scaleahead", hosts=("127.0.0.1", bridge.gateway), server=True)
    shared = ["--tls-cert-file", str(pair.cert), "--tls-private-key-file", str(pair.key)]
    lender_url = f"https://{bridge.gateway}:{lender_port}"
    url = f"https://127.0.0.1:{port}"
    plane.apply(registration(lender_port))
    plane.apply(peer_rbac())
    procs = [start_secure(plane, prometheus, lender, lender_port, shared, bind=bridge.gateway)]
    began = time.monotonic()
    try:
        wait_ready(lender_url, ca.cert, procs[0], lender / "scaleahead.log")
        plane.apply(endpoint_slice(bridge.gateway, lender_port, "lender"))
        with holding_history(prometheus.url, HOLD) as held:
            began = time.monotonic()
            config = write_config(new / "config.yaml", held, HELD_TIMEOUT)
            procs.append(start_secure(plane, prometheus, new, port, shared, config))
            # A replica with a certificate of its own, not the shared one, borrows nothing.
            own_cert = ["--cert-dir", str(other / "certs")]
            config = write_config(other / "config.yaml", held, HELD_TIMEOUT)
            procs.append(start_secure(plane, prometheus, other, other_port, own_cert, config))
            wait_ready(url, ca.cert, procs[1], new / "scaleahead.log", timeout=HOLD - 5)
            took = time.monotonic() - began
            verbose = readyz(url, ca.cert).text
            assert "borrowed from peer lender" in verbose, verbose
            served = agree(plane, (lender_url, url), ca.cert)
            log = (new / "scaleahead.log").read_text()
            assert re.search(
                rf"rule {METRIC}: serving \d+ forecasts borrowed from peer lender", log
            ), log[-3000:]
            refused = wait_for_line(other / "scaleahead.log", "peer lender lends no forecasts")
            assert "certificate verify failed" in refused, refused
            unready = readyz(f"https://127.0.0.1:{other_port}", other / "certs" / "ca.crt")
            assert unready.status_code == 503, unready.text  # it waits for its own cycle
            # Its own first cycle ends once the hold does; from then it serves its own.
            deadline = began + HOLD + 90
            while "borrowed" in (verbose := readyz(url, ca.cert).text):
                assert time.monotonic() < deadline, verbose
                time.sleep(1)
            own = agree(plane, (lender_url, url), ca.cert)
    finally:
        for proc in procs:
            stop(proc)
        plane.kubectl("delete", "endpointslice", "-n", "scaleahead", PEERS_SLICE, check=False)
    print(
        f"ready {took:.1f}s after its start, on borrowed forecasts (its history held "
        f"{HOLD:.0f}s); served {served} as the lender did; then its own: {own}"
    )
