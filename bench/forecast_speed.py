"""Forecast throughput and memory through the real cycle, for 100, 1,000 and 5,000 series.

Series are 14 days of one-minute history made from the NASA-HTTP trace, each a different
window (shifted) times a different factor (scaled). They are served by an in-memory
Source to the real ForecastCycle, so the figures include the history grid, the engine and
the store, not Prometheus. Per size it prints: the first cycle (backfill of 14 days and a
fit of every series: what a restart costs), the median steady cycle (one new minute: the
level update and ACI, plus the 1/60 of the series whose hourly refit falls on that
minute), the mean over an hour of steady cycles (every series refitted once), series per
second per core, and the process's peak resident memory (which includes the
benchmark's own input arrays, printed separately: the service holds no such copy).
Baselines measured in the same run: statsforecast AutoETS (no season) and MSTL (daily
season) per series.

Each size runs with the refits in process (the baseline), then in 1 and in N worker
processes (N: the usable cores), as `serve` makes them.

Run: python -m bench.forecast_speed [--sizes 100,1000,5000] [--fit-workers 0,1,2]
     [--skip-baselines]
"""

from __future__ import annotations

import argparse
import resource
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from forecaster.config import Rule
from forecaster.runtime.cycle import ForecastCycle
from forecaster.runtime.fitting import FitPool, usable_cores
from forecaster.runtime.store import ForecastStore
from forecaster.selector import EVERYTHING, LabelSelector
from forecaster.sources.base import InstantSample, RangeSeries
from forecaster.sources.trace import read_trace
from forecaster.times import SETTLE

TRACE = Path(__file__).resolve().parent.parent.parent / "shared" / "traces" / "nasa_http_1995.csv"
DAYS = 14
STEP = 60


class ArraySource:
    """A Source over in-memory rates: series i is rates[i] on the grid starting at t0."""

    def __init__(self, rates: np.ndarray, t0: int) -> None:
        self.rates = rates
        self.t0 = t0
        self.labels = [{"service": f"s{i}"} for i in range(len(rates))]

    def describe(self) -> str:
        return f"{len(self.rates)} in-memory series"

    def fetch_range(
        self, rule: Rule, start: int, end: int, selector: LabelSelector = EVERYTHING
    ) -> list[RangeSeries]:
        lo = max(0, (start - self.t0) // STEP)
        hi = min(self.rates.shape[1], (end - self.t0) // STEP + 1)
        ts = self.t0 + STEP * np.arange(lo, hi, dtype=np.int64)
        return [
            RangeSeries(lab, ts, self.rates[i, lo:hi])
            for i, lab in enumerate(self.labels)
            if selector.matches(lab)
        ]

    def fetch_current(self, rule: Rule, selector: LabelSelector, at: float) -> list[InstantSample]:
        return []


def make_series(n: int, minutes: int, rng: np.random.Generator) -> np.ndarray:
    counts = read_trace(TRACE).counts
    out = np.empty((n, minutes), dtype=np.float32)
    for i in range(n):
        while True:
            off = int(rng.integers(0, len(counts) - minutes))
            window = counts[off : off + minutes]
            # Mostly observed, and observed at the end (a series silent for longer than the
            # TTL is rightly not forecast).
            if np.isfinite(window).mean() > 0.99 and np.isfinite(window[-60:]).all():
                break
        out[i] = window * rng.uniform(0.2, 20.0) / 60
    return out


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_size(n: int, rng: np.random.Generator, pool: FitPool | None) -> dict[str, float]:
    minutes = DAYS * 1440 + 65  # the first cycle, then an hour of steady ones
    rates = make_series(n, minutes, rng)
    t0 = 1_700_000_000 // STEP * STEP
    rule = Rule(name="bench", query="x{<<.LabelMatchers>>}", history=f"{DAYS}d")
    prepare_many = pool.prepare_many if pool is not None else None
    cycle = ForecastCycle(
        [rule], ArraySource(rates, t0), ForecastStore(), prepare_many=prepare_many
    )
    first_end = t0 + (DAYS * 1440 - 1) * STEP
    start = time.perf_counter()
    report = cycle.run(rule, first_end + SETTLE)
    fit = time.perf_counter() - start
    assert report.series == n, report
    steady = []
    for k in range(1, 61):  # an hour: each series' refit falls on one of these minutes
        start = time.perf_counter()
        cycle.run(rule, first_end + k * STEP + SETTLE)
        steady.append(time.perf_counter() - start)
    update = float(np.median(steady))
    per_cycle = float(np.mean(steady))
    return {
        "fit": fit,
        "update": update,
        "per_cycle": per_cycle,
        "series_per_cycle": 60 / per_cycle * n,
        "rss": peak_rss_mib(),
        "input": rates.nbytes / 2**20,
    }


def baselines(rng: np.random.Generator) -> dict[str, float]:
    from statsforecast import StatsForecast
    from statsforecast.models import MSTL, AutoETS

    y = make_series(2, DAYS * 1440, rng).astype(np.float64)
    out = {}
    for name, model, n in (
        ("AutoETS (no season)", AutoETS(season_length=1), 2),
        ("MSTL (daily season)", MSTL(season_length=[1440]), 1),
    ):
        df = pd.concat(
            [
                pd.DataFrame({"unique_id": str(i), "ds": np.arange(y.shape[1]) * STEP, "y": y[i]})
                for i in range(n)
            ]
        )
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            StatsForecast(models=[model], freq=STEP).forecast(df=df, h=10, level=[80])
        out[name] = (time.perf_counter() - start) / n
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="100,1000,5000")
    ap.add_argument("--skip-baselines", action="store_true")
    ap.add_argument(
        "--fit-workers",
        default=f"0,1,{usable_cores()}",
        help="refits in process (0) and in this many worker processes, one run each",
    )
    args = ap.parse_args()
    print(f"\n{DAYS} days of one-minute history per series, horizon 10 min\n")
    header = (
        f"{'fitting':>18s} {'series':>7s} {'first (s)':>10s} {'median (s)':>11s} "
        f"{'per 60s cycle (s)':>18s} {'series per 60s cycle':>21s} {'peak RSS MiB':>13s} "
        f"{'of it bench input':>18s}"
    )
    print(header)
    print("-" * len(header))
    firsts: dict[int, dict[int, float]] = {}
    for workers in (int(x) for x in args.fit_workers.split(",")):
        pool = FitPool(workers) if workers else None
        if pool is not None:
            pool.start()
        label = (
            f"{workers} worker process" + ("es" if workers > 1 else "") if workers else "in process"
        )
        try:
            for n in (int(x) for x in args.sizes.split(",")):
                r = bench_size(n, np.random.default_rng(20261121), pool)
                firsts.setdefault(n, {})[workers] = r["fit"]
                print(
                    f"{label:>18s} {n:7d} {r['fit']:10.2f} {r['update']:11.3f} "
                    f"{r['per_cycle']:18.3f} {r['series_per_cycle']:21.0f} {r['rss']:13.0f} "
                    f"{r['input']:18.0f}"
                )
        finally:
            if pool is not None:
                pool.stop()
    for n, by in firsts.items():
        if 0 in by and len(by) > 1:
            gains = ", ".join(f"{w} workers {by[0] / s:.2f}x" for w, s in by.items() if w)
            print(f"first cycle of {n} series against in process: {gains}")
    rng = np.random.default_rng(20261121)
    if not args.skip_baselines:
        print("\nbaselines, seconds per series per fit (statsforecast, same machine, same run):")
        for name, secs in baselines(rng).items():
            print(f"  {name:22s} {secs:8.2f} s  -> {60 / secs:8.1f} series per 60 s cycle")


if __name__ == "__main__":
    main()
