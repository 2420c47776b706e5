"""The access log (`--v 2`): one line per request, with the user it was authenticated as
(the guard leaves it in the request's state; none over plain HTTP)."""

from __future__ import annotations

import logging
import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from adapter.asgi import AUTHENTICATED, ASGIApp, Receive, Scope, Send

access_log = logging.getLogger("scaleahead.access")


@dataclass
class AccessLog:
    """ASGI middleware writing one access line per request, after it is answered."""

    app: ASGIApp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not access_log.isEnabledFor(logging.INFO):
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
            user = (scope.get("state") or {}).get(AUTHENTICATED)
            access_log.info(
                'user="%s" verb=%s path="%s" code=%d latency=%.1fms',
                user.name if user is not None else "",
                scope["method"],
                scope["path"],
                code[0],
                (time.perf_counter() - started) * 1000,
            )
