"""Held: the connections a server holds, bounded; beyond the bound each new one closes the
one idle longest, and an address holding its share of every place has new ones refused."""

from __future__ import annotations

from dataclasses import dataclass

from adapter.server.connections import Held


@dataclass(eq=False)
class Socket:
    address: str
    aborted: bool = False

    def get_extra_info(self, name: str) -> tuple[str, int] | None:
        return (self.address, 40000) if name == "peername" else None

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        self.aborted = True


@dataclass(eq=False)
class Connection:
    since: float | None

    def idle_since(self) -> float | None:
        return self.since


def test_beyond_the_bound_a_new_connection_closes_the_one_idle_longest():
    held = Held(most=3)
    sockets = [Socket("10.0.0.1") for _ in range(4)]
    busy = Connection(None)  # being answered: never closed to make room
    for connection, socket in zip(
        [busy, Connection(5.0), Connection(2.0), Connection(9.0)], sockets, strict=True
    ):
        held.opened(connection, socket)  # type: ignore[arg-type]
    assert [s.aborted for s in sockets] == [False, False, True, False]


def test_an_address_holding_its_share_of_every_place_is_refused_others_are_not():
    held = Held(most=4)
    for _ in range(3):
        held.opened(Connection(1.0), Socket("10.0.0.1"))  # type: ignore[arg-type]
    assert not held.refuses("10.0.0.1")  # a place is free
    probe = Connection(2.0)
    held.opened(probe, Socket("10.0.0.9"))  # type: ignore[arg-type]
    # Every place taken: 10.0.0.1 holds 3 of 4 over two addresses (share 2), 10.0.0.9 one.
    assert held.refuses("10.0.0.1")
    assert not held.refuses("10.0.0.9") and not held.refuses("10.0.0.7")
    held.closed(probe)  # a place frees, and 10.0.0.9 no longer counts
    assert not held.refuses("10.0.0.1")
