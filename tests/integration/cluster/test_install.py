"""scaleahead installed as a user installs it, on a real node: `kubectl apply -k` of an
overlay that only names the image built from our Dockerfile and the test's Prometheus.
Both replicas run as real pods, the APIService turns Available through the aggregator's
routing to their IPs, the example HPA reads the forecast; then a replica is killed, the
config rolls, Prometheus goes away past the forecast TTL, and `kubectl delete -k` leaves
nothing behind.

The tests of this module run in order on one installation.
"""

from __future__ import annotations

import base64
import json
import math
import os
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from harness.image import project_version
from harness.net import REPO
from harness.prometheus import PrometheusServer
from harness.workload import deployment
from tests.conftest import parse_quantity
from tests.integration.cluster.conftest import Cluster
from tests.integration.manifests.test_install import wait_for

NAMESPACE = "scaleahead"
APISERVICE = "v1beta1.external.metrics.k8s.io"
METRIC = "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/http_requests_forecast"
CHECKOUT = METRIC + "?labelSelector=service%3Dcheckout"
BASE_IMAGE = "ghcr.io/scaleahead/scaleahead"


def overlay(folder: Path, image: str, prometheus_url: str, **rule: Any) -> Path:
    """A user's overlay of manifests/base: the image built here, the config's Prometheus
    URL (and any rule settings given); nothing else."""
    folder.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((REPO / "manifests" / "base" / "config.yaml").read_text())
    config["prometheus"]["url"] = prometheus_url
    config["rules"][0].update(rule)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    name, tag = image.rsplit(":", 1)
    (folder / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(REPO / "manifests" / "base", folder)],
                "images": [{"name": BASE_IMAGE, "newName": name, "newTag": tag}],
                "configMapGenerator": [
                    {
                        "name": "scaleahead-config",
                        "namespace": NAMESPACE,
                        "behavior": "replace",
                        "files": ["config.yaml"],
                    }
                ],
            }
        )
    )
    return folder


@dataclass
class Installed:
    cluster: Cluster
    prometheus: PrometheusServer
    overlay: Path
    root: Path
    timeline: list[str] = field(default_factory=list)

    def kubectl(self, *args: str, check: bool = True) -> str:
        return self.cluster.node.kubectl(*args, check=check).stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def condition(self, kind: str, name: str, type_: str, *where: str) -> str | None:
        status = self.json(kind, name, *where).get("status", {})
        found = [c for c in status.get("conditions", []) if c["type"] == type_]
        return found[0]["status"] if found else None

    def available(self) -> bool:
        return self.condition("apiservice", APISERVICE, "Available") == "True"

    def pods(self) -> list[dict[str, Any]]:
        selector = "app.kubernetes.io/name=scaleahead"
        return self.json("pods", "-n", NAMESPACE, "-l", selector)["items"]

    def ready_pods(self) -> list[dict[str, Any]]:
        return [
            p
            for p in self.pods()
            if p["metadata"].get("deletionTimestamp") is None
            and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p["status"].get("conditions", [])
            )
        ]

    def raw(self, path: str) -> tuple[int, str]:
        """GET through the API server (and so its aggregator) as the admin: (code, body)."""
        plane = self.cluster.node.plane
        context = ssl.create_default_context(cafile=str(plane.ca.cert))
        context.load_cert_chain(plane.admin.cert, plane.admin.key)
        try:
            r = httpx.get(f"{plane.url}{path}", verify=context, timeout=30)
        except httpx.HTTPError as err:
            return 0, str(err)
        return r.status_code, r.text


def metric_body(installed: Installed) -> str | None:
    """The checkout series' answer through the aggregator, if it is a 200."""
    code, body = installed.raw(CHECKOUT)
    return body if code == 200 else None


@pytest.fixture(scope="module")
def installed(
    cluster: Cluster, pod_prometheus: PrometheusServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("overlay")
    folder = overlay(root / "mine", cluster.image, pod_prometheus.url)
    state = Installed(cluster, pod_prometheus, folder, root)
    state.kubectl("apply", "-k", str(folder))
    try:
        yield state
    finally:
        print("\n".join(state.timeline))
        for pod in state.pods():
            name = pod["metadata"]["name"]
            print(
                f"--- logs of {name}\n"
                + state.kubectl("logs", "-n", NAMESPACE, name, check=False)[-3000:]
            )
        state.kubectl(
            "delete", "-k", str(folder), "--ignore-not-found", "--wait=false", check=False
        )


def test_the_image_runs_as_its_non_root_user_on_a_read_only_root(cluster: Cluster):
    """The image's own USER (no runAsUser given) passes runAsNonRoot, and the command
    works with nothing writable."""
    node = cluster.node
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "image-check", "namespace": "default"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "check",
                    "image": cluster.image,
                    "imagePullPolicy": "Never",
                    "command": ["sh", "-c", "id -u; scaleahead --version; touch /x || echo ro"],
                    "securityContext": {
                        "runAsNonRoot": True,
                        "readOnlyRootFilesystem": True,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }
    node.kubectl("apply", "-f", "-", input=json.dumps(pod))
    try:
        phase = wait_for(
            "the pod to finish",
            lambda: (
                node.kubectl("get", "pod", "image-check", "-o", "jsonpath={.status.phase}")
                .stdout.replace("Pending", "")
                .replace("Running", "")
            ),
            timeout=120,
        )
        out = node.kubectl("logs", "image-check").stdout.splitlines()
    finally:
        node.kubectl("delete", "pod", "image-check", "--wait=false", check=False)
    assert phase == "Succeeded", out
    uid, version, *rest = [line for line in out if "Read-only" not in line]
    assert uid == "65532"
    assert version == f"scaleahead {project_version()}"  # the --build-arg, as released
    assert rest == ["ro"]  # the root file system refused the write


def test_apply_k_runs_both_replicas_and_serves_through_the_aggregator(installed: Installed):
    began = time.monotonic()
    ready = wait_for("both replicas Ready", lambda: len(installed.ready_pods()) == 2, timeout=180)
    took = time.monotonic() - began
    assert ready
    installed.timeline.append(f"both replicas Ready {took:.0f}s after kubectl apply -k")
    # The first replica made the certificate, and put its CA in the APIService.
    secret = installed.json("secret", "scaleahead-certs", "-n", NAMESPACE)
    ca = base64.b64decode(secret["data"]["ca.crt"])
    wait_for("the APIService to turn Available", installed.available, timeout=180)
    api = installed.json("apiservice", APISERVICE)
    assert base64.b64decode(api["spec"]["caBundle"]) == ca
    # The aggregator reaches the pods at their own IPs (there is no kube-proxy).
    endpoints = installed.json("endpoints", "scaleahead", "-n", NAMESPACE)
    ips = {a["ip"] for s in endpoints["subsets"] for a in s["addresses"]}
    assert ips == {p["status"]["podIP"] for p in installed.pods()}
    assert all(ip.startswith("198.18.") for ip in ips)
    body = wait_for("the metric", lambda: metric_body(installed), timeout=180)
    [item] = json.loads(body)["items"]
    assert item["metricLabels"] == {"namespace": "default", "service": "checkout"}
    assert parse_quantity(item["value"]) > 0
    installed.timeline.append(
        "$ kubectl get pods,apiservice\n"
        + installed.kubectl("get", "pods", "-n", NAMESPACE, "-o", "wide")
        + installed.kubectl("get", "apiservice", APISERVICE)
        + f"$ kubectl get --raw {CHECKOUT}\n{body}"
    )


@dataclass
class Poller:
    """Reads the metric through the aggregator in a thread until stopped: every answer."""

    installed: Installed
    answers: list[tuple[float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Poller:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        began = time.monotonic()
        while not self._stop.is_set():
            code, _ = self.installed.raw(CHECKOUT)
            self.answers.append((time.monotonic() - began, code))
            time.sleep(0.3)

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(30)

    def failures(self) -> list[tuple[float, int]]:
        return [a for a in self.answers if a[1] != 200]


def hpa_token(installed: Installed) -> str:
    """A token of the HPA controller's own service account (--use-service-account-credentials)."""
    return installed.kubectl(
        "create", "token", "horizontal-pod-autoscaler", "-n", "kube-system", "--duration=1h"
    ).strip()


def replica_context(installed: Installed) -> ssl.SSLContext:
    """TLS to a replica at its pod IP: the serving CA of the Secret, no hostname check
    (the certificate names the Service, not the pod IP)."""
    secret = installed.json("secret", "scaleahead-certs", "-n", NAMESPACE)
    context = ssl.create_default_context(cadata=base64.b64decode(secret["data"]["ca.crt"]).decode())
    context.check_hostname = False
    return context


def served_by_each_replica(installed: Installed, token: str) -> dict[str, tuple[str, str]]:
    """What each Ready replica answers for checkout, asked directly at its pod IP as the
    HPA controller: pod name -> (value, timestamp)."""
    context = replica_context(installed)
    out = {}
    for pod in installed.ready_pods():
        ip = pod["status"]["podIP"]
        r = httpx.get(
            f"https://{ip}:6443{METRIC}",
            params={"labelSelector": "service=checkout"},
            headers={"Authorization": f"Bearer {token}"},
            verify=context,
            timeout=10,
        )
        assert r.status_code == 200, r.text
        [item] = r.json()["items"]
        out[pod["metadata"]["name"]] = (item["value"], item["timestamp"])
    return out


def replicas_agree(installed: Installed, token: str) -> dict[str, tuple[str, str]]:
    """The replicas' answers, asked between two refreshes of the current values, which
    both make on the same grid (SETTLE past every 15 s), after the step's cycle: then
    they must be equal. Asked again a minute later before failing, for a refresh or a
    cycle that ran late on this busy machine."""
    for attempt in range(2):
        time.sleep((28 - time.time() % 60) % 60)  # 28 s into a minute: after the 25 s refresh
        answers = served_by_each_replica(installed, token)
        if len(set(answers.values())) == 1:
            return answers
        if attempt == 0:
            installed.timeline.append(f"replicas disagreed once, asked again: {answers}")
    raise AssertionError(
        f"the replicas serve different values: {answers}\n{replica_states(installed)}"
    )


def replica_states(installed: Installed) -> str:
    """What each replica's /metrics says of its cycles and of checkout, for a failure's
    message: why two replicas disagree (a cycle behind, another model, another actual).
    Read as the scrape example's ServiceAccount, which may get /metrics (the HPA
    controller's may not)."""
    installed.kubectl("apply", "-f", str(REPO / "manifests/examples/scrape/prometheus-rbac.yaml"))
    token = installed.kubectl(
        "create", "token", "scaleahead-metrics-scraper", "-n", NAMESPACE, "--duration=10m"
    ).strip()
    context = replica_context(installed)
    wanted = ("scaleahead_cycle_last_success", "scaleahead_cycle_duration_seconds_sum")
    lines = []
    for pod in installed.ready_pods():
        r = httpx.get(
            f"https://{pod['status']['podIP']}:6443/metrics",
            headers={"Authorization": f"Bearer {token}"},
            verify=context,
            timeout=10,
        )
        lines.append(f"--- {pod['metadata']['name']}: /metrics {r.status_code}")
        lines += [
            line
            for line in r.text.splitlines()
            if line.startswith(wanted) or ('service="checkout"' in line and "default" in line)
        ]
    return "\n".join(lines)


def test_the_example_hpa_reads_the_forecast(installed: Installed):
    node = installed.cluster.node
    # The example workload, its image swapped for one this node has (no registry here).
    workload = installed.root / "checkout"
    workload.mkdir()
    pause = node.ctr("images", "list", "--quiet").split()
    [pause_ref] = [ref for ref in pause if "pause" in ref]
    name, tag = pause_ref.rsplit(":", 1)
    (workload / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [
                    os.path.relpath(REPO / "manifests" / "examples" / "checkout", workload)
                ],
                "images": [{"name": "nginxinc/nginx-unprivileged", "newName": name, "newTag": tag}],
            }
        )
    )
    installed.kubectl("apply", "-k", str(workload))
    installed.kubectl("apply", "-f", str(REPO / "manifests" / "examples" / "hpa.yaml"))

    def reading() -> dict[str, Any] | None:
        hpa = installed.json("hpa", "checkout", "-n", "default")
        status = hpa.get("status", {})
        active = [c for c in status.get("conditions", []) if c["type"] == "ScalingActive"]
        if not active or active[0]["status"] != "True" or not status.get("currentMetrics"):
            return None
        return status

    status = wait_for("the HPA to read the forecast", reading, timeout=120)
    current = status["currentMetrics"][0]["external"]["current"]
    assert parse_quantity(current["averageValue"]) > 0
    events = installed.kubectl(
        "get", "events", "-n", "default", "--field-selector", "involvedObject.name=checkout"
    )
    assert "FailedGetExternalMetric" not in events
    installed.timeline.append(
        "$ kubectl get hpa\n" + installed.kubectl("get", "hpa", "-n", "default")
    )
    installed.kubectl("delete", "-f", str(REPO / "manifests" / "examples" / "hpa.yaml"))
    installed.kubectl("delete", "-k", str(workload))


def replacement(installed: Installed, victim: str) -> set[str] | None:
    """The two Ready replicas once neither is `victim`."""
    ready = {p["metadata"]["name"] for p in installed.ready_pods()}
    return ready if len(ready) == 2 and victim not in ready else None


def test_the_scrape_examples_account_reads_metrics_and_the_hpas_may_not(installed: Installed):
    """/metrics is authorized per request: the scrape example's ServiceAccount (its RBAC
    applied) reads each replica's, cycles included; the HPA controller's token is refused."""
    states = replica_states(installed)
    pods = [p["metadata"]["name"] for p in installed.ready_pods()]
    for pod in pods:
        assert f"--- {pod}: /metrics 200" in states, states
    assert states.count("scaleahead_cycle_last_success") >= len(pods), states
    refused = httpx.get(
        f"https://{installed.ready_pods()[0]['status']['podIP']}:6443/metrics",
        headers={"Authorization": f"Bearer {hpa_token(installed)}"},
        verify=replica_context(installed),
        timeout=10,
    )
    assert refused.status_code == 403


def test_a_killed_replica_is_replaced_and_nobody_notices(installed: Installed):
    token = hpa_token(installed)
    before = sorted(p["metadata"]["name"] for p in installed.ready_pods())
    victim = before[0]
    with Poller(installed) as poller:
        installed.kubectl("delete", "pod", "-n", NAMESPACE, victim, "--wait=false")
        replaced = wait_for(
            "a replacement Ready", lambda: replacement(installed, victim), timeout=180
        )
        time.sleep(3)
    assert poller.answers and not poller.failures(), poller.failures()
    after = replicas_agree(installed, token)  # the new replica serves the same value
    assert installed.available()
    # A new pod starts afresh (its emptyDir is new): it served its peer's forecasts until
    # its own first cycle ended, found through the Service's EndpointSlice and allowed by
    # the manifests' RBAC.
    [new] = sorted(replaced - {victim} - set(before))
    log = installed.kubectl("logs", "-n", NAMESPACE, new)
    borrowed = [line for line in log.splitlines() if "borrowed from peer" in line]
    assert borrowed, log[-3000:]
    installed.timeline.append(
        f"killed {victim}: replaced by {sorted(replaced)}; {len(poller.answers)} reads of "
        f"the metric through the aggregator meanwhile, all 200; replicas agree: {after}; "
        f"the new one: {borrowed[0][-160:]}"
    )


def test_a_config_change_rolls_the_replicas_without_a_gap(installed: Installed):
    # The rule's forecasts now live only as long as they must (the next test waits for it).
    from forecaster.config import Rule

    ttl = Rule(name="x", query="x{<<.LabelMatchers>>}").min_ttl
    folder = overlay(
        installed.root / "mine-v2", installed.cluster.image, installed.prometheus.url,
        forecast_ttl=f"{ttl}s",
    )  # fmt: skip
    old = {p["metadata"]["name"] for p in installed.pods()}
    began = time.monotonic()
    with Poller(installed) as poller:
        installed.kubectl("apply", "-k", str(folder))
        installed.cluster.node.kubectl(
            "rollout", "status", "deployment/scaleahead", "-n", NAMESPACE, "--timeout=240s"
        )
        time.sleep(3)
    took = time.monotonic() - began
    installed.overlay = folder
    new = {p["metadata"]["name"] for p in installed.ready_pods()}
    assert len(new) == 2 and not new & old
    assert poller.answers and not poller.failures(), poller.failures()
    installed.timeline.append(
        f"config rolled in {took:.0f}s: {sorted(old)} -> {sorted(new)}; "
        f"{len(poller.answers)} reads meanwhile, all 200"
    )


@pytest.mark.timeout(600)
def test_a_prometheus_outage_past_the_ttl_keeps_the_apiservice_available(installed: Installed):
    installed.prometheus.stop()
    began = time.monotonic()
    samples: list[tuple[float, int, bool, int]] = []
    unavailable_at = None
    try:
        while time.monotonic() - began < 400:
            code, body = installed.raw(CHECKOUT)
            sample = (
                time.monotonic() - began,
                code,
                installed.available(),
                len(installed.ready_pods()),
            )
            samples.append(sample)
            if code == 503 and unavailable_at is None:
                unavailable_at = sample[0]
                status = json.loads(body)  # a Status naming why, never a 0
                assert status["kind"] == "Status" and status["code"] == 503, body
            if unavailable_at is not None and sample[0] > unavailable_at + 20:
                break
            time.sleep(2)
        assert unavailable_at is not None, samples
        # With the metric answering 503, discovery still works: a namespace is deleted.
        installed.kubectl("create", "namespace", "unrelated")
        t = time.monotonic()
        installed.cluster.node.kubectl("delete", "namespace", "unrelated", "--timeout=90s")
        deleted = time.monotonic() - t
        samples.append(
            (
                time.monotonic() - began,
                installed.raw(CHECKOUT)[0],
                installed.available(),
                len(installed.ready_pods()),
            )
        )
        ready = [p["metadata"]["name"] for p in installed.ready_pods()]
        verbose = installed.kubectl(
            "get",
            "--raw",
            f"/api/v1/namespaces/{NAMESPACE}/pods/https:{ready[0]}:6443/proxy/readyz?verbose",
            check=False,
        )
    finally:
        installed.prometheus.start()
    codes = {code for _, code, _, _ in samples}
    assert codes <= {200, 503}, samples
    assert all(available for _, _, available, _ in samples), samples
    assert all(n == 2 for _, _, _, n in samples), samples
    installed.timeline.append(
        f"Prometheus stopped: metric 200 until {unavailable_at:.0f}s, then 503; APIService "
        f"Available and 2 replicas Ready at every one of {len(samples)} checks; namespace "
        f"deleted in {deleted:.1f}s during the outage"
    )
    installed.timeline.append(
        "outage timeline (s, code, Available, Ready replicas): "
        + ", ".join(f"{s[0]:.0f}:{s[1]}/{s[2]}/{s[3]}" for s in samples)
    )
    installed.timeline.append(f"/readyz?verbose during the outage: {verbose}")
    back = wait_for("the metric again", lambda: installed.raw(CHECKOUT)[0] == 200, timeout=120)
    assert back


STARTUP = 45  # seconds a workload pod takes to become Ready


def scaleahead_metrics(installed: Installed) -> str:
    """A replica's /metrics, asked at its pod IP with the cluster admin's certificate."""
    plane = installed.cluster.node.plane
    context = ssl.create_default_context(cafile=None)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the serving certificate is checked elsewhere
    context.load_cert_chain(plane.admin.cert, plane.admin.key)
    ip = installed.ready_pods()[0]["status"]["podIP"]
    r = httpx.get(f"https://{ip}:6443/metrics", verify=context, timeout=10)
    assert r.status_code == 200, r.text
    return r.text


def measured_lead(installed: Installed) -> float | None:
    for line in scaleahead_metrics(installed).splitlines():
        if (
            line.startswith("scaleahead_series_lead_seconds{")
            and 'service="checkout"' in line
            and 'namespace="default"' in line
            and 'source="measured"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return None


def startups(installed: Installed) -> list[float]:
    """Creation to Ready of each Ready workload pod, as the API server recorded them."""
    pods = installed.json("pods", "-n", "default", "-l", "app=slowstart")["items"]
    out = []
    for pod in pods:
        ready = [c for c in pod["status"].get("conditions", []) if c["type"] == "Ready"]
        if ready and ready[0]["status"] == "True":
            created = pod["metadata"]["creationTimestamp"]
            out.append(_seconds(ready[0]["lastTransitionTime"]) - _seconds(created))
    return out


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def scaled_up(installed: Installed) -> dict[str, Any] | None:
    """The workload HPA's status once it wants more than its 3 pods."""
    status = installed.json("hpa", "slowstart", "-n", "default").get("status", {})
    return status if status.get("desiredReplicas", 0) > 3 else None


@pytest.mark.timeout(600)
def test_the_lead_is_measured_from_real_pods_that_the_hpa_scales(installed: Installed):
    """A workload whose pods take STARTUP seconds to turn Ready: scaleahead measures
    that as the series' lead (to the step), and the HPA adds real pods on the forecast."""
    code = REPO / "harness" / "workload.py"
    installed.kubectl(
        "create", "configmap", "slowstart", "-n", "default", f"--from-file=workload.py={code}"
    )
    installed.cluster.node.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps(
            deployment(
                "slowstart", "default", installed.cluster.image, 3, STARTUP, 10.0, "slowstart"
            )
        ),
    )
    wait_for("3 workload pods Ready", lambda: len(startups(installed)) == 3, timeout=240)
    first = startups(installed)
    assert all(STARTUP <= s <= STARTUP + 20 for s in first), first
    # An HPA on the forecast of a series worth 4 or more pods at 0.5 requests/s each.
    hpa = yaml.safe_load((REPO / "manifests" / "examples" / "hpa.yaml").read_text())
    hpa["metadata"]["name"] = "slowstart"
    hpa["spec"]["scaleTargetRef"]["name"] = "slowstart"
    hpa["spec"]["minReplicas"] = 3
    hpa["spec"]["maxReplicas"] = 8
    hpa["spec"]["metrics"][0]["external"]["target"]["averageValue"] = "500m"
    installed.cluster.node.kubectl("apply", "-f", "-", input=json.dumps(hpa))
    try:
        lead = wait_for("a measured lead", lambda: measured_lead(installed), timeout=150)
        step = 60
        # The pods' 90th percentile creation-to-Ready, rounded up to the step.
        assert lead == math.ceil(np.percentile(first, 90) / step) * step, (lead, first)
        assert abs(lead - max(first)) <= step
        # The HPA scales the workload on the forecast: real pods, Ready after STARTUP.
        status = wait_for("the HPA to add pods", lambda: scaled_up(installed), timeout=120)
        desired = status["desiredReplicas"]
        value = parse_quantity(status["currentMetrics"][0]["external"]["current"]["averageValue"])
        wait_for(
            f"{desired} workload pods Ready",
            lambda: len(startups(installed)) >= desired,
            timeout=240,
        )
        added = sorted(startups(installed))[-(desired - 3) :]
        assert all(STARTUP <= s <= STARTUP + 20 for s in added), added
        installed.timeline.append(
            f"workload Ready after {', '.join(f'{s:.0f}s' for s in first)} (start-up "
            f"{STARTUP}s); scaleahead's measured lead {lead:.0f}s; the HPA read "
            f"{value:.3f}/pod and scaled 3 -> {desired} real pods, Ready after "
            f"{', '.join(f'{s:.0f}s' for s in added)}\n"
            + installed.kubectl("get", "hpa,deployment", "-n", "default")
        )
    finally:
        installed.kubectl("delete", "hpa", "slowstart", "-n", "default", check=False)
        installed.kubectl(
            "delete", "deployment,configmap", "slowstart", "-n", "default", check=False
        )


def test_delete_k_leaves_nothing_of_scaleahead(installed: Installed):
    installed.cluster.node.kubectl("delete", "-k", str(installed.overlay), "--timeout=120s")
    wait_for(
        "the namespace to go",
        lambda: (
            "NotFound"
            in installed.cluster.node.kubectl("get", "namespace", NAMESPACE, check=False).stderr
        ),
        timeout=120,
    )
    left = installed.kubectl(
        "get",
        "apiservices,clusterroles,clusterrolebindings,roles,rolebindings,serviceaccounts,secrets,configmaps",
        "-A",
        "-l",
        "app.kubernetes.io/part-of=scaleahead",
        "-o",
        "name",
    )
    assert left.strip() == ""
    assert (
        "NotFound"
        in installed.cluster.node.kubectl("get", "apiservice", APISERVICE, check=False).stderr
    )
