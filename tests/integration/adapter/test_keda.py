"""KEDA's external scaler protocol over the service of a real Prometheus: every method
against what the external metrics API serves, StreamIsActive over simulated minutes, TLS
and mutual TLS, the serve flags, and the generated modules against the proto."""

from __future__ import annotations

import filecmp
import itertools
import math
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
from fastapi.testclient import TestClient

from adapter.keda import externalscaler_pb2 as pb
from adapter.keda import externalscaler_pb2_grpc as pb_grpc
from adapter.keda.scaler import ExternalScaler
from adapter.keda.server import HANDSHAKE_TIMEOUT_MS, MAX_CONNECTIONS, ScalerServer
from adapter.security.tls import TLSSettings, grpc_credentials
from adapter.service import build_service, prometheus_source
from forecaster.config import PrometheusConfig, Rule
from forecaster.selector import parse_selector
from forecaster.times import SETTLE
from harness.net import free_port
from harness.pki import CA
from harness.prometheus import PrometheusServer
from tests.conftest import REPO, RULE_QUERY, STEP, Clock, clean_env, parse_quantity

ROOT = REPO
METRIC = "http_requests_forecast"
BASE = "/apis/external.metrics.k8s.io/v1beta1"


def ref(namespace: str = "default", **metadata: str) -> pb.ScaledObjectRef:
    return pb.ScaledObjectRef(name="checkout", namespace=namespace, scalerMetadata=metadata)


def checkout(**extra: str) -> pb.ScaledObjectRef:
    return ref(rule=METRIC, labelSelector="service=checkout", **extra)


def http_value(svc, selector: str) -> list[float]:
    """The values the external metrics API serves for the same series."""
    body = TestClient(svc.app).get(
        f"{BASE}/namespaces/default/{METRIC}", params={"labelSelector": selector}
    )
    assert body.status_code == 200, body.text
    return [parse_quantity(i["value"]) for i in body.json()["items"]]


@pytest.fixture
def service(prometheus: PrometheusServer):
    rule = Rule(name=METRIC, query=RULE_QUERY, lead="3m", history="8d")
    clock = Clock(prometheus.end - 1800 + SETTLE)
    svc = build_service([rule], prometheus_source(PrometheusConfig(url=prometheus.url)), clock)
    yield svc, rule, clock
    svc.stop()


class Paused:
    """The service's provider, behind a lock a test holds while time moves, so that no
    call sees the state between a clock step and the cycle and refresh that follow it."""

    def __init__(self, provider) -> None:
        self.provider = provider
        self.lock = threading.Lock()

    def metric_names(self):
        return self.provider.metric_names()

    def readiness(self):
        return self.provider.readiness()

    def values(self, namespace, metric, selector):
        with self.lock:
            return self.provider.values(namespace, metric, selector)


@pytest.fixture
def paused(service) -> Paused:
    return Paused(service[0].provider)


@pytest.fixture
def scaler(service, paused):
    svc, _, _ = service
    server = ScalerServer(
        ExternalScaler(paused, svc.metrics, check_interval=0.02), "127.0.0.1", 0, None
    )
    port = server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield pb_grpc.ExternalScalerStub(channel)
    channel.close()
    server.stop()


def step(svc, rule, clock, seconds: int = STEP) -> None:
    """Time passes as the scheduler sees it: a cycle and a current-value refresh."""
    clock.t += seconds
    svc.cycle.run(rule, clock())
    svc.current.refresh(rule)


def test_the_generated_modules_are_those_of_the_proto(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{ROOT}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            str(ROOT / "adapter/keda/externalscaler.proto"),
        ],
        check=True,
    )
    generated = sorted(p.name for p in (out / "adapter/keda").iterdir())
    assert generated == [
        "externalscaler_pb2.py",
        "externalscaler_pb2.pyi",
        "externalscaler_pb2_grpc.py",
    ]
    for name in generated:
        assert filecmp.cmp(out / "adapter/keda" / name, ROOT / "adapter/keda" / name, False), (
            f"adapter/keda/{name} differs from what the proto generates: "
            "run scripts/generate-keda-proto"
        )


def test_every_method_serves_what_the_external_metrics_api_serves(service, scaler):
    svc, rule, clock = service
    step(svc, rule, clock, 0)

    spec = scaler.GetMetricSpec(checkout(threshold="2.5"))
    [metric] = spec.metricSpecs
    assert (metric.metricName, metric.targetSizeFloat, metric.targetSize) == (METRIC, 2.5, 2)

    got = scaler.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=checkout(), metricName=METRIC))
    [value] = got.metricValues
    [served] = http_value(svc, "service=checkout")
    assert value.metricName == METRIC
    # The API rounds up to the milli; the scaler sends the float (and its ceiling for old KEDA).
    assert served - 0.001 <= value.metricValueFloat <= served
    assert value.metricValue == math.ceil(value.metricValueFloat)
    assert value.metricValueFloat > 0

    # Every series the selector matches, one value each, as the external metrics API does.
    both = scaler.GetMetrics(
        pb.GetMetricsRequest(scaledObjectRef=ref(rule=METRIC), metricName=METRIC)
    )
    assert len(both.metricValues) == 2
    assert sum(v.metricValueFloat for v in both.metricValues) == pytest.approx(
        sum(http_value(svc, "")), abs=0.002
    )

    v = value.metricValueFloat
    assert scaler.IsActive(checkout()).result is True  # activationThreshold 0 by default
    assert scaler.IsActive(checkout(activationThreshold=str(v * 0.9))).result is True
    assert scaler.IsActive(checkout(activationThreshold=str(v * 1.1))).result is False
    # KEDA's own keys and <key>FromEnv (resolved by KEDA) are accepted.
    keda = checkout(scalerAddress="scaleahead:9443", enableTLS="true", thresholdFromEnv="3")
    assert scaler.GetMetricSpec(keda).metricSpecs[0].targetSizeFloat == 3.0

    metrics = TestClient(svc.app).get("/metrics").text
    assert 'scaleahead_keda_requests_total{code="OK",method="GetMetrics"} 2.0' in metrics


@pytest.mark.parametrize(
    ("call", "request_", "code", "needle"),
    [
        ("IsActive", ref(labelSelector="service=checkout"), "INVALID_ARGUMENT", "rule is required"),
        ("IsActive", ref(rule="nope"), "NOT_FOUND", f'"nope" is not served here; served: {METRIC}'),
        ("IsActive", ref(rule=METRIC, labelSelector="service in (a,"), "INVALID_ARGUMENT",
         "metadata labelSelector"),
        ("IsActive", ref(rule=METRIC, labelSelector="service=nothing"), "NOT_FOUND",
         'matches the selector "service=nothing,namespace=default"'),
        ("IsActive", ref(rule=METRIC, labelSelector="code=500"), "INVALID_ARGUMENT",
         "carry no label code"),
        ("IsActive", ref("Bad_NS", rule=METRIC), "INVALID_ARGUMENT", 'invalid namespace "Bad_NS"'),
        ("IsActive", checkout(treshold="3"), "INVALID_ARGUMENT", 'unknown metadata key "treshold"'),
        ("IsActive", checkout(activationThreshold="lots"), "INVALID_ARGUMENT",
         'activationThreshold: "lots" is not a number'),
        ("IsActive", checkout(activationThreshold="nan"), "INVALID_ARGUMENT", "finite"),
        ("GetMetricSpec", checkout(), "INVALID_ARGUMENT", "threshold is required"),
        ("GetMetricSpec", checkout(threshold="0"), "INVALID_ARGUMENT", "above 0"),
        ("GetMetricSpec", checkout(threshold="-1"), "INVALID_ARGUMENT", "from 0 to 1e+15"),
        ("GetMetrics", pb.GetMetricsRequest(scaledObjectRef=checkout(), metricName="s0-other"),
         "NOT_FOUND", 'metric "s0-other" is not the metric of this trigger'),
    ],
)  # fmt: skip
def test_bad_triggers_get_a_status_code_and_a_message(
    service, scaler, call, request_, code, needle
):
    svc, rule, clock = service
    step(svc, rule, clock, 0)
    with pytest.raises(grpc.RpcError) as err:
        getattr(scaler, call)(request_)
    assert err.value.code().name == code, err.value.details()
    assert needle in err.value.details()


def served_sum(svc) -> float:
    """What the provider serves for the checkout series now (the float the scaler uses)."""
    values = svc.provider.values("default", METRIC, parse_selector("service=checkout"))
    return sum(v.value for v in values)


def most_crossed(values: list[float]) -> float:
    """The level between two of `values` that the sequence crosses most often."""
    levels = sorted(set(values))
    candidates = [(a + b) / 2 for a, b in itertools.pairwise(levels)]

    def crossings(level: float) -> int:
        above = [v > level for v in values]
        return sum(x != y for x, y in itertools.pairwise(above))

    return max(candidates, key=crossings)


def _expect(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_stream_is_active_pushes_each_change_over_simulated_minutes(
    service, scaler, paused, prometheus, caplog
):
    svc, rule, clock = service
    minutes = 20
    # A replica (same Prometheus, same times) previews the values the minutes will serve,
    # to put the activation threshold where they cross it most often. Replicas agree, so
    # the service under test serves the same ones.
    replica_clock = Clock(clock.t)
    source = prometheus_source(PrometheusConfig(url=prometheus.url))
    replica = build_service([rule], source, replica_clock)
    values = []
    for _ in range(minutes):
        step(replica, rule, replica_clock)
        values.append(served_sum(replica))
    replica.stop()
    threshold = most_crossed(values)

    step(svc, rule, clock)
    received: list[bool] = []
    stream = scaler.StreamIsActive(checkout(activationThreshold=str(threshold)))

    def read() -> None:
        try:
            for message in stream:
                received.append(message.result)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.CANCELLED:
                raise

    reader = threading.Thread(target=read)
    reader.start()
    _expect(lambda: len(received) == 1)
    seen = [served_sum(svc) > threshold]
    assert received == seen
    for minute in range(1, minutes):
        with paused.lock:
            step(svc, rule, clock)
        active = served_sum(svc) > threshold
        if active != seen[-1]:
            seen.append(active)
            count = len(seen)
            _expect(lambda count=count: len(received) == count)
        time.sleep(0.1)  # five checks: an unchanged answer is not sent again
        assert received == seen, f"minute {minute}: {received} != {seen}"
    assert len(received) >= 3  # at least two changes within the 20 simulated minutes

    # An outage (current values and forecasts go stale) keeps the stream and its last answer.
    clock.t += 3600
    _expect(lambda: "keeping the last answer" in caplog.text)
    time.sleep(0.2)
    assert received == seen
    assert "scaleahead_keda_streams 1.0" in TestClient(svc.app).get("/metrics").text
    stream.cancel()
    reader.join(timeout=5)
    _expect(lambda: "scaleahead_keda_streams 0.0" in TestClient(svc.app).get("/metrics").text)


def _serve_tls(svc, tmp_path: Path, mutual: bool) -> tuple[ScalerServer, int, CA]:
    ca = CA("scaler-ca", tmp_path / "pki")
    server_pair = ca.issue("scaler", "scaleahead", hosts=("localhost",), server=True)
    client_ca = CA("keda-ca", tmp_path / "client-pki") if mutual else None
    server = ScalerServer(
        ExternalScaler(svc.provider),
        "127.0.0.1",
        0,
        grpc_credentials(
            TLSSettings(server_pair.cert, server_pair.key), client_ca.cert if client_ca else None
        ),
    )
    port = server.start()
    return server, port, client_ca or ca


def _stub(port: int, credentials: grpc.ChannelCredentials) -> pb_grpc.ExternalScalerStub:
    channel = grpc.secure_channel(
        f"localhost:{port}", credentials, options=[("grpc.enable_retries", 0)]
    )
    return pb_grpc.ExternalScalerStub(channel)


def test_tls_serves_clients_that_trust_its_ca_only(service, tmp_path):
    svc, rule, clock = service
    step(svc, rule, clock, 0)
    server, port, ca = _serve_tls(svc, tmp_path, mutual=False)
    try:
        trusting = _stub(port, grpc.ssl_channel_credentials(root_certificates=ca.pem()))
        assert trusting.IsActive(checkout(), timeout=10).result is True
        other = CA("other", tmp_path / "other")
        with pytest.raises(grpc.RpcError) as err:
            _stub(port, grpc.ssl_channel_credentials(other.pem())).IsActive(checkout(), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.RpcError):
            plain = pb_grpc.ExternalScalerStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
            plain.IsActive(checkout(), timeout=5)
    finally:
        server.stop()


def test_mutual_tls_needs_a_client_certificate_from_its_ca(service, tmp_path):
    svc, rule, clock = service
    step(svc, rule, clock, 0)
    server, port, client_ca = _serve_tls(svc, tmp_path, mutual=True)
    server_ca = (tmp_path / "pki" / "scaler-ca.crt").read_bytes()
    try:
        keda = client_ca.issue("keda", "keda-operator")
        with_cert = grpc.ssl_channel_credentials(
            server_ca, keda.key.read_bytes(), keda.cert.read_bytes()
        )
        assert _stub(port, with_cert).IsActive(checkout(), timeout=10).result is True

        with pytest.raises(grpc.RpcError) as err:
            _stub(port, grpc.ssl_channel_credentials(server_ca)).IsActive(checkout(), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE

        stranger = CA("stranger", tmp_path / "stranger").issue("x", "keda-operator")
        foreign = grpc.ssl_channel_credentials(
            server_ca, stranger.key.read_bytes(), stranger.cert.read_bytes()
        )
        with pytest.raises(grpc.RpcError) as err:
            _stub(port, foreign).IsActive(checkout(), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop()


def test_a_renewed_certificate_is_served_to_new_connections(service, tmp_path):
    svc, rule, clock = service
    step(svc, rule, clock, 0)
    server, port, _ = _serve_tls(svc, tmp_path, mutual=False)
    try:
        renewed = CA("renewed-ca", tmp_path / "renewed")
        pair = renewed.issue("scaler-2", "scaleahead", hosts=("localhost",), server=True)
        time.sleep(1.1)  # checked at most once a second
        (tmp_path / "pki/scaler.crt").write_bytes(pair.cert.read_bytes())
        (tmp_path / "pki/scaler.key").write_bytes(pair.key.read_bytes())
        time.sleep(1.1)
        creds = grpc.ssl_channel_credentials(renewed.pem())
        deadline = time.monotonic() + 10
        while True:  # the first handshake after the change may still see the old one
            try:
                assert _stub(port, creds).IsActive(checkout(), timeout=5).result is True
                break
            except grpc.RpcError:
                assert time.monotonic() < deadline, "the renewed certificate is never served"
                time.sleep(0.5)
    finally:
        server.stop()


def test_serve_flags_start_the_scaler_beside_the_api(tmp_path):
    """`scaleahead serve --keda-scaler-port` on the demo: the scaler answers from the same
    service as the HTTP API."""
    http_port, grpc_port = free_port(), free_port()
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "adapter.cli",
            "serve",
            f"--port={http_port}",
            f"--keda-scaler-port={grpc_port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=clean_env(),
        cwd=ROOT,
    )
    try:
        stub = pb_grpc.ExternalScalerStub(grpc.insecure_channel(f"127.0.0.1:{grpc_port}"))
        demo = ref(rule=METRIC, labelSelector="service=nasa-http", threshold="1")
        deadline = time.monotonic() + 120
        while True:
            try:
                got = stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=demo), timeout=5)
                break
            except grpc.RpcError as err:
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()
                assert err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND)
                assert time.monotonic() < deadline, err.details()
                time.sleep(0.5)
        [value] = got.metricValues
        assert value.metricName == METRIC and value.metricValueFloat > 0
        assert stub.GetMetricSpec(demo).metricSpecs[0].targetSizeFloat == 1.0
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0, (tmp_path / "serve.log").read_text()


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--keda-client-ca-file=/etc/hostname", "--keda-scaler-port=9443"], "needs TLS"),
        (["--keda-client-ca-file=/etc/hostname"], "needs --keda-scaler-port"),
        (["--keda-scaler-port=8080"], "must differ from --port"),
        (["--keda-scaler-port=9443", "--keda-client-ca-file=/no/such"], "no such file"),
        # Over TLS, no client CA is no longer a silent default.
        (
            ["--cert-dir=/tmp/scaleahead-flags-test", "--keda-scaler-port=9443"],
            "--keda-scaler-port over TLS needs --keda-client-ca-file",
        ),
        (["--keda-scaler-port=9443", "--keda-insecure-any-client"], "needs TLS"),
        (
            [
                "--cert-dir=/tmp/scaleahead-flags-test",
                "--keda-scaler-port=9443",
                "--keda-insecure-any-client",
                "--keda-client-ca-file=/etc/hostname",
            ],
            "exclude each other",
        ),
    ],
)
def test_bad_scaler_flags_fail_at_start_naming_the_flag(flags, needle):
    done = subprocess.run(
        [sys.executable, "-m", "adapter.cli", "serve", *flags],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 2
    assert needle in done.stderr and "--keda" in done.stderr


def _recipe_certificates(workdir: Path) -> None:
    """Run the openssl lines of the recipe in manifests/examples/keda as written (the
    kubectl ones need a cluster): client-ca.crt and KEDA's keda.crt/keda.key."""
    text = (ROOT / "manifests/examples/keda/scaledobject.yaml").read_text()
    lines = [line.removeprefix("#").strip() for line in text.splitlines()]
    commands, current = [], ""
    for line in lines:
        current = f"{current} {line}".strip() if current else line
        if current.endswith("\\"):
            current = current[:-1].strip()
            continue
        if current.startswith("openssl "):
            commands.append(current)
        current = ""
    assert len(commands) == 3, commands
    for command in commands:
        subprocess.run(["bash", "-c", command], cwd=workdir, check=True, capture_output=True)


@pytest.mark.parametrize("mode", ["mutual", "insecure"])
def test_over_tls_the_port_serves_kedas_certificate_only_unless_told_otherwise(tmp_path, mode):
    """The real server on loopback: with the example's client CA, KEDA's certificate is
    served and a client without one (or with a foreign one) is refused in the handshake;
    with --keda-insecure-any-client anyone is served and the log says so loudly. (Before,
    no client CA was the default: any TLS client read every namespace's values.)"""
    from harness.lone_tls import lone_tls

    _recipe_certificates(tmp_path)
    http_port, grpc_port = free_port(), free_port()
    tls = lone_tls(tmp_path / "server", http_port)
    flag = (
        f"--keda-client-ca-file={tmp_path / 'client-ca.crt'}"
        if mode == "mutual"
        else "--keda-insecure-any-client"
    )
    log_path = tmp_path / "serve.log"
    log = open(log_path, "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "adapter.cli", *tls.args, f"--keda-scaler-port={grpc_port}", flag],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=clean_env(),
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 60
        while not tls.server_ca.exists():
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        server_ca = tls.server_ca.read_bytes()
        keda = grpc.ssl_channel_credentials(
            server_ca, (tmp_path / "keda.key").read_bytes(), (tmp_path / "keda.crt").read_bytes()
        )
        nobody = grpc.ssl_channel_credentials(server_ca)
        demo = ref(rule=METRIC, labelSelector="service=nasa-http", threshold="1")
        while True:
            try:
                _stub(grpc_port, keda).GetMetricSpec(demo, timeout=5)
                break
            except grpc.RpcError as err:
                assert proc.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, err.details()
                time.sleep(0.5)
        if mode == "mutual":
            with pytest.raises(grpc.RpcError) as err:
                _stub(grpc_port, nobody).GetMetricSpec(demo, timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "serves ANY TLS client" not in log_path.read_text()
        else:
            assert _stub(grpc_port, nobody).GetMetricSpec(demo, timeout=5).metricSpecs
            assert "WARNING scaleahead: the KEDA scaler on port" in log_path.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_connections_held_by_the_port_are_bounded_and_silent_ones_cut(service, tmp_path):
    """400 silent TCP connections (no certificate needed to open one): the port holds at
    most MAX_CONNECTIONS of them, each for the handshake deadline, so that a client
    cannot take the open files the API's port needs; once they are cut, KEDA is served.
    (Unbounded, all 400 were held, for grpc's 120 s handshake deadline.)"""
    svc, rule, clock = service
    step(svc, rule, clock, 0)
    server, port, client_ca = _serve_tls(svc, tmp_path, mutual=True)
    server_ca = (tmp_path / "pki" / "scaler-ca.crt").read_bytes()
    silent: list[socket.socket] = []
    try:
        before = len(os.listdir("/proc/self/fd"))
        silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(400)]
        time.sleep(1.0)
        server_side = len(os.listdir("/proc/self/fd")) - before - len(silent)
        assert server_side <= MAX_CONNECTIONS + 10, server_side
        started = time.monotonic()
        for sock in silent[:20]:  # the ones held first: cut at the handshake deadline
            sock.settimeout(HANDSHAKE_TIMEOUT_MS / 1000 + 5)
            assert sock.recv(1) == b""
        assert time.monotonic() - started < HANDSHAKE_TIMEOUT_MS / 1000 + 3
        for sock in silent:
            sock.close()
        keda = client_ca.issue("keda", "keda-operator")
        with_cert = grpc.ssl_channel_credentials(
            server_ca, keda.key.read_bytes(), keda.cert.read_bytes()
        )
        assert _stub(port, with_cert).IsActive(checkout(), timeout=10).result is True
    finally:
        for sock in silent:
            sock.close()
        server.stop()
