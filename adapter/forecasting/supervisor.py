"""The serving process' side of the forecaster process: starts it, applies what it sends
(snapshots into the ForecastStore, which series to forecast answered from SeriesDemand),
and replaces it when it dies or stops sending heartbeats. The store keeps serving the
last snapshots meanwhile, as the failure semantics say: forecasts while fresh, then the
actual, never 0."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from adapter.forecasting import worker
from adapter.forecasting.messages import Beat, Failed, Put, Select, Selected, Soon, Stop
from adapter.forecasting.worker import WorkerSpec
from adapter.provider import Check
from forecaster.config import Rule
from forecaster.runtime.demand import SeriesDemand
from forecaster.runtime.outcomes import Tally
from forecaster.runtime.scheduler import Stall
from forecaster.runtime.store import ForecastStore
from forecaster.runtime.telemetry import Tallies
from forecaster.times import format_duration

log = logging.getLogger("scaleahead")

HANG = 60.0
"""Seconds without a message from the forecaster process (it sends a heartbeat every
worker.BEAT s once started; starting takes a few) before it is taken as hung, killed and
replaced."""
BACKOFF_FIRST = 1.0
"""Seconds before the first replacement; doubled while replacements keep dying within
BACKOFF_RESET, up to BACKOFF_MAX."""
BACKOFF_MAX = 60.0
BACKOFF_RESET = 300.0
STOP_GRACE = 3.0
"""Seconds the forecaster process gets to exit when told to stop, before it is killed."""


class _Copied:
    """A rule's outcomes as the forecaster process last sent them."""

    def __init__(self) -> None:
        self.copy: list[Tally] = []

    def tallies(self) -> list[Tally]:
        return self.copy


class ForecasterProcess:
    """The forecaster process, supervised: a Part of the service (start, stop), the
    cycles' `soon`, its stalled jobs for /livez, a check for /readyz, its metrics and its
    realised outcomes."""

    def __init__(
        self,
        spec: WorkerSpec,
        store: ForecastStore,
        demand: SeriesDemand,
        registry: CollectorRegistry,
        hang: float = HANG,
        backoff_first: float = BACKOFF_FIRST,
    ) -> None:
        self.spec = spec
        self.store = store
        self.demand = demand
        self.rules = {r.name: r for r in spec.rules}
        self.hang = hang
        self.backoff_first = backoff_first
        self.outcomes: Mapping[str, Tallies] = {name: _Copied() for name in self.rules}
        self.restarts = Counter(
            "scaleahead_forecaster_restarts_total",
            "Times the forecaster process died or hung and was replaced (the last forecasts "
            "were served meanwhile, while fresh).",
            ["reason"],
            registry=registry,
        )
        for reason in ("died", "hung"):
            self.restarts.labels(reason)
        self.up = Gauge(
            "scaleahead_forecaster_up",
            "1 while the forecaster process runs and sends heartbeats, else 0.",
            registry=registry,
        )
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._stopping = threading.Event()
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._thread: threading.Thread | None = None
        self._stalls: list[Stall] = []
        self._families: list[Metric] = []
        self._down: tuple[str, float] | None = None  # why it was replaced, and when
        self._delivered = False  # the current process has sent a snapshot

    def start(self) -> None:
        """Start the forecaster process and its supervision."""
        self._thread = threading.Thread(target=self._supervise, name="forecaster", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Tell the forecaster process to stop (the cycle in flight is abandoned), kill it
        if it has not exited within STOP_GRACE s, and end the supervision."""
        self._stopping.set()
        self._send(Stop())
        process = self._process
        if process is not None:
            process.join(STOP_GRACE)
            self._kill(process)
        if self._thread is not None:  # it kills a process it was starting meanwhile
            self._thread.join(STOP_GRACE)

    def soon(self, rule: Rule) -> None:
        """Run a cycle of `rule` now, besides its regular ones."""
        self._send(Soon(rule.name))

    def stalls(self) -> list[Stall]:
        """The forecaster process' jobs that stopped making progress, as it last said."""
        with self._lock:
            return list(self._stalls)

    def families(self) -> list[Metric]:
        """The forecaster process' metrics, as it last sent them."""
        with self._lock:
            return list(self._families)

    def check(self) -> Check:
        """A /readyz line: degraded from a replacement until the new process' first
        snapshot (the last forecasts are served meanwhile, while fresh)."""
        with self._lock:
            down, delivered = self._down, self._delivered
        if down is None or delivered:
            return Check("forecaster", True)
        why, since = down
        ago = format_duration(max(0, int(time.time() - since)))
        return Check(
            "forecaster",
            True,
            f"the forecaster process {why} and was replaced {ago} ago; the last forecasts "
            "are served while fresh, then the actual, until it has forecast again",
            degraded=True,
        )

    def _send(self, message: object) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            with self._send_lock:
                conn.send(message)
        except (OSError, ValueError, EOFError):
            pass  # the process is gone: its replacement starts fresh (a Soon is moot then)

    def _supervise(self) -> None:
        delay = self.backoff_first
        while not self._stopping.is_set():
            started = time.monotonic()
            process = self._spawn()
            why = self._serve(process)
            self.up.set(0)
            self._kill(process)
            if self._conn is not None:
                self._conn.close()
            if why is None:
                return
            with self._lock:
                self._down = (why, time.time())
                self._delivered = False
                self._stalls = []
            self.restarts.labels(why.split()[0]).inc()
            lived = time.monotonic() - started
            delay = self.backoff_first if lived > BACKOFF_RESET else delay
            log.error(
                "the forecaster process %s after %s; replaced in %gs (the last forecasts are "
                "served while fresh)",
                why,
                format_duration(int(lived)),
                delay,
            )
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, BACKOFF_MAX)

    def _spawn(self) -> BaseProcess:
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        process = context.Process(
            target=worker.main, args=(theirs, self.spec), name="scaleahead-forecaster"
        )
        process.start()
        theirs.close()
        self._process, self._conn = process, ours
        return process

    def _serve(self, process: BaseProcess) -> str | None:
        """Apply the process' messages until it dies or hangs (why) or stopping (None)."""
        conn = self._conn
        assert conn is not None
        heard = time.monotonic()
        while not self._stopping.is_set():
            try:
                waiting = conn.poll(0.25)
                message = conn.recv() if waiting else None
            except (EOFError, OSError):
                if self._stopping.is_set():
                    return None  # told to stop, and it did
                process.join(5)
                return f"died (exit code {process.exitcode})"
            except Exception as err:  # a message that cannot be read: lost, and said so
                log.error("a message of the forecaster process could not be read: %s", err)
                continue
            if message is not None:
                heard = time.monotonic()
                self._apply(message)
            elif self._stopping.is_set():
                return None
            elif process.exitcode is not None:
                return f"died (exit code {process.exitcode})"
            elif time.monotonic() - heard > self.hang:
                return f"hung (nothing heard for {self.hang:g}s)"
        return None

    def _apply(self, message: object) -> None:
        if isinstance(message, Put):
            self.store.put(message.rule, message.forecasts, message.refused)
            with self._lock:
                self._delivered = True
        elif isinstance(message, Failed):
            self.store.failed(message.rule, message.error, message.failures, message.retry_at)
        elif isinstance(message, Select):
            rule = self.rules[message.rule]
            self._send(Selected(message.ask, self.demand.select(rule, message.labels, message.now)))
        elif isinstance(message, Beat):
            self.up.set(1)
            with self._lock:
                self._stalls = message.stalls
                if message.families is not None:
                    self._families = message.families
            for name, tallies in (message.tallies or {}).items():
                copied = self.outcomes.get(name)
                if isinstance(copied, _Copied):
                    copied.copy = tallies

    def _kill(self, process: BaseProcess) -> None:
        """Kill the process and its fitting workers (its process group), if still there.
        Before it has made its group (still starting), the process alone: it has no
        workers yet. (Left alive, it would also hold the serving process at exit, which
        joins its children.)"""
        if process.pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        if process.is_alive():
            process.kill()
        process.join(5)


class Merged(Collector):
    """The metrics of `own` and those `others` returns as one exposition: families of one
    name are joined, samples of one name and labels summed (their `_created` the
    earliest), as the two processes count the same things (queries to Prometheus)."""

    def __init__(self, own: CollectorRegistry, others: Callable[[], list[Metric]]) -> None:
        self.own = own
        self.others = others

    def collect(self) -> Iterator[Metric]:
        joined: dict[str, Metric] = {}
        for family in [*self.own.collect(), *self.others()]:
            into = joined.get(family.name)
            if into is None:
                copy = Metric(family.name, family.documentation, family.type, family.unit)
                copy.samples = list(family.samples)
                joined[family.name] = copy
                continue
            index = {_key(s): i for i, s in enumerate(into.samples)}
            for sample in family.samples:
                at = index.get(_key(sample))
                if at is None:
                    into.samples.append(sample)
                    continue
                old = into.samples[at]
                value = (
                    min(old.value, sample.value)
                    if sample.name.endswith("_created")
                    else old.value + sample.value
                )
                into.samples[at] = old._replace(value=value)
        yield from joined.values()


def _key(sample: Sample) -> tuple[str, tuple[tuple[str, str], ...]]:
    return sample.name, tuple(sorted(sample.labels.items()))
