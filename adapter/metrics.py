"""The adapter's own metrics: every HTTP request answered (by route and status code) and
every KEDA scaler call, and the middleware that counts and times the HTTP requests."""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from adapter.asgi import ASGIApp, Receive, Scope, Send

_API = "/apis/external.metrics.k8s.io/v1beta1/namespaces/"
_FIXED = {
    "/healthz": "healthz",
    "/livez": "livez",
    "/readyz": "readyz",
    "/metrics": "metrics",
    "/version": "version",
}


class ServerMetrics:
    """The API's and the KEDA scaler's metrics, registered on the given registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.api_requests = Counter(
            "scaleahead_api_requests_total",
            "HTTP requests answered, by route and status code (including refused ones).",
            ["route", "code"],
            registry=registry,
        )
        self.api_duration = Histogram(
            "scaleahead_api_request_duration_seconds",
            "Time from a request's arrival to its response's last byte, by route.",
            ["route"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=registry,
        )
        self.keda_requests = Counter(
            "scaleahead_keda_requests_total",
            "Calls of the KEDA external scaler answered, by method and gRPC status code "
            "(a stream counts once, when it opens).",
            ["method", "code"],
            registry=registry,
        )
        self.keda_streams = Gauge(
            "scaleahead_keda_streams",
            "StreamIsActive streams open.",
            registry=registry,
        )


def route(path: str) -> str:
    """The route a path belongs to: a few fixed names, so that no request can add a
    label value of its own."""
    if path.startswith(_API):
        return "external_metric"
    if path == "/apis" or path.startswith("/apis/"):
        return "discovery"
    if path == "/openapi" or path.startswith("/openapi/"):
        return "openapi"
    return _FIXED.get(path, "other")


class RequestMetrics:
    """ASGI middleware, outermost, so that requests refused by authentication or
    authorization are counted too; a request that ends without a response counts as 0."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        code = 0

        async def send_counted(message: MutableMapping[str, Any]) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            name = route(scope["path"])
            self.metrics.api_requests.labels(name, str(code)).inc()
            self.metrics.api_duration.labels(name).observe(time.perf_counter() - started)
