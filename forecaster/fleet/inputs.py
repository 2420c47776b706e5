"""The series a fleet run judges: every series of a rule, read from Prometheus (or an API
that speaks it: Thanos, Mimir, VictoriaMetrics) in chunked range queries; a folder of
trace CSVs; or a Parquet file of tidy series (statsforecast's `unique_id`, `ds`, `y`,
with `y` in requests per second)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from forecaster.config import ConfigError, Rule, load_config
from forecaster.selector import LabelSelector
from forecaster.sources.base import RangeSeries, SourceError
from forecaster.sources.prometheus import PrometheusClient, PrometheusSource
from forecaster.sources.trace import Trace, TraceError, read_trace
from forecaster.times import DAY

TIDY_COLUMNS = ("unique_id", "ds", "y")


class FleetError(ValueError):
    """Input a fleet run cannot use; the message names it."""


@dataclass(frozen=True)
class SeriesInput:
    """One series to judge: its id (unique in the run), its counts per interval, and
    its labels where it has some (they place its refits in time, as in `serve`)."""

    id: str
    trace: Trace
    labels: dict[str, str] | None = None

    def source_labels(self) -> dict[str, str]:
        """The labels it is replayed under: its own, else its id as `series`."""
        return dict(self.labels) if self.labels else {"series": self.id}


def from_folder(folder: Path) -> list[SeriesInput]:
    """Every `*.csv` and `*.csv.gz` trace of `folder` (the backtest's `--csv` format), by
    file name; its id is the name without the extension."""
    if not folder.is_dir():
        raise FleetError(f"--traces {folder}: not a folder")
    files = sorted(p for p in folder.iterdir() if p.name.endswith((".csv", ".csv.gz")))
    if not files:
        raise FleetError(f"--traces {folder}: no .csv or .csv.gz traces in it")
    out = []
    for path in files:
        try:
            out.append(SeriesInput(path.name.split(".csv")[0], read_trace(path)))
        except TraceError as err:
            raise FleetError(f"--traces: {err}") from None
    return out


def from_parquet(path: Path) -> list[SeriesInput]:
    """Each `unique_id` of a tidy Parquet file, its `y` (requests per second, on a
    regular grid of `ds`, datetimes or Unix seconds) as counts per interval."""
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as err:
        raise FleetError(f"--parquet {path}: cannot read as Parquet: {err}") from None
    missing = [c for c in TIDY_COLUMNS if c not in frame.columns]
    if missing:
        raise FleetError(
            f"--parquet {path}: no column {', '.join(missing)} (a tidy frame has "
            f"{', '.join(TIDY_COLUMNS)}; y in requests per second)"
        )
    if frame.empty:
        raise FleetError(f"--parquet {path}: no rows")
    ds = frame["ds"]
    seconds = (
        ds.astype("int64") // 10**9
        if pd.api.types.is_datetime64_any_dtype(ds)
        else pd.to_numeric(ds, errors="coerce")
    )
    if seconds.isna().any():
        raise FleetError(f"--parquet {path}: ds must be datetimes or Unix seconds")
    frame = frame.assign(seconds=seconds.astype("int64")).sort_values(["unique_id", "seconds"])
    out = []
    for uid, rows in frame.groupby("unique_id", sort=True):
        t = rows["seconds"].to_numpy()
        steps = np.diff(t)
        if len(t) < 2 or (steps <= 0).any():
            raise FleetError(f"--parquet {path}: series {uid}: needs two or more distinct ds")
        step = int(steps.min())
        if (steps % step).any():
            raise FleetError(f"--parquet {path}: series {uid}: ds is not on a regular grid")
        counts = np.full((t[-1] - t[0]) // step + 1, np.nan)
        counts[(t - t[0]) // step] = rows["y"].to_numpy(dtype=np.float64) * step
        # A rate is labelled by the end of its interval: the interval starts a step before.
        out.append(SeriesInput(str(uid), Trace(int(t[0]) - step, step, counts)))
    return out


def from_prometheus(
    config: Path, metric: str, selector: LabelSelector, days: int, end: int
) -> tuple[Rule, list[SeriesInput]]:
    """The rule `metric` of a configuration file, and every series its query gives
    that `selector` picks, over its history before the last `days` up to `end`, read
    from the configuration's Prometheus; each series' id is its labels."""
    try:
        loaded = load_config(config)
    except ConfigError as err:
        raise FleetError(str(err)) from None
    rule = loaded.rule(metric)
    if rule is None:
        names = ", ".join(r.name for r in loaded.rules)
        raise FleetError(f"--metric {metric}: no such rule in {config} (rules: {names})")
    source = PrometheusSource(PrometheusClient(loaded.prometheus))
    try:
        found = source.fetch_range(rule, end - days * DAY - rule.history, end, selector)
    except SourceError as err:
        raise FleetError(f"{source.describe()}: {err}") from None
    if not found:
        raise FleetError(f"--metric {metric}: no series match '{selector}' in {source.describe()}")
    return rule, [_series(s, rule.step) for s in found]


def _series(found: RangeSeries, step: int) -> SeriesInput:
    """A series of rates on the rule's grid as counts per interval, holes as NaN."""
    ts = found.timestamps
    counts = np.full((int(ts[-1]) - int(ts[0])) // step + 1, np.nan)
    counts[(ts - ts[0]) // step] = found.values * step
    name = ",".join(f"{k}={v}" for k, v in sorted(found.labels.items()))
    return SeriesInput(name or "{}", Trace(int(ts[0]) - step, step, counts), dict(found.labels))
