"""A workload for the real node, run as a pod from a ConfigMap by any Python 3 image
(standard library only): it answers `/ready` 503 until STARTUP_SECONDS after it started,
serves at most CAPACITY requests a second on `/` and sheds the rest with 503, and counts
every answer in `http_requests_total{code}` on `/metrics`.
"""

from __future__ import annotations

import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()
