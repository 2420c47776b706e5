"""`kubectl apply` of the rendered base on a real kube-apiserver v1.28 (its own, fresh),
and two replicas run as the pods would: the same flags, the same service account's
token, the same config. There are no nodes, so the replicas run here on loopback and the
Service is re-pointed at them (ExternalName localhost); everything else is as shipped.
The APIService becomes Available with no hand-made certificate, and the example HPA
reads the forecast."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cryptography import x509

from harness.controlplane import ControlPlane
from harness.net import free_port
from harness.prometheus import PrometheusServer
from tests.conftest import clean_env, scaleahead_cmd
from tests.integration.conftest import running_control_plane
from tests.integration.manifests.test_manifests import (
    api_calls,
    expanded_args,
    one,
    render,
    serve_args,
)

SERVICE_ACCOUNT = "system:serviceaccount:scaleahead:scaleahead"
METRIC_PATH = "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/http_requests_forecast"


@dataclass
class Replica:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    cert_dir: Path

    def get(self, path: str, token: str) -> httpx.Response:
        context = ssl.create_default_context(cafile=str(self.cert_dir / "ca.crt"))
        return httpx.get(
            f"https://127.0.0.1:{self.port}{path}",
            verify=context,
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )


@dataclass
class Installed:
    plane: ControlPlane
    docs: tuple[dict[str, Any], ...]
    replicas: list[Replica]


def for_loopback(docs: tuple[dict[str, Any], ...], port: int) -> list[dict[str, Any]]:
    """The rendered objects, with the Service and APIService pointing at `port` here."""
    out = json.loads(json.dumps(docs))
    for d in out:
        if d["kind"] == "Service" and d["metadata"]["name"] == "scaleahead":
            d["spec"] = {
                "type": "ExternalName",
                "externalName": "localhost",
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
            }
        if d["kind"] == "APIService":
            d["spec"]["service"]["port"] = port
    return out


def replica_args(
    docs: tuple[dict[str, Any], ...], root: Path, prometheus_url: str, port: int
) -> list[str]:
    """The Deployment's own flags, with its file paths under `root` and its port."""
    [container] = one(docs, "Deployment", "scaleahead")["spec"]["template"]["spec"]["containers"]
    config = yaml.safe_load(one(docs, "ConfigMap")["data"]["config.yaml"])
    config["prometheus"]["url"] = prometheus_url
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    parsed = serve_args(container)
    args = []
    for arg in expanded_args(container):
        flag = arg.split("=", 1)[0]
        args.append(
            {
                "--config": f"--config={root / 'config.yaml'}",
                "--secure-port": f"--secure-port={port}",
                "--cert-dir": f"--cert-dir={root / 'certs'}",
            }.get(flag, arg)
        )
    assert parsed.cert_secret and parsed.cert_dir  # the base's certificate path
    return [*args, "--bind-address=127.0.0.1", f"--kubeconfig={root / 'kubeconfig'}"]


def wait_for(what: str, check, timeout: float = 90.0, logs: list[Path] | None = None):
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    tails = "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-2000:]}" for p in logs or [])
    raise AssertionError(f"timed out waiting for {what}: {last}\n{tails}")


@pytest.fixture(scope="module")
def installed(kubectl: str, prometheus: PrometheusServer, tmp_path_factory) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("install")
    with running_control_plane(root / "k8s", kubectl) as plane:
        docs = render("base")
        port = free_port()
        plane.apply(yaml.safe_dump_all(for_loopback(docs, port)))
        plane.start_controller_manager()
        token = plane.kubectl(
            "create", "token", "scaleahead", "-n", "scaleahead", "--duration=1h"
        ).stdout.strip()
        replicas = []
        try:
            for i, p in enumerate((port, free_port())):
                home = root / f"replica{i}"
                home.mkdir()
                plane.kubeconfig("sa", token=token, namespace="scaleahead").rename(
                    home / "kubeconfig"
                )
                log = home / "scaleahead.log"
                proc = subprocess.Popen(
                    [*scaleahead_cmd(), "serve", *replica_args(docs, home, prometheus.url, p)],
                    stdout=log.open("wb"),
                    stderr=subprocess.STDOUT,
                    env=clean_env(),
                )
                replicas.append(Replica(p, proc, log, home / "certs"))
            yield Installed(plane, docs, replicas)
        finally:
            for r in replicas:
                r.proc.terminate()
            for r in replicas:
                try:
                    r.proc.wait(15)
                except subprocess.TimeoutExpired:
                    r.proc.kill()


def test_the_apiservice_becomes_available_with_the_shipped_certificate_path(installed):
    plane = installed.plane
    logs = [r.log for r in installed.replicas]

    def available() -> bool:
        out = plane.kubectl("get", "apiservice", "v1beta1.external.metrics.k8s.io", "-o", "json")
        conditions = json.loads(out.stdout).get("status", {}).get("conditions", [])
        return any(c["type"] == "Available" and c["status"] == "True" for c in conditions)

    wait_for("the APIService to become Available", available, logs=logs)
    # No one made a certificate by hand: the first replica created the Secret, both serve
    # its certificate, and its CA is the APIService's caBundle.
    secret = json.loads(
        plane.kubectl("get", "secret", "scaleahead-certs", "-n", "scaleahead", "-o", "json").stdout
    )
    ca = base64.b64decode(secret["data"]["ca.crt"])
    leaf = x509.load_pem_x509_certificates(base64.b64decode(secret["data"]["tls.crt"]))[0]
    assert "scaleahead.scaleahead.svc" in leaf.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName)
    api = json.loads(
        plane.kubectl("get", "apiservice", "v1beta1.external.metrics.k8s.io", "-o", "json").stdout
    )
    assert base64.b64decode(api["spec"]["caBundle"]) == ca
    for r in installed.replicas:
        assert (r.cert_dir / "ca.crt").read_bytes() == ca
        served = ssl.get_server_certificate(("127.0.0.1", r.port))
        assert x509.load_pem_x509_certificate(served.encode()) == leaf
    # Through the aggregator, as kubectl and the HPA controller read it.
    body = wait_for(
        "the metric through the aggregator",
        lambda: (
            plane.kubectl(
                "get", "--raw", METRIC_PATH + "?labelSelector=service%3Dcheckout", check=False
            ).stdout
        ),
        logs=logs,
    )
    [item] = json.loads(body)["items"]
    assert item["metricLabels"] == {"namespace": "default", "service": "checkout"}
    print("through the aggregator:", item)


def test_the_pods_pass_the_restricted_pod_security_standard(installed):
    plane = installed.plane

    def pods() -> list[dict[str, Any]]:
        out = plane.kubectl("get", "pods", "-n", "scaleahead", "-o", "json")
        return json.loads(out.stdout)["items"]

    found = wait_for("the ReplicaSet to create both pods", lambda: len(pods()) == 2 and pods())
    assert all(p["status"]["phase"] == "Pending" for p in found)  # no nodes here
    events = plane.kubectl("get", "events", "-n", "scaleahead", "-o", "json").stdout
    assert "violates PodSecurity" not in events


def test_the_service_account_may_make_every_call_the_code_makes(installed):
    plane = installed.plane
    names = {  # the objects each call is made on, as the server makes it
        "configmaps": ("kube-system", "extension-apiserver-authentication"),
        "secrets": ("scaleahead", "scaleahead-certs"),
        "apiservices": ("", "v1beta1.external.metrics.k8s.io"),
        "endpointslices": ("scaleahead", ""),  # its own Service's: the peer replicas
    }
    for verb, group, path in sorted(api_calls()):
        resource, _, subresource = path.partition("/")
        namespace, name = names.get(resource, ("", ""))
        target = f"{resource}.{group}" if group else resource
        if name and verb != "create":
            target += f"/{name}"
        allowed = plane.can_i(verb, target, SERVICE_ACCOUNT, namespace or None, subresource)
        print(verb, target, namespace, "yes" if allowed else "no")
        assert allowed, (verb, target, namespace)
    # The path its peers lend their forecasts on (authorized by their SubjectAccessReview).
    assert plane.can_i("get", "/forecasts/http_requests_forecast", SERVICE_ACCOUNT)
    # ...and not a Secret it has no business with, nor another namespace's endpoints.
    assert not plane.can_i("get", "secrets/other", SERVICE_ACCOUNT, "scaleahead")
    assert not plane.can_i("list", "endpointslices.discovery.k8s.io", SERVICE_ACCOUNT, "default")


def test_both_replicas_serve_the_same_value(installed):
    plane = installed.plane
    a, b = installed.replicas
    token = plane.kubectl(
        "create", "token", "horizontal-pod-autoscaler", "-n", "kube-system"
    ).stdout.strip()
    path = METRIC_PATH + "?labelSelector=service%3Dcheckout"
    wait_for(
        "both replicas ready",
        lambda: all(r.get("/readyz", token).status_code == 200 for r in (a, b)),
    )
    agreed = 0
    for _ in range(5):
        first, other, again = (r.get(path, token).json()["items"][0]["value"] for r in (a, b, a))
        print("replica 0:", first, "replica 1:", other, "replica 0 again:", again)
        if first == again:  # no refresh in between
            assert other == first
            agreed += 1
        time.sleep(1)
    assert agreed >= 3


def test_the_example_hpa_reads_the_forecast(installed):
    plane = installed.plane
    examples = [
        d for d in render("examples") if d["kind"] in ("Deployment", "HorizontalPodAutoscaler")
    ]
    plane.apply(yaml.safe_dump_all(examples))

    def current() -> dict[str, Any] | None:
        hpa = json.loads(
            plane.kubectl("get", "hpa", "checkout", "-n", "default", "-o", "json").stdout
        )
        metrics = hpa.get("status", {}).get("currentMetrics") or []
        return hpa["status"] if metrics and metrics[0].get("external") else None

    status = wait_for(
        "the HPA to read the metric", current, timeout=120, logs=[r.log for r in installed.replicas]
    )
    print(json.dumps(status, indent=1))
    value = status["currentMetrics"][0]["external"]["current"]["averageValue"]
    assert value not in ("0", "0m")
    active = [c for c in status["conditions"] if c["type"] == "ScalingActive"]
    assert active and active[0]["status"] == "True", status["conditions"]
