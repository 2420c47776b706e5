"""Resident memory a series costs the forecaster process, at 15 days of one-minute history.

For each size, a fresh interpreter builds N series (windows of the NASA-HTTP trace, each
scaled differently) in an in-memory Source, then runs the real ForecastCycle as the
forecaster process runs it: the first cycle (backfill and a fit of every series, the fits
in one worker process per usable core) and ten steady cycles. Its resident set (VmRSS) is
read before the cycle (the interpreter, the libraries and the benchmark's own input) and
after it, once a full garbage collection has run and the C heap has been trimmed; the
difference over N is what a series costs. The worker processes hold no series between
tasks and are not counted.

Baselines measured in the same run, per series:
- the floor: 15 days of float32 values, the least any forecaster could keep;
- the tidy frame (`unique_id`, `ds`, `y`) a statsforecast-style forecaster keeps the same
  history in (pandas' deep memory usage of the frame, categorical unique_id).

Run: python -m bench.series_memory [--sizes 1000,5000,10000] [--fit-workers N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd

from harness.proc import rss_kib

DAYS = 15
STEP = 60
STEADY = 10


def measure(n: int, workers: int) -> dict[str, float]:
    """Bytes per series held by the forecaster process after the first and steady cycles."""
    from adapter.server.memory import give_back
    from bench.forecast_speed import ArraySource, make_series
    from forecaster.config import Rule
    from forecaster.runtime.cycle import ForecastCycle
    from forecaster.runtime.fitting import FitPool
    from forecaster.runtime.store import ForecastStore
    from forecaster.times import SETTLE

    rates = make_series(n, DAYS * 1440 + STEADY, np.random.default_rng(20261205))
    t0 = 1_700_000_000 // STEP * STEP
    rule = Rule(name="bench", query="x{<<.LabelMatchers>>}", history=f"{DAYS}d")
    pool = FitPool(workers) if workers else None
    if pool is not None:
        pool.start()
    try:
        give_back("the benchmark's input")
        before = rss_kib(os.getpid()) * 1024
        cycle = ForecastCycle(
            [rule],
            ArraySource(rates, t0),
            ForecastStore(),
            prepare_many=pool.prepare_many if pool is not None else None,
        )
        first_end = t0 + (DAYS * 1440 - 1) * STEP
        report = cycle.run(rule, first_end + SETTLE)
        assert report.series == n, report
        for k in range(1, STEADY + 1):
            cycle.run(rule, first_end + k * STEP + SETTLE)
        give_back("the cycles")
        after = rss_kib(os.getpid()) * 1024
    finally:
        if pool is not None:
            pool.stop()
    return {"per_series": (after - before) / n, "before": before, "after": after}


def tidy_frame_bytes(n: int) -> float:
    """Bytes per series of the tidy frame holding n series of DAYS of one-minute history."""
    points = DAYS * 1440
    frame = pd.DataFrame(
        {
            "unique_id": pd.Categorical(np.repeat([f"s{i}" for i in range(n)], points)),
            "ds": np.tile(np.arange(points, dtype=np.int64) * STEP, n),
            "y": np.ones(n * points),
        }
    )
    return float(frame.memory_usage(deep=True).sum()) / n


def main() -> None:
    from forecaster.runtime.fitting import usable_cores

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="1000,5000,10000")
    ap.add_argument("--fit-workers", type=int, default=usable_cores())
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a size, in this process
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.fit_workers)))
        return
    floor = DAYS * 86400 // STEP * 4
    print(f"\n{DAYS} days of one-minute history per series; KB = 1,000 bytes\n")
    print(f"baseline, the values alone in float32:      {floor / 1000:8.1f} KB a series")
    tidy = tidy_frame_bytes(100)
    print(f"baseline, a tidy frame (unique_id, ds, y):  {tidy / 1000:8.1f} KB a series\n")
    print(f"{'series':>7s} {'RSS before MiB':>15s} {'RSS after MiB':>14s} {'KB a series':>12s}")
    for n in (int(x) for x in args.sizes.split(",")):
        out = subprocess.run(
            [
                *(sys.executable, "-m", "bench.series_memory"),
                *(f"--one={n}", f"--fit-workers={args.fit_workers}"),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(
            f"{n:7d} {r['before'] / 2**20:15.0f} {r['after'] / 2**20:14.0f} "
            f"{r['per_series'] / 1000:12.1f}"
        )


if __name__ == "__main__":
    main()
