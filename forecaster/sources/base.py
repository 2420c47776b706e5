"""The Source protocol every history provider implements, and the data it yields."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from forecaster.selector import EVERYTHING, LabelSelector

if TYPE_CHECKING:
    from forecaster.config import Rule

SeriesKey = tuple[tuple[str, str], ...]
"""A series' identity: its label set, sorted, as a hashable tuple."""


def series_key(labels: Mapping[str, str]) -> SeriesKey:
    """The identity of a label set."""
    return tuple(sorted(labels.items()))


class SourceError(Exception):
    """The source could not answer (e.g. Prometheus is down); callers degrade, never serve 0."""


@dataclass(frozen=True)
class RangeSeries:
    """One series on the rule's step grid: labels and finite samples (holes allowed)."""

    labels: dict[str, str]
    timestamps: np.ndarray  # int64 Unix seconds, multiples of the step, ascending
    values: np.ndarray  # float64, finite


@dataclass(frozen=True)
class InstantSample:
    """The current value of one series."""

    labels: dict[str, str]
    value: float


class Source(Protocol):
    """Yields a rule's series: history on its step grid, and current values for a selector."""

    def describe(self) -> str:
        """A short human description (URL or trace name) for logs and errors."""
        ...

    def fetch_range(
        self, rule: Rule, start: int, end: int, selector: LabelSelector = EVERYTHING
    ) -> list[RangeSeries]:
        """The rule's series matching `selector` (default: all) over the grid points in
        [start, end]; raise SourceError."""
        ...

    def fetch_current(self, rule: Rule, selector: LabelSelector, at: float) -> list[InstantSample]:
        """The rule's series matching `selector`, evaluated at `at`; raise SourceError."""
        ...
