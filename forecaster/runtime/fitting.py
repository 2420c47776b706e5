"""Refits in worker processes, one per core the process may use: the model fits of a
cycle, and the replay of the grid points since each (all of it, after a restart), run
beside the serving interpreter instead of competing with it for the GIL.

A series' state is a function of its history and the grid point alone, so a state made
in a worker is the one the cycle would have made itself (tested); replicas keep agreeing.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
from collections.abc import Callable, Hashable
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np

from forecaster.models.engine import ForecastEngine, SeriesState

log = logging.getLogger(__name__)

CHUNK = 32
"""Series per task: enough to amortise a task's round trip, few enough to spread a cycle
of a few hundred refits over every worker."""
THREAD_LIMITS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
"""Thread pools of the numeric libraries, held to one thread in each worker: the workers
are the parallelism, and more threads than cores only contend."""


def cgroup_cpus(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> float | None:
    """The CPUs the cgroup's quota allows (cgroup v2 `cpu.max`), or None without one."""
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return int(quota) / int(period)


def usable_cores(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """The cores this process may run on (its CPU affinity), fewer where the cgroup's CPU
    quota allows less (rounded up: a quota of 1.5 CPUs still runs two at times); at least 1."""
    cores = len(os.sched_getaffinity(0))
    quota = cgroup_cpus(cpu_max)
    if quota is not None:
        cores = min(cores, math.ceil(quota))
    return max(cores, 1)


def _limit_threads() -> None:
    for name in THREAD_LIMITS:
        os.environ[name] = "1"
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - statsforecast brings it
        return
    threadpool_limits(1)


Job = tuple[Hashable, np.ndarray, int]


def _prepare_chunk(engine: ForecastEngine, jobs: list[Job]) -> list[SeriesState | None]:
    out: list[SeriesState | None] = []
    for key, history, end in jobs:
        try:
            out.append(engine.prepared(key, history, end))
        except Exception:  # the cycle forecasts it in process, which logs and counts it
            out.append(None)
    return out


class FitPool:
    """`workers` processes (default: usable_cores()) that refit series for the cycles'
    engines (`ForecastEngine.prepare`); `on_restart` is called when one died and they
    were restarted. Started with `spawn`: the serving process has
    threads, which a fork would copy mid-lock."""

    def __init__(
        self, workers: int | None = None, on_restart: Callable[[], None] = lambda: None
    ) -> None:
        self.workers = workers or usable_cores()
        self.restarts = 0
        self.on_restart = on_restart
        self._pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_limit_threads,
        )

    def start(self) -> None:
        """Start the workers, which import the models while the first cycle fetches."""
        engine = ForecastEngine(step=60, horizon=10, lead=60, quantile=0.9)
        for _ in range(self.workers):
            self._pool.submit(_prepare_chunk, engine, [])

    def prepare_many(self, engine: ForecastEngine, jobs: list[Job]) -> list[SeriesState | None]:
        """Each job's state (None where it failed), in the order of `jobs`."""
        if not jobs:
            return []
        futures: list[Future[list[SeriesState | None]]] = [
            self._pool.submit(_prepare_chunk, engine, jobs[i : i + CHUNK])
            for i in range(0, len(jobs), CHUNK)
        ]
        out: list[SeriesState | None] = []
        try:
            for future in futures:
                out += future.result()
        except CancelledError:  # the pool is closing: the service stops
            out += [None] * (len(jobs) - len(out))
        except BrokenProcessPool:
            # A worker died (killed, out of memory): these fits are made in process by
            # the cycle, and a new pool takes the next ones.
            self.restarts += 1
            self.on_restart()
            log.error(
                "a fitting worker died; %d refits of this cycle run in the serving process, "
                "and the workers are restarted (%d restarts so far)",
                len(jobs) - len(out),
                self.restarts,
            )
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._start()
            out += [None] * (len(jobs) - len(out))
        return out

    def stop(self) -> None:
        """Stop the workers, giving up fits not yet started."""
        self._pool.shutdown(wait=True, cancel_futures=True)
