"""Where history and current values come from: the Source protocol and its data types."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from forecaster.config import Rule
from forecaster.selector import EVERYTHING, LabelSelector


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
    timestamp: float
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


def series_key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """A hashable identity for a label set."""
    return tuple(sorted(labels.items()))
