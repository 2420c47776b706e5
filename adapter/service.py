"""The composition root: a source, the forecast cycle, the store, the provider and the app
built as one service, whose long-lived parts start from one list and stop in reverse."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, GCCollector, ProcessCollector

from adapter import logs
from adapter.forecasting.supervisor import ForecasterProcess, Merged
from adapter.forecasting.worker import WorkerSpec
from adapter.forward import Forwarder
from adapter.metrics import ServerMetrics
from adapter.peers.lender import Lender
from adapter.provider import Check
from adapter.provider.forecast import ForecastProvider
from adapter.server.app import create_app
from forecaster.config import CurrentConfig, ForwardConfig, PrometheusConfig, Rule
from forecaster.runtime.current import CurrentValues
from forecaster.runtime.demand import SeriesDemand
from forecaster.runtime.scheduler import Jobs
from forecaster.runtime.serving import ServingView
from forecaster.runtime.store import ForecastStore
from forecaster.runtime.telemetry import SeriesCollector, Telemetry
from forecaster.sources.base import Source
from forecaster.sources.prometheus import PrometheusClient, PrometheusSource
from forecaster.sources.trace import DEMO_LABELS, TraceSource, demo_trace

if TYPE_CHECKING:  # the models are imported only where the cycles run
    from forecaster.runtime.cycle import ForecastCycle

log = logging.getLogger("scaleahead")

DEMO_RULE = Rule(
    name="http_requests_forecast",
    query="sum by (namespace, service) (rate(http_requests_total{<<.LabelMatchers>>}[1m]))",
)
"""The rule served without a configuration file, over the bundled NASA-HTTP trace."""


class Part(Protocol):
    """A long-lived part of the service: started once, stopped once."""

    def start(self) -> object: ...

    def stop(self) -> object: ...


@dataclass
class Service:
    """Every long-lived part of a running scaleahead, built from the same inputs. `parts`
    start in their order and stop in the reverse one; the background jobs come first."""

    rules: list[Rule]
    source: Source
    store: ForecastStore
    current: CurrentValues
    current_config: CurrentConfig
    cycle: ForecastCycle | None  # None: the cycles run in the forecaster process
    forecaster: ForecasterProcess | None
    soon: Callable[[Rule], None]  # run a rule's cycle now (it gained a series to forecast)
    provider: ForecastProvider
    registry: CollectorRegistry
    telemetry: Telemetry
    metrics: ServerMetrics
    demand: SeriesDemand
    jobs: Jobs
    app: FastAPI
    clock: Callable[[], float]
    parts: list[Part] = field(default_factory=list)

    def start(self) -> None:
        """Start every part, in order."""
        for part in self.parts:
            part.start()

    def stop(self) -> None:
        """Stop every part, the last started first; work in flight is abandoned. A part
        that fails to stop is logged and the others still stop."""
        for part in reversed(self.parts):
            try:
                part.stop()
            except Exception:
                log.exception("stopping %s failed", type(part).__name__)


def build_service(
    rules: list[Rule],
    source_factory: Callable[[Telemetry], Source],
    clock: Callable[[], float],
    current_config: CurrentConfig | None = None,
    forward: ForwardConfig | None = None,
    fit_workers: int = 0,
    forecaster_process: bool = False,
    state_dir: Path | None = None,
) -> Service:
    """Assemble the service; `source_factory` gets the telemetry to report queries to;
    `forward` names the server that answers the external metrics no rule serves; the
    refits run in `fit_workers` processes (0: in the cycles' own). With
    `forecaster_process`, the cycles run in a supervised process of their own (then
    `source_factory` must pickle, and the cycles' clock is the system's); without, in
    this one, where a test or a replay may run them by hand. With `state_dir`, each
    rule's history and fits are saved there and taken up again at start."""
    current_config = current_config or CurrentConfig()
    registry = CollectorRegistry()
    GCCollector(registry=registry)  # python_gc_*: full collections pause serving
    ProcessCollector(registry=registry)  # process_*: CPU, RSS, open files
    # In process, the telemetry is exported as is; beside a forecaster process, which
    # counts the same things, both are summed into one exposition.
    own = CollectorRegistry() if forecaster_process else registry
    telemetry = Telemetry(own, [r.name for r in rules])
    metrics = ServerMetrics(registry)
    source = source_factory(telemetry)
    store = ForecastStore()
    current = CurrentValues(rules, source, clock, current_config.max_age, current_config.interval)
    view = ServingView(store, current, clock)
    demand = SeriesDemand(rules)
    cycle: ForecastCycle | None = None
    forecaster: ForecasterProcess | None = None
    parts: list[Part] = []
    if forecaster_process:
        level, fmt = logs.settings()
        spec = WorkerSpec(rules, source_factory, fit_workers, state_dir, level, fmt)
        forecaster = ForecasterProcess(spec, store, demand, registry)
        registry.register(Merged(own, forecaster.families))
        parts.append(forecaster)
        jobs = Jobs(None, current, clock)
        outcomes = forecaster.outcomes
        soon: Callable[[Rule], None] = forecaster.soon
    else:
        from forecaster.runtime.cycle import ForecastCycle
        from forecaster.runtime.fitting import FitPool

        pool = FitPool(fit_workers, telemetry.fit_worker_restarts.inc) if fit_workers else None
        cycle = ForecastCycle(
            rules,
            source,
            store,
            telemetry=telemetry,
            demand=demand,
            prepare_many=pool.prepare_many if pool else None,
            state_dir=state_dir,
        )
        if pool:
            parts.append(pool)
        jobs = Jobs(cycle, current, clock)
        outcomes = cycle.outcomes
        soon = jobs.soon
    parts.append(jobs)
    provider = ForecastProvider(
        rules, view, telemetry, demand, checks=lambda: [forecaster.check()] if forecaster else []
    )
    registry.register(SeriesCollector(rules, view, outcomes))

    def liveness() -> list[Check]:
        stalls = [*jobs.stalls(), *(forecaster.stalls() if forecaster else [])]
        return [Check(stall.job, False, stall.message) for stall in stalls]

    app = create_app(
        provider,
        registry,
        liveness,
        Forwarder(forward) if forward else None,
        Lender(rules, store),
    )
    return Service(
        rules,
        source,
        store,
        current,
        current_config,
        cycle,
        forecaster,
        soon,
        provider,
        registry,
        telemetry,
        metrics,
        demand,
        jobs,
        app,
        clock,
        parts=parts,
    )


def prometheus_source(config: PrometheusConfig) -> Callable[[Telemetry], Source]:
    """A source factory for the configured Prometheus (it pickles, for the forecaster
    process)."""
    return functools.partial(_prometheus, config)


def _prometheus(config: PrometheusConfig, telemetry: Telemetry) -> Source:
    return PrometheusSource(PrometheusClient(config, observer=telemetry.observe_query))


def demo_source(_: Telemetry) -> Source:
    """The bundled trace, looped so that any clock time falls inside it."""
    return TraceSource(demo_trace(), DEMO_LABELS, loop=True)
