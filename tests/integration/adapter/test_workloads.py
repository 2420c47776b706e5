"""HPAs and their pods in a real kube-apiserver: the HPAs whose External metrics name a
rule pin their series (forecast before anyone asks, kept past drop_after), and the
target's pods' creation-to-Ready times set each series' lead. With no nodes here, the
pods' Ready conditions are set through the status subresource, as a kubelet would."""

from __future__ import annotations

import contextlib
import time
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from kubernetes import client

from adapter.cluster.kube import Kube, api_client
from adapter.cluster.workloads import WorkloadWatch
from adapter.service import build_service, prometheus_source
from forecaster.config import PrometheusConfig, Rule
from forecaster.policy import window_peak
from forecaster.sources.base import series_key
from forecaster.times import SETTLE
from harness.controlplane import ControlPlane
from harness.prometheus import PrometheusServer
from tests.conftest import RULE_QUERY, Clock

RULE = "http_requests_forecast"
STARTUPS = (200, 230, 250, 260, 90)  # seconds from creation to Ready of five pods


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def deployment(name: str, app: str) -> dict:
    labels = {"app": app}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 0,  # the pods are made by hand: no controller needed for the test
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.9"}]},
            },
        },
    }


def hpa(
    name: str, target: str, metric: str, selector: dict | None, scale_down: int | None = None
) -> dict:
    external = {
        "metric": {"name": metric},
        "target": {"type": "AverageValue", "averageValue": "10"},
    }
    if selector is not None:
        external["metric"]["selector"] = selector
    spec: dict = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
        "minReplicas": 1,
        "maxReplicas": 10,
        "metrics": [{"type": "External", "external": external}],
    }
    if scale_down is not None:
        spec["behavior"] = {"scaleDown": {"stabilizationWindowSeconds": scale_down}}
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name},
        "spec": spec,
    }


@pytest.fixture(scope="module")
def cluster(control_plane: ControlPlane):
    """Namespace default: Deployment checkout with five pods that took STARTUPS to be
    Ready (and one still starting), Deployment idle with none Ready; HPA checkout on our
    metric for service=checkout, HPA idle on our metric too, HPA other on another one."""
    api = api_client(control_plane.admin_kubeconfig)
    apps, core, auto = client.AppsV1Api(api), client.CoreV1Api(api), client.AutoscalingV2Api(api)
    try:  # the service account controller may not have made it yet; pods need it
        core.create_namespaced_service_account("default", {"metadata": {"name": "default"}})
    except client.ApiException as err:
        assert err.status == 409, err
    for name in ("wl-checkout", "wl-idle"):
        apps.create_namespaced_deployment("default", deployment(name, name))
    for i, seconds in enumerate([*STARTUPS, None]):
        pod = core.create_namespaced_pod(
            "default",
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"wl-checkout-{i}", "labels": {"app": "wl-checkout"}},
                "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.9"}]},
            },
        )
        if seconds is None:
            continue  # still starting: not Ready, not measured
        created = pod.metadata.creation_timestamp
        core.patch_namespaced_pod_status(
            pod.metadata.name,
            "default",
            {
                "status": {
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "lastTransitionTime": iso(created + timedelta(seconds=seconds)),
                        }
                    ]
                }
            },
        )
    auto.create_namespaced_horizontal_pod_autoscaler(
        "default",
        hpa("wl-checkout", "wl-checkout", RULE, {"matchLabels": {"service": "checkout"}}, 0),
    )
    auto.create_namespaced_horizontal_pod_autoscaler(
        "default",
        hpa(
            "wl-idle",
            "wl-idle",
            RULE,
            {"matchExpressions": [{"key": "service", "operator": "In", "values": ["idle"]}]},
        ),
    )
    auto.create_namespaced_horizontal_pod_autoscaler(
        "default", hpa("wl-other", "wl-checkout", "queue_length", None)
    )
    yield Kube(api), auto
    for name in ("wl-checkout", "wl-idle", "wl-other", "wl-late"):
        with contextlib.suppress(client.ApiException):
            auto.delete_namespaced_horizontal_pod_autoscaler(name, "default")


def test_hpas_pin_their_series_with_their_pods_lead(
    cluster, prometheus: PrometheusServer, control_plane: ControlPlane
):
    kube, auto = cluster
    rule = Rule(name=RULE, query=RULE_QUERY, lead="2m", history="8d", drop_after="2m")

    clock = Clock(prometheus.end - 3 * 3600 + SETTLE)
    svc = build_service([rule], prometheus_source(PrometheusConfig(url=prometheus.url)), clock)
    watch = WorkloadWatch(kube, [rule], svc.demand, time.time)
    watch.resync()
    pins = svc.demand.pins()  # other tests' HPAs share this control plane: ours are wl-*
    assert {p.owner: p.lead for p in pins.values() if p.owner.startswith("HPA default/wl-")} == {
        "HPA default/wl-checkout": 300,  # p90 of STARTUPS (256 s), rounded up to whole steps
        "HPA default/wl-idle": None,  # no Ready pod: the configured lead
    }
    assert not any(p.owner == "HPA default/wl-other" for p in pins.values())  # not our metric
    # Its scale-down window, through which the series' budget is costed (wl-idle sets none:
    # the controller's default, the engine's).
    ours = {p.owner: p.scale_down for p in pins.values() if p.owner.startswith("HPA default/wl-")}
    assert ours == {"HPA default/wl-checkout": 0, "HPA default/wl-idle": None}
    # The pinned series is forecast with its measured lead; nobody asks for the others,
    # so past drop_after only it is left.
    for _ in range(4):
        svc.cycle.run(rule, clock())
        clock.t += 60
    svc.current.refresh(rule)
    snap = svc.store.snapshot(RULE)
    checkout = series_key({"namespace": "default", "service": "checkout"})
    assert snap is not None and checkout in snap
    assert series_key({"namespace": "default", "service": "search"}) not in snap  # dropped
    forecast = snap[checkout]
    assert forecast.lead == 300
    assert svc.demand.select(
        rule, {checkout: {"namespace": "default", "service": "checkout"}}, clock()
    ).scale_down == {checkout: 0}
    # Served over its own lead window: the steps labelled (now, now + 300 + 60].
    view = svc.provider.view.rule(rule)
    [state] = [s for s in view.series if series_key(s.labels) == checkout]
    now = view.now
    covered = (forecast.ds > now) & (forecast.ds <= now + 360)
    assert covered.sum() == 6
    expected = max(state.actual, float(window_peak(forecast.upper[covered], 6)))
    assert state.served is not None and state.served.value == pytest.approx(expected)
    metrics = TestClient(svc.app).get("/metrics").text
    assert (
        'scaleahead_series_lead_seconds{namespace="default",rule="http_requests_forecast",'
        'service="checkout",source="measured"} 300.0'
    ) in metrics
    # ...and its budget costed through its HPA's window (0 s: it scales down at once).
    assert (
        'scaleahead_series_scale_down_seconds{namespace="default",rule="http_requests_forecast",'
        'service="checkout"} 0.0'
    ) in metrics
    # Through the watch: an HPA created later pins its series within seconds; deleted,
    # it lets go.
    watch.start()
    try:
        auto.create_namespaced_horizontal_pod_autoscaler(
            "default", hpa("wl-late", "wl-checkout", RULE, {"matchLabels": {"service": "search"}})
        )
        deadline = time.monotonic() + 20
        while "HPA default/wl-late" not in {p.owner for p in svc.demand.pins().values()}:
            assert time.monotonic() < deadline, "the watch did not see the new HPA"
            time.sleep(0.1)
        svc.cycle.run(rule, clock())
        snap = svc.store.snapshot(RULE)
        assert snap is not None
        assert snap[series_key({"namespace": "default", "service": "search"})].lead == 300
        auto.delete_namespaced_horizontal_pod_autoscaler("wl-late", "default")
        deadline = time.monotonic() + 20
        while "HPA default/wl-late" in {p.owner for p in svc.demand.pins().values()}:
            assert time.monotonic() < deadline, "the watch did not see the HPA go"
            time.sleep(0.1)
    finally:
        watch.stop()
