"""What the serving process and the forecaster process send each other over their pipe:
plain picklable records, one per event."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client.core import Metric

from forecaster.forecast import SeriesForecast
from forecaster.runtime.demand import Selection
from forecaster.runtime.outcomes import Tally
from forecaster.runtime.scheduler import Stall
from forecaster.sources.base import SeriesKey


@dataclass(frozen=True)
class Put:
    """A rule's cycle succeeded: every forecast of it, and the series it refused."""

    rule: str
    forecasts: Mapping[SeriesKey, SeriesForecast]
    refused: frozenset[SeriesKey]


@dataclass(frozen=True)
class Failed:
    """A rule's last `failures` cycles failed; its forecasts stay."""

    rule: str
    error: str
    failures: int
    retry_at: float | None


@dataclass(frozen=True)
class Select:
    """Which of these series of `rule` to forecast at `now` (answered by a Selected)."""

    ask: int
    rule: str
    labels: dict[SeriesKey, dict[str, str]]
    now: float


@dataclass(frozen=True)
class Selected:
    """The answer to the Select numbered `ask`."""

    ask: int
    selection: Selection


@dataclass(frozen=True)
class Soon:
    """Run a cycle of `rule` now (it gained series to forecast)."""

    rule: str


@dataclass(frozen=True)
class Beat:
    """The forecaster process is alive: its stalled jobs and, now and then (None: as
    last sent), its metrics and each rule's realised outcomes."""

    stalls: list[Stall]
    families: list[Metric] | None = None
    tallies: dict[str, list[Tally]] | None = None


@dataclass(frozen=True)
class Stop:
    """Stop: abandon the cycle in flight and exit."""
