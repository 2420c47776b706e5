"""The ASGI interface as the server's layers pass requests down, and what a request's
state carries from one layer to the next."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PEER_CERT = "scaleahead.peer_cert"
"""Key of the client certificate (DER, or None) in each request's ASGI state."""

CALLER = "scaleahead.caller"
"""Key of the authenticated and authorized caller (a User) in each request's ASGI state."""

AUTHENTICATED = "scaleahead.authenticated"
"""Key of the user a request was authenticated as, authorized or not (a User), in its
ASGI state: what the access log names."""
