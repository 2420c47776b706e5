"""Which series are forecast: new ones, asked-for ones, pinned ones, and pins first under
the cap."""

from __future__ import annotations

from forecaster.config import Rule
from forecaster.runtime.demand import Pin, SeriesDemand
from forecaster.selector import parse_selector
from forecaster.sources.base import series_key
from tests.conftest import RULE_QUERY


def key(ns: str, svc: str):
    return series_key({"namespace": ns, "service": svc})


def labels_of(*pairs: tuple[str, str]):
    return {key(ns, svc): {"namespace": ns, "service": svc} for ns, svc in pairs}


def test_new_asked_and_pinned_series_are_wanted_and_the_rest_dropped():
    rule = Rule(name="m", query=RULE_QUERY, drop_after="10m", max_series=3)
    demand = SeriesDemand([rule])
    everything = labels_of(("a", "x"), ("a", "y"), ("b", "x"), ("b", "z"))
    t = 1_000_000.0
    first = demand.select(rule, labels_of(("a", "x"), ("a", "y"), ("b", "x")), t)
    assert set(first.wanted) == {key("a", "x"), key("a", "y"), key("b", "x")}
    assert not first.refused
    # b/z appears later: new, wanted; the cap (3) refuses the oldest unasked one.
    demand.ask("m", [key("a", "y")], t + 60)
    later = demand.select(rule, everything, t + 120)
    assert key("b", "z") in later.wanted and key("a", "y") in later.wanted
    assert len(later.wanted) == 3 and len(later.refused) == 1
    # Past drop_after: only what was asked for (within it) or pinned stays.
    demand.ask("m", [key("a", "y")], t + 500)
    demand.pin("hpa b/x", Pin("m", "b", parse_selector("service=x"), lead=240))
    gone = demand.select(rule, everything, t + 700)
    assert gone.wanted == {key("a", "y"): None, key("b", "x"): 240, key("b", "z"): None}
    assert gone.refused == frozenset()  # a/x is dropped, not refused: nobody asked
    final = demand.select(rule, everything, t + 1300)
    assert final.wanted == {key("b", "x"): 240}  # the ask is 13m old; the pin stays
    demand.unpin("hpa b/x")
    assert demand.select(rule, everything, t + 1400).wanted == {}
    # A pin in another namespace picks nothing here; two pins on one series: the longer lead.
    demand.pin("one", Pin("m", "a", parse_selector("service in (x,y)"), lead=120))
    demand.pin("two", Pin("m", "a", parse_selector(""), lead=300))
    demand.pin("three", Pin("m", "c", parse_selector(""), lead=600))
    assert demand.select(rule, everything, t + 1500).wanted == {
        key("a", "x"): 300,
        key("a", "y"): 300,
    }


def test_pins_come_first_under_the_cap():
    rule = Rule(name="m", query=RULE_QUERY, max_series=1)
    demand = SeriesDemand([rule])
    demand.pin("hpa", Pin("m", "b", parse_selector("service=x")))
    demand.ask("m", [key("a", "x")], 100.0)
    got = demand.select(rule, labels_of(("a", "x"), ("b", "x")), 110.0)
    assert got.wanted == {key("b", "x"): None} and got.refused == {key("a", "x")}


def test_a_pinned_series_carries_the_longest_scale_down_window_of_its_hpas():
    """The window through which a series' pods are costed: of the HPAs that read it and
    say, the longest (its pods cost the most); none where none says."""
    rule = Rule(name="m", query=RULE_QUERY)
    demand = SeriesDemand([rule])
    demand.pin("short", Pin("m", "a", parse_selector("service=x"), scale_down=0))
    demand.pin("long", Pin("m", "a", parse_selector("service in (x,y)"), scale_down=600))
    demand.pin("unsaid", Pin("m", "b", parse_selector("")))
    got = demand.select(rule, labels_of(("a", "x"), ("a", "y"), ("b", "x")), 10.0)
    assert set(got.wanted) == {key("a", "x"), key("a", "y"), key("b", "x")}
    assert got.scale_down == {key("a", "x"): 600, key("a", "y"): 600}
    demand.unpin("long")
    again = demand.select(rule, labels_of(("a", "x"), ("a", "y")), 20.0)
    assert again.scale_down == {key("a", "x"): 0}  # a/y is wanted while new, unpinned
