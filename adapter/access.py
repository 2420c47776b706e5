"""The access log (`--v 2`): one line per request, with its caller where one was
authenticated, written by the guard over TLS and by `AccessLog` over plain HTTP."""

from __future__ import annotations

import logging
import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from adapter.asgi import ASGIApp, Receive, Scope, Send

access_log = logging.getLogger("scaleahead.access")


def log_access(user: str, method: str, path: str, code: int, started: float) -> None:
    """One access line; `started` is the request's time.perf_counter()."""
    if access_log.isEnabledFor(logging.INFO):
        access_log.info(
            'user="%s" verb=%s path="%s" code=%d latency=%.1fms',
            user,
            method,
            path,
            code,
            (time.perf_counter() - started) * 1000,
        )


@dataclass
class AccessLog:
    """ASGI middleware logging each request of a server without authentication (no
    user: plain HTTP on loopback)."""

    app: ASGIApp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        code = [0]

        async def send_logged(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                code[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        finally:
            log_access("", scope["method"], scope["path"], code[0], started)
