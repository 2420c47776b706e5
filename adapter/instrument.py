"""Counts and times every HTTP request the server answers, by route and status code."""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import Any

from adapter.auth import ASGIApp, Receive, Scope, Send
from forecaster.runtime.telemetry import Telemetry

_API = "/apis/external.metrics.k8s.io/v1beta1/namespaces/"
_FIXED = {
    "/healthz": "healthz",
    "/livez": "livez",
    "/readyz": "readyz",
    "/metrics": "metrics",
    "/version": "version",
}


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

    def __init__(self, app: ASGIApp, telemetry: Telemetry) -> None:
        self.app = app
        self.telemetry = telemetry

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
            self.telemetry.api_requests.labels(name, str(code)).inc()
            self.telemetry.api_duration.labels(name).observe(time.perf_counter() - started)
