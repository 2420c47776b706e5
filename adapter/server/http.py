"""The HTTP server under the app: uvicorn with the client certificate of each TLS
connection in the request's state, bounded connections, and deadlines for slow clients.

Every request, its head and its body, must arrive whole within REQUEST_TIMEOUT of its
first byte (the first request within it of the connection opening), whichever request of
the connection it is. Near the connection limit, the connections idle longest (between
requests, or sending one too slowly) are closed to make room, so that idle or slow
clients never keep a probe or the HPA out."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Generator
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from adapter.asgi import PEER_CERT

REQUEST_TIMEOUT = 10.0
"""Seconds a request may take to arrive whole (head and body), from its first byte, or
from the connection opening for its first: beyond, the connection is closed."""

KEEP_ALIVE_TIMEOUT = 30
"""Idle keep-alive connections are closed after this many seconds (the aggregator reuses
its connections; a client that holds one without asking loses it)."""

CONNECTION_LIMIT = 1000
"""Concurrent connections plus requests; beyond it new requests get 503 at once."""

SHED_AT = 900
"""Connections open from which each new one closes the one idle longest (in no request,
or in one still arriving): room for probes and the HPA is made before the limit."""


class PeerCertProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol, recording the verified client certificate (DER) in
    every request's state, closing connections whose request does not arrive whole in
    time, and shedding the longest idle connections near the limit."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object: ssl.SSLObject | None = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        self.app_state = {**self.app_state, PEER_CERT: der}
        self._idle_since = self.loop.time()
        self._arriving = True  # a request (the first) is awaited: the deadline runs
        self._deadline = self.loop.call_later(REQUEST_TIMEOUT, self._too_slow)
        if len(self.connections) > SHED_AT:
            self._shed()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._deadline.cancel()
        self._arriving = True
        self._deadline = self.loop.call_later(REQUEST_TIMEOUT, self._too_slow)

    def on_message_complete(self) -> None:
        self._deadline.cancel()
        self._arriving = False
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self._idle_since = self.loop.time()
        super().on_response_complete()

    def idle_since(self) -> float | None:
        """When the connection opened or last finished a response, if it holds nothing
        the server is working on (no request, or one that has not arrived whole yet);
        None while a request is being answered."""
        idle = self._arriving or self.cycle is None or self.cycle.response_complete
        return self._idle_since if idle else None

    def _too_slow(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    def _shed(self) -> None:
        """Close the connections idle longest until SHED_AT remain open."""
        open_ = [c for c in self.connections if not c.transport.is_closing()]
        idle = [
            (since, id(c), c)
            for c in open_
            if c is not self
            and isinstance(c, PeerCertProtocol)
            and (since := c.idle_since()) is not None
        ]
        for _, _, connection in sorted(idle)[: len(open_) - SHED_AT]:
            connection.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._deadline.cancel()
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
