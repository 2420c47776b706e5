"""What a rule's cycles tell an operator once when it starts and once when it ends: series
refused beyond max_series, and a query that yields no series."""

from __future__ import annotations

import logging

from forecaster.config import Rule
from forecaster.runtime.telemetry import Telemetry
from forecaster.sources.base import SeriesKey

# The cycle's logger: operators filter these lines by the name they have always had.
log = logging.getLogger("forecaster.runtime.cycle")


class Notices:
    """Logs (and exports) each rule's lasting conditions when they flip; a replay (not
    `live`) is not warned of a recorded gap, which is no broken query."""

    def __init__(self, telemetry: Telemetry | None, live: bool) -> None:
        self.telemetry = telemetry
        self.live = live
        self._empty: set[str] = set()
        self._refusing: set[str] = set()

    def refused(self, rule: Rule, refused: frozenset[SeriesKey]) -> None:
        """Export and log (once, and when it ends) the series beyond `max_series`."""
        if self.telemetry:
            self.telemetry.cycle_refused.labels(rule.name).set(len(refused))
        if _flip(self._refusing, rule.name, bool(refused)):
            if refused:
                log.error(
                    "rule %s: %d series beyond max_series (%d) are not forecast, only served "
                    "their actual; raise max_series or narrow the query",
                    rule.name,
                    len(refused),
                    rule.max_series,
                    extra={"rule": rule.name},
                )
            else:
                log.info(
                    "rule %s: every series asked for is forecast again",
                    rule.name,
                    extra={"rule": rule.name},
                )

    def empty(self, rule: Rule, empty: bool) -> None:
        """Log once when a rule's query starts or stops yielding series."""
        if _flip(self._empty, rule.name, empty) and self.live:
            if empty:
                log.warning(
                    "rule %s: the query yields no series, so every request for it is answered "
                    "404; check the metric names with `scaleahead check-config --prometheus`",
                    rule.name,
                    extra={"rule": rule.name},
                )
            else:
                log.info(
                    "rule %s: the query yields series again", rule.name, extra={"rule": rule.name}
                )


def _flip(states: set[str], name: str, active: bool) -> bool:
    """Put `name` in `states` or take it out, as `active` says; whether that changed."""
    if active == (name in states):
        return False
    if active:
        states.add(name)
    else:
        states.discard(name)
    return True
