"""The fleet run's speed: series judged per minute by a plain loop in this process, and by
the embedded Dask cluster at 1 and 2 workers, and by a plain pool of 2 processes (what
this machine allows two processes, Dask or not), in one run on the same series; each
worker's memory; and the time 10,000 series x 7 days would take at N workers, from the
measured rate.

The series: the LLM-serving clients of ../shared/traces (10-minute steps, 14 days),
each judged over its last DAYS days, REPEAT times under different ids (each is replayed
afresh: nothing is cached between series).

Run: python -m bench.fleet [--days 7] [--repeat 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
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
