"""A stand-in for prometheus-adapter (which cannot be built here): the custom metrics API
(`custom.metrics.k8s.io/v1beta2`, its real wire format) answering one Object metric per
Service, the *current* value of a PromQL query. A stock HPA scaled on it is what users
run without scaleahead: the reactive arm of bench.closed_loop.

It serves TLS on the node's bridge; the aggregator reaches it through a Service without
a selector whose Endpoints name the bridge's gateway. It does not authenticate the
aggregator (a benchmark's part, never shipped).
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

GROUP = "custom.metrics.k8s.io"
VERSION = "v1beta2"


class CurrentValueAPI:
    """`GET .../namespaces/NS/services/NAME/METRIC` answers `query` with `NS` and `NAME`
    put in for `{namespace}` and `{service}`, as Prometheus evaluates it now."""

    def __init__(self, prometheus: str, metric: str, query: str, cert: Path, key: Path) -> None:
        self.prometheus, self.metric, self.query = prometheus, metric, query
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.server: ThreadingHTTPServer | None = None

    def value(self, namespace: str, service: str) -> float | None:
        query = self.query.format(namespace=namespace, service=service)
        r = httpx.get(f"{self.prometheus}/api/v1/query", params={"query": query}, timeout=5)
        result = r.json()["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def answer(self, path: str) -> tuple[int, dict[str, Any]]:
        parts = path.split("?")[0].strip("/").split("/")
        if parts == ["apis", GROUP, VERSION]:
            return 200, {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": f"{GROUP}/{VERSION}",
                "resources": [
                    {
                        "name": f"services/{self.metric}",
                        "singularName": "",
                        "namespaced": True,
                        "kind": "MetricValueList",
                        "verbs": ["get"],
                    }
                ],
            }
        if len(parts) == 8 and parts[:3] == ["apis", GROUP, VERSION] and parts[5] == "services":
            namespace, service, metric = parts[4], parts[6], parts[7]
            value = self.value(namespace, service) if metric == self.metric else None
            if value is not None:
                stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                item = {
                    "describedObject": {
                        "kind": "Service",
                        "namespace": namespace,
                        "name": service,
                        "apiVersion": "/v1",
                    },
                    "metric": {"name": metric},
                    "timestamp": stamp,
                    "value": f"{round(value * 1000)}m",
                }
                return 200, {
                    "kind": "MetricValueList",
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "metadata": {},
                    "items": [item],
                }
        return 404, {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": f"no metric at {path}",
            "reason": "NotFound",
            "code": 404,
        }

    def start(self, host: str, port: int) -> None:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                code, body = api.answer(self.path)
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.socket = self.context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        time.sleep(0.1)

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
