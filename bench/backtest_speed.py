"""Replay speed of `scaleahead backtest` on the shared traces (the last 7 days of each).

The replay runs the real cycle once per step (every minute for the NASA trace) on one
core; scoring (baselines, simulated HPAs) is timed separately.

Run: python -m bench.backtest_speed
"""

from __future__ import annotations

import time
from pathlib import Path

from forecaster.config import Rule
from forecaster.evaluation.backtest import replay
from forecaster.evaluation.hpa_sim import HPASettings
from forecaster.evaluation.recorded import record
from forecaster.evaluation.scoring import default_capacity, score
from forecaster.selector import EVERYTHING
from forecaster.sources.trace import TraceSource, read_trace

TRACES = Path(__file__).resolve().parent.parent.parent / "shared" / "traces"


def main() -> None:
    print(f"\n{'trace':40s} {'steps':>7s} {'replay (s)':>11s} {'steps/s':>8s} {'score (s)':>10s}")
    for path in sorted(TRACES.glob("*.csv")):
        trace = read_trace(path)
        # The lead a rule derives from its step: 3 minutes, rounded up to whole steps.
        rule = Rule(
            name="b", query="x{<<.LabelMatchers>>}", step=trace.resolution, phase=trace.phase
        )
        lead = rule.lead
        end = trace.end
        start = end - 7 * 86400
        recorded = record(TraceSource(trace, {"trace": path.stem}), rule, EVERYTHING, start, end)
        t0 = time.perf_counter()
        r = replay(rule, recorded, start, end)
        replayed = time.perf_counter() - t0
        capacity = default_capacity(r.actual)
        t0 = time.perf_counter()
        score(r, HPASettings(target_per_pod=capacity, capacity_per_pod=capacity, startup=lead))
        scored = time.perf_counter() - t0
        print(
            f"{path.stem:40s} {len(r.times):7d} {replayed:11.1f} {len(r.times) / replayed:8.0f} "
            f"{scored:10.1f}"
        )


if __name__ == "__main__":
    main()
