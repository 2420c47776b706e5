"""Which series of each rule are worth forecasting: those someone asks for.

A series is wanted while it is new (for `drop_after` after the query first yielded it,
so a restart or a new workload is forecast before anyone asks), while a request through
the API asked for it within `drop_after`, and while a pin names it: a standing request
(an HPA in the cluster whose External metric names the rule, with its namespace and
selector), which may carry that workload's measured lead and its HPA's scale-down
window (what a forecast's pods cost depends on how long the HPA holds them). At most
`max_series` per rule are wanted, pinned ones first, then the most recently asked, then
the newest; the rest are refused, which the cycle reports.

Thread-safe: the API records requests, the cluster watch sets pins and the cycle reads.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from forecaster.config import Rule
from forecaster.selector import LabelSelector
from forecaster.sources.base import SeriesKey


@dataclass(frozen=True)
class Pin:
    """A standing request for the series of `rule` that `selector` picks in `namespace`
    (the namespace label is matched by the rule's `namespace_label`), with the lead its
    workload's pods were measured to need (None: the rule's) and the scale-down
    stabilization window of the HPA that holds it (seconds; None: not known)."""

    rule: str
    namespace: str
    selector: LabelSelector
    lead: int | None = None
    owner: str = ""  # who holds the pin, for logs: e.g. "HPA shop/checkout"
    scale_down: int | None = None


@dataclass(frozen=True)
class Selection:
    """What a rule's cycle forecasts: `wanted` series (each with its lead, None for the
    rule's), the `refused` ones beyond `max_series`, and the scale-down stabilization
    window (seconds) of the HPAs that read a wanted series, where they are known."""

    wanted: dict[SeriesKey, int | None]
    refused: frozenset[SeriesKey]
    scale_down: dict[SeriesKey, int] = field(default_factory=dict)


class Demand(Protocol):
    """What a cycle asks: which of the series the query yields to forecast."""

    def select(
        self, rule: Rule, labels: Mapping[SeriesKey, Mapping[str, str]], now: float
    ) -> Selection:
        """Of the series the query yields now (`labels`), those to forecast at `now`."""
        ...


class SeriesDemand:
    """Requests, pins and first sightings of every rule's series."""

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = {r.name: r for r in rules}
        self._lock = threading.Lock()
        self._asked: dict[str, dict[SeriesKey, float]] = {r.name: {} for r in rules}
        self._seen: dict[str, dict[SeriesKey, float]] = {r.name: {} for r in rules}
        self._pins: dict[str, Pin] = {}

    def ask(self, rule: str, keys: list[SeriesKey], now: float) -> None:
        """Record that a request was answered with these series of `rule` at `now`."""
        with self._lock:
            asked = self._asked[rule]
            for key in keys:
                asked[key] = now

    def pin(self, name: str, pin: Pin) -> None:
        """Set (or replace) the standing request called `name`."""
        with self._lock:
            self._pins[name] = pin

    def unpin(self, name: str) -> None:
        with self._lock:
            self._pins.pop(name, None)

    def pins(self) -> dict[str, Pin]:
        with self._lock:
            return dict(self._pins)

    def select(
        self, rule: Rule, labels: Mapping[SeriesKey, Mapping[str, str]], now: float
    ) -> Selection:
        """Of the series the query yields now (`labels`), those to forecast at `now`."""
        with self._lock:
            seen = self._seen[rule.name]
            for key in labels:
                seen.setdefault(key, now)
            for key in [k for k in seen if k not in labels and now - seen[k] > rule.drop_after]:
                del seen[key]  # gone for long: if it returns, it is new again
            asked = self._asked[rule.name]
            for key in [k for k, t in asked.items() if now - t > rule.drop_after]:
                del asked[key]
            pins = [p for p in self._pins.values() if p.rule == rule.name]
            asked = dict(asked)
        pinned: dict[SeriesKey, int | None] = {}
        windows: dict[SeriesKey, int] = {}
        for key, series_labels in labels.items():
            holders = [p for p in pins if _picks(rule, p, series_labels)]
            if holders:  # several workloads on one series: the slowest one's lead
                pinned[key] = max((p.lead for p in holders if p.lead is not None), default=None)
                # and the longest window: the one whose pods a forecast costs the most
                known = [p.scale_down for p in holders if p.scale_down is not None]
                if known:
                    windows[key] = max(known)
        order = sorted(
            (k for k in labels if k not in pinned),
            key=lambda k: (-asked.get(k, float("-inf")), -seen[k]),
        )
        recent = [k for k in order if k in asked or now - seen[k] <= rule.drop_after]
        ranked = [*pinned, *recent]
        wanted = {key: pinned.get(key) for key in ranked[: rule.max_series]}
        scale_down = {key: w for key, w in windows.items() if key in wanted}
        return Selection(wanted, frozenset(ranked[rule.max_series :]), scale_down)


def _picks(rule: Rule, pin: Pin, labels: Mapping[str, str]) -> bool:
    if rule.namespace_label and labels.get(rule.namespace_label) != pin.namespace:
        return False
    return pin.selector.matches(dict(labels))
