"""A workload for the real node, run as a pod from a ConfigMap by any Python 3 image
(standard library only): it answers `/ready` 503 until STARTUP_SECONDS after it started,
serves at most CAPACITY requests a second on `/` and sheds the rest with 503, and counts
every answer in `http_requests_total{code}` on `/metrics`. `deployment` is how tests and
benchmarks run it.
"""

from __future__ import annotations

import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

STARTUP = float(os.environ.get("STARTUP_SECONDS", "60"))
CAPACITY = float(os.environ.get("CAPACITY", "10"))
PORT = int(os.environ.get("PORT", "8080"))

started = time.monotonic()
lock = threading.Lock()
counts = {"200": 0, "503": 0}
bucket = {"tokens": CAPACITY, "at": started}


def admit() -> bool:
    """A token bucket of CAPACITY a second (one second's worth of burst)."""
    with lock:
        now = time.monotonic()
        tokens = min(CAPACITY, bucket["tokens"] + (now - bucket["at"]) * CAPACITY)
        bucket["at"] = now
        ok = tokens >= 1
        bucket["tokens"] = tokens - 1 if ok else tokens
        counts["200" if ok else "503"] += 1
        return ok


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self, code: int, body: str) -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/ready":
            ready = time.monotonic() - started >= STARTUP
            self._answer(200 if ready else 503, "ready\n" if ready else "starting\n")
        elif self.path == "/metrics":
            with lock:
                lines = [f'http_requests_total{{code="{c}"}} {n}' for c, n in counts.items()]
            self._answer(200, "# TYPE http_requests_total counter\n" + "\n".join(lines) + "\n")
        else:
            self._answer(200, "ok\n") if admit() else self._answer(503, "over capacity\n")

    def log_message(self, format: str, *args: object) -> None:
        pass


def deployment(
    name: str,
    namespace: str,
    image: str,
    replicas: int,
    startup: float,
    capacity: float,
    configmap: str,
) -> dict[str, Any]:
    """This script as a Deployment labelled app=`name`, run by `image` (any Python 3)
    from the ConfigMap `configmap` holding it as workload.py."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 65532},
                    "containers": [
                        {
                            "name": "web",
                            "image": image,
                            "imagePullPolicy": "Never",
                            "command": ["python3", "/workload/workload.py"],
                            "env": [
                                {"name": "STARTUP_SECONDS", "value": str(startup)},
                                {"name": "CAPACITY", "value": str(capacity)},
                            ],
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "readinessProbe": {
                                "httpGet": {"path": "/ready", "port": "http"},
                                "periodSeconds": 2,
                            },
                            "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
                            "volumeMounts": [{"name": "code", "mountPath": "/workload"}],
                        }
                    ],
                    "volumes": [{"name": "code", "configMap": {"name": configmap}}],
                },
            },
        },
    }


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()
