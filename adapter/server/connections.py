"""The connections a server holds, bounded: beyond MAX_CONNECTIONS, each new one closes the
one idle longest, unless its client address holds more than its share of them, when the
new one is refused instead; memory is given back to the OS after a burst of them."""

from __future__ import annotations

import asyncio
import heapq
from collections import Counter
from typing import Protocol

from adapter.server.memory import give_back

MAX_CONNECTIONS = 4000
"""Connections held at most (in their handshake, idle or in a request): each one beyond
closes the one idle longest. Thousands of idle or hostile connections are held, at tens
of KiB each, until their deadline closes them: shedding earlier would only make a
client that reopens what is closed cost a handshake per connection, without end."""

GIVE_BACK_AFTER = 200
"""Connections closed, after which memory is given back to the OS once at most half of
the most held remain and closing has been quiet for a second (a full garbage collection
frees their cycles, and the C library would keep what they freed): RSS returns near its
baseline after a burst."""


class Connection(Protocol):
    """A connection as `Held` sees it."""

    def idle_since(self) -> float | None:
        """When it last became idle; None while a request of it is being answered."""


class Held:
    """Every connection the server holds, from its acceptance (before any TLS handshake)
    until its socket closes, with the socket to close it by."""

    def __init__(self, most: int = MAX_CONNECTIONS) -> None:
        self.most = most
        self._sockets: dict[Connection, asyncio.Transport] = {}
        self._per_address: Counter[str] = Counter()  # connections held, per client address
        self._closed = 0  # since memory was last given back
        self._most_held = 0  # since memory was last given back
        self._quiet: asyncio.TimerHandle | None = None

    def opened(self, connection: Connection, socket: asyncio.Transport) -> None:
        """Hold `connection`, closing the ones idle longest (those already closing first)
        beyond `most`."""
        if connection in self._sockets:
            return
        self._sockets[connection] = socket
        self._per_address[_address(socket)] += 1
        self._most_held = max(self._most_held, len(self._sockets))
        excess = len(self._sockets) - self.most
        if excess <= 0:
            return
        idle = (
            (not other.is_closing(), since, id(c), other)
            for c, other in self._sockets.items()
            if c is not connection and (since := c.idle_since()) is not None
        )
        for *_, other in heapq.nsmallest(excess, idle):
            other.abort()  # at once: no TLS close_notify awaited from a client that may not answer

    def refuses(self, address: str) -> bool:
        """Whether a new connection from `address` is to be closed at once: every place is
        taken and `address` holds at least its share of them (the places over the
        addresses held). A client that opens more connections than the server holds then
        has its new ones refused for the price of an accept, instead of making the server
        build each and close another of its own: that churn, at the rate the server could
        accept, queued a probe from another address behind thousands in the kernel's
        backlog (3 s with 6,000 connections of one client)."""
        return (
            len(self._sockets) >= self.most
            and self._per_address[address] * len(self._per_address) >= self.most
        )

    def closed(self, connection: Connection) -> None:
        """Forget `connection`; once GIVE_BACK_AFTER have closed, give the memory back when
        closing has been quiet for a second."""
        socket = self._sockets.pop(connection, None)
        if socket is None:
            return
        address = _address(socket)
        self._per_address[address] -= 1
        if not self._per_address[address]:
            del self._per_address[address]
        self._closed += 1
        # Only once the burst is over (half of the most held have gone): while clients
        # keep reopening what closes, memory stays bounded anyway, and the collection
        # (tens of ms with thousands of connections) would only pause the answers.
        if self._closed >= GIVE_BACK_AFTER and len(self._sockets) <= self._most_held // 2:
            if self._quiet is not None:
                self._quiet.cancel()
            self._quiet = asyncio.get_running_loop().call_later(1.0, self._give_back)

    def _give_back(self) -> None:
        give_back(f"{self._closed} connections closed")
        self._closed = 0
        self._most_held = len(self._sockets)
        self._quiet = None


def _address(socket: asyncio.Transport) -> str:
    """The client address of `socket` (its transport keeps it once closed)."""
    peer = socket.get_extra_info("peername")
    return str(peer[0]) if peer else ""
