"""The TLS layer under each accepted connection: a one-record read buffer, the connection
held from its acceptance, and handshakes in turns per client address.

At most `Turns.per_peer` handshakes of one address are worked on at once, from the
client's first bytes to the handshake's end; the others' sockets are not read until a
turn frees, within the same HANDSHAKE_TIMEOUT from their acceptance. A handshake costs
the event loop a millisecond or two of cryptography: without turns, one client opening
thousands of connections put hundreds of milliseconds of them ahead of every other
client's, a probe's included."""

from __future__ import annotations

import asyncio
import ssl
from asyncio import sslproto
from typing import TYPE_CHECKING

from adapter.server.connections import Held
from adapter.server.turns import Turns

if TYPE_CHECKING:
    from adapter.server.http import PeerCertProtocol

HANDSHAKE_TIMEOUT = 5
"""Seconds a TLS client has, from connecting, to complete its handshake (waiting for its
address' turn included)."""

TLS_READ_SIZE = 16 * 1024
"""Bytes of plaintext read from a TLS connection at once: one TLS record. (asyncio's
default keeps a 256 KiB buffer per connection, which alone made 900 idle connections
cost 230 MB.)"""


class TLSLayer(sslproto.SSLProtocol):
    """asyncio's TLS layer for one accepted connection, with a one-record read buffer,
    held by `held` from the moment the connection is accepted until it is lost, its
    handshake started in its client address' turn of `handshakes`."""

    max_size = TLS_READ_SIZE
    _incoming: ssl.MemoryBIO  # what the client has sent, not yet read by TLS (asyncio's)
    _raw: asyncio.Transport | None = None  # the socket

    def __init__(
        self, held: Held, handshakes: Turns, app: PeerCertProtocol, context: ssl.SSLContext
    ) -> None:
        super().__init__(
            app.loop,
            app,
            context,
            None,  # type: ignore[arg-type]  # no waiter: the app is told once the handshake is done
            server_side=True,
            ssl_handshake_timeout=HANDSHAKE_TIMEOUT,
            ssl_shutdown_timeout=HANDSHAKE_TIMEOUT,
        )
        self._held = held
        self._handshakes = handshakes
        self._app = app
        self._peer = ""
        self._turn = False  # whether this handshake holds a turn of its address
        self._waiting = False  # whether it waits for one, its socket not read

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._held.opened(self._app, transport)
        peer = transport.get_extra_info("peername")
        self._peer = str(peer[0]) if peer else ""
        self._raw = transport
        super().connection_made(transport)

    def _do_handshake(self) -> None:
        """Work on the handshake with what the client has sent, in its address' turn: a
        turn is taken once the client has sent something (a silent one holds none)."""
        if self._turn or not self._incoming.pending or self._raw is None:
            super()._do_handshake()  # type: ignore[misc]
        elif not self._waiting:
            if self._handshakes.take(self._peer, self, self._granted):
                super()._do_handshake()  # type: ignore[misc]
            else:
                self._waiting = True
                self._raw.pause_reading()

    def _granted(self) -> None:
        """A turn is this handshake's: at once, or (after a wait) on the next loop pass,
        not inside the handshake that gave it up."""
        self._turn = True
        if self._waiting:
            self._waiting = False
            self._loop.call_soon(self._resume)

    def _resume(self) -> None:
        transport = self._raw
        if not self._turn or transport is None or transport.is_closing():
            return  # lost meanwhile: the loss gave the turn back, or will
        transport.resume_reading()
        super()._do_handshake()  # type: ignore[misc]

    def _release(self) -> None:
        if self._turn:
            self._turn = False
            self._handshakes.done(self._peer)

    def _on_handshake_complete(self, handshake_exc: BaseException | None) -> None:
        self._release()
        super()._on_handshake_complete(handshake_exc)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._release()
        self._handshakes.forget(self._peer, self)
        self._raw = None
        self._held.closed(self._app)
        super().connection_lost(exc)
