"""The guard in front of the app: every request is authenticated, then authorized (or
is on an always-allowed path), then passed on with its caller in the request's state
(the user it was authenticated as is left there for the access log in any case)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import anyio.to_thread

from adapter.asgi import AUTHENTICATED, CALLER, PEER_CERT, ASGIApp, Receive, Scope, Send
from adapter.cluster.kube import KubeError
from adapter.errors import StatusError, send_status
from adapter.security.authn import (
    NEW_TOKEN_RATE,
    NEW_TOKEN_RATE_PER_ADDRESS,
    Authenticator,
    TooManyTokenReviews,
)
from adapter.security.authz import Authorizer
from adapter.security.identity import User
from adapter.security.request_info import request_attributes

log = logging.getLogger(__name__)

LIMIT_LOG_INTERVAL = 60.0
"""Seconds between warnings that requests were refused for want of token reviews."""


@dataclass
class Guard:
    """ASGI middleware: authenticate, authorize, then call the app."""

    app: ASGIApp
    authenticator: Authenticator
    authorizer: Authorizer
    _refused: int = 0  # requests refused for token reviews since the last warning
    _warned: float = -LIMIT_LOG_INTERVAL

    def _limited(self) -> None:
        """Count a request refused for want of token reviews; warn at most once a minute."""
        self._refused += 1
        now = time.monotonic()
        if now - self._warned >= LIMIT_LOG_INTERVAL:
            log.warning(
                "refused %d request(s) with bearer tokens not seen lately in the last %.0f s: "
                "more new tokens to review than %.0f a second from one address, or %.0f in "
                "all (429)",
                self._refused,
                min(now - self._warned, LIMIT_LOG_INTERVAL),
                NEW_TOKEN_RATE_PER_ADDRESS,
                NEW_TOKEN_RATE,
            )
            self._refused, self._warned = 0, now

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        try:
            user = await self._authenticate(scope)
        except TooManyTokenReviews:
            self._limited()
            await send_status(
                send,
                429,
                "TooManyRequests",
                "too many requests with bearer tokens not seen lately, please try again later",
                retry_after=1,
            )
            return
        if user is not None:  # for the access log, whatever is decided below
            scope["state"] = {**(scope.get("state") or {}), AUTHENTICATED: user}
        if self.authorizer.always_allowed(path):
            await self.app(scope, receive, send)
            return
        if user is None:
            await send_status(send, 401, "Unauthorized", "Unauthorized")
            return
        try:
            attrs = request_attributes(method, path)
        except StatusError as err:  # judged before authorizing: a name meaning itself
            await send_status(send, err.code, err.reason, err.message)
            return
        decision = self.authorizer.cached(user, attrs)
        if decision is None:
            decision = await anyio.to_thread.run_sync(self.authorizer.authorize, user, attrs)
        allowed, reason = decision
        if not allowed:
            why = f": {reason}" if reason else ""
            await send_status(
                send,
                403,
                "Forbidden",
                f'user "{user.name}" cannot {attrs.describe()}{why}',
            )
            return
        scope["state"] = {**(scope.get("state") or {}), CALLER: user}
        await self.app(scope, receive, send)

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
                        client = scope.get("client")
                        return await anyio.to_thread.run_sync(
                            self.authenticator.from_token,
                            token.strip(),
                            str(client[0]) if client else "",
                        )
                    except KubeError as err:
                        log.warning("token review failed: %s", err)
                        return None
        return None
