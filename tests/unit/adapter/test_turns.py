"""Turns: at most per_peer requests of one client address answered at once, the others
started as turns free (a connection's first request first, then in arrival order),
other addresses never held up."""

from __future__ import annotations

from adapter.server.turns import Turns


def test_beyond_its_turns_a_peer_waits_and_is_started_in_arrival_order():
    turns = Turns(per_peer=2)
    started: list[str] = []
    for name in "abcd":
        turns.take("10.0.0.1", name, lambda name=name: started.append(name))
    assert started == ["a", "b"]
    assert turns.waiting("10.0.0.1", "c") and turns.waiting("10.0.0.1", "d")
    turns.done("10.0.0.1")
    assert started == ["a", "b", "c"]
    turns.done("10.0.0.1")
    turns.done("10.0.0.1")
    assert started == ["a", "b", "c", "d"]
    # Three of the four started are done: one turn is free, so e starts and f waits.
    assert turns.take("10.0.0.1", "e", lambda: started.append("e"))
    assert not turns.take("10.0.0.1", "f", lambda: started.append("f"))
    turns.done("10.0.0.1")
    assert started[-1] == "f"


def test_another_peer_is_never_held_up():
    turns = Turns(per_peer=1)
    started: list[str] = []
    assert turns.take("10.0.0.1", "a", lambda: started.append("a"))
    assert not turns.take("10.0.0.1", "b", lambda: started.append("b"))
    assert turns.take("10.0.0.2", "probe", lambda: started.append("probe"))
    assert started == ["a", "probe"]


def test_a_forgotten_waiter_is_never_started_and_frees_its_place():
    turns = Turns(per_peer=1)
    started: list[str] = []
    turns.take("p", "a", lambda: started.append("a"))
    turns.take("p", "b", lambda: started.append("b"))
    turns.take("p", "c", lambda: started.append("c"))
    turns.forget("p", "b")
    assert not turns.waiting("p", "b")
    turns.done("p")
    assert started == ["a", "c"]
    turns.done("p")
    # Every turn is free again: the next two of another round start at once.
    turns.per_peer = 2
    assert turns.take("p", "d", lambda: None) and turns.take("p", "e", lambda: None)


def test_a_connections_first_request_goes_ahead_of_the_others_waiting():
    """A probe (a new connection's first request) waits for the next turn, not behind the
    requests of connections already answered; each kind keeps its arrival order."""
    turns = Turns(per_peer=1)
    started: list[str] = []
    turns.take("p", "busy", lambda: started.append("busy"))
    for name in ("flood-1", "flood-2"):
        turns.take("p", name, lambda name=name: started.append(name))
    turns.take("p", "probe-1", lambda: started.append("probe-1"), first=True)
    turns.take("p", "probe-2", lambda: started.append("probe-2"), first=True)
    turns.forget("p", "probe-2")
    turns.take("p", "probe-3", lambda: started.append("probe-3"), first=True)
    assert turns.waiting("p", "probe-3") and not turns.waiting("p", "probe-2")
    for _ in range(4):
        turns.done("p")
    assert started == ["busy", "probe-1", "probe-3", "flood-1", "flood-2"]
    turns.done("p")
    assert turns.take("p", "next", lambda: None)  # every turn was free again
