"""What `kubectl kustomize` renders for the base and every overlay: valid against the real
Kubernetes OpenAPI schemas (and the CRDs' published schemas), consistent with the server
it deploys, and granting exactly the Kubernetes API calls the code makes."""

from __future__ import annotations

import ast
import inspect
import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes
import kubernetes_validate
import pytest
import yaml
from fastapi.testclient import TestClient

from adapter.cli import parser
from adapter.cluster import kube as kube_module
from adapter.server.tls import HANDSHAKE_TIMEOUT
from adapter.service import DEMO_RULE, build_service, demo_source
from forecaster.config import parse_config
from tests.conftest import REPO, venv_tool

KUBERNETES_VERSION = "1.28.0"  # the control plane of ../shared/k8s
KUSTOMIZATIONS = [
    "base",
    "overlays/cert-manager",
    "overlays/keda",
    "examples",
    "examples/checkout",
    "examples/keda",
    "examples/layered",
    "examples/forecast-only/keda",
    "examples/forecast-only/prometheus-adapter",
    "examples/scrape",
    "examples/kube-prometheus-stack",
    "examples/my-config",
    "monitoring",
]
CRD_VALIDATOR = REPO / "tests" / "integration" / "manifests" / "crds"
SERVICE_ACCOUNT = ("scaleahead", "scaleahead")


@cache
def render(name: str) -> tuple[dict[str, Any], ...]:
    """The objects `kubectl kustomize manifests/NAME` renders."""
    kubectl = venv_tool("kubectl")
    out = subprocess.run(
        [kubectl, "kustomize", str(REPO / "manifests" / name)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return tuple(d for d in yaml.safe_load_all(out) if d)


def one(docs: tuple[dict[str, Any], ...], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"{kind} {name or ''}: {len(found)} rendered"
    return found[0]


CRD_GROUPS = {"cert-manager.io", "keda.sh", "monitoring.coreos.com"}


def is_crd_kind(doc: dict[str, Any]) -> bool:
    return doc["apiVersion"].split("/")[0] in {
        "cert-manager.io",
        "keda.sh",
        "monitoring.coreos.com",
    }


def test_every_kustomization_is_found():
    found = {
        str(p.parent.relative_to(REPO / "manifests"))
        for p in REPO.glob("manifests/**/kustomization.yaml")
    }
    assert found >= set(KUSTOMIZATIONS)


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_rendered_objects_are_valid_kubernetes(name):
    docs = render(name)
    checked = [d for d in docs if not is_crd_kind(d)]
    assert checked
    for doc in checked:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    print(name, sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs))


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_custom_resources_are_valid_against_their_crd_schemas(name):
    docs = [d for d in render(name) if is_crd_kind(d)]
    if not docs:
        return
    node = shutil.which("node")
    assert node and (CRD_VALIDATOR / "node_modules").is_dir(), (
        "node and the CRD validators are needed: scripts/test installs them"
    )
    run = subprocess.run(
        [node, "validate.mjs"],
        cwd=CRD_VALIDATOR,
        input=json.dumps(docs),
        capture_output=True,
        text=True,
    )
    print(run.stdout)
    assert run.returncode == 0, run.stdout + run.stderr


def test_validation_would_catch_mistakes():
    hpa = json.loads(json.dumps(one(render("examples"), "HorizontalPodAutoscaler")))
    hpa["spec"]["metrics"][0]["external"]["target"]["averageValu"] = "50"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(hpa, KUBERNETES_VERSION, strict=True)
    monitor = json.loads(json.dumps(one(render("examples"), "ServiceMonitor")))
    monitor["spec"]["endpoints"][0]["port"] = 6443  # a port *name* is a string
    run = subprocess.run(
        [shutil.which("node") or "node", "validate.mjs"],
        cwd=CRD_VALIDATOR,
        input=json.dumps([monitor]),
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1 and "port must be string" in run.stdout


def test_the_apiservice_routes_to_the_port_the_deployment_serves():
    for name in ("base", "overlays/cert-manager"):
        docs = render(name)
        api = one(docs, "APIService")
        assert api["metadata"]["name"] == kube_module.APISERVICE
        assert api["spec"].get("insecureSkipTLSVerify") is False
        ref = api["spec"]["service"]
        service = one(docs, "Service", ref["name"])
        assert service["metadata"]["namespace"] == ref["namespace"]
        [port] = [p for p in service["spec"]["ports"] if p["port"] == ref["port"]]
        deployment = one(docs, "Deployment", "scaleahead")
        assert service["spec"]["selector"].items() <= (
            deployment["spec"]["template"]["metadata"]["labels"].items()
        )
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        [served] = [p for p in container["ports"] if p["name"] == port["targetPort"]]
        args = serve_args(container)
        assert served["containerPort"] == args.secure_port


def expanded_args(container: dict[str, Any]) -> list[str]:
    """The container's args, each $(NAME) replaced by its env value as the kubelet does."""
    values = {env["name"]: env["value"] for env in container.get("env", [])}
    return [re.sub(r"\$\((\w+)\)", lambda m: values[m.group(1)], a) for a in container["args"]]


def serve_args(container: dict[str, Any]) -> Any:
    """The container's `serve` flags, parsed."""
    return parser().parse_args(["serve", *expanded_args(container)])


def test_the_deployment_flags_parse_and_their_paths_are_mounted():
    for name in ("base", "overlays/cert-manager", "overlays/keda"):
        deployment = one(render(name), "Deployment", "scaleahead")
        pod = deployment["spec"]["template"]["spec"]
        [container] = pod["containers"]
        args = serve_args(container)
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        volumes = {v["name"] for v in pod["volumes"]}
        assert {m["name"] for m in mounts.values()} <= volumes

        def mount_of(path: str, mounts: dict[str, Any] = mounts) -> dict[str, Any]:
            [m] = [m for p, m in mounts.items() if path.startswith(p.rstrip("/") + "/")]
            return m

        assert mount_of(args.config)["name"] == "config"
        if args.cert_dir:  # the server writes its certificate there
            assert not mount_of(args.cert_dir + "/x").get("readOnly")
            assert args.cert_secret
        else:
            assert mount_of(args.tls_cert_file) == mount_of(args.tls_private_key_file)
        # The checkpoints go to a writable emptyDir (it outlives a container's restart),
        # into a directory below its root, which the server creates with mode 0700.
        state = mount_of(args.state_dir)
        assert not state.get("readOnly") and args.state_dir != state["mountPath"]
        [volume] = [v for v in pod["volumes"] if v["name"] == state["name"]]
        assert "emptyDir" in volume and volume["emptyDir"].get("medium") != "Memory"
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
        assert security["capabilities"]["drop"] == ["ALL"]
        assert pod["securityContext"]["runAsNonRoot"]
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert deployment["spec"]["replicas"] >= 2
        assert "memory" in container["resources"]["limits"]


def test_the_probes_hit_paths_the_server_answers():
    client = TestClient(build_service([DEMO_RULE], demo_source, lambda: 1e9).app)
    for name in ("base", "overlays/cert-manager", "overlays/keda"):
        [container] = one(render(name), "Deployment", "scaleahead")["spec"]["template"]["spec"][
            "containers"
        ]
        probes = [container[k] for k in ("startupProbe", "livenessProbe", "readinessProbe")]
        for probe in probes:
            get = probe["httpGet"]
            assert get["scheme"] == "HTTPS" and get["port"] == "https"
            # A probe waiting its address' handshake turn is cut by the server, not the
            # kubelet: its timeout outlasts the handshake deadline and a request.
            assert probe["timeoutSeconds"] > HANDSHAKE_TIMEOUT + 1, probe
            # Not ready before the first cycle, but answered (503 is readiness's "no").
            assert client.get(get["path"]).status_code in (200, 503), get["path"]
        assert client.get(probes[1]["httpGet"]["path"]).status_code == 200  # alive


def test_the_keda_overlay_leaves_the_apiservice_to_keda_and_serves_its_scaled_object():
    """No APIService; the ScaledObject's scaler address is the Service's gRPC port, which
    routes to the port the server's --keda-scaler-port opens; its trigger is one the scaler
    accepts for a rule of the shipped config, with KEDA's HPA behaviour as the example's."""
    docs = render("overlays/keda")
    assert not [d for d in docs if d["kind"] == "APIService"]
    service = one(docs, "Service", "scaleahead")
    [grpc_port] = [p for p in service["spec"]["ports"] if p["name"] == "grpc"]
    [container] = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    [served] = [p for p in container["ports"] if p["name"] == grpc_port["targetPort"]]
    args = serve_args(container)
    assert served["containerPort"] == args.keda_scaler_port
    assert args.cert_secret  # TLS: the scaler serves with the same certificate
    # Mutual TLS by default: the client CA is mounted from a Secret that must exist.
    assert args.keda_client_ca_file and not args.keda_insecure_any_client
    [mount] = [
        m for m in container["volumeMounts"] if args.keda_client_ca_file.startswith(m["mountPath"])
    ]
    [volume] = [
        v
        for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
        if v["name"] == mount["name"]
    ]
    assert volume["secret"]["secretName"] == "scaleahead-keda-client-ca"
    assert not volume["secret"].get("optional")
    assert args.keda_client_ca_file.endswith("/" + volume["secret"]["items"][0]["path"])
    policy = one(docs, "NetworkPolicy")
    keda_ingress = [r for r in policy["spec"]["ingress"] if r["ports"][0]["port"] == "grpc"]
    assert keda_ingress[0]["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "keda"
    }

    cm = one(docs, "ConfigMap")
    rules = [r.name for r in parse_config(yaml.safe_load(cm["data"]["config.yaml"]), "c").rules]
    example = render("examples/keda")
    scaled = one(example, "ScaledObject")
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] in ("external", "external-push")
    meta = trigger["metadata"]
    host, port = meta["scalerAddress"].rsplit(":", 1)
    namespace = service["metadata"]["namespace"]
    assert host == f"{service['metadata']['name']}.{namespace}.svc"
    assert int(port) == grpc_port["port"] and meta["enableTLS"] == "true"
    from adapter.keda import externalscaler_pb2 as pb
    from adapter.keda.scaler import parse_trigger

    ref = pb.ScaledObjectRef(name="checkout", namespace="default", scalerMetadata=meta)
    parsed = parse_trigger(ref, rules)
    assert parsed.threshold and parsed.threshold > 0
    auth = one(example, trigger["authenticationRef"]["kind"], trigger["authenticationRef"]["name"])
    assert [p["parameter"] for p in auth["spec"]["secretTargetRef"]] == [
        "caCert",
        "tlsClientCert",
        "tlsClientKey",
    ]
    target = one(example, "Deployment", scaled["spec"]["scaleTargetRef"]["name"])
    assert target["metadata"]["namespace"] == scaled["metadata"]["namespace"]
    behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior == one(render("examples"), "HorizontalPodAutoscaler")["spec"]["behavior"]


def test_my_config_overlay_carries_the_users_prometheus_rules_and_network(tmp_path):
    """The user's Prometheus (URL and password), rules and network from one overlay,
    the base untouched: nothing of the base's defaults is left in what it renders."""
    docs = render("examples/my-config")
    [cm] = [
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("scaleahead-config-")
    ]
    text = cm["data"]["config.yaml"]
    raw = yaml.safe_load(text)
    password_file = raw["prometheus"]["basic_auth"]["password_file"]
    (tmp_path / "password").write_text("s3cret")
    raw["prometheus"]["basic_auth"]["password_file"] = str(tmp_path / "password")
    config = parse_config(raw, "my-config")
    assert config.prometheus.url == "http://prometheus.observability.svc:9090"
    assert [r.name for r in config.rules] == ["checkout_requests_forecast", "orders_forecast"]
    # The Deployment reads the replaced ConfigMap and mounts the password where it is read.
    deployment = one(docs, "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["config"]["configMap"]["name"] == cm["metadata"]["name"]
    [container] = spec["containers"]
    mount = max(  # the innermost mount holding the file (the config's is its parent)
        (m for m in container["volumeMounts"] if password_file.startswith(m["mountPath"] + "/")),
        key=lambda m: len(m["mountPath"]),
    )
    secret = volumes[mount["name"]]["secret"]
    assert secret["secretName"] == "scaleahead-prometheus"
    assert f"{mount['mountPath']}/{secret['items'][0]['path']}" == password_file
    # The network: the user's Prometheus namespace and control-plane addresses only.
    policy = one(docs, "NetworkPolicy")
    [rule] = policy["spec"]["ingress"]
    assert {"ipBlock": {"cidr": "10.0.0.0/24"}} in rule["from"]
    namespaces = [
        f["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for f in rule["from"]
        if "namespaceSelector" in f
    ]
    assert namespaces == ["observability"]
    rendered = yaml.safe_dump_all(docs)
    assert "prometheus-operated" not in rendered and "0.0.0.0/0" not in rendered
    # One ConfigMap of rules: the base's is replaced, not kept beside it.
    assert len([d for d in docs if d["metadata"]["name"].startswith("scaleahead-config")]) == 1


def test_the_shipped_config_is_valid_and_the_example_hpa_uses_its_metric():
    cm = one(render("base"), "ConfigMap")
    assert cm["metadata"]["name"].startswith("scaleahead-config-")  # hash: rolls on change
    volumes = one(render("base"), "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "config", "configMap": {"name": cm["metadata"]["name"]}} in volumes
    config = parse_config(yaml.safe_load(cm["data"]["config.yaml"]), "config.yaml")
    hpa = one(render("examples"), "HorizontalPodAutoscaler")
    [metric] = hpa["spec"]["metrics"]
    assert metric["external"]["metric"]["name"] in {r.name for r in config.rules}
    assert metric["external"]["target"]["type"] == "AverageValue"
    behavior = hpa["spec"]["behavior"]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 300
    target = one(render("examples"), "Deployment", hpa["spec"]["scaleTargetRef"]["name"])
    assert target["metadata"]["namespace"] == hpa["metadata"]["namespace"]


def test_the_layered_hpa_has_cpu_under_the_forecast():
    config = parse_config(
        yaml.safe_load(one(render("base"), "ConfigMap")["data"]["config.yaml"]), "config.yaml"
    )
    layered = render("examples/layered")
    hpa = one(layered, "HorizontalPodAutoscaler")
    by_type = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert set(by_type) == {"Resource", "External"}
    cpu = by_type["Resource"]["resource"]
    assert cpu["name"] == "cpu" and cpu["target"]["type"] == "Utilization"
    assert 0 < cpu["target"]["averageUtilization"] < 100
    assert by_type["External"]["external"]["metric"]["name"] in {r.name for r in config.rules}
    # The seeds' behaviour: up 100 % per 15 s, down after 300 s of stable recommendations.
    behavior = hpa["spec"]["behavior"]
    assert behavior == one(render("examples"), "HorizontalPodAutoscaler")["spec"]["behavior"]
    up = {p["type"]: p for p in behavior["scaleUp"]["policies"]}
    assert up["Percent"]["value"] == 100 and up["Percent"]["periodSeconds"] == 15
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 300
    # Utilization is a share of the containers' CPU requests: every container has one.
    target = one(layered, "Deployment", hpa["spec"]["scaleTargetRef"]["name"])
    for container in target["spec"]["template"]["spec"]["containers"]:
        assert container["resources"]["requests"]["cpu"]


def test_the_example_hpas_are_accepted_by_the_api_server(control_plane):
    """Server-side dry runs: kube-apiserver v1.28 validates what the schemas cannot (the
    behavior policies, the metric sources' required fields together)."""
    for name in ("examples", "examples/layered"):
        hpa = one(render(name), "HorizontalPodAutoscaler")
        result = control_plane.kubectl(
            "apply", "--dry-run=server", "-f", "-", input=json.dumps(hpa), check=False
        )
        assert result.returncode == 0, f"{name}: {result.stderr}"
        assert "(server dry run)" in result.stdout
    broken = json.loads(json.dumps(one(render("examples/layered"), "HorizontalPodAutoscaler")))
    broken["spec"]["metrics"][0]["resource"]["target"] = {"type": "Utilization"}
    result = control_plane.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=json.dumps(broken), check=False
    )
    assert result.returncode != 0 and "averageUtilization" in result.stderr  # it can fail


# --- RBAC: every Kubernetes API call in the code, granted -------------------------------

HTTP_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def api_calls() -> set[tuple[str, str, str]]:
    """(verb, group, resource) of every Kubernetes client method adapter/kube.py calls
    (or watches), read from the client's own request path and HTTP method for it."""
    tree = ast.parse(inspect.getsource(kube_module))
    methods = {  # called or passed on: self.core.read_..., not config.x
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and re.match(r"(read|create|replace|patch|list|delete|watch)_", node.attr)
    }
    assert methods, "no Kubernetes API call found in adapter/kube.py"
    watched = {  # watch.Watch().stream(self.x.list_..., ...): the list method, watched
        node.args[0].attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "stream"
        and node.args
        and isinstance(node.args[0], ast.Attribute)
    }
    methods |= watched
    calls = set()
    for method in methods:
        owners = [
            cls
            for _, cls in inspect.getmembers(kubernetes.client, inspect.isclass)
            if cls.__name__.endswith("Api") and hasattr(cls, f"_{method}_serialize")
        ]
        assert owners, f"{method}: not a method of the Kubernetes client"
        source = inspect.getsource(getattr(owners[0], f"_{method}_serialize"))
        http = re.search(r"method='(\w+)'", source).group(1)  # type: ignore[union-attr]
        path = re.search(r"resource_path='([^']+)'", source).group(1)  # type: ignore[union-attr]
        parts = path.strip("/").split("/")
        group = "" if parts[0] == "api" else parts[1]
        rest = parts[2:] if parts[0] == "api" else parts[3:]
        if rest[:1] == ["namespaces"] and len(rest) > 2:
            rest = rest[2:]
        resource = rest[0] + (f"/{rest[2]}" if len(rest) > 2 else "")  # e.g. deployments/scale
        named = len(rest) > 1
        verb = HTTP_VERBS.get(http) or ("get" if named else "list")
        calls.add((verb, group, resource))
        if method in watched:
            calls.add(("watch", group, resource))
    return calls


def grants(docs: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    """The rules bound to scaleahead's service account (roles may be built in)."""
    builtin = {
        ("ClusterRole", "system:auth-delegator"): [
            {
                "apiGroups": ["authentication.k8s.io"],
                "resources": ["tokenreviews"],
                "verbs": ["create"],
            },
            {
                "apiGroups": ["authorization.k8s.io"],
                "resources": ["subjectaccessreviews"],
                "verbs": ["create"],
            },
        ],
        ("Role", "extension-apiserver-authentication-reader"): [
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]},
        ],
    }
    roles = {
        (d["kind"], d["metadata"]["name"]): d.get("rules", [])
        for d in docs
        if d["kind"] in ("Role", "ClusterRole")
    }
    roles.update(builtin)
    rules = []
    for binding in (d for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        if any(
            s["kind"] == "ServiceAccount" and (s["namespace"], s["name"]) == SERVICE_ACCOUNT
            for s in binding["subjects"]
        ):
            ref = binding["roleRef"]
            rules += roles[(ref["kind"], ref["name"])]
    return rules


def test_rbac_grants_every_kubernetes_api_call_in_the_code():
    calls = api_calls()
    print(sorted(calls))
    # What the code does today; a new call must show up here and in the RBAC.
    assert ("create", "authentication.k8s.io", "tokenreviews") in calls
    assert ("patch", "apiregistration.k8s.io", "apiservices") in calls
    rules = grants(render("base"))
    for verb, group, resource in calls:
        assert any(
            group in r.get("apiGroups", [])
            and resource in r.get("resources", [])
            and verb in r["verbs"]
            for r in rules
        ), f"manifests/base grants scaleahead no {verb} on {group or 'core'}/{resource}"
    # The path a replica borrows its peers' forecasts on (the app's lending route).
    lending = {"nonResourceURLs": ["/forecasts/*"], "verbs": ["get"]}
    assert lending in rules, "manifests/base grants no get on /forecasts/* to the peers"
    # ...and nothing more: every rule is used by some call.
    for r in rules:
        if r == lending:
            continue
        for group in r["apiGroups"]:
            for resource in r["resources"]:
                for verb in r["verbs"]:
                    builtin = verb in ("list", "watch") and resource == "configmaps"
                    assert builtin or (verb, group, resource) in calls, (verb, group, resource)


def test_the_hpa_controller_may_read_external_metrics():
    docs = render("base")
    [binding] = [
        d
        for d in docs
        if d["kind"] == "ClusterRoleBinding"
        and {
            "kind": "ServiceAccount",
            "name": "horizontal-pod-autoscaler",
            "namespace": "kube-system",
        }
        in d["subjects"]
    ]
    role = one(docs, "ClusterRole", binding["roleRef"]["name"])
    assert any(
        "external.metrics.k8s.io" in r["apiGroups"] and "list" in r["verbs"] for r in role["rules"]
    )


def test_manifests_dir_has_nothing_unrendered():
    rendered = set()
    for name in KUSTOMIZATIONS:
        base = REPO / "manifests" / name
        k = yaml.safe_load((base / "kustomization.yaml").read_text())
        rendered |= {(base / r).resolve() for r in k.get("resources", [])}
        rendered |= {(base / p["path"]).resolve() for p in k.get("patches", []) if "path" in p}
        for gen in k.get("configMapGenerator", []):
            rendered |= {(base / f).resolve() for f in gen.get("files", [])}
    for path in Path(REPO / "manifests").rglob("*.yaml"):
        if path.name != "kustomization.yaml":
            assert path.resolve() in rendered, f"{path} is in no kustomization"


def test_the_dashboard_configmap_is_the_dashboard_for_the_grafana_sidecar():
    docs = render("monitoring")
    cm = one(docs, "ConfigMap", "scaleahead-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == "scaleahead"
    committed = (REPO / "dashboards" / "scaleahead.json").read_text()
    assert json.loads(cm["data"]["scaleahead.json"]) == json.loads(committed)
