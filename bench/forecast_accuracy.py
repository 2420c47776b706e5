"""Forecast accuracy at the lead time on the shared real traces, against baselines.

For every grid point t of the scored range (the last 7 days; 4 for the 14-day ELB trace)
each method serves max(actual(t), max of its forecast over the steps labelled
(t, t + lead + step]), using only data up to t. The score is the MAE of that served value
against the realised maximum over the same steps. Baselines, measured in the same run:
reactive (the actual alone) and the backtest's (seasonal naive, Holt-Winters, Crane's DSP
predictor and statsforecast's MSTL; see docs/backtest.md). scaleahead serves its upper
quantile; its coverage is the share of lead windows whose realised peak is at or below the served
value (the per-step share at t + lead + step is printed beside it). The row "(q=0.5)" is
a second engine in the same run serving the median of the peak instead: the like-for-like
comparison with the baselines' point forecasts, since an upper quantile, by design, sits
above the value that minimises the absolute error.

Run: python -m bench.forecast_accuracy [--traces DIR] [--quantile 0.9]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from forecaster.evaluation import baselines
from forecaster.evaluation.scoring import BASELINES as SCORED_BASELINES
from forecaster.evaluation.scoring import Baseline
from forecaster.models import ForecastEngine
from forecaster.policy import lead_window, serve, window_peak
from forecaster.sources.trace import read_trace
from forecaster.times import DAY

TRACES = Path(__file__).resolve().parent.parent.parent / "shared" / "traces"
HISTORY = 15 * DAY  # what the engine is given at each origin (two weeks for weekly cycles)
HORIZON = 600
MEDIAN = "  (q=0.5)"


@dataclass
class Series:
    name: str
    step: int
    ds: np.ndarray  # grid point labelling each value (end of its interval)
    y: np.ndarray  # rate per second, NaN where the trace has no row
    outage: np.ndarray  # known outages, excluded from scoring


def load(path: Path) -> Series:
    trace = read_trace(path)
    step = trace.resolution
    ds = trace.start + step * np.arange(1, len(trace.counts) + 1)
    y = trace.counts / step
    outage = np.zeros(len(y), dtype=bool)
    if path.name.startswith("nasa"):  # the hurricane shutdown (see the traces' README)
        lo = np.datetime64("1995-08-01T18:53").astype("datetime64[s]").astype(np.int64)
        hi = np.datetime64("1995-08-03T08:36").astype("datetime64[s]").astype(np.int64)
        outage = (ds > lo) & (ds <= hi + step)
    return Series(path.stem, step, ds, y, outage)


def scored_origins(s: Series, days: int, window: int) -> np.ndarray:
    first = int(np.searchsorted(s.ds, s.ds[-1] - days * DAY))
    origins = np.arange(first, len(s.y) - window)
    idx = origins[:, None] + np.arange(0, window + 1)[None, :]
    ok = np.isfinite(s.y[idx]).all(axis=1) & ~s.outage[idx].any(axis=1)
    return origins[ok]


def window_max(s: Series, origins: np.ndarray, window: int) -> np.ndarray:
    return s.y[origins[:, None] + np.arange(1, window + 1)[None, :]].max(axis=1)


def lead_for(step: int) -> int:
    """The lead the issue scores at: 3 minutes for 1-minute traces, 5 for 5-minute ones."""
    return 180 if step == 60 else 300


@dataclass(frozen=True)
class Scoring:
    """What one trace is scored on: the lead, the steps the served value covers, the days
    scored, the origins in them and the realised peak after each."""

    lead: int
    window: int
    days: int
    origins: np.ndarray
    target: np.ndarray


def scoring(s: Series) -> Scoring:
    """The last 7 days of a trace (4 of one shorter than 3 weeks) at the issue's lead."""
    lead = lead_for(s.step)
    window = lead_window(lead, s.step)
    days = 4 if len(s.y) * s.step < 21 * DAY else 7
    origins = scored_origins(s, days, window)
    return Scoring(lead, window, days, origins, window_max(s, origins, window))


def reactive(s: Series, origins: np.ndarray, window: int) -> np.ndarray:
    paths = baselines.reactive(s.y, origins, window)
    return baselines.served(s.y[origins], paths, window)


def baseline(forecast: Baseline) -> Callable[[Series, np.ndarray, int], np.ndarray]:
    """A forecasting baseline of the backtest, served by the same policy."""

    def served(s: Series, origins: np.ndarray, window: int) -> np.ndarray:
        paths = forecast(s.y, origins, window, s.step)
        return baselines.served(s.y[origins], paths, window)

    return served


BASELINES = (
    ("reactive", reactive),
    *((name, baseline(forecast)) for name, forecast in SCORED_BASELINES),
)


def scaleahead(
    s: Series, origins: np.ndarray, window: int, lead: int, quantile: float
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """The served value at every origin, whether the step at the lead was at or below the
    upper quantile there, and how often each model was used."""
    engine = ForecastEngine(step=s.step, horizon=HORIZON // s.step, lead=lead, quantile=quantile)
    hist = HISTORY // s.step
    served = np.empty(len(origins))
    covered = np.empty(len(origins), dtype=bool)
    models: dict[str, int] = {}
    for i, o in enumerate(origins):
        y = s.y[max(0, o + 1 - hist) : o + 1]
        y = np.where(s.outage[max(0, o + 1 - hist) : o + 1], 0.0, y)  # outages are real zeros
        _, upper, fit = engine.forecast(s.name, y, int(s.ds[o]))
        served[i] = serve(s.y[o], window_peak(upper, window))
        covered[i] = s.y[o + window] <= upper[window - 1]
        models[fit.model.name] = models.get(fit.model.name, 0) + 1
    return served, covered, models


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--traces", type=Path, default=TRACES)
    ap.add_argument("--quantile", type=float, default=0.9)
    ap.add_argument("--only", help="substring of the trace file names to run")
    args = ap.parse_args()
    rows = []
    for path in sorted(args.traces.glob("*.csv")):
        if args.only and args.only not in path.name:
            continue
        s = load(path)
        sc = scoring(s)
        lead, window, days, origins, target = sc.lead, sc.window, sc.days, sc.origins, sc.target
        results = {}
        timings = {}
        for name, fn in BASELINES:
            t0 = time.perf_counter()
            results[name] = np.mean(np.abs(fn(s, origins, window) - target))
            timings[name] = time.perf_counter() - t0
        t0 = time.perf_counter()
        served, covered, models = scaleahead(s, origins, window, lead, args.quantile)
        timings["scaleahead"] = time.perf_counter() - t0
        results["scaleahead"] = np.mean(np.abs(served - target))
        t0 = time.perf_counter()
        median, _, _ = scaleahead(s, origins, window, lead, 0.5)
        timings[MEDIAN] = time.perf_counter() - t0
        results[MEDIAN] = np.mean(np.abs(median - target))
        best = min(v for k, v in results.items() if k not in ("scaleahead", MEDIAN))
        rows.append(
            (
                s.name,
                s.step,
                lead,
                days,
                len(origins),
                results,
                best,
                (target <= served).mean(),
                covered.mean(),
                models,
                timings,
                float(target.mean()),
            )
        )

    print(
        f"\nMAE of the served value vs the realised max over (t, t+lead+step], "
        f"quantile {args.quantile}\n"
    )
    header = (
        f"{'trace':40s} {'method':15s} {'MAE':>10s} {'MAE/mean':>9s} {'/best base':>10s} "
        f"{'secs':>7s}"
    )
    print(header)
    print("-" * len(header))
    for name, step, lead, days, n, results, best, cov, step_cov, models, timings, mean in rows:
        for method, mae in results.items():
            print(
                f"{name:40s} {method:15s} {mae:10.4f} {mae / mean:9.3f} {mae / best:10.3f} "
                f"{timings[method]:7.1f}"
            )
        print(
            f"{'':40s} step {step}s, lead {lead}s, last {days} days, {n} origins; "
            f"scaleahead coverage of the peak {cov * 100:.1f}% (nominal "
            f"{args.quantile * 100:.0f}%), of the step at the lead {step_cov * 100:.1f}%"
        )
        top = sorted(models.items(), key=lambda kv: -kv[1])[:4]
        print(f"{'':40s} models used: " + ", ".join(f"{k} {v / n * 100:.0f}%" for k, v in top))
        print()


if __name__ == "__main__":
    main()
