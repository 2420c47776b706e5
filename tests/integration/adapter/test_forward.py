"""Forwarding through the real aggregator of ../shared/k8s: scaleahead A owns the
APIService and serves its rule; scaleahead B (another rule, standing in for KEDA's metrics
server or prometheus-adapter) answers the metrics A does not serve, with the caller's
identity passed as the aggregator passes it. B down: 503 for its metrics only."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapter.forward import Answer, Forwarder
from adapter.security.identity import User
from forecaster.config import ForwardConfig
from harness.aggregation import registration, trust_and_wait, wait_ready
from harness.controlplane import ControlPlane
from harness.net import free_port
from harness.proc import stop
from harness.prometheus import PrometheusServer
from tests.conftest import RULE_QUERY, clean_env, scaleahead_cmd

GROUP_PATH = "/apis/external.metrics.k8s.io/v1beta1"
OURS = "http_requests_forecast"
THEIRS = "orders_forecast"


def path(metric: str, namespace: str = "default", selector: str = "service%3Dcheckout") -> str:
    return f"{GROUP_PATH}/namespaces/{namespace}/{metric}?labelSelector={selector}"


@dataclass
class Server:
    port: int
    root: Path
    proc: subprocess.Popen[bytes]

    @property
    def log(self) -> str:
        return (self.root / "scaleahead.log").read_text(encoding="utf-8")

    def stop(self) -> None:
        stop(self.proc)


def start(plane: ControlPlane, root: Path, config: str, port: int) -> Server:
    """`scaleahead serve` on its secure port as the scaleahead service account."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(config)
    token = plane.kubectl("create", "token", "scaleahead", "-n", "scaleahead").stdout.strip()
    proc = subprocess.Popen(
        [
            *scaleahead_cmd(),
            "serve",
            f"--config={root / 'config.yaml'}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={root / 'certs'}",
            f"--kubeconfig={plane.kubeconfig(f'sa-{root.name}', token=token)}",
            "--v=2",
        ],
        stdout=(root / "scaleahead.log").open("wb"),
        stderr=subprocess.STDOUT,
        env=clean_env(),
    )
    server = Server(port, root, proc)
    wait_ready(
        f"https://127.0.0.1:{port}", root / "certs" / "ca.crt", proc, root / "scaleahead.log"
    )
    return server


def rule_config(prometheus: PrometheusServer, name: str, forward: str = "") -> str:
    return (
        f"prometheus:\n  url: {prometheus.url}\n"
        f"rules:\n  - name: {name}\n    query: '{RULE_QUERY}'\n{forward}"
    )


@dataclass
class Pair:
    plane: ControlPlane
    ours: Server
    theirs: Server


@pytest.fixture(scope="module")
def pair(
    control_plane: ControlPlane, prometheus: PrometheusServer, tmp_path_factory
) -> Iterator[Pair]:
    root = tmp_path_factory.mktemp("forward")
    port = free_port()
    control_plane.apply(registration(port))  # the service account, its RBAC, the APIService
    theirs = start(control_plane, root / "theirs", rule_config(prometheus, THEIRS), free_port())
    # A front-proxy client certificate, as the aggregator's: the other server trusts it
    # through the request-header CA of kube-system/extension-apiserver-authentication.
    client = control_plane.front_proxy_ca.issue("forwarder", "front-proxy-client")
    forward = (
        f"forward:\n  url: https://localhost:{theirs.port}\n"
        f"  ca_file: {theirs.root / 'certs' / 'ca.crt'}\n"
        f"  client_cert_file: {client.cert}\n  client_key_file: {client.key}\n  timeout: 3s\n"
    )
    ours = None
    try:
        ours = start(control_plane, root / "ours", rule_config(prometheus, OURS, forward), port)
        trust_and_wait(control_plane, ours.root / "certs" / "ca.crt")
        yield Pair(control_plane, ours, theirs)
    finally:
        theirs.stop()
        if ours is not None:
            ours.stop()


def get_raw(plane: ControlPlane, url: str, *flags: str) -> subprocess.CompletedProcess[str]:
    done = plane.kubectl("get", "--raw", url, *flags, check=False)
    print(f"$ kubectl get --raw '{url}' {' '.join(flags)}\n{done.stdout}{done.stderr}")
    return done


def test_kubectl_reads_ours_and_theirs_through_the_aggregator(pair: Pair):
    discovery = json.loads(get_raw(pair.plane, GROUP_PATH).stdout)
    assert sorted(r["name"] for r in discovery["resources"]) == sorted([OURS, THEIRS])

    for metric in (OURS, THEIRS):
        body = json.loads(get_raw(pair.plane, path(metric)).stdout)
        assert body["kind"] == "ExternalMetricValueList"
        [item] = body["items"]
        assert item["metricName"] == metric  # answered by the server that serves it
        assert item["metricLabels"] == {"namespace": "default", "service": "checkout"}
        assert float(item["value"].rstrip("m")) > 0
    # Their errors come back as they wrote them.
    missing = get_raw(pair.plane, path(THEIRS, selector="service%3Dnothing"))
    assert missing.returncode != 0 and "NotFound" in missing.stderr + missing.stdout


def test_the_callers_identity_reaches_the_other_server(pair: Pair):
    """kubectl --as: the aggregator passes the user to us, we pass it on, and the other
    server authenticates it (request-header) and authorizes it (SubjectAccessReview)."""
    ok = get_raw(pair.plane, path(THEIRS), "--as=reader")
    assert ok.returncode == 0, ok.stderr
    assert f'user="reader" verb=GET path="{GROUP_PATH}/namespaces/default/{THEIRS}" code=200' in (
        pair.theirs.log
    )
    # Groups travel too: a user with no binding of its own, in system:masters.
    grouped = get_raw(pair.plane, path(THEIRS), "--as=someone", "--as-group=system:masters")
    assert grouped.returncode == 0, grouped.stderr
    assert 'user="someone" verb=GET' in pair.theirs.log
    # Denied here first: reader may not list external metrics in staging.
    denied = get_raw(pair.plane, path(THEIRS, namespace="staging"), "--as=reader")
    assert denied.returncode != 0 and "Forbidden" in denied.stderr
    assert f'path="{GROUP_PATH}/namespaces/staging/{THEIRS}"' not in pair.theirs.log


def test_identities_outside_ascii_are_authorized_here_and_passed_on(pair: Pair):
    """Read as Latin-1, `--as=josé` reached us as "josÃ©" and was denied although a
    RoleBinding names josé; forwarding `--as-group=équipe` was a 500."""
    pair.plane.apply(
        """
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: non-ascii-readers, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: external-metrics-reader}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: josé}
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: équipe}
"""
    )
    for metric in (OURS, THEIRS):
        done = get_raw(pair.plane, path(metric), "--as=josé")
        assert done.returncode == 0, done.stderr
    assert f'user="josé" verb=GET path="{GROUP_PATH}/namespaces/default/{OURS}" code=200' in (
        pair.ours.log
    )
    assert f'user="josé" verb=GET path="{GROUP_PATH}/namespaces/default/{THEIRS}" code=200' in (
        pair.theirs.log
    )
    grouped = get_raw(pair.plane, path(THEIRS), "--as=someone-else", "--as-group=équipe")
    assert grouped.returncode == 0, grouped.stderr
    assert 'user="someone-else" verb=GET' in pair.theirs.log


def test_with_a_bearer_token_the_other_server_sees_scaleahead(pair: Pair, tmp_path):
    """Where no front-proxy certificate can be had (managed control planes): scaleahead's
    own service-account token; the caller was authorized here before forwarding."""
    # Its own service account: the shared control plane's scaleahead account keeps no
    # RBAC for the metrics (other tests rely on that).
    pair.plane.apply(
        """
apiVersion: v1
kind: ServiceAccount
metadata: {name: forwarder, namespace: scaleahead}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: forwarder-reads-external-metrics, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: external-metrics-reader}
subjects: [{kind: ServiceAccount, name: forwarder, namespace: scaleahead}]
"""
    )
    token = pair.plane.kubectl("create", "token", "forwarder", "-n", "scaleahead").stdout
    (tmp_path / "token").write_text(token)
    config = ForwardConfig(
        url=f"https://localhost:{pair.theirs.port}",
        ca_file=pair.theirs.root / "certs" / "ca.crt",
        bearer_token_file=tmp_path / "token",
    )

    async def ask() -> Answer:
        forwarder = Forwarder(config)
        try:
            return await forwarder.metric(
                "external.metrics.k8s.io/v1beta1", "default", THEIRS, [], User("reader")
            )
        finally:
            await forwarder.close()

    answer = asyncio.run(ask())
    assert answer.code == 200, answer.body
    assert json.loads(answer.body)["items"][0]["metricName"] == THEIRS
    assert 'user="system:serviceaccount:scaleahead:forwarder" verb=GET' in pair.theirs.log


def _as_the_aggregator(pair: Pair, target: str, user: str) -> tuple[int, dict]:
    """GET `target` exactly as written, straight to ours over TLS with a front-proxy
    certificate and X-Remote-User: what the aggregator would pass on."""
    proxy = pair.plane.front_proxy_ca.issue("raw-proxy", "front-proxy-client")
    context = ssl.create_default_context(cafile=str(pair.ours.root / "certs" / "ca.crt"))
    context.check_hostname = False
    context.load_cert_chain(proxy.cert, proxy.key)
    raw = socket.create_connection(("127.0.0.1", pair.ours.port), timeout=30)
    with context.wrap_socket(raw) as sock:
        sock.sendall(
            f"GET {target} HTTP/1.1\r\nHost: x\r\nX-Remote-User: {user}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


@pytest.mark.parametrize("name", ["..", "%2e%2e", "orders%00", "orders%252Fx"])
def test_a_name_that_would_not_mean_itself_is_refused_before_it_is_authorized(
    pair: Pair, name: str
):
    """`..` was authorized as resource ".." and forwarded as the namespace list, a path
    never authorized. Now: 400 even for a user with no RBAC at all (not 403: the name is
    judged first), and the other server is never asked."""
    code, status = _as_the_aggregator(pair, f"{GROUP_PATH}/namespaces/default/{name}", "nobody")
    assert code == 400 and status["reason"] == "BadRequest", status
    assert "invalid resource" in status["message"]
    assert f'path="{GROUP_PATH}/namespaces"' not in pair.theirs.log
    assert f'path="{GROUP_PATH}/namespaces/default/' + "orders%" not in pair.theirs.log
    # The same door, a name that means itself: authorized, then judged by RBAC.
    code, status = _as_the_aggregator(pair, f"{GROUP_PATH}/namespaces/default/{THEIRS}", "nobody")
    assert code == 403 and status["reason"] == "Forbidden"


def test_the_other_server_down_is_503_for_its_metrics_only(pair: Pair):
    pair.theirs.stop()
    deadline = time.monotonic() + 30
    while True:
        down = get_raw(pair.plane, path(THEIRS))
        if down.returncode != 0:
            break
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert "ServiceUnavailable" in down.stderr or "503" in down.stderr, down.stderr
    direct = pair.plane.kubectl("get", "--raw", path(THEIRS), "-v=6", check=False)
    assert "503 Service Unavailable" in direct.stderr
    assert "gives no usable answer" in direct.stderr
    ours = get_raw(pair.plane, path(OURS))
    assert ours.returncode == 0 and json.loads(ours.stdout)["items"][0]["metricName"] == OURS
    # Discovery still lists what it last knew of theirs (cached), and ours.
    names = [r["name"] for r in json.loads(get_raw(pair.plane, GROUP_PATH).stdout)["resources"]]
    assert OURS in names
    assert "gives no usable answer" in pair.ours.log
