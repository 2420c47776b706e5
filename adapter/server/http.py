"""The HTTP server under the app: uvicorn with the client certificate of each TLS
connection in the request's state, bounded connections, and deadlines for slow clients."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Generator
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from adapter.asgi import PEER_CERT

REQUEST_HEADER_TIMEOUT = 10.0
"""A connection that has not sent a whole request head this long after it opened is closed."""

KEEP_ALIVE_TIMEOUT = 30
"""Idle keep-alive connections are closed after this many seconds (the aggregator reuses
its connections; a client that holds one without asking loses it)."""

CONNECTION_LIMIT = 1000
"""Concurrent connections plus requests; beyond it new requests get 503 at once."""


class PeerCertProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol, recording the verified client certificate (DER) in
    every request's state and closing connections that never finish a request head."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object: ssl.SSLObject | None = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        self.app_state = {**self.app_state, PEER_CERT: der}
        self._head_deadline = asyncio.get_running_loop().call_later(
            REQUEST_HEADER_TIMEOUT, self._head_timeout
        )

    def _head_timeout(self) -> None:
        if self.cycle is None and not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_deadline.cancel()
        super().connection_lost(exc)


class _Server(uvicorn.Server):
    """uvicorn's server, except that a SIGTERM or SIGINT that stopped it gracefully is not
    raised again afterwards (uvicorn would, killing the process before the caller's own
    shutdown runs and exiting with the signal instead of 0)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        with super().capture_signals():
            yield
            self._captured_signals.clear()


def run(
    app: Any,
    host: str,
    port: int,
    tls: ssl.SSLContext | None,
    log_level: str,
    graceful_seconds: int = 10,
) -> None:
    """Serve `app` until SIGTERM/SIGINT, finishing in-flight requests for up to
    `graceful_seconds`."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=PeerCertProtocol,
        log_level=log_level,
        log_config=None,  # uvicorn's records go to the root logger, in our format
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE_TIMEOUT,
        limit_concurrency=CONNECTION_LIMIT,
        timeout_graceful_shutdown=graceful_seconds,
        lifespan="off",
        server_header=False,
    )
    config.load()
    config.ssl = tls
    _Server(config).run()
