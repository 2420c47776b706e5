"""Manifests against the real Kubernetes OpenAPI schemas, and their config against ours."""

from __future__ import annotations

import kubernetes_validate
import pytest
import yaml

from forecaster.config import parse_config
from tests.conftest import REPO

MANIFESTS = sorted((REPO / "manifests").glob("*.yaml"))
KUBERNETES_VERSION = "1.30.0"


def documents() -> list[tuple[str, dict]]:
    return [
        (f"{path.name}#{i}", doc)
        for path in MANIFESTS
        for i, doc in enumerate(yaml.safe_load_all(path.read_text()))
        if doc
    ]


def test_the_manifests_are_found():
    # An empty parameter set below would be skipped, not failed.
    assert {p.name for p in MANIFESTS} >= {"scaleahead.yaml", "hpa-example.yaml"}


@pytest.mark.parametrize(("name", "doc"), documents(), ids=[n for n, _ in documents()])
def test_manifest_is_valid_kubernetes(name, doc):
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_validation_would_catch_a_mistake():
    [(_, hpa)] = [d for d in documents() if d[1]["kind"] == "HorizontalPodAutoscaler"]
    hpa["spec"]["metrics"][0]["external"]["target"]["averageValu"] = "50"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(hpa, KUBERNETES_VERSION, strict=True)


def test_shipped_config_is_valid_and_hpa_uses_its_metric():
    docs = [d for _, d in documents()]
    [cm] = [d for d in docs if d["kind"] == "ConfigMap"]
    config = parse_config(yaml.safe_load(cm["data"]["config.yaml"]), "ConfigMap config.yaml")
    [hpa] = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    assert hpa["spec"]["metrics"][0]["external"]["metric"]["name"] in {r.name for r in config.rules}
    [api] = [d for d in docs if d["kind"] == "APIService"]
    assert api["metadata"]["name"] == "v1beta1.external.metrics.k8s.io"
