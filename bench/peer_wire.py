"""What lending a rule's forecasts to a peer costs the serving interpreter: encoding (on
the lender) and decoding (on the borrower) N series, the seconds it takes and the longest
a ticking thread (as the server's event loop) waits meanwhile, against the same snapshot
as one JSON document (the baseline: one json call each way, its objects built beforehand)
in the same run.

Run: python -m bench.peer_wire [--series 10000]
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable

import numpy as np

from adapter.peers.wire import decode, encode
from forecaster.config import Rule
from forecaster.forecast import SeriesForecast
from forecaster.sources.base import SeriesKey, series_key

ORIGIN = 1_700_000_040


def snapshot(rule: Rule, n: int) -> dict[SeriesKey, SeriesForecast]:
    rng = np.random.default_rng(7)
    out = {}
    ds = (ORIGIN + 60 * np.arange(1, rule.horizon_steps + 1)).astype(np.int64)
    for i in range(n):
        labels = {"namespace": "default", "service": f"s{i}"}
        upper = rng.uniform(1, 500, rule.horizon_steps)
        out[series_key(labels)] = SeriesForecast(
            labels, ORIGIN, 5.25, ds, upper / 2, upper, "ets", 0.5, 0.9, 1.05, 120, 300
        )
    return out


def stall(work: Callable[[], object]) -> tuple[float, float]:
    """(seconds `work` took, the longest gap between ticks of a 1 ms ticking thread)."""
    gaps: list[float] = []
    done = threading.Event()

    def tick() -> None:
        last = time.perf_counter()
        while not done.is_set():
            time.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = threading.Thread(target=tick)
    ticker.start()
    time.sleep(0.05)
    began = time.perf_counter()
    work()
    took = time.perf_counter() - began
    done.set()
    ticker.join()
    return took, max(gaps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=10_000)
    args = parser.parse_args()
    rule = Rule(name="qps", query="x{<<.LabelMatchers>>}", max_series=args.series)
    snap = snapshot(rule, args.series)
    lent = encode(rule, snap)
    doc = [json.loads(line) for line in lent.split(b"\n")]
    whole = json.dumps(doc).encode()
    rows = [
        ("encode, one call (baseline)", lambda: json.dumps(doc)),
        ("encode, a line a series", lambda: encode(rule, snap)),
        ("decode, one call (baseline)", lambda: json.loads(whole)),
        ("decode, a line a series", lambda: decode(rule, lent)),
    ]
    print(f"{args.series:,} series, {len(lent) / 2**20:.1f} MiB lent")
    for name, work in rows:
        took, longest = stall(work)
        ms, waited = took * 1000, longest * 1000
        print(f"  {name:30s} {ms:7.1f} ms, the loop waited {waited:6.1f} ms at most")


if __name__ == "__main__":
    main()
