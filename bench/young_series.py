"""What a series born while scaleahead runs is served in its first 40 minutes.

Series start at random points of each shared trace (NASA at one minute; the UK ISP
backbone and the AWS ELB at five minutes, held flat within each five), as counters from
0 scraped every 15 s by a real Prometheus (Debian's, on loopback), each beside a mature
twin: the same traffic, with 26 hours of history before. Plus a steady Poisson 15 req/s.
Cycles run every minute from the birth, with rate windows of 2 and 5 minutes; each
minute every series is served by the served-value rule from the real current value.

Printed per trace, window and age: the served value against the need (the true peak
of the lead window) and against the mature twin's served value at the same minute
(the baseline: what the same traffic gets once it has history), and the twin's against
the need, as the median ratio, the 10th and 90th percentile, and the share within 20%.

Run: python -m bench.young_series [--series 10]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from forecaster.config import PrometheusConfig, Rule
from forecaster.policy import ServingPolicy
from forecaster.runtime.cycle import ForecastCycle
from forecaster.runtime.store import ForecastStore
from forecaster.selector import EVERYTHING
from forecaster.sources.base import series_key
from forecaster.sources.prometheus import PrometheusClient, PrometheusSource
from forecaster.sources.trace import read_trace
from forecaster.times import SETTLE
from harness.net import free_port
from harness.prometheus import PrometheusServer, system_tool, write_blocks

TRACES = Path(__file__).resolve().parent.parent.parent / "shared" / "traces"
FILES = {
    "nasa": "nasa_http_1995.csv",
    "isp": "isp_uk_academic_backbone_5min.csv",
    "elb": "nab_aws_elb_request_count_5min.csv",
}
MINUTE = 60
SCRAPE = 15
MATURE = 26 * 3600  # past the short-history models' reach (a day and an hour)
MINUTES = 40
LEAD = 180
AGES = ((1, 5), (6, 15), (16, MINUTES))
STEADY = 15.0


def per_minute(name: str) -> np.ndarray:
    """The trace as req/s per minute (a coarser step held flat within it)."""
    trace = read_trace(TRACES / FILES[name])
    rate = trace.counts / trace.resolution
    return np.repeat(rate, trace.resolution // MINUTE)


def counter(rates: np.ndarray, start: int, rng: np.random.Generator | None) -> list[str]:
    """Samples of a counter from 0 at `start` growing at `rates` (req/s per minute)."""
    per_scrape = np.repeat(rates, MINUTE // SCRAPE) * SCRAPE
    if rng is not None:
        per_scrape = rng.poisson(per_scrape).astype(float)
    totals = np.concatenate([[0.0], np.cumsum(per_scrape)])
    stamps = start + SCRAPE * np.arange(len(totals))
    return [f"{v:.3f} {t}" for t, v in zip(stamps.tolist(), totals.tolist(), strict=True)]


def build(data: Path, birth: int, n: int) -> dict[str, tuple[str, np.ndarray]]:
    """Backfill the series; return service -> (group, true req/s per minute from birth)."""
    rng = np.random.default_rng(11)
    lines = ["# HELP http_requests Requests served.", "# TYPE http_requests counter"]
    truth: dict[str, tuple[str, np.ndarray]] = {}
    ahead = MINUTES + 10
    back = MATURE // MINUTE

    def add(service: str, samples: list[str]) -> None:
        labels = f'namespace="default",service="{service}"'
        lines.extend(f"http_requests_total{{{labels}}} {s}" for s in samples)

    for name in FILES:
        rates = per_minute(name)
        for i in range(n):
            while True:
                at = int(rng.integers(back, len(rates) - ahead))
                if np.isfinite(rates[at - back : at + ahead]).all():
                    break
            jitter = int(rng.integers(0, MINUTE))  # births fall anywhere within a minute
            add(f"{name}-{i}", counter(rates[at : at + ahead], birth + jitter, None))
            add(f"{name}-{i}-mature", counter(rates[at - back : at + ahead], birth - MATURE, None))
            truth[f"{name}-{i}"] = (name, rates[at : at + ahead])
    for i in range(n):
        jitter = int(rng.integers(0, MINUTE))
        add(f"steady-{i}", counter(np.full(ahead, STEADY), birth + jitter, rng))
        truth[f"steady-{i}"] = ("steady", np.full(ahead, STEADY))
    write_blocks(lines, data)
    return truth


def ratios(values: list[float]) -> str:
    a = np.asarray(values)
    a = a[np.isfinite(a)]
    if not a.size:
        return "      (none)"
    p10, p50, p90 = np.percentile(a, [10, 50, 90])
    within = np.mean(np.abs(a - 1) <= 0.2) * 100
    return f"{p50:5.2f} [{p10:4.2f}, {p90:4.2f}] {within:4.0f}%"


def run(url: str, birth: int, truth: dict[str, tuple[str, np.ndarray]]) -> None:
    grid = birth - birth % MINUTE
    print(
        f"{'trace':6} {'window':6} {'age (min)':9}  "
        f"{'served / need: p50 [p10, p90] within 20%':42}  {'served / mature twin':28}  "
        "mature twin / need"
    )
    for window in ("2m", "5m"):
        query = (
            f"sum by (namespace, service) (rate(http_requests_total{{<<.LabelMatchers>>}}"
            f"[{window}]))"
        )
        rule = Rule(name="m", query=query, history="2d", lead=f"{LEAD}s")
        client = PrometheusClient(PrometheusConfig(url=url, timeout="60s"))
        source = PrometheusSource(client)
        store = ForecastStore()
        cycle = ForecastCycle([rule], source, store)
        policy = ServingPolicy(rule)
        by_need: dict[tuple[str, int], list[float]] = {}
        by_twin: dict[tuple[str, int], list[float]] = {}
        twin_need: dict[tuple[str, int], list[float]] = {}
        began = time.perf_counter()
        for k in range(1, MINUTES + 1):
            now = grid + k * MINUTE + SETTLE
            cycle.run(rule, now)
            current = {
                series_key(s.labels): s.value
                for s in source.fetch_current(rule, EVERYTHING, now - SETTLE)
            }
            forecasts = store.snapshot("m") or {}
            served: dict[str, float] = {}
            for key, actual in current.items():
                s = policy.value(actual, forecasts.get(key), now)
                if s is not None:
                    served[dict(key)["service"]] = s.value
            for service, (group, rates) in truth.items():
                if service not in served:
                    continue
                # Minute m of `rates` ends at birth + 60 (m + 1); the lead window covers
                # the minutes ending in (now, now + lead + step].
                first = int((now - grid) // MINUTE)
                need = float(np.max(rates[first : first + LEAD // MINUTE + 1]))
                age = next(i for i, (lo, hi) in enumerate(AGES) if lo <= k <= hi)
                by_need.setdefault((group, age), []).append(served[service] / need)
                twin = served.get(f"{service}-mature")
                if twin:
                    by_twin.setdefault((group, age), []).append(served[service] / twin)
                    twin_need.setdefault((group, age), []).append(twin / need)
        for group in ("steady", *FILES):
            for age, (lo, hi) in enumerate(AGES):
                print(
                    f"{group:6} {window:6} {f'{lo}-{hi}':9}  "
                    f"{ratios(by_need.get((group, age), [])):42}  "
                    f"{ratios(by_twin.get((group, age), [])):28}  "
                    f"{ratios(twin_need.get((group, age), []))}"
                )
        print(f"  ({MINUTES} cycles in {time.perf_counter() - began:.1f} s)")
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=10, help="random starts per trace")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        birth = (int(time.time()) // MINUTE) * MINUTE - 2 * 3600
        truth = build(root / "data", birth, args.series)
        config = root / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 15s\n")
        server = PrometheusServer(system_tool("prometheus"), root / "data", config, free_port(), 0)
        server.start()
        try:
            run(server.url, birth, truth)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
