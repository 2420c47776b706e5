"""Requests answered in turns per client address: at most PER_PEER of one address are
being answered at once, the others wait theirs in arrival order, so that one client
with hundreds of connections cannot fill the event loop ahead of a probe or the HPA.
(The server exempts clients with a verified certificate: the aggregator asks for every
HPA from one address, and a request it forwards may wait seconds on another server.)"""

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
        self._waiting: dict[str, dict[Hashable, Callable[[], None]]] = {}

    def take(self, peer: str, waiter: Hashable, start: Callable[[], None]) -> bool:
        """Call `start` now if `peer` has a turn free, else once one frees (unless `waiter`
        is forgotten first); whether it started now. Each start must be followed by
        `done(peer)`."""
        if self._answering.get(peer, 0) < self.per_peer:
            self._answering[peer] = self._answering.get(peer, 0) + 1
            start()
            return True
        self._waiting.setdefault(peer, {})[waiter] = start
        return False

    def done(self, peer: str) -> None:
        """A request of `peer` has been answered: the one waiting longest starts."""
        waiting = self._waiting.get(peer)
        if waiting:
            start = waiting.pop(next(iter(waiting)))
            if not waiting:
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
        waiting = self._waiting.get(peer)
        if waiting is not None and waiting.pop(waiter, None) is not None and not waiting:
            del self._waiting[peer]

    def waiting(self, peer: str, waiter: Hashable) -> bool:
        """Whether `waiter` waits for a turn of `peer`."""
        return waiter in self._waiting.get(peer, {})
