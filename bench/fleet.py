"""The fleet run's speed: series judged per minute by a plain loop in this process, and by
the embedded Dask cluster at 1 and 2 workers, and by a plain pool of 2 processes (what
this machine allows two processes, Dask or not), in one run on the same series; each
worker's memory; and the time 10,000 series x 7 days would take at N workers, from the
measured rate.

The series: the LLM-serving clients of ../shared/traces (10-minute steps, 14 days),
each judged over its last DAYS days, REPEAT times under different ids (each is replayed
afresh: nothing is cached between series).

With --prometheus N, the command end to end instead: N series of every kind (each trace
of ../shared/traces summed to 10-minute steps, its last 15 days, at scales 1, 2, ... and
shifted by whole hours) backfilled into a real Prometheus on loopback as a gauge of
requests a second, then `scaleahead whatif --config --metric` reads and judges them all
on the embedded cluster: its seconds and the fleet summary of its report.

Run: python -m bench.fleet [--days 7] [--repeat 5] [--prometheus 200]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from forecaster.fleet import run
from forecaster.fleet.inputs import SeriesInput, from_folder
from forecaster.fleet.judge import judge_series

TRACES = Path(__file__).resolve().parent.parent.parent / "shared" / "traces"


def _series(repeat: int) -> list[SeriesInput]:
    clients = [s for s in from_folder(TRACES) if s.id.startswith("servegen_m_mid_client")]
    return [SeriesInput(f"{s.id}#{i}", s.trace) for i in range(repeat) for s in clients]


def _embedded(series: list[SeriesInput], days: int, workers: int) -> tuple[float, float]:
    """Seconds to judge every series on `workers` embedded workers (started beforehand),
    and the most memory (MiB) a worker held at the end."""
    with run.client(None, workers) as c:
        c.wait_for_workers(workers)
        started = time.perf_counter()
        c.gather(c.map(judge_series, series, days=days, pure=False))
        seconds = time.perf_counter() - started
        info = c.scheduler_info()["workers"]
        memory = max(w["metrics"]["memory"] / 2**20 for w in info.values())
    return seconds, memory


def _pool(series: list[SeriesInput], days: int, workers: int) -> float:
    """Seconds to judge every series on a plain process pool (started beforehand): what
    the machine allows at `workers` processes, with no Dask at all."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(time.sleep, [0.0] * workers))
        started = time.perf_counter()
        list(pool.map(judge_series, series, [days] * len(series)))
        return time.perf_counter() - started


def _fleet_lines(n: int, end: int, step: int = 600) -> list[str]:
    """OpenMetrics lines of `n` series of every kind of the corpus, at `step`, ending at
    `end`."""
    lines = ["# HELP fleet_requests Requests a second.", "# TYPE fleet_requests gauge"]
    traces = from_folder(TRACES)
    for k in range(n):
        kind = traces[k % len(traces)]
        f = step // kind.trace.resolution
        counts = kind.trace.counts[len(kind.trace.counts) % f :].reshape(-1, f)
        summed = np.where(np.isnan(counts).all(axis=1), np.nan, np.nansum(counts, axis=1))
        rates = np.roll(summed[-15 * 144 :], 6 * (k // len(traces))) * (1 + k // len(traces))
        stamps = end - step * np.arange(len(rates))[::-1]
        lines += [
            f'fleet_requests{{kind="{kind.id}",copy="{k}"}} {v / step!r} {t}'
            for v, t in zip(rates.tolist(), stamps.tolist(), strict=True)
            if v == v
        ]
    return lines


def _from_prometheus(n: int, days: int) -> None:
    """`scaleahead whatif` over `n` series read from a real Prometheus, timed."""
    from harness.prometheus import backfilled

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        end = int(time.time()) // 600 * 600
        server = backfilled(_fleet_lines(n, end), root, end)
        server.start()
        try:
            config = root / "scaleahead.yaml"
            config.write_text(
                f"prometheus:\n  url: {server.url}\n  timeout: 60s\nrules:\n"
                "  - name: fleet_requests_forecast\n"
                "    query: 'fleet_requests{<<.LabelMatchers>>}'\n    step: 10m\n    history: 15d\n"
            )
            command = [sys.executable, "-m", "adapter.cli", "whatif", "--config", str(config)]
            command += ["--metric", "fleet_requests_forecast", "--days", str(days)]
            started = time.perf_counter()
            subprocess.run([*command, "--out", str(root / "out")], check=True)
            seconds = time.perf_counter() - started
        finally:
            server.stop()
        summary = json.loads((root / "out" / "report.json").read_text())["summary"]
    dropped, pods = summary["dropped"], summary["pod_minutes"]
    print(f"\n{n} series x {days} days from a real Prometheus: {seconds:.1f} s end to end")
    print(f"verdicts: {summary['verdicts']}")
    for how in ("reactive", "scaleahead"):
        share = dropped[how] / summary["requests"]
        cost = pods[how] / pods["perfect foresight"]
        print(f"{how:11s} dropped {share:7.2%}, pod-minutes {cost:.3f}x perfect foresight")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--prometheus", type=int, metavar="N", help="the command end to end")
    args = ap.parse_args()
    if args.prometheus:
        _from_prometheus(args.prometheus, args.days)
        return
    series = _series(args.repeat)
    started = time.perf_counter()
    for s in series:
        judge_series(s, args.days)
    loop = time.perf_counter() - started
    rows = [("plain loop, this process", loop, None)]
    for workers in (1, 2):
        seconds, memory = _embedded(series, args.days, workers)
        rows.append((f"embedded Dask, {workers} worker{'s' * (workers > 1)}", seconds, memory))
    rows.append(("plain process pool, 2", _pool(series, args.days, 2), None))
    print(f"\n{len(series)} series x {args.days} days (10-minute steps)")
    print(f"{'how':28s} {'seconds':>8s} {'series/min':>11s} {'vs loop':>8s} {'MiB/worker':>11s}")
    for name, seconds, memory in rows:
        mem = "" if memory is None else f"{memory:11.0f}"
        rate = len(series) / seconds * 60
        print(f"{name:28s} {seconds:8.1f} {rate:11.1f} {loop / seconds:7.2f}x {mem}")
    best = len(series) / rows[2][1] * 60 / 2  # per worker, at 2 Dask workers
    for n in (2, 16, 64):
        minutes = 10_000 / (best * n)
        print(f"10,000 series x {args.days} days at {n} workers: {minutes:.0f} min (projected)")


if __name__ == "__main__":
    main()
