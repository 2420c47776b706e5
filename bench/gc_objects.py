"""What the garbage collector tracks in a serving process, and what a full collection costs
before and after `gc.freeze()` (which `scaleahead serve` calls once it has started).

Builds the real service in-process over N copies of the bundled trace (each its own
series), runs a forecast cycle and a current-value refresh as the scheduler would, then
counts tracked objects by type and times full collections.

Run: python -m bench.gc_objects [--series 1000]
"""

from __future__ import annotations

import argparse
import gc
import time
from collections import Counter

from adapter.service import DEMO_RULE, build_service
from forecaster.config import Rule
from forecaster.selector import EVERYTHING, LabelSelector
from forecaster.sources.base import InstantSample, RangeSeries, Source
from forecaster.sources.trace import TraceSource, demo_trace


class ManySeries:
    """The bundled trace as `n` series, each shifted by its own number of hours."""

    def __init__(self, n: int) -> None:
        trace = demo_trace()
        self.sources = [
            TraceSource(trace, {"namespace": "default", "service": f"svc-{i:04d}"}, loop=True)
            for i in range(n)
        ]
        self.shift = [3600 * (i % 168) for i in range(n)]

    def describe(self) -> str:
        return f"{len(self.sources)} copies of the bundled trace"

    def fetch_range(
        self, rule: Rule, start: int, end: int, selector: LabelSelector = EVERYTHING
    ) -> list[RangeSeries]:
        out = []
        for src, shift in zip(self.sources, self.shift, strict=True):
            for s in src.fetch_range(rule, start + shift, end + shift, selector):
                out.append(RangeSeries(s.labels, s.timestamps - shift, s.values))
        return out

    def fetch_current(self, rule: Rule, selector: LabelSelector, at: float) -> list[InstantSample]:
        out = []
        for src, shift in zip(self.sources, self.shift, strict=True):
            out += src.fetch_current(rule, selector, at + shift)
        return out


def full_collection_ms(repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        gc.collect()
        best = min(best, (time.perf_counter() - t0) * 1000)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=1000)
    args = ap.parse_args()
    source: Source = ManySeries(args.series)
    svc = build_service([DEMO_RULE], lambda _: source, time.time)
    t0 = time.perf_counter()
    svc.cycle.run(DEMO_RULE, time.time())
    svc.current.refresh(DEMO_RULE)
    print(f"{args.series} series: first cycle {time.perf_counter() - t0:.1f} s")
    gc.collect()
    objects = gc.get_objects()
    by_type = Counter(type(o).__qualname__ for o in objects)
    print(f"\ntracked objects: {len(objects):,}")
    print(f"{'type':32s} {'count':>9s}")
    for name, count in by_type.most_common(15):
        print(f"{name:32s} {count:9,d}")
    del objects
    before = full_collection_ms()
    gc.freeze()
    after = full_collection_ms()
    print(f"\nfull collection: {before:.1f} ms before gc.freeze(), {after:.1f} ms after")
    print(f"objects left to the collector after freeze: {len(gc.get_objects()):,}")
    gc.unfreeze()
    # What a steady-state cycle allocates and leaves behind (not frozen: it is replaced).
    svc.cycle.run(DEMO_RULE, time.time() + 60)
    gc.collect()
    gc.freeze()
    svc.cycle.run(DEMO_RULE, time.time() + 120)
    svc.current.refresh(DEMO_RULE)
    gc.collect()
    print(f"new objects after one more cycle (frozen before it): {len(gc.get_objects()):,}")
    print(f"full collection then: {full_collection_ms():.1f} ms")


if __name__ == "__main__":
    main()
