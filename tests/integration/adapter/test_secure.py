"""The secure port against a real kube-apiserver v1.28: registered as the APIService with
the caBundle from its --cert-dir, authentication of every kind of caller, authorization by
SubjectAccessReview, and a real HPA computing its replicas from the served value."""

from __future__ import annotations

import base64
import json
import math
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from cryptography import x509

from harness.aggregation import registration, trust_and_wait, wait_ready
from harness.controlplane import ControlPlane
from harness.net import free_port
from harness.pki import CA, Pair
from harness.proc import stop
from harness.prometheus import PrometheusServer
from tests.conftest import RULE_QUERY, clean_env, parse_quantity, scaleahead_cmd

GROUP_PATH = "/apis/external.metrics.k8s.io/v1beta1"
METRIC = "http_requests_forecast"
METRIC_PATH = f"{GROUP_PATH}/namespaces/default/{METRIC}"
CHECKOUT = f"{METRIC_PATH}?labelSelector=service%3Dcheckout"


@dataclass
class Secure:
    """A running scaleahead on its secure port, registered with the control plane."""

    plane: ControlPlane
    port: int
    ca: Path  # the CA of its self-signed serving certificate (--cert-dir/ca.crt)
    log: Path
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def get(
        self,
        path: str,
        cert: Pair | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        # (httpx ignores cert= when verify is a path: build the context.)
        context = ssl.create_default_context(cafile=str(self.ca))
        if cert is not None:
            context.load_cert_chain(cert.cert, cert.key)
        with httpx.Client(verify=context, timeout=20) as client:
            return client.get(f"{self.url}{path}", headers=headers)


def write_config(path: Path, prometheus_url: str, timeout: str = "5s") -> Path:
    path.write_text(
        f"prometheus:\n  url: {prometheus_url}\n  timeout: {timeout}\n"
        f"rules:\n  - name: {METRIC}\n    query: '{RULE_QUERY}'\n"
    )
    return path


def start_secure(
    plane: ControlPlane,
    prometheus: PrometheusServer,
    root: Path,
    port: int,
    certificate: list[str] | None = None,
    config: Path | None = None,
    bind: str = "127.0.0.1",
) -> subprocess.Popen[bytes]:
    """`scaleahead serve` on `bind`:`port` as the scaleahead service account, logging to
    root/scaleahead.log; `certificate`: its certificate flags (default: --cert-dir);
    `config`: its configuration (default: one rule over `prometheus`)."""
    token = plane.kubectl("create", "token", "scaleahead", "-n", "scaleahead").stdout.strip()
    kubeconfig = plane.kubeconfig("scaleahead-sa", token=token)
    log = root / "scaleahead.log"
    args = [
        "serve",
        "--config",
        str(config or write_config(root / "config.yaml", prometheus.url)),
        "--bind-address",
        bind,
        "--secure-port",
        str(port),
        *(certificate or ["--cert-dir", str(root / "certs")]),
        "--kubeconfig",
        str(kubeconfig),
        "--v",
        "2",
    ]
    return subprocess.Popen(
        scaleahead_cmd() + args, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=clean_env()
    )


@contextmanager
def serving_securely(
    plane: ControlPlane, prometheus: PrometheusServer, root: Path, port: int
) -> Iterator[subprocess.Popen[bytes]]:
    """`start_secure` with its identity and RBAC applied (the APIService pointing at
    `port`), once ready; stopped on leaving."""
    plane.apply(registration(port))
    proc = start_secure(plane, prometheus, root, port)
    try:
        wait_ready(
            f"https://127.0.0.1:{port}", root / "certs" / "ca.crt", proc, root / "scaleahead.log"
        )
        yield proc
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def secure(
    control_plane: ControlPlane, prometheus: PrometheusServer, tmp_path_factory
) -> Iterator[Secure]:
    root = tmp_path_factory.mktemp("secure")
    port = free_port()
    ca = root / "certs" / "ca.crt"
    with serving_securely(control_plane, prometheus, root, port) as proc:
        trust_and_wait(control_plane, ca)
        yield Secure(control_plane, port, ca, root / "scaleahead.log", proc)


def test_kubectl_reads_the_metric_through_the_aggregator(secure: Secure):
    got = secure.plane.kubectl("get", "--raw", CHECKOUT)
    print(f"$ kubectl get --raw '{CHECKOUT}'\n{got.stdout}")
    body = json.loads(got.stdout)
    assert body["kind"] == "ExternalMetricValueList"
    [item] = body["items"]
    assert item["metricLabels"] == {"namespace": "default", "service": "checkout"}
    assert float(item["value"].rstrip("m")) > 0
    discovery = json.loads(secure.plane.kubectl("get", "--raw", GROUP_PATH).stdout)
    assert [r["name"] for r in discovery["resources"]] == [METRIC]
    # Our Status errors reach kubectl through the aggregator unchanged.
    bad = secure.plane.kubectl(
        "get", "--raw", f"{METRIC_PATH}?labelSelector=__name__%3Dup", check=False
    )
    assert bad.returncode != 0 and "reserved" in bad.stderr


def test_the_aggregator_is_authorized_by_subject_access_review(secure: Secure):
    proxy = secure.plane.front_proxy_client
    # The aggregator's certificate with a user that has no RBAC: scaleahead's own SAR denies.
    denied = secure.get(CHECKOUT, proxy, {"X-Remote-User": "nobody"})
    assert denied.status_code == 403, denied.text
    assert denied.json()["kind"] == "Status" and denied.json()["reason"] == "Forbidden"
    message = denied.json()["message"]
    assert 'user "nobody" cannot list on resource "http_requests_forecast"' in message
    # A user bound to a role granting list on external.metrics.k8s.io in that namespace.
    allowed = secure.get(CHECKOUT, proxy, {"X-Remote-User": "reader"})
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["items"][0]["metricLabels"]["service"] == "checkout"
    # The same user in a namespace the role is not bound in.
    other_ns = secure.get(
        f"{GROUP_PATH}/namespaces/staging/{METRIC}", proxy, {"X-Remote-User": "reader"}
    )
    assert other_ns.status_code == 403
    # Groups come from X-Remote-Group.
    masters = secure.get(
        CHECKOUT, proxy, {"X-Remote-User": "someone", "X-Remote-Group": "system:masters"}
    )
    assert masters.status_code == 200
    # The API server's own decision for the same attributes agrees (verb list).
    resource = f"{METRIC}.external.metrics.k8s.io"
    assert secure.plane.can_i("list", resource, "reader", namespace="default")
    assert not secure.plane.can_i("list", resource, "nobody", namespace="default")


def expired_token(plane: ControlPlane) -> str:
    """A service-account token signed by the cluster's own key, expired an hour ago."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, utils

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    key = serialization.load_pem_private_key(plane.sa.key.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    now = int(time.time())
    claims = {
        "iss": "https://kubernetes.default.svc",
        "sub": "system:serviceaccount:scaleahead:scaleahead",
        "aud": ["https://kubernetes.default.svc"],
        "iat": now - 7200,
        "nbf": now - 7200,
        "exp": now - 3600,
        "kubernetes.io": {
            "namespace": "scaleahead",
            "serviceaccount": {"name": "scaleahead", "uid": "0"},
        },
    }
    head = b64(json.dumps({"alg": "ES256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    der = key.sign(f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
    r, s = utils.decode_dss_signature(der)
    return f"{head}.{body}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def test_who_gets_401_403_and_200(secure: Secure, tmp_path):
    plane = secure.plane
    cases: list[tuple[str, int]] = []

    def record(name: str, resp: httpx.Response) -> int:
        cases.append((name, resp.status_code))
        if resp.status_code != 200:
            assert resp.json()["kind"] == "Status", resp.text
        return resp.status_code

    assert record("no credentials", secure.get(CHECKOUT)) == 401
    forged = {"X-Remote-User": "admin", "X-Remote-Group": "system:masters"}
    assert record("forged X-Remote-User, no certificate", secure.get(CHECKOUT, None, forged)) == 401
    # A cluster-CA client certificate is its CN/O; headers on it are ignored.
    admin = plane.admin
    assert record("cluster-CA certificate in system:masters", secure.get(CHECKOUT, admin)) == 200
    nobody = plane.ca.issue("nobody", "nobody")
    assert record("cluster-CA certificate, no RBAC", secure.get(CHECKOUT, nobody)) == 403
    assert (
        record(
            "cluster-CA certificate, no RBAC, X-Remote-User claims admin",
            secure.get(CHECKOUT, nobody, forged),
        )
        == 403
    )
    # The front-proxy certificate without a user header proves nobody.
    assert (
        record(
            "front-proxy certificate, no X-Remote-User",
            secure.get(CHECKOUT, plane.front_proxy_client),
        )
        == 401
    )
    # A front-proxy-CA certificate whose CN is not an allowed name.
    stranger = plane.front_proxy_ca.issue("stranger", "not-the-aggregator")
    assert (
        record(
            "front-proxy CA, CN not allowed",
            secure.get(CHECKOUT, stranger, {"X-Remote-User": "admin"}),
        )
        == 401
    )
    # Bearer tokens go to TokenReview.
    token = plane.kubectl("create", "token", "scaleahead", "-n", "scaleahead").stdout.strip()
    bearer = {"Authorization": f"Bearer {token}"}
    assert (
        record(
            "service-account token without RBAC for the metric", secure.get(CHECKOUT, None, bearer)
        )
        == 403
    )
    expired = {"Authorization": f"Bearer {expired_token(plane)}"}
    assert record("expired service-account token", secure.get(CHECKOUT, None, expired)) == 401
    garbage = {"Authorization": "Bearer not-a-token"}
    assert record("garbage bearer token", secure.get(CHECKOUT, None, garbage)) == 401
    # The probes' paths are open; /metrics is authorized as a non-resource URL.
    assert record("/healthz without credentials", secure.get("/healthz")) == 200
    assert record("/metrics without credentials", secure.get("/metrics")) == 401
    assert record("/metrics as system:masters", secure.get("/metrics", admin)) == 200
    # A certificate from a CA nobody trusts is refused in the TLS handshake.
    other = CA("other-ca", tmp_path / "other").issue("intruder", "admin", orgs=("system:masters",))
    with pytest.raises(
        (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError, ssl.SSLError)
    ):
        resp = secure.get(CHECKOUT, other)
        cases.append(("certificate of an unknown CA", resp.status_code))  # never reached
    cases.append(("certificate of an unknown CA", 0))
    print("\n".join(f"{code or 'TLS handshake refused':>22}  {name}" for name, code in cases))
    # Every request was logged with its user, verb, path, code and latency.
    log = secure.log.read_text()
    assert 'user="reader" verb=GET path="/apis/external.metrics.k8s.io' in log or (
        'user="admin" verb=GET' in log
    )


def test_a_real_hpa_scales_on_the_served_value(secure: Secure):
    plane = secure.plane
    plane.start_controller_manager()
    served = json.loads(plane.kubectl("get", "--raw", CHECKOUT).stdout)["items"][0]["value"]
    value = parse_quantity(served)
    target = f"{int(value * 1000 / 3.4)}m"  # per pod: the HPA should want about 4 pods
    plane.apply(
        f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: checkout, namespace: default}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: checkout}}}}
  template:
    metadata: {{labels: {{app: checkout}}}}
    spec:
      containers: [{{name: app, image: registry.k8s.io/pause:3.9}}]
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {{name: checkout, namespace: default}}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: checkout}}
  minReplicas: 1
  maxReplicas: 50
  metrics:
  - type: External
    external:
      metric:
        name: {METRIC}
        selector: {{matchLabels: {{service: checkout}}}}
      target: {{type: AverageValue, averageValue: "{target}"}}
"""
    )
    deadline = time.monotonic() + 90
    status: dict = {}
    while time.monotonic() < deadline:
        hpa = json.loads(
            plane.kubectl("get", "hpa", "checkout", "-n", "default", "-o", "json").stdout
        )
        status = hpa.get("status", {})
        if status.get("desiredReplicas", 0) > 1 and status.get("currentMetrics"):
            break
        time.sleep(1)
    print(json.dumps(status, indent=2))
    assert status.get("currentMetrics"), plane.log_tail("kube-controller-manager")
    average = status["currentMetrics"][0]["external"]["current"]["averageValue"]
    per_pod = parse_quantity(average)
    total = per_pod * status["currentReplicas"]
    # The HPA read our value (it moves a little between cycles)...
    assert abs(total - value) <= 0.05 * value
    # ...and desiredReplicas is its own arithmetic on it: ceil(value / target per pod).
    assert status["desiredReplicas"] == math.ceil(total / (int(target[:-1]) / 1000))
    assert status["desiredReplicas"] >= 4


def test_the_kubernetes_api_down_means_deny(prometheus: PrometheusServer, kubectl: str, tmp_path):
    """Fail closed: with the API server stopped, an unknown caller gets a Status, no metric."""
    plane = ControlPlane(tmp_path / "k8s", kubectl)
    plane.start()
    port = free_port()
    try:
        plane.apply(registration(port))
        proc = start_secure(plane, prometheus, tmp_path, port)
        ca = tmp_path / "certs" / "ca.crt"
        try:
            wait_ready(f"https://127.0.0.1:{port}", ca, proc, tmp_path / "scaleahead.log")
            server = Secure(plane, port, ca, tmp_path / "scaleahead.log", proc)
            proxy = plane.front_proxy_client
            assert server.get(CHECKOUT, proxy, {"X-Remote-User": "reader"}).status_code == 200
            plane.stop_apiserver()
            # A decision cached before the outage is still honoured for its short TTL...
            started = time.monotonic()
            resp = server.get(CHECKOUT, proxy, {"X-Remote-User": "someone-new"})
            elapsed = time.monotonic() - started
            assert resp.status_code == 403, resp.text
            body = resp.json()
            assert body["kind"] == "Status" and "authorization check failed" in body["message"]
            assert "items" not in body
            assert elapsed < 15
            # Health stays open (the probes must not fail because the API server is down).
            assert server.get("/healthz").status_code == 200
        finally:
            proc.terminate()
            proc.wait(15)
    finally:
        plane.stop()


def served_certificate(port: int) -> x509.Certificate:
    pem = ssl.get_server_certificate(("127.0.0.1", port))
    return x509.load_pem_x509_certificate(pem.encode())


def test_a_rotated_certificate_is_served_at_the_next_handshake(
    secure: Secure, prometheus: PrometheusServer, tmp_path
):
    """cert-manager replaces the files in place; no restart, no dropped connection."""
    plane = secure.plane
    authority = CA("rotation-ca", tmp_path / "pki")
    first = authority.issue("tls", "scaleahead", hosts=("127.0.0.1",), server=True)
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(first.cert.read_bytes())
    key.write_bytes(first.key.read_bytes())
    port = free_port()
    log = tmp_path / "scaleahead.log"
    flags = ["--tls-cert-file", str(cert), "--tls-private-key-file", str(key)]
    proc = start_secure(plane, prometheus, tmp_path, port, flags)
    try:
        wait_ready(f"https://127.0.0.1:{port}", authority.cert, proc, log)
        before = served_certificate(port)
        assert (
            before.serial_number
            == x509.load_pem_x509_certificate(first.cert.read_bytes()).serial_number
        )
        # A connection opened before the rotation keeps working after it.
        context = ssl.create_default_context(cafile=str(authority.cert))
        context.load_cert_chain(plane.admin.cert, plane.admin.key)
        with httpx.Client(verify=context, timeout=20) as held:
            assert held.get(f"https://127.0.0.1:{port}{CHECKOUT}").status_code == 200
            second = authority.issue("tls2", "scaleahead", hosts=("127.0.0.1",), server=True)
            # Key first, then certificate, each replaced atomically, as a Secret volume does.
            key.write_bytes(second.key.read_bytes())
            cert.write_bytes(second.cert.read_bytes())
            deadline = time.monotonic() + 10
            after = before
            while time.monotonic() < deadline and after.serial_number == before.serial_number:
                time.sleep(0.3)
                after = served_certificate(port)
            expected = x509.load_pem_x509_certificate(second.cert.read_bytes()).serial_number
            assert after.serial_number == expected
            assert held.get(f"https://127.0.0.1:{port}{CHECKOUT}").status_code == 200
        # A broken file (half-written, wrong key) keeps the last good certificate.
        cert.write_text("garbage")
        time.sleep(1.5)
        assert served_certificate(port).serial_number == expected
        assert "keeping the previous TLS configuration" in log.read_text()
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(15)


def test_the_shipped_scrape_token_may_read_metrics_and_nothing_else(secure: Secure):
    """manifests/examples/scrape as rendered, on the real control plane: the token
    controller fills the ServiceAccount's Secret, and the ServiceMonitor's bearer (that
    token) may `get /metrics` here, through scaleahead's SubjectAccessReview, but not
    read external metrics. (It used Prometheus' own token by file, a deprecated field,
    bound to a ServiceAccount name only kube-prometheus has.)"""
    from tests.integration.manifests.test_manifests import one, render

    docs = render("examples/scrape")
    secure.plane.start_controller_manager()  # its token controller fills the Secret
    secure.plane.apply(yaml.safe_dump_all(d for d in docs if d["kind"] != "ServiceMonitor"))
    monitor = one(docs, "ServiceMonitor")
    credentials = monitor["spec"]["endpoints"][0]["authorization"]["credentials"]
    namespace = monitor["metadata"]["namespace"]
    deadline = time.monotonic() + 60
    while True:
        got = secure.plane.kubectl(
            "get", "secret", credentials["name"], "-n", namespace, "-o", "json", check=False
        )
        data = json.loads(got.stdout).get("data", {}) if got.returncode == 0 else {}
        if credentials["key"] in data:
            break
        assert time.monotonic() < deadline, f"the token controller never filled it: {got}"
        time.sleep(0.5)
    bearer = {"Authorization": "Bearer " + base64.b64decode(data[credentials["key"]]).decode()}
    metrics = secure.get("/metrics", None, bearer)
    assert metrics.status_code == 200, metrics.text
    assert "scaleahead_" in metrics.text
    denied = secure.get(CHECKOUT, None, bearer)
    assert denied.status_code == 403, denied.text
