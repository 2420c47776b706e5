"""Requests answered in turns per client address: at most PER_PEER of one address are
being answered at once, the others wait theirs, so that one client with hundreds of
connections cannot fill the event loop ahead of a probe or the HPA. (The server exempts
clients with a verified certificate: the aggregator asks for every HPA from one address,
and a request it forwards may wait seconds on another server.)

Within an address, a connection's first request goes ahead of the requests of
connections already answered, each kind in arrival order: a kubelet's probe (a new
connection each time) sharing its address with a client that floods requests over
keep-alive connections waits for a turn, not behind the flood. A client that opens a
new connection for each request pays a TLS handshake for each, and handshakes take
their own turns per address (`adapter.server.tls`)."""

from __future__ import annotations

from collections.abc import Callable, Hashable

PER_PEER = 8
"""Requests of one client address answered at once: more than a kubelet's probes or a
scraper ask at once. Unbounded, a flood over 2,000 connections from one address put
1.6 s on a probe's answer from another."""


class Turns:
    """Who is being answered, and who waits, per client address."""

    def __init__(self, per_peer: int = PER_PEER) -> None:
        self.per_peer = per_peer
        self._answering: dict[str, int] = {}
        # Per address, the waiting first requests of their connections, then the others.
        self._waiting: dict[str, tuple[dict[Hashable, Callable[[], None]], ...]] = {}

    def take(
        self, peer: str, waiter: Hashable, start: Callable[[], None], first: bool = False
    ) -> bool:
        """Call `start` now if `peer` has a turn free, else once one frees (unless `waiter`
        is forgotten first), before every waiter that is not `first` if it is; whether it
        started now. Each start must be followed by `done(peer)`."""
        if self._answering.get(peer, 0) < self.per_peer:
            self._answering[peer] = self._answering.get(peer, 0) + 1
            start()
            return True
        queues = self._waiting.setdefault(peer, ({}, {}))
        queues[0 if first else 1][waiter] = start
        return False

    def done(self, peer: str) -> None:
        """A request of `peer` has been answered: the first request waiting longest
        starts, else the other request waiting longest."""
        queues = self._waiting.get(peer)
        if queues is not None:
            waiting = queues[0] or queues[1]
            start = waiting.pop(next(iter(waiting)))
            if not (queues[0] or queues[1]):
                del self._waiting[peer]
            start()  # the turn passes on: the count stays
            return
        left = self._answering[peer] - 1
        if left:
            self._answering[peer] = left
        else:
            del self._answering[peer]

    def forget(self, peer: str, waiter: Hashable) -> None:
        """`waiter` no longer waits (its connection closed)."""
        queues = self._waiting.get(peer)
        if queues is None:
            return
        for waiting in queues:
            waiting.pop(waiter, None)
        if not (queues[0] or queues[1]):
            del self._waiting[peer]

    def waiting(self, peer: str, waiter: Hashable) -> bool:
        """Whether `waiter` waits for a turn of `peer`."""
        return any(waiter in waiting for waiting in self._waiting.get(peer, ()))
