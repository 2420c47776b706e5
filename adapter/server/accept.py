"""Accepting connections from a listening socket: at most ACCEPT_BATCH in each pass over
the event loop; while more arrive than a pass takes, none from a client address that
`Held` refuses, closed before anything is built for it. (Outside such a storm a new
connection is always built, and closes the one idle longest if every place is taken: a
probe from an address whose other clients hold thousands still gets in.)

asyncio's own server accepted as many connections in one pass as its listen backlog
(uvicorn's 2,048), each an open file before the server held it: a client opening 6,000
connections ran the process out of open files, and asyncio then stopped accepting for a
second at a time, probes included."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from collections.abc import Callable

from adapter.server.connections import Held

log = logging.getLogger("scaleahead")

ACCEPT_BATCH = 64
"""Connections accepted and built in one pass over the event loop."""
LISTEN_BACKLOG = 2048
"""Connections the kernel queues for the server to accept (uvicorn's default)."""
STORM_SECONDS = 1.0
"""Seconds a storm lasts after a pass over the loop left connections waiting."""
OUT_OF_FILES_PAUSE = 0.1
"""Seconds accepting pauses when the process has no open file left for a connection."""
WARN_INTERVAL = 60.0
"""Seconds between warnings about connections refused or not accepted."""


def listen(host: str, port: int) -> socket.socket:
    """A non-blocking TCP socket listening on `host` (an address, or a name: its first
    address) and `port`, LISTEN_BACKLOG deep."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    # IPPROTO_TCP, not 0: asyncio turns Nagle off only on sockets that say they are TCP.
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class Acceptor:
    """Accepts connections from `listening` into protocols of `factory`, as an asyncio
    server would, for as long as it is not closed (the `close` / `wait_closed` of an
    asyncio server, for uvicorn's shutdown)."""

    def __init__(
        self,
        listening: socket.socket,
        factory: Callable[[], asyncio.BaseProtocol],
        held: Held,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._socket = listening
        self._factory = factory
        self._held = held
        self._loop = loop
        self._closed = False
        self._storm_until = 0.0  # a storm lasts STORM_SECONDS after a pass left some waiting
        self._refusals = 0  # connections refused (Held.refuses) since the last warning
        self._warned = self._paused = -WARN_INTERVAL
        loop.add_reader(listening.fileno(), self._accept)

    def _accept(self) -> None:
        now = self._loop.time()
        storm = now < self._storm_until
        built = 0
        # Refusing costs an accept and a close: a pass refuses as many as are waiting.
        for _ in range(LISTEN_BACKLOG):
            if built == ACCEPT_BATCH:  # a whole batch built: more may be waiting
                self._storm_until = now + STORM_SECONDS
                return
            try:
                conn, peer = self._socket.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as err:
                if err.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    raise
                self._pause(err)
                return
            if storm and self._held.refuses(str(peer[0])):
                conn.close()
                self._refused()
                continue
            conn.setblocking(False)
            self._loop.create_task(self._connect(conn))
            built += 1

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._factory, conn)
        except OSError:  # reset before its transport was made
            conn.close()

    def _refused(self) -> None:
        self._refusals += 1
        now = time.monotonic()
        if now - self._warned >= WARN_INTERVAL:
            log.warning(
                "refused %d connection(s) from clients holding more than their share of "
                "the %d connections held",
                self._refusals,
                self._held.most,
            )
            self._refusals, self._warned = 0, now

    def _pause(self, err: OSError) -> None:
        """No file left for a connection: stop accepting for OUT_OF_FILES_PAUSE."""
        now = time.monotonic()
        if now - self._paused >= WARN_INTERVAL:
            log.warning("cannot accept connections: %s; pausing %.1f s", err, OUT_OF_FILES_PAUSE)
            self._paused = now
        self._loop.remove_reader(self._socket.fileno())
        self._loop.call_later(OUT_OF_FILES_PAUSE, self._resume)

    def _resume(self) -> None:
        if not self._closed:
            self._loop.add_reader(self._socket.fileno(), self._accept)

    def close(self) -> None:
        """Stop accepting and close the listening socket."""
        if not self._closed:
            self._closed = True
            self._loop.remove_reader(self._socket.fileno())
            self._socket.close()

    async def wait_closed(self) -> None:
        """Nothing to wait for once closed: the connections are the server's to drain."""
