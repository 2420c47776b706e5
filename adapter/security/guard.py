"""The guard in front of the app: every request is authenticated, then authorized (or
is on an always-allowed path), then passed on with its caller in the request's state
(the user it was authenticated as is left there for the access log in any case)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import anyio.to_thread

from adapter.asgi import AUTHENTICATED, CALLER, PEER_CERT, ASGIApp, Receive, Scope, Send
from adapter.cluster.kube import KubeError
from adapter.errors import StatusError, send_status
from adapter.security.authn import Authenticator
from adapter.security.authz import Authorizer
from adapter.security.identity import User
from adapter.security.request_info import request_attributes

log = logging.getLogger(__name__)


@dataclass
class Guard:
    """ASGI middleware: authenticate, authorize, then call the app."""

    app: ASGIApp
    authenticator: Authenticator
    authorizer: Authorizer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        user = await self._authenticate(scope)
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
                        return await anyio.to_thread.run_sync(
                            self.authenticator.from_token, token.strip()
                        )
                    except KubeError as err:
                        log.warning("token review failed: %s", err)
                        return None
        return None
