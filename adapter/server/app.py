"""The HTTP surface: external.metrics.k8s.io/v1beta1, discovery, health, /metrics and
the forecasts lent to peer replicas."""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import sys
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from adapter.asgi import CALLER
from adapter.errors import (
    BadRequest,
    NotFound,
    StatusError,
    Unavailable,
    send_status,
    status_body,
)
from adapter.forward import Forwarder
from adapter.names import check_namespace, check_segment
from adapter.peers.lender import Lender
from adapter.peers.wire import MEDIA_TYPE
from adapter.provider import Check, ExternalMetricsProvider
from adapter.quantity import format_quantity
from adapter.security.identity import User
from adapter.server import openapi
from forecaster.selector import SelectorError, parse_selector
from forecaster.times import rfc3339

log = logging.getLogger(__name__)

GROUP = "external.metrics.k8s.io"
VERSION = "v1beta1"
GROUP_VERSION = f"{GROUP}/{VERSION}"


def _status(err: StatusError) -> JSONResponse:
    return JSONResponse(status_body(err.code, err.reason, err.message), status_code=err.code)


def _group_version() -> dict[str, str]:
    return {"groupVersion": GROUP_VERSION, "version": VERSION}


class _RawPathGuard:
    """Refuses paths with an encoded '/' in a segment before routing decodes them."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        raw = scope.get("raw_path") or b""
        if scope["type"] == "http" and b"%2f" in raw.lower():
            await send_status(send, 404, "NotFound", "path segments may not contain an encoded '/'")
            return
        await self.app(scope, receive, send)


def _health(name: str, checks: list[Check], verbose: bool) -> Response:
    """A health answer as the Kubernetes API servers write it (with ?verbose, each check)."""
    failed = [c for c in checks if not c.ok]
    code = 503 if failed else 200
    if not verbose:
        text = "\n".join(["failed:", *(f"{c.name}: {c.detail}" for c in failed)]) + "\n"
        return PlainTextResponse(text if failed else "ok", code)
    lines = [
        f"[{'+' if c.ok else '-'}]{c.name} {_verdict(c)}" + (f": {c.detail}" if c.detail else "")
        for c in [Check("ping", True), *checks]
    ]
    lines.append(f"{name} check {'failed' if failed else 'passed'}")
    return PlainTextResponse("\n".join(lines) + "\n", code)


def _verdict(check: Check) -> str:
    if not check.ok:
        return "failed"
    return "degraded" if check.degraded else "ok"


def _caller(request: Request) -> User | None:
    return (request.scope.get("state") or {}).get(CALLER)


def create_app(
    provider: ExternalMetricsProvider,
    registry: CollectorRegistry,
    liveness: Callable[[], list[Check]] = list,
    forwarder: Forwarder | None = None,
    lender: Lender | None = None,
) -> FastAPI:
    """Build the API server over a provider; /metrics exposes `registry`; /livez and
    /healthz fail when a `liveness` check does; with a `forwarder`, the external metrics
    the provider does not serve are answered by the server it forwards to; with a
    `lender`, /forecasts/<rule> lends each rule's forecasts to peer replicas.

    Handlers run on the event loop: the provider and the checks answer from memory and
    must not block.
    """
    app = FastAPI(
        title="scaleahead",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        redirect_slashes=False,
    )
    app.add_middleware(_RawPathGuard)

    @app.exception_handler(StatusError)
    async def _status_error(_: Request, err: StatusError) -> JSONResponse:
        return _status(err)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        if err.status_code == 405:
            reason, message = (
                "MethodNotAllowed",
                f"{request.method} is not supported on {request.url.path}",
            )
            allow = (err.headers or {}).get("Allow", "GET, HEAD")
            return JSONResponse(status_body(405, reason, message), 405, headers={"Allow": allow})
        elif err.status_code == 404:
            reason, message = "NotFound", f"the server could not find {request.url.path}"
        else:
            reason, message = "BadRequest", str(err.detail)
        return JSONResponse(status_body(err.status_code, reason, message), err.status_code)

    @app.exception_handler(Exception)
    async def _internal(request: Request, err: Exception) -> JSONResponse:
        # A provider bug (or a value that is not a rate) is a 500 Status, never a number.
        log.error("%s %s failed", request.method, request.url.path, exc_info=err)
        return _status(StatusError(f"internal error: {err}"))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        return _status(BadRequest(f"invalid request: {err.errors()}"))

    @app.api_route("/apis", methods=["GET", "HEAD"])
    async def api_group_list() -> dict[str, Any]:
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [
                {
                    "name": GROUP,
                    "versions": [_group_version()],
                    "preferredVersion": _group_version(),
                }
            ],
        }

    @app.api_route(f"/apis/{GROUP}", methods=["GET", "HEAD"])
    async def api_group() -> dict[str, Any]:
        return {
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": GROUP,
            "versions": [_group_version()],
            "preferredVersion": _group_version(),
        }

    @app.api_route(f"/apis/{GROUP_VERSION}", methods=["GET", "HEAD"])
    async def api_resources(request: Request) -> dict[str, Any]:
        served = provider.metric_names()
        resources = [
            {
                "name": name,
                "singularName": "",
                "namespaced": True,
                "kind": "ExternalMetricValueList",
                "verbs": ["get"],
            }
            for name in served
        ]
        if forwarder is not None:
            theirs = await forwarder.resources(GROUP_VERSION, _caller(request))
            resources += [r for r in theirs if r["name"] not in served]
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": GROUP_VERSION,
            "resources": resources,
        }

    @app.api_route(
        f"/apis/{GROUP_VERSION}/namespaces/{{namespace}}/{{metric}}", methods=["GET", "HEAD"]
    )
    async def external_metric(request: Request) -> Response:
        # Path parameters read by hand: FastAPI's validation of two strings would cost
        # more than the rest of the request.
        namespace: str = request.path_params["namespace"]
        metric: str = request.path_params["metric"]
        check_namespace(namespace)
        check_segment("metric name", metric)
        raw = request.query_params.getlist("labelSelector")
        if forwarder is not None and metric not in provider.metric_names():
            # Theirs: its selector is theirs to judge (their label keys may not be ours).
            answer = await forwarder.metric(GROUP_VERSION, namespace, metric, raw, _caller(request))
            return Response(answer.body, answer.code, media_type=answer.content_type or None)
        if len(raw) > 1:
            raise BadRequest("labelSelector given more than once")
        try:
            selector = parse_selector(raw[0] if raw else None)
        except SelectorError as err:
            raise BadRequest(f"invalid labelSelector: {err}") from None
        values = provider.values(namespace, metric, selector)
        if not values:  # a provider must raise instead; never answer an empty success
            raise NotFound(f'no series of external metric "{metric}" matches')
        body = {
            "kind": "ExternalMetricValueList",
            "apiVersion": GROUP_VERSION,
            "metadata": {},
            "items": [
                {
                    "metricName": v.metric,
                    "metricLabels": v.labels,
                    "timestamp": rfc3339(v.timestamp),
                    "value": format_quantity(v.value),
                }
                for v in values
            ],
        }
        return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")

    @app.api_route("/healthz", methods=["GET", "HEAD"])
    @app.api_route("/livez", methods=["GET", "HEAD"])
    async def alive(request: Request) -> Response:
        name = request.url.path.strip("/")
        return _health(name, liveness(), "verbose" in request.query_params)

    @app.api_route("/readyz", methods=["GET", "HEAD"])
    async def ready(request: Request) -> Response:
        return _health("readyz", provider.readiness(), "verbose" in request.query_params)

    release = version("scaleahead")
    spec = openapi.document(release)
    spec_v3 = openapi.document_v3(release)
    spec_hash = hashlib.sha256(json.dumps(spec_v3, sort_keys=True).encode()).hexdigest()[:16]

    @app.get("/openapi/v2")
    async def openapi_v2() -> dict[str, Any]:
        return spec

    @app.get("/openapi/v3")
    async def openapi_v3_index() -> dict[str, Any]:
        return openapi.v3_index(spec_hash)

    @app.get(f"/openapi/v3/apis/{GROUP_VERSION}")
    async def openapi_v3() -> dict[str, Any]:
        return spec_v3

    @app.get("/version")
    async def server_version() -> dict[str, str]:
        major, minor, *_ = release.split(".")
        return {
            "major": major,
            "minor": minor,
            "gitVersion": f"v{release}",
            "platform": f"{sys.platform}/{platform.machine().lower()}",
        }

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/forecasts/{rule}")
    async def lend(request: Request) -> Response:
        rule: str = request.path_params["rule"]
        check_segment("rule", rule)
        if lender is None or rule not in lender.rules:
            raise NotFound(f'no rule "{rule}" is forecast here')
        body = await run_in_threadpool(lender.body, rule)  # encoding 10,000 takes ~0.1 s
        if body is None:
            raise Unavailable(f'rule "{rule}": its first forecast cycle here has not ended yet')
        return Response(body, media_type=MEDIA_TYPE)

    return app
