"""The forecaster process: every rule's history books, engines and cycles on their
schedule (and the fitting workers, its own children). Each cycle's forecasts go to the
serving process as one snapshot; which series to forecast is asked of it, since the
requests and the cluster's pins arrive there. It exits when the serving process closes
the pipe or dies."""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, ProcessCollector

from adapter import logs
from adapter.forecasting.messages import Beat, Failed, Put, Select, Selected, Soon, Stop
from forecaster.config import Rule
from forecaster.forecast import SeriesForecast
from forecaster.runtime.demand import Selection
from forecaster.runtime.store import ForecastStore
from forecaster.sources.base import SeriesKey, Source

if TYPE_CHECKING:
    from forecaster.runtime.telemetry import Telemetry

log = logging.getLogger("scaleahead")

BEAT = 1.0
"""Seconds between the forecaster process' heartbeats."""
FULL_EVERY = 10
"""Heartbeats between two that carry the metrics and outcomes (also sent after each
cycle): a copy of every series' outcomes a second would cost the serving process'
interpreter more than a scrape needs."""
NICE = 10
"""How much lower the forecaster process' CPU priority is than the serving process':
where both want the same core, requests come first (CFS gives a nice-10 process about
a tenth of a contended core)."""
ASK_TIMEOUT = 30.0
"""Seconds a cycle waits for the serving process to say which series to forecast before
it fails (and is retried like any failed cycle)."""


@dataclass(frozen=True)
class WorkerSpec:
    """What the forecaster process is built from (pickled to it: `source_factory` must be
    a module-level function or a partial of one)."""

    rules: list[Rule]
    source_factory: Callable[[Telemetry], Source]
    fit_workers: int
    state_dir: Path | None = None
    log_level: str = "info"
    log_format: str = "text"


class Link:
    """The process' end of the pipe, safe to send on from any thread; a message that
    cannot be sent is logged and counted in `undelivered`, never dropped silently."""

    def __init__(self, conn: Connection, undelivered: Counter) -> None:
        self.conn = conn
        self.undelivered = undelivered
        self._lock = threading.Lock()

    def send(self, message: object) -> bool:
        try:
            with self._lock:
                self.conn.send(message)
        except Exception as err:
            self.undelivered.inc()
            log.error("could not send %s to the serving process: %s", type(message).__name__, err)
            return False
        return True


class RelayStore(ForecastStore):
    """A store that also sends every write to the serving process."""

    def __init__(self, link: Link) -> None:
        super().__init__()
        self.link = link

    def put(
        self,
        rule: str,
        forecasts: Mapping[SeriesKey, SeriesForecast],
        refused: frozenset[SeriesKey] = frozenset(),
    ) -> None:
        super().put(rule, forecasts, refused)
        self.link.send(Put(rule, forecasts, refused))  # pickled at once: no copy needed

    def failed(self, rule: str, error: str, failures: int, retry_at: float | None) -> None:
        super().failed(rule, error, failures, retry_at)
        self.link.send(Failed(rule, error, failures, retry_at))


class AskedDemand:
    """forecaster.runtime.demand.Demand answered by the serving process' SeriesDemand."""

    def __init__(self, link: Link, timeout: float = ASK_TIMEOUT) -> None:
        self.link = link
        self.timeout = timeout
        self._asks = itertools.count()
        self._lock = threading.Lock()
        self._waiting: dict[int, tuple[threading.Event, list[Selection]]] = {}

    def select(
        self, rule: Rule, labels: Mapping[SeriesKey, Mapping[str, str]], now: float
    ) -> Selection:
        ask = next(self._asks)
        done, answer = threading.Event(), list[Selection]()
        with self._lock:
            self._waiting[ask] = (done, answer)
        try:
            copied = {key: dict(series) for key, series in labels.items()}
            sent = self.link.send(Select(ask, rule.name, copied, now))
            if not sent or not done.wait(self.timeout):
                raise RuntimeError(
                    f"the serving process did not say which series to forecast within "
                    f"{self.timeout:g}s"
                )
            return answer[0]
        finally:
            with self._lock:
                self._waiting.pop(ask, None)

    def answer(self, message: Selected) -> None:
        with self._lock:
            waiting = self._waiting.get(message.ask)
        if waiting is not None:
            waiting[1].append(message.selection)
            waiting[0].set()


def _return_freed_memory() -> None:
    """Give the heap's free pages back to the system (glibc keeps what a cycle freed: a
    backfill's decoded answers, the fits' temporaries)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def usable_state_dir(state_dir: Path | None) -> Path | None:
    """`state_dir` if it can still hold checkpoints (serve checked it at start; it may
    have changed since), else None: forecasting goes on without them, said in the log."""
    from forecaster.runtime.checkpoint import CheckpointError, own_directory

    if state_dir is None:
        return None
    try:
        own_directory(state_dir)
    except CheckpointError as err:
        log.error("--state-dir: %s; forecasting without checkpoints", err)
        return None
    return state_dir


def main(conn: Connection, spec: WorkerSpec) -> None:
    """Run the cycles until told to stop or the pipe closes, then exit the process."""
    # Imported here: the serving process, which imports this module, runs no models.
    from forecaster.runtime.cycle import ForecastCycle
    from forecaster.runtime.fitting import FitPool
    from forecaster.runtime.scheduler import Jobs
    from forecaster.runtime.telemetry import Telemetry

    os.setpgid(0, 0)  # with its fitting workers, a group the supervisor kills as one
    os.nice(NICE)  # inherited by the fitting workers
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the serving process' to handle
    logs.configure(spec.log_level, spec.log_format)
    registry = CollectorRegistry()
    telemetry = Telemetry(registry, [r.name for r in spec.rules])
    undelivered = Counter(
        "scaleahead_forecaster_undelivered_total",
        "Messages of the forecaster process (snapshots, failures, heartbeats) that could not "
        "be sent to the serving process.",
        registry=registry,
    )
    ProcessCollector(namespace="scaleahead_forecaster", registry=registry)
    link = Link(conn, undelivered)
    demand = AskedDemand(link)
    store = RelayStore(link)
    pool = (
        FitPool(spec.fit_workers, telemetry.fit_worker_restarts.inc) if spec.fit_workers else None
    )
    cycle = ForecastCycle(
        spec.rules,
        spec.source_factory(telemetry),
        store,
        telemetry=telemetry,
        demand=demand,
        prepare_many=pool.prepare_many if pool else None,
        state_dir=usable_state_dir(spec.state_dir),
    )

    def beat(full: bool = True) -> None:
        if not full:
            link.send(Beat(jobs.stalls()))
            return
        tallies = {name: outcomes.tallies() for name, outcomes in cycle.outcomes.items()}
        link.send(Beat(jobs.stalls(), list(registry.collect()), tallies))

    def after_cycle() -> None:
        _return_freed_memory()
        beat()  # a full heartbeat: the cycle's metrics and outcomes follow its snapshot

    jobs = Jobs(cycle, None, time.time, after_cycle=after_cycle)

    stopping = threading.Event()

    def beating() -> None:
        for count in itertools.count(1):
            if stopping.wait(BEAT):
                return
            beat(full=count % FULL_EVERY == 0)

    rules = {r.name: r for r in spec.rules}
    beat()
    threading.Thread(target=beating, name="beat", daemon=True).start()
    jobs.start()
    try:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break  # the serving process is gone
            if isinstance(message, Stop):
                break
            if isinstance(message, Selected):
                demand.answer(message)
            elif isinstance(message, Soon) and message.rule in rules:
                jobs.soon(rules[message.rule])
    finally:
        stopping.set()
        if pool is not None:
            pool.kill()  # also when the serving process died and no one else would
        logging.shutdown()
        os._exit(0)  # without waiting: a cycle in flight may be waiting on Prometheus
