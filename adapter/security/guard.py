"""The guard in front of the app: every request is authenticated, then authorized (or
is on an always-allowed path), then passed on with its caller in the request's state;
each is written to the access log."""

from __future__ import annotations

import logging
import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

import anyio.to_thread

from adapter.access import log_access
from adapter.asgi import CALLER, PEER_CERT, ASGIApp, Receive, Scope, Send
from adapter.cluster.kube import KubeError
from adapter.errors import StatusError, send_status
from adapter.security.authn import Authenticator
from adapter.security.authz import Authorizer
from adapter.security.identity import User
from adapter.security.request_info import request_attributes

log = logging.getLogger(__name__)


@dataclass
class Guard:
    """ASGI middleware: authenticate, authorize, then call the app; log each request."""

    app: ASGIApp
    authenticator: Authenticator
    authorizer: Authorizer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path: str = scope["path"]
        method: str = scope["method"]
        code = [0]

        async def send_logged(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                code[0] = message["status"]
            await send(message)

        user = await self._authenticate(scope)
        try:
            if self.authorizer.always_allowed(path):
                await self.app(scope, receive, send_logged)
                return
            if user is None:
                await send_status(send_logged, 401, "Unauthorized", "Unauthorized")
                return
            try:
                attrs = request_attributes(method, path)
            except StatusError as err:  # judged before authorizing: a name meaning itself
                await send_status(send_logged, err.code, err.reason, err.message)
                return
            decision = self.authorizer.cached(user, attrs)
            if decision is None:
                decision = await anyio.to_thread.run_sync(self.authorizer.authorize, user, attrs)
            allowed, reason = decision
            if not allowed:
                why = f": {reason}" if reason else ""
                await send_status(
                    send_logged,
                    403,
                    "Forbidden",
                    f'user "{user.name}" cannot {attrs.describe()}{why}',
                )
                return
            scope["state"] = {**(scope.get("state") or {}), CALLER: user}
            await self.app(scope, receive, send_logged)
        finally:
            log_access(user.name if user else "", method, path, code[0], start)

    async def _authenticate(self, scope: Scope) -> User | None:
        state = scope.get("state") or {}
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        user = self.authenticator.from_certificate(state.get(PEER_CERT), headers)
        if user is not None:
            return user
        for key, value in headers:
            if key == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and token.strip():
                    try:
                        return await anyio.to_thread.run_sync(
                            self.authenticator.from_token, token.strip()
                        )
                    except KubeError as err:
                        log.warning("token review failed: %s", err)
                        return None
        return None
