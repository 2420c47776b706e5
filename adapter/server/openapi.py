"""The OpenAPI documents the aggregation layer collects: Swagger 2.0 at /openapi/v2 and
OpenAPI 3.0 per group-version under /openapi/v3."""

from __future__ import annotations

from typing import Any

_GV = "external.metrics.k8s.io/v1beta1"
_PREFIX = "io.k8s.metrics.pkg.apis.external_metrics.v1beta1"
NAMESPACE_PATTERN = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
METRIC_PATTERN = "^[a-z_][a-z0-9_:.-]*$"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/definitions/{name}"}


def document(version: str) -> dict[str, Any]:
    """Paths and types of the external metrics API as this server implements it."""
    status = "io.k8s.apimachinery.pkg.apis.meta.v1.Status"
    errors = {
        str(code): {"description": text, "schema": _ref(status)}
        for code, text in (
            (400, "malformed selector or namespace"),
            (401, "unauthenticated"),
            (403, "the caller may not list this metric in this namespace"),
            (404, "unknown metric, or no series matches"),
            (500, "a defect of scaleahead (never a number)"),
            (503, "neither a fresh forecast nor the current value can be had"),
        )
    }
    return {
        "swagger": "2.0",
        "info": {"title": "scaleahead", "version": version},
        "paths": {
            f"/apis/{_GV}/namespaces/{{namespace}}/{{metric}}": {
                "get": {
                    "operationId": "readExternalMetricValueList",
                    "description": "The value to scale on for each series of the metric "
                    "matching the selector: max(actual, upper forecast over the lead time).",
                    "produces": ["application/json"],
                    "schemes": ["https"],
                    "parameters": [
                        {
                            "name": "namespace",
                            "in": "path",
                            "required": True,
                            "type": "string",
                            "pattern": NAMESPACE_PATTERN,
                            "maxLength": 63,
                        },
                        {
                            "name": "metric",
                            "in": "path",
                            "required": True,
                            "type": "string",
                            "pattern": METRIC_PATTERN,
                        },
                        {
                            "name": "labelSelector",
                            "in": "query",
                            "type": "string",
                            "uniqueItems": True,
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "OK",
                            "schema": _ref(f"{_PREFIX}.ExternalMetricValueList"),
                        },
                        **errors,
                    },
                    "x-kubernetes-action": "get",
                    "x-kubernetes-group-version-kind": {
                        "group": "external.metrics.k8s.io",
                        "version": "v1beta1",
                        "kind": "ExternalMetricValueList",
                    },
                }
            },
            f"/apis/{_GV}": {
                "get": {
                    "operationId": "getExternalMetricsAPIResources",
                    "produces": ["application/json"],
                    "responses": {"200": {"description": "OK"}},
                }
            },
        },
        "definitions": {
            f"{_PREFIX}.ExternalMetricValueList": {
                "type": "object",
                "required": ["items"],
                "properties": {
                    "kind": {"type": "string"},
                    "apiVersion": {"type": "string"},
                    "metadata": {"type": "object"},
                    "items": {"type": "array", "items": _ref(f"{_PREFIX}.ExternalMetricValue")},
                },
                "x-kubernetes-group-version-kind": [
                    {
                        "group": "external.metrics.k8s.io",
                        "version": "v1beta1",
                        "kind": "ExternalMetricValueList",
                    }
                ],
            },
            f"{_PREFIX}.ExternalMetricValue": {
                "type": "object",
                "required": ["metricName", "metricLabels", "timestamp", "value"],
                "properties": {
                    "metricName": {"type": "string"},
                    "metricLabels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "timestamp": {"type": "string", "format": "date-time"},
                    "window": {"type": "integer", "format": "int64"},
                    "value": {
                        "type": "string",
                        "description": "a Kubernetes quantity, milli precision",
                    },
                },
            },
            status: {
                "type": "object",
                "properties": {
                    "kind": {"type": "string"},
                    "apiVersion": {"type": "string"},
                    "status": {"type": "string"},
                    "message": {"type": "string"},
                    "reason": {"type": "string"},
                    "code": {"type": "integer", "format": "int32"},
                },
            },
        },
    }


def _v3_refs(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: (
                v.replace("#/definitions/", "#/components/schemas/") if k == "$ref" else _v3_refs(v)
            )
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_v3_refs(v) for v in node]
    return node


def document_v3(version: str) -> dict[str, Any]:
    """The same API as OpenAPI 3.0, as served at /openapi/v3/apis/<group>/<version>."""
    v2 = document(version)
    paths: dict[str, Any] = {}
    for path, ops in v2["paths"].items():
        paths[path] = {}
        for method, op in ops.items():
            params = []
            for p in op.get("parameters", []):
                schema = {k: p[k] for k in ("type", "pattern", "maxLength") if k in p}
                params.append(
                    {"name": p["name"], "in": p["in"], "required": p.get("required", False)}
                    | {"schema": schema}
                )
            responses = {}
            for code, r in op["responses"].items():
                out: dict[str, Any] = {"description": r["description"]}
                if "schema" in r:
                    out["content"] = {"application/json": {"schema": _v3_refs(r["schema"])}}
                responses[code] = out
            paths[path][method] = {
                k: v
                for k, v in op.items()
                if k not in ("parameters", "responses", "produces", "schemes")
            } | {"parameters": params, "responses": responses}
    return {
        "openapi": "3.0.0",
        "info": v2["info"],
        "paths": paths,
        "components": {"schemas": _v3_refs(v2["definitions"])},
    }


def v3_index(version: str) -> dict[str, Any]:
    """The /openapi/v3 discovery document: where each group-version's document is."""
    return {
        "paths": {f"apis/{_GV}": {"serverRelativeURL": f"/openapi/v3/apis/{_GV}?hash={version}"}}
    }
