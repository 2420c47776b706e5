"""The HTTP server under the app: uvicorn's HTTP/1.1 protocol behind our own TLS layer,
with the client certificate of each connection in the request's state, a bound on the
connections held, and deadlines for slow clients.

A request's head may cost MAX_HEAD at most (a 431 beyond), and a connection may send
MAX_PIPELINED requests ahead of its answers (closed beyond). A TLS client has
HANDSHAKE_TIMEOUT to complete its handshake. Every request, its head and
its body, must arrive whole within REQUEST_TIMEOUT of its first byte (the first request
within it of the handshake, or of the connection opening without TLS), whichever request
of the connection it is. Beyond MAX_CONNECTIONS held (fewer where open files are
limited below it: `connections_held_at_most`), each new one closes the one idle
longest (in its handshake, between requests, or sending one too slowly), so that idle or
slow clients never keep a probe or the HPA out and memory stays bounded: about
MAX_CONNECTIONS x the cost of one connection (bench/hostile_connections.py measures it).
No request is refused for want of room: a request in flight holds its connection."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import resource
import ssl
from collections.abc import Callable, Generator
from typing import Any

import uvicorn
from uvicorn._types import ASGI3Application, ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from adapter.asgi import PEER_CERT
from adapter.errors import UsageError, status_body
from adapter.server.accept import Acceptor, listen
from adapter.server.connections import MAX_CONNECTIONS, Held
from adapter.server.tls import TLSLayer
from adapter.server.turns import Turns

log = logging.getLogger("scaleahead")

REQUEST_TIMEOUT = 10.0
"""Seconds a request may take to arrive whole (head and body), from its first byte, or
from the handshake (the connection opening, without TLS) for its first: beyond, the
connection is closed."""

MAX_HEAD = 64 * 1024
"""What a request's head (its request line and headers) may cost, in bytes received plus
HEAD_LINE_COST for each line: beyond, it is answered 431 and its connection closed. A
head from the aggregator or a client is a few KiB; an unbounded one grew the process by
hundreds of MiB a second from one client (uvicorn keeps every header line it parses)."""
HEAD_LINE_COST = 128
"""Bytes counted for each line of a request head on top of its own: about what the server
keeps of a header beyond its text, so that many tiny lines cannot cost more than
MAX_HEAD of memory either."""

MAX_PIPELINED = 16
"""Requests a connection may send ahead of the one being answered (HTTP/1.1 pipelining);
beyond, the connection is closed. Reading pauses while any wait (uvicorn resumed it after
each answer, queueing every request parsed: one client sending requests without reading
the answers grew the process by 20 MiB a connection)."""

KEEP_ALIVE_TIMEOUT = 30
"""Idle keep-alive connections are closed after this many seconds (the aggregator reuses
its connections; a client that holds one without asking loses it)."""

FD_RESERVE = 512
"""Open files kept for all but the connections held: those accepted and not yet held
(a few of `adapter.server.accept`'s batches), Prometheus, the API server, a forwarded
adapter, the forecaster's pipes, logs and checkpoints."""
MIN_CONNECTIONS = 64
"""Connections held at the least, however low the open-files limit."""


class _Flooded(Exception):
    """A connection sent more than MAX_PIPELINED requests ahead of its answers."""


class PeerCertProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol, recording the verified client certificate (DER) in
    every request's state, answering clients without one in turns per address (`Turns`)
    and closing connections whose request does not arrive whole in time."""

    def __init__(self, *args: Any, held: Held, turns: Turns, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.held = held
        self.turns = turns
        self._peer: str | None = None  # the client's address, if it takes turns
        self._idle_since = self.loop.time()
        self._arriving = True  # a request (the first) is awaited
        self._deadline: asyncio.TimerHandle | None = None
        self._head = 0  # what the head of the request arriving has cost (MAX_HEAD)
        self._in_head = True  # its head is not complete yet
        self._answered = False  # whether a response of it has been sent whole

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.held.opened(self, transport)  # without TLS; with it, _TLS did at acceptance
        super().connection_made(transport)
        ssl_object: ssl.SSLObject | None = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if der is None:  # a verified certificate (the aggregator's) does not take turns
            self._peer = self.client[0] if self.client else ""
        self.app_state = {**self.app_state, PEER_CERT: der}
        self._deadline = self.loop.call_later(REQUEST_TIMEOUT, self._too_slow)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head += len(data) + HEAD_LINE_COST * data.count(b"\n")
            if self._head > MAX_HEAD:
                self._head_too_large()
                return
        try:
            super().data_received(data)
        except _Flooded:
            self.pipeline.clear()
            self.transport.abort()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        """Answer the request in the client address' turn (`Turns`; the connection's
        first request before the others waiting), or at once for a client with a verified
        certificate."""
        peer, turns = self._peer, self.turns
        if peer is None:
            super()._start_asgi_task(cycle, app)
            return

        async def answer(
            scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
        ) -> None:
            try:
                await app(scope, receive, send)
            finally:
                turns.done(peer)

        start = super()._start_asgi_task
        turns.take(peer, self, lambda: start(cycle, answer), first=not self._answered)

    def _head_too_large(self) -> None:
        body = json.dumps(
            status_body(
                431,
                "RequestHeaderFieldsTooLarge",
                f"the request's head is larger than {MAX_HEAD // 1024} KiB",
            )
        ).encode()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
        )
        self._in_head = False
        self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._restart_deadline()
        self._arriving = True

    def on_headers_complete(self) -> None:
        self._in_head = False
        if len(self.pipeline) >= MAX_PIPELINED:
            raise _Flooded  # out of the parser, to data_received
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._cancel_deadline()
        self._arriving = False
        self._in_head, self._head = True, 0  # the next request's head is awaited
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self._idle_since = self.loop.time()
        self._answered = True
        super().on_response_complete()  # resumes reading, starts the next request waiting
        if self.pipeline:
            self.flow.pause_reading()

    def idle_since(self) -> float | None:
        """When the connection was accepted or last finished a response, if it holds
        nothing the server is working on (still in its handshake, between requests, in
        one that has not arrived whole or waiting its turn); None while a request is being
        answered."""
        idle = (
            self._arriving
            or self.cycle is None
            or self.cycle.response_complete
            or (self._peer is not None and self.turns.waiting(self._peer, self))
        )
        return self._idle_since if idle else None

    def _restart_deadline(self) -> None:
        self._cancel_deadline()
        self._deadline = self.loop.call_later(REQUEST_TIMEOUT, self._too_slow)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()

    def _too_slow(self) -> None:
        self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        if self._peer is not None:
            self.turns.forget(self._peer, self)
        self.held.closed(self)
        super().connection_lost(exc)


class _Server(uvicorn.Server):
    """uvicorn's server, accepting connections through `Held` and our TLS layer; a SIGTERM
    or SIGINT that stopped it gracefully is not raised again afterwards (uvicorn would,
    killing the process before the caller's own shutdown runs and exiting with the
    signal instead of 0)."""

    def __init__(
        self,
        config: uvicorn.Config,
        tls: ssl.SSLContext | None,
        listening: Callable[[], None],
        most: int,
    ) -> None:
        super().__init__(config)
        self.tls = tls
        self.listening = listening
        self.held = Held(most)
        self.turns = Turns()
        self.handshakes = Turns()

    async def startup(self, sockets: list[Any] | None = None) -> None:
        config = self.config
        loop = asyncio.get_running_loop()

        def accept() -> asyncio.BaseProtocol:
            app = PeerCertProtocol(
                config=config,
                server_state=self.server_state,
                app_state=self.lifespan.state,
                _loop=loop,
                held=self.held,
                turns=self.turns,
            )
            return app if self.tls is None else TLSLayer(self.held, self.handshakes, app, self.tls)

        try:
            listening = listen(config.host, config.port)
        except OSError as err:
            reason = err.strerror or str(err)
            raise UsageError(f"cannot listen on {config.host}:{config.port}: {reason}") from None
        self.servers = [Acceptor(listening, accept, self.held, loop)]  # type: ignore[list-item]
        log.info(
            "listening on %s:%d (%s)",
            config.host,
            config.port,
            "HTTPS" if self.tls is not None else "plain HTTP",
        )
        self.listening()
        self.started = True

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
    listening: Callable[[], None] = lambda: None,
) -> None:
    """Serve `app` until SIGTERM/SIGINT, finishing in-flight requests for up to
    `graceful_seconds`; `listening` is called once the port is open. UsageError if it
    cannot be opened."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        log_config=None,  # uvicorn's records go to the root logger, in our format
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE_TIMEOUT,
        timeout_graceful_shutdown=graceful_seconds,
        lifespan="off",
        server_header=False,
    )
    config.load()
    most = connections_held_at_most(enough_descriptors(MAX_CONNECTIONS + 2 * FD_RESERVE))
    _Server(config, tls, listening, most).run()


def enough_descriptors(needed: int) -> int:
    """Raise the soft limit on open files towards `needed` (as far as the hard limit
    allows); the limit now (RLIM_INFINITY if none)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        soft = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


def connections_held_at_most(open_files: int) -> int:
    """The connections the server may hold with `open_files` descriptors: MAX_CONNECTIONS,
    or FD_RESERVE fewer than the limit where it is lower (warned). Beyond the limit the
    server could not accept at all: a client holding every descriptor kept probes and
    the HPA out, since only a new connection makes room by closing the one idle longest."""
    if open_files == resource.RLIM_INFINITY or open_files >= MAX_CONNECTIONS + FD_RESERVE:
        return MAX_CONNECTIONS
    most = max(MIN_CONNECTIONS, open_files - FD_RESERVE)
    log.warning(
        "open files are limited to %d (hard limit): holding at most %d connections, not "
        "%d; raise the limit (ulimit -n, or the container runtime's) to %d",
        open_files,
        most,
        MAX_CONNECTIONS,
        MAX_CONNECTIONS + FD_RESERVE,
    )
    return most
