"""The Swagger 2.0 document served at /openapi/v2, which the aggregation layer collects."""

from __future__ import annotations

from typing import Any

_GV = "external.metrics.k8s.io/v1beta1"
_PREFIX = "io.k8s.metrics.pkg.apis.external_metrics.v1beta1"


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
            (404, "unknown metric, or no series matches"),
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
                        {"name": "namespace", "in": "path", "required": True, "type": "string"},
                        {"name": "metric", "in": "path", "required": True, "type": "string"},
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
