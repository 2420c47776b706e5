"""A Source that replays a recorded trace of counts per interval instead of asking Prometheus:
the bundled demo, and `scaleahead backtest --csv`."""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from forecaster.config import Rule
from forecaster.selector import EVERYTHING, LabelSelector
from forecaster.sources.base import InstantSample, RangeSeries, SourceError

DEMO_TRACE = "nasa_http_1995_07.csv.gz"
DEMO_LABELS = {"namespace": "default", "service": "nasa-http"}


class TraceError(ValueError):
    """A trace file that cannot be used; the message names the file and the row."""


@dataclass(frozen=True)
class Trace:
    """Counts per interval on a regular grid; NaN where nothing was recorded."""

    start: int  # Unix seconds of the first interval's start
    resolution: int  # seconds per interval
    counts: np.ndarray  # float64

    @property
    def end(self) -> int:
        """Unix seconds at which the last interval ends."""
        return self.start + self.resolution * len(self.counts)

    @property
    def phase(self) -> int:
        """How far past multiples of its resolution the trace's intervals end: the
        phase of a grid whose points are those ends (a rate is labelled by its end)."""
        return self.start % self.resolution


def read_trace(source: str | Path | io.TextIOBase, name: str | None = None) -> Trace:
    """Read a `timestamp,value` CSV (ISO-8601 UTC timestamps, counts per interval)."""
    name = name or str(source)
    try:
        frame = pd.read_csv(source, dtype={"timestamp": str})
    except (OSError, ValueError) as err:
        raise TraceError(f"{name}: cannot read as CSV: {err}") from None
    if list(frame.columns) != ["timestamp", "value"]:
        raise TraceError(
            f"{name}: expected the header 'timestamp,value', got {list(frame.columns)}"
        )
    if len(frame) < 2:
        raise TraceError(f"{name}: expected at least two rows")
    stamps = pd.to_datetime(frame["timestamp"], utc=True, errors="coerce")
    values = pd.to_numeric(frame["value"], errors="coerce")
    bad = stamps.isna() | values.isna() | ~np.isfinite(values) | (values < 0)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise TraceError(
            f"{name}: row {row + 2}: expected an ISO-8601 timestamp and a non-negative count, "
            f"got {frame['timestamp'].iloc[row]!r}, {frame['value'].iloc[row]!r}"
        )
    seconds = (stamps.astype("int64") // 10**9).to_numpy()
    steps = np.diff(seconds)
    if (steps <= 0).any():
        row = int(np.flatnonzero(steps <= 0)[0]) + 3
        raise TraceError(f"{name}: row {row}: timestamps must be strictly increasing")
    resolution = int(steps.min())
    if (steps % resolution).any():
        row = int(np.flatnonzero(steps % resolution)[0]) + 3
        raise TraceError(f"{name}: row {row}: timestamp is off the {resolution}s grid")
    counts = np.full((seconds[-1] - seconds[0]) // resolution + 1, np.nan)
    counts[(seconds - seconds[0]) // resolution] = values.to_numpy(dtype=np.float64)
    return Trace(int(seconds[0]), resolution, counts)


def demo_trace() -> Trace:
    """The bundled two weeks of the NASA-HTTP trace (see forecaster/data/ATTRIBUTION.md)."""
    with resources.files("forecaster.data").joinpath(DEMO_TRACE).open("rb") as raw:
        text = gzip.decompress(raw.read()).decode()
    return read_trace(io.StringIO(text), DEMO_TRACE)


class TraceSource:
    """Serves one trace as the series `labels`, as a rate per second on each rule's grid.

    With `loop` the trace repeats forever with its own length as period, so any clock
    time falls inside it; a trace of whole weeks keeps its weekdays and hours aligned
    with the real calendar. Without `loop`, times outside the trace have no data.
    """

    def __init__(self, trace: Trace, labels: dict[str, str], *, loop: bool = False) -> None:
        self.trace = trace
        self.labels = dict(labels)
        self.loop = loop

    def describe(self) -> str:
        return f"replayed trace {self.labels}"

    def _counts(self, interval_starts: np.ndarray) -> np.ndarray:
        t = self.trace
        idx = (interval_starts - t.start) // t.resolution
        if self.loop:
            idx = idx % len(t.counts)
        inside = (idx >= 0) & (idx < len(t.counts))
        out = np.full(len(idx), np.nan)
        out[inside] = t.counts[idx[inside]]
        return out

    def rates(self, rule: Rule, grid: np.ndarray) -> np.ndarray:
        """Requests per second over (g - step, g] for each grid point g (NaN: no data)."""
        res = self.trace.resolution
        if rule.step % res:
            raise SourceError(
                f"rule {rule.name}: step {rule.step}s is not a multiple of the trace's "
                f"resolution {res}s"
            )
        if (rule.phase - self.trace.phase) % res:
            raise SourceError(
                f"rule {rule.name}: phase {rule.phase}s puts grid points inside the trace's "
                f"intervals, which end {self.trace.phase}s past multiples of {res}s"
            )
        per_step = rule.step // res
        starts = grid[:, None] - rule.step + res * np.arange(per_step)[None, :]
        counts = self._counts(starts.ravel()).reshape(starts.shape)
        missing = np.isnan(counts).all(axis=1)
        return np.where(missing, np.nan, np.nansum(counts, axis=1)) / rule.step

    def fetch_range(
        self, rule: Rule, start: int, end: int, selector: LabelSelector = EVERYTHING
    ) -> list[RangeSeries]:
        if not selector.matches(self.labels):
            return []
        start, end = rule.grid_ceil(start), rule.grid_floor(end)
        if end < start:
            return []
        grid = np.arange(start, end + 1, rule.step, dtype=np.int64)
        values = self.rates(rule, grid)
        keep = np.isfinite(values)
        if not keep.any():
            return []
        return [RangeSeries(dict(self.labels), grid[keep], values[keep])]

    def fetch_current(self, rule: Rule, selector: LabelSelector, at: float) -> list[InstantSample]:
        if not selector.matches(self.labels):
            return []
        now = rule.grid_floor(at)
        value = float(self.rates(rule, np.array([now], dtype=np.int64))[0])
        if not np.isfinite(value):
            return []
        return [InstantSample(dict(self.labels), value)]
