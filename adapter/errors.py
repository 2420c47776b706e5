"""Errors scaleahead reports: those its APIs answer (as a Kubernetes `Status` over HTTP,
as a status code over gRPC), and the command line's `UsageError`."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any


class StatusError(Exception):
    """An error with what it is answered with: over HTTP its code and Kubernetes reason,
    over gRPC its status code (a name of grpc.StatusCode). Subclasses inherit them."""

    code = 500
    reason = "InternalError"
    grpc_code = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(StatusError):
    code = 400
    reason = "BadRequest"
    grpc_code = "INVALID_ARGUMENT"


class NotFound(StatusError):
    code = 404
    reason = "NotFound"
    grpc_code = "NOT_FOUND"


class Unavailable(StatusError):
    code = 503
    reason = "ServiceUnavailable"
    grpc_code = "UNAVAILABLE"


class UsageError(Exception):
    """Flags that cannot be used; the message names the flag."""


async def send_status(
    send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    code: int,
    reason: str,
    message: str,
    retry_after: int | None = None,
) -> None:
    """Answer a raw ASGI request with a `Status` (for middleware, before any route); with
    `retry_after`, the seconds a client should wait (header and details)."""
    status = status_body(code, reason, message)
    headers = [(b"content-type", b"application/json")]
    if retry_after is not None:
        status["details"] = {"retryAfterSeconds": retry_after}
        headers.append((b"retry-after", str(retry_after).encode()))
    body = json.dumps(status).encode()
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    """A `Status` object as the Kubernetes API servers write it."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
