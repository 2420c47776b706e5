"""Per-series history of one rule on a fixed step grid, advanced incrementally."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from forecaster.policy import as_rates
from forecaster.sources.base import RangeSeries, SeriesKey, series_key
from forecaster.times import first_point

REFETCH_STEPS = 2
"""Each fetch re-reads this many already-seen steps: the newest points of a rate may still
change while late scrapes arrive."""


def without_warmup(values: np.ndarray, steps: int) -> np.ndarray:
    """The series with its first `steps` points after every hole made holes too: there a
    rate's window was still filling, so the values ramp up from near zero. A series
    observed from the first slot shows no start, so nothing is dropped there."""
    seen = ~np.isnan(values)
    starts = np.flatnonzero(seen[1:] & ~seen[:-1]) + 1
    if steps <= 0 or not starts.size:
        return values
    out = values.copy()
    for start in starts.tolist():
        out[start : start + steps] = np.nan
    return out


@dataclass(frozen=True)
class Observed:
    """Where a series' samples are on the grid: its oldest and newest, and the newest value."""

    first: int
    last: int
    last_value: float


@dataclass
class _Series:
    labels: dict[str, str]
    values: np.ndarray  # float32 on the book's grid (half the memory), NaN = no sample


@dataclass
class HistoryBook:
    """The last `window` seconds of every series of one rule, on the grid `phase` past
    multiples of `step`.

    Slot i of every series holds the grid point `first(end) + i * step`.
    """

    step: int
    window: int
    phase: int = 0
    end: int | None = None
    _series: dict[SeriesKey, _Series] = field(default_factory=dict)

    @property
    def slots(self) -> int:
        return self.window // self.step

    def first(self, end: int) -> int:
        """The grid point in the oldest slot when the newest holds `end`."""
        return first_point(end, self.slots, self.step)

    def __len__(self) -> int:
        return len(self._series)

    def __contains__(self, key: object) -> bool:
        return key in self._series

    def keep(self, keys: set[SeriesKey]) -> None:
        """Forget every series but these."""
        for key in [k for k in self._series if k not in keys]:
            del self._series[key]

    def fetch_start(self, end: int) -> int:
        """The first grid point a fetch ending at `end` must ask for (only what is new)."""
        oldest = self.first(end)
        if self.end is None:
            return oldest
        return max(oldest, min(end, self.end - (REFETCH_STEPS - 1) * self.step))

    def advance(self, end: int, fetched: list[RangeSeries]) -> None:
        """Move the grid to end at `end` and write the fetched samples into it."""
        if end % self.step != self.phase:
            raise ValueError(f"end {end} is not on the {self.step}s grid ({self.phase}s past)")
        if self.end is not None and end != self.end:
            shift = (end - self.end) // self.step
            for s in self._series.values():
                if shift >= self.slots or shift <= -self.slots:
                    s.values[:] = np.nan
                elif shift > 0:
                    s.values[:-shift] = s.values[shift:]
                    s.values[-shift:] = np.nan
                else:
                    s.values[-shift:] = s.values[:shift]
                    s.values[:-shift] = np.nan
        self.end = end
        first = self.first(end)
        for rs in fetched:
            key = series_key(rs.labels)
            entry = self._series.get(key)
            if entry is None:
                entry = _Series(dict(rs.labels), np.full(self.slots, np.nan, dtype=np.float32))
                self._series[key] = entry
            idx = (rs.timestamps - first) // self.step
            values = as_rates(rs.values)
            good = (idx >= 0) & (idx < self.slots) & ~np.isnan(values)
            entry.values[idx[good]] = values[good]
        for key in [k for k, s in self._series.items() if np.isnan(s.values).all()]:
            del self._series[key]

    def labels(self, key: SeriesKey) -> dict[str, str]:
        return self._series[key].labels

    def observed(self, key: SeriesKey) -> Observed:
        """The oldest and newest grid points with a sample, and the newest value (one scan)."""
        values = self._series[key].values
        idx = np.flatnonzero(~np.isnan(values))
        assert self.end is not None
        oldest = self.first(self.end)
        first, last = int(idx[0]), int(idx[-1])
        return Observed(oldest + first * self.step, oldest + last * self.step, float(values[last]))

    def values(self, key: SeriesKey) -> np.ndarray:
        """The series on the grid ending at `end`, as float64."""
        return self._series[key].values.astype(np.float64)

    def settled(self, key: SeriesKey, warmup_steps: int) -> np.ndarray:
        """The series' values past every warm-up (`without_warmup`), NaN for holes."""
        return without_warmup(self._series[key].values, warmup_steps)

    def frame(
        self, keys: list[SeriesKey], unique_ids: list[str], warmup_steps: int = 0
    ) -> pd.DataFrame:
        """A tidy (unique_id, ds, y) frame of the given series past every warm-up, NaN for
        holes."""
        assert self.end is not None
        ds = self.first(self.end) + np.arange(self.slots, dtype=np.int64) * self.step
        return pd.DataFrame(
            {
                "unique_id": np.repeat(np.asarray(unique_ids, dtype=object), self.slots),
                "ds": np.tile(ds, len(keys)),
                "y": np.concatenate([self.settled(k, warmup_steps) for k in keys]).astype(
                    np.float64
                )
                if keys
                else np.empty(0),
            }
        )

    def series_keys(self) -> list[SeriesKey]:
        return list(self._series)

    def entries(self) -> Iterator[tuple[SeriesKey, dict[str, str], np.ndarray]]:
        """Every series' key, labels and values as held (float32 on the grid ending at
        `end`; not copies): what `put` takes back."""
        for key, s in self._series.items():
            yield key, s.labels, s.values

    def put(self, key: SeriesKey, labels: dict[str, str], values: np.ndarray) -> None:
        """Hold a series as `entries` gave it, on this book's grid (a checkpoint's)."""
        if values.shape != (self.slots,) or values.dtype != np.float32:
            got = f"{values.dtype}{values.shape}"
            raise ValueError(f"{self.slots} float32 values expected, got {got}")
        self._series[key] = _Series(labels, values)
