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
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np

from forecaster.models.engine import ForecastEngine, SeriesState

log = logging.getLogger(__name__)

CHUNK = 32
"""Series per task: enough to amortise a task's round trip, few enough to spread a cycle
of a few hundred refits over every worker."""
LEAST = CHUNK
"""Refits a batch needs for the workers to take it: a smaller one is made in process,
where the round trip (and, the first time, the workers' start) costs more than it saves."""
SILENCE = 120.0
"""Seconds the workers may go without finishing a task while some are pending before they
are taken as hung, killed and replaced (a task is CHUNK refits: about 2 s on one core)."""
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


def default_workers() -> int:
    """Fitting workers when none are asked for: one per usable core, none on one core
    (a worker there only competes with the serving interpreter)."""
    cores = usable_cores()
    return cores if cores >= 2 else 0


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
    engines (`ForecastEngine.prepare`), started with the first batch of at least `least`
    refits (a service with few series never pays for them); `on_restart` is called
    when they died or hung and were replaced. Started with `spawn`: the serving process
    has threads, which a fork would copy mid-lock."""

    def __init__(
        self,
        workers: int | None = None,
        on_restart: Callable[[], None] = lambda: None,
        silence: float = SILENCE,
        least: int = LEAST,
    ) -> None:
        self.workers = workers or usable_cores()
        self.silence = silence
        self.least = least
        self.restarts = 0
        self.on_restart = on_restart
        self._pool: ProcessPoolExecutor | None = None
        self._stopped = False

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_limit_threads,
        )

    def start(self) -> None:
        """Nothing to start yet: the workers start with the first batch worth them."""

    def prepare_many(self, engine: ForecastEngine, jobs: list[Job]) -> list[SeriesState | None]:
        """Each job's state, in the order of `jobs`; None where the cycle is to make it
        in process: all of a batch under `least`, a refit that failed, and those of a
        worker that died or hung (the workers are then replaced). No forecast is lost."""
        if len(jobs) < self.least or self._stopped:
            return [None] * len(jobs)
        if self._pool is None:
            self._pool = self._start()
        pool = self._pool
        chunks = [jobs[i : i + CHUNK] for i in range(0, len(jobs), CHUNK)]
        futures: list[Future[list[SeriesState | None]] | None] = []
        broken = False
        for chunk in chunks:
            try:
                futures.append(pool.submit(_prepare_chunk, engine, chunk))
            except BrokenProcessPool:  # a worker died before or while the batch was handed out
                broken = True
                futures.append(None)
            except (OSError, ValueError) as err:  # a worker could not be started
                # (ValueError: "bad value(s) in fds_to_keep", seen with a worker killed
                # while the pool was starting the others)
                log.warning("a fitting worker could not be started: %s", err)
                broken = True
                futures.append(None)
            except RuntimeError:  # the pool was shut down (stopping)
                futures.append(None)
        pending = {f for f in futures if f is not None}
        hung = False
        while pending and not hung:
            done, pending = wait(pending, timeout=self.silence, return_when=FIRST_COMPLETED)
            hung = not done
        if hung:
            self._replace(f"hung (no refits finished in {self.silence:g} s)")
        out: list[SeriesState | None] = []
        for future, chunk in zip(futures, chunks, strict=True):
            if future is None:
                out += [None] * len(chunk)
                continue
            try:
                out += future.result(timeout=0)
            except BrokenProcessPool:  # a worker died (killed, out of memory)
                broken = True
                out += [None] * len(chunk)
            except (CancelledError, TimeoutError):  # closing, or left by a hung worker
                out += [None] * len(chunk)
        if broken and not hung:
            self._replace("died")
        return out

    def _replace(self, how: str) -> None:
        """Kill the workers and start new ones for the next cycle's refits."""
        self.restarts += 1
        self.on_restart()
        log.error(
            "a fitting worker %s; the refits it held are made by the cycle itself this "
            "time, and the workers are replaced (%d replacements so far)",
            how,
            self.restarts,
        )
        self.kill()  # new ones start with the next batch

    def kill(self) -> None:
        """Kill the workers at once, abandoning their refits (the pool may start anew)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            # ProcessPoolExecutor cannot kill its workers before 3.14's kill_workers().
            for process in list(getattr(pool, "_processes", {}).values()):
                process.kill()
            pool.shutdown(wait=False, cancel_futures=True)

    def stop(self) -> None:
        """Stop the workers, giving up fits not yet started."""
        self._stopped = True
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
