"""Registering a scaleahead on loopback with a control plane's aggregation layer, as a
cluster admin does: identity, RBAC, Service and APIService, then the serving CA; and its
peer replicas, as the Service's EndpointSlice lists them."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import yaml

from harness.controlplane import ControlPlane
from harness.net import REPO


def peer_rbac() -> str:
    """What manifests/base/rbac.yaml grants the replicas to find and ask each other."""
    docs = yaml.safe_load_all((REPO / "manifests" / "base" / "rbac.yaml").read_text())
    mine = [d for d in docs if d and d["metadata"]["name"].startswith("scaleahead-peer")]
    assert len(mine) == 4, [d["metadata"]["name"] for d in mine]
    return "\n---\n".join(yaml.safe_dump(d) for d in mine)


PEERS_SLICE = "scaleahead-peers"


def endpoint_slice(address: str, port: int, pod: str) -> str:
    """The EndpointSlice the Service's controller writes for one Ready pod named `pod`,
    serving at `address` (not loopback: the API server refuses it), `port`."""
    return f"""
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {PEERS_SLICE}
  namespace: scaleahead
  labels: {{kubernetes.io/service-name: scaleahead}}
addressType: IPv4
ports: [{{name: https, port: {port}, protocol: TCP}}]
endpoints:
  - addresses: [{address}]
    conditions: {{ready: true}}
    targetRef: {{kind: Pod, name: {pod}, namespace: scaleahead}}
"""


def registration(port: int) -> str:
    """What a cluster admin applies: identity, RBAC, Service and APIService (no caBundle
    yet), plus a role that lets user "reader" list the metric in namespace default."""
    return f"""
apiVersion: v1
kind: Namespace
metadata: {{name: scaleahead}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: scaleahead, namespace: scaleahead}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: "scaleahead:system:auth-delegator"}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:auth-delegator"}}
subjects: [{{kind: ServiceAccount, name: scaleahead, namespace: scaleahead}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: "scaleahead:auth-reader", namespace: kube-system}}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: extension-apiserver-authentication-reader
subjects: [{{kind: ServiceAccount, name: scaleahead, namespace: scaleahead}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: "scaleahead:apiservice-reader"}}
rules:
- apiGroups: [apiregistration.k8s.io]
  resources: [apiservices]
  resourceNames: [v1beta1.external.metrics.k8s.io]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: "scaleahead:apiservice-reader"}}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: "scaleahead:apiservice-reader"
subjects: [{{kind: ServiceAccount, name: scaleahead, namespace: scaleahead}}]
---
apiVersion: v1
kind: Service
metadata: {{name: scaleahead, namespace: scaleahead}}
spec:
  type: ExternalName
  externalName: localhost
  ports: [{{name: https, port: {port}, protocol: TCP}}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {{name: v1beta1.external.metrics.k8s.io}}
spec:
  group: external.metrics.k8s.io
  version: v1beta1
  groupPriorityMinimum: 100
  versionPriority: 100
  service: {{name: scaleahead, namespace: scaleahead, port: {port}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: external-metrics-reader}}
rules:
- apiGroups: [external.metrics.k8s.io]
  resources: ["*"]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: reader-external-metrics, namespace: default}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: external-metrics-reader}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: reader}}]
"""


def wait_ready(
    url: str,
    ca: Path,
    proc: subprocess.Popen[bytes],
    log: Path,
    path: str = "/readyz",
    timeout: float = 90,
) -> None:
    """Wait until the scaleahead at `url` (its CA in `ca`) answers 200 on `path` (ready,
    by default), or fail with its log."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"scaleahead exited:\n{log.read_text()[-3000:]}")
        if ca.exists():
            try:
                context = ssl.create_default_context(cafile=str(ca))
                r = httpx.get(f"{url}{path}", verify=context, timeout=2)
                if r.status_code == 200:
                    return
                last = r.text
            except httpx.HTTPError as err:
                last = str(err)
        time.sleep(0.3)
    raise TimeoutError(f"scaleahead: {path} not 200: {last}\n{log.read_text()[-3000:]}")


def trust_and_wait(plane: ControlPlane, ca: Path) -> None:
    """The documented step: put the CA of the --cert-dir certificate into the APIService,
    then wait until the aggregator finds it Available."""
    bundle = base64.b64encode(ca.read_bytes()).decode()
    plane.kubectl(
        "patch",
        "apiservice",
        "v1beta1.external.metrics.k8s.io",
        "--type=merge",
        "-p",
        json.dumps({"spec": {"caBundle": bundle}}),
    )
    plane.kubectl(
        "wait",
        "--for=condition=Available",
        "apiservice/v1beta1.external.metrics.k8s.io",
        "--timeout=60s",
    )
